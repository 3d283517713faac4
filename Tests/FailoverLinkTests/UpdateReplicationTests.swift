import Foundation
import SessionStore
import TestSupport
import Testing

@testable import FailoverLink

@Suite("Session updates between two stores over TCP", .serialized)
struct UpdateReplicationTests {
    static let guests = Authorization(acl: .name("guests"), outboundCAR: .init(cir: 2_000), accountingInterval: 600)

    @Test("an update on the device holding the backup copy reaches the owner, whose controller hears of it (R9)")
    func updateOnEitherDevice() async throws {
        try await Pair.run { pair in
            let one = try await pair.start(1)
            let two = try await pair.start(2)
            for number in 0..<20 {
                try await one.login(pairSession(number, owner: 1))
                try await two.login(pairSession(number, owner: 2))
            }
            #expect(await pair.converged())
            var heard = one.store.peerUpdates.makeAsyncIterator()

            // A RADIUS CoA sent to the backup source IP reaches device 2, which holds only the backup copy.
            let user = pairSession(4, owner: 1).ip
            let changed = try await two.update(
                .changeOfAuthorization(user, Self.guests, sessionTimeout: 1_800),
                writeConcern: .replicated(timeout: .seconds(30))
            )
            #expect(try one.store.session(for: user) == changed)
            let notice = try #require(await heard.next())
            #expect(notice.map(\.session) == [changed])
            #expect(notice.first?.reason == .changeOfAuthorization)
            #expect(notice.first?.session.authorization == Self.guests)

            // The owner's accounting round reaches the backup; both parts stay, whichever device set them.
            let round = (0..<20).map {
                SessionUpdate.accountingInterim(
                    pairSession($0, owner: 1).ip,
                    AccountingState(inputOctets: UInt64($0) << 33, reportedAt: .now),
                    lastActivity: .now
                )
            }
            let results = try await one.update(contentsOf: round, writeConcern: .replicated(timeout: .seconds(30)))
            #expect(results.allSatisfy { (try? $0.get()) != nil })
            let both = try #require(try two.store.session(for: user))
            #expect(both.authorization == Self.guests)
            #expect(both.sessionTimeout == 1_800)
            #expect(both.accounting.inputOctets == 4 << 33)
            // The device's own updates are not reported back to it as the peer's.
            try await one.update(
                .activity(pairSession(5, owner: 1).ip, at: .now),
                writeConcern: .replicated(timeout: .seconds(30))
            )

            #expect(await pair.converged())
            #expect(await pair.verified())
            let digestsBefore = one.status.digestsCompared
            #expect(await eventually { one.status.digestsCompared > digestsBefore })
            #expect(one.status.digestMismatches == 0)
            #expect(two.status.digestMismatches == 0)
        }
    }

    @Test("updates made on both devices while the link is down meet: each part ends as the same one on both")
    func concurrentUpdatesConverge() async throws {
        try await Pair.run { pair in
            let one = try await pair.start(1)
            try await pair.start(2)
            for number in 0..<10 { try await one.login(pairSession(number, owner: 1)) }
            #expect(await pair.converged())
            await pair.stop(2)
            let user = pairSession(3, owner: 1).ip
            try await one.update(.accountingInterim(user, AccountingState(inputOctets: 100, reportedAt: .now)))
            try await one.update(.changeOfAuthorization(user, Authorization(acl: .number(3001))))
            await pair.stop(1)
            let two = try await pair.start(2)
            try await two.update(.changeOfAuthorization(user, Self.guests))
            try await two.update(.activity(user, at: .now))
            try await pair.start(1)
            #expect(await pair.converged())
            let one2 = try #require(try pair[1].store.session(for: user))
            #expect(one2 == (try two.store.session(for: user)))
            // Each part is the one of the higher revision: the accounting only device 1 reported, the activity only
            // device 2 reported, and one of the two authorizations, the same on both.
            #expect(one2.accounting.inputOctets == 100)
            #expect(one2.lastActivity != nil)
            #expect([Authorization(acl: .number(3001)), Self.guests].contains(one2.authorization))
            #expect(await pair.verified())
        }
    }

