import Foundation
import LMDB
import SessionStore
import TestSupport
import Testing

@testable import FailoverLink

@Suite("Promotion, demotion, split brain and digests", .serialized)
struct PromotionTests {
    @Test(
        "promotion takes the peer's users over; the old device rejoins, discards what was never acknowledged, and resurrects no one"
    )
    func promotionAndRejoin() async throws {
        try await Pair.run { pair in
            let one = try await pair.start(1)
            let two = try await pair.start(2)
            for number in 0..<200 {
                try await one.login(pairSession(number, owner: 1))
                try await two.login(pairSession(number, owner: 2))
            }
            #expect(await pair.converged())
            // Device 1 loses the link: what it logs in now never reaches device 2.
            await pair.stop(2)
            for number in 200..<230 { try await one.login(pairSession(number, owner: 1)) }
            await pair.stop(1)

            // Device 2 is promoted (VRRP made it master) and takes device 1's users over.
            let promoted = try await pair.start(2)
            var batches = promoted.takenOver.makeAsyncIterator()
            let report = try await promoted.promote()
            #expect(report.takenOver == 200)
            #expect(report.term == 2)
            var handedOver: [Session] = []
            while handedOver.count < 200, let batch = await batches.next() { handedOver += batch }
            #expect(Set(handedOver.map(\.ip)) == Set((0..<200).map { pairSession($0, owner: 1).ip }))
            let taken = pairSession(10, owner: 1)
            #expect(promoted.store.effectiveOwner(of: try #require(try promoted.store.session(for: taken.ip))) == 2)
            // A taken-over user logs off while device 1 is away; a new user logs in.
            try await promoted.logout(taken.ip, reason: .user)
            try await promoted.login(pairSession(500, owner: 2))

            // Device 1 comes back: it learns the higher term and steps down.
            let returning = try await pair.start(1)
            var events = returning.events.makeAsyncIterator()
            let demotion = try #require(await events.next())
            guard case .demoted(let term, _, let discarded, let loggedOffAgain) = demotion else {
                Issue.record("expected a demotion, got \(demotion)")
                return
            }
            #expect(term == 2 && discarded == 30 && loggedOffAgain == 0)
            #expect(await pair.converged())
            #expect(try returning.store.session(for: taken.ip) == nil)
            #expect(try returning.store.session(for: pairSession(210, owner: 1).ip) == nil)
            #expect(try returning.store.session(for: pairSession(500, owner: 2).ip) != nil)
            #expect(returning.store.term == 2)
            // Device 1's old users stay with device 2; its new ones are its own.
            let kept = try #require(try returning.store.session(for: pairSession(11, owner: 1).ip))
            #expect(returning.store.effectiveOwner(of: kept) == 2)
            let fresh = try await returning.login(pairSession(600, owner: 1), writeConcern: .replicated())
            #expect(promoted.store.effectiveOwner(of: fresh) == 1)
            #expect(try promoted.store.session(for: fresh.ip) == fresh)
        }
    }

    @Test("split brain: both promoted while apart converge to one users table, the lower device ID's")
    func splitBrain() async throws {
        try await Pair.run { pair in
            try await pair.start(1)
            try await pair.start(2)
            for number in 0..<50 {
                try await pair[1].login(pairSession(number, owner: 1))
                try await pair[2].login(pairSession(number, owner: 2))
            }
            #expect(await pair.converged())
            await pair.stop(1)
            await pair.stop(2)
            // Each runs alone, is promoted, and changes things.
            let one = try await pair.start(1)
            try await one.promote()
            try await one.login(pairSession(100, owner: 1))
            try await one.logout(pairSession(1, owner: 2).ip, reason: .deleteUser)
            await pair.stop(1)
            let two = try await pair.start(2)
            try await two.promote()
            try await two.login(pairSession(100, owner: 2))
            await pair.stop(2)
            // The link returns.
            try await pair.start(1)
            let rejoining = try await pair.start(2)
            var events = rejoining.events.makeAsyncIterator()
            // Device 2's takeover and its login while apart are discarded.
            let demotion = try #require(await events.next())
            guard case .demoted(let term, _, let discarded, let loggedOffAgain) = demotion else {
                Issue.record("expected a demotion, got \(demotion)")
                return
            }
            #expect(term == 2 && discarded == 2 && loggedOffAgain == 0)
            #expect(await pair.converged())
            #expect(try pair[2].store.session(for: pairSession(100, owner: 1).ip) != nil)
            #expect(try pair[2].store.session(for: pairSession(1, owner: 2).ip) == nil)
            #expect(try pair[2].store.session(for: pairSession(100, owner: 2).ip) == nil)
            #expect(pair[1].store.count == 100)
        }
    }

    @Test("a digest divergence is detected and repaired by a resync")
    func digestDivergence() async throws {
        try await Pair.run { pair in
            pair.plantsDivergence = true
            try await pair.start(1)
            try await pair.start(2)
            for number in 0..<100 { try await pair[1].login(pairSession(number, owner: 1)) }
            #expect(await pair.converged())
            await pair.stop(2)
            // Silent damage on device 2: one of device 1's users vanishes from its table, outside the log.
            let lost = pairSession(42, owner: 1).ip
            do {
                let environment = try Environment(path: pair.path(2) + "/users.mdb")
                let users = try environment.openDatabase("users")
                try environment.write { txn in _ = try lost.withUnsafeBytes { try txn.delete(key: $0, in: users) } }
            }

            let two = try await pair.start(2)
            #expect(two.store.count == 99)
            #expect(await eventually { two.status.digestMismatches + pair[1].status.digestMismatches > 0 })
            #expect(await pair.converged())
            #expect(try two.store.session(for: lost) != nil)
        }
    }
}