    @Test("a device that takes the users over gets each as the last update left it")
    func takeoverHandsOverThePresent() async throws {
        try await Pair.run { pair in
            let one = try await pair.start(1)
            try await pair.start(2)
            for number in 0..<50 { try await one.login(pairSession(number, owner: 1)) }
            let reports = (0..<50).map {
                SessionUpdate.accountingInterim(
                    pairSession($0, owner: 1).ip,
                    AccountingState(inputOctets: UInt64(1_000 + $0), outputOctets: 7, reportedAt: .now)
                )
            }
            _ = try await one.update(contentsOf: reports, writeConcern: .replicated(timeout: .seconds(30)))
            let vip = pairSession(9, owner: 1).ip
            try await one.update(
                .reauthentication(vip, Self.guests, idleTimeout: 120),
                writeConcern: .replicated(timeout: .seconds(30))
            )
            await pair.stop(1)

            let promoted = pair[2]
            var batches = promoted.takenOver.makeAsyncIterator()
            let report = try await promoted.promote()
            #expect(report.takenOver == 50)
            var handedOver: [Session] = []
            while handedOver.count < 50, let batch = await batches.next() { handedOver += batch }
            #expect(handedOver.count == 50)
            for session in handedOver {
                let number = Int(session.ip.description.split(separator: ".").last!)!
                #expect(session.accounting.inputOctets == UInt64(1_000 + number), "\(session.ip)")
                #expect(session.accounting.outputOctets == 7)
            }
            let taken = try #require(handedOver.first { $0.ip == vip })
            #expect(taken.authorization == Self.guests)
            #expect(taken.idleTimeout == 120)
            #expect(taken.radius.acctSessionID == pairSession(9, owner: 1).radius.acctSessionID)
        }
    }

    @Test("an update made on one device while the owner logs the user out on the other: the user stays logged out")
    func updateAfterLogoutOnThePeer() async throws {
        try await Pair.run { pair in
            let one = try await pair.start(1)
            try await pair.start(2)
            for number in 0..<10 { try await one.login(pairSession(number, owner: 1)) }
            #expect(await pair.converged())
            let user = pairSession(6, owner: 1).ip
            // Apart: device 2 handles a CoA for the user, while device 1 logs the user out.
            await pair.stop(2)
            try await one.logout(user, reason: .disconnectMessage)
            await pair.stop(1)
            let two = try await pair.start(2)
            let changed = try await two.update(.changeOfAuthorization(user, Self.guests))
            #expect(changed.authorization == Self.guests)
            try await pair.start(1)
            #expect(await pair.converged())
            #expect(try pair[1].store.session(for: user) == nil)
            #expect(try two.store.session(for: user) == nil)
            #expect(pair[1].store.count == 9)
            // And an update sent now for the logged-out user is refused on both, storing nothing: no update of
            // the user is logged after it (the peer's stream may still add records of its own meanwhile).
            for id: UInt8 in [1, 2] {
                let before = pair[id].store.logStatus.lastSequence
                try await pair[id].store.holdLog("test", from: before + 1)  // kept for the look below
                let error = await #expect(throws: SessionStoreError.self) {
                    try await pair[id].update(.activity(user, at: .now))
                }
                #expect(error?.kind == .notOnline)
                var logged = 0
                try pair[id].store.forEachLogRecord(from: before + 1) { record in
                    if case .update(let update) = record.event, update.ip == user, update.revision.device == id {
                        logged += 1
                    }
                    return true
                }
                #expect(logged == 0, "a refused update of \(user) was logged on device \(id)")
                try await pair[id].store.releaseLog("test")
            }
            #expect(await pair.verified())
        }
    }
}
