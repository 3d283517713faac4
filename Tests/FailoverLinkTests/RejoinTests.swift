import Foundation
import LMDB
import Locking
import SessionStore
import TestSupport
import Testing

@testable import FailoverLink

/// The rejoin of a device after a failover, and full resynchronizations sent while the sender's checkpoint lags
/// behind its log: the snapshot and the stream after it must hold every change, whichever device made it.
@Suite("Rejoin and resynchronization while the checkpoint lags", .serialized)
struct RejoinTests {
    /// A store whose users table on disk stays behind its log: no checkpoint runs unless asked for.
    static func lagging(_ configuration: inout SessionStore.Configuration) {
        configuration.checkpointInterval = .seconds(3600)
        configuration.checkpointThreshold = 1_000_000
        configuration.maxChangesInMemory = 2_000_000
    }

    @Test(
        "a device restarted soon after the failover gets back every login it acknowledged and none of the users it logged out"
    )
    func quickRejoinAfterFailover() async throws {
        try await Pair.run { pair in
            try await pair.start(1)
            try await pair.start(2, tune: Self.lagging)
            #expect(await pair.verified())
            for number in 0..<300 {
                try await pair[1].login(pairSession(number, owner: 1), writeConcern: .replicated(timeout: .seconds(10)))
            }
            for number in 0..<20 {
                try await pair[2].login(pairSession(number, owner: 2), writeConcern: .replicated(timeout: .seconds(10)))
            }
            // Device 1 logs some of its users off just before it goes, and one of device 2's (R7).
            for number in 0..<50 {
                try await pair[1].logout(
                    pairSession(number, owner: 1).ip,
                    reason: .user,
                    writeConcern: .replicated(timeout: .seconds(10))
                )
            }
            try await pair[1].logout(
                pairSession(7, owner: 2).ip,
                reason: .deleteUser,
                writeConcern: .replicated(timeout: .seconds(10))
            )
            await pair.stop(1)

            let promoted = pair[2]
            try await promoted.promote()
            // The new master goes on: a taken-over user logs off, a new user logs in.
            try await promoted.logout(pairSession(100, owner: 1).ip, reason: .user)
            try await promoted.login(pairSession(500, owner: 2))
            #expect(promoted.store.logStatus.checkpointSequence < promoted.store.logStatus.lastSequence)

            let returning = try await pair.start(1)
            var events = returning.events.makeAsyncIterator()
            let demotion = try #require(await events.next())
            guard case .demoted(2, _, 0, 0) = demotion else {
                Issue.record("expected a demotion to term 2 that discarded nothing, got \(demotion)")
                return
            }
            #expect(await pair.verified())
            // What the pair reports is true the moment it reports it.
            let expected = try promoted.store.allSessions()
            #expect(try returning.store.allSessions() == expected)
            let online = Set(try returning.store.allSessions().map(\.ip))
            for number in 50..<300 where number != 100 { #expect(online.contains(pairSession(number, owner: 1).ip)) }
            for number in 0..<50 { #expect(!online.contains(pairSession(number, owner: 1).ip)) }
            #expect(!online.contains(pairSession(100, owner: 1).ip))
            #expect(!online.contains(pairSession(7, owner: 2).ip))
            #expect(online.contains(pairSession(500, owner: 2).ip))
            #expect(await eventually { returning.status.acknowledgedByPeer == promoted.status.appliedFromPeer })

            // A second failover right away loses nothing: the rejoined device holds every user.
            await pair.stop(2)
            let again = try await returning.promote()
            #expect(again.term == 3)
            #expect(Set(try returning.store.allSessions().map(\.ip)) == Set(expected.map(\.ip)))
            for session in expected { #expect(returning.store.effectiveOwner(of: session) == 1) }
        }
    }

    @Test(
        "a snapshot sent while the sender's checkpoint lags keeps the logouts the receiver made of the sender's users"
    )
    func snapshotKeepsReceiversLogouts() async throws {
        try await Pair.run { pair in
            try await pair.start(1)
            try await pair.start(2, tune: Self.lagging)
            for number in 0..<100 {
                try await pair[2].login(pairSession(number, owner: 2), writeConcern: .replicated())
            }
            _ = try await pair[2].store.checkpoint()
            // Device 1 logs ten of device 2's users off (R7); device 2 applies that after its checkpoint.
            for number in 0..<10 {
                try await pair[1].logout(
                    pairSession(number, owner: 2).ip,
                    reason: .deleteUser,
                    writeConcern: .replicated(timeout: .seconds(10))
                )
            }
            try await pair[1].login(pairSession(1, owner: 1), writeConcern: .replicated(timeout: .seconds(10)))
            #expect(await pair.converged())
            await pair.stop(1)
            // Device 1's position in device 2's stream no longer names device 2's history: it gets a snapshot.
            do {
                let environment = try Environment(path: pair.path(1) + "/log.mdb")
                let meta = try environment.openDatabase("meta")
                let value = withUnsafeBytes(of: UInt64(12345).bigEndian) { Array($0) }
                try environment.write { txn in try txn.put(Array("applied-history:2".utf8), value, in: meta) }
            }
            let one = try await pair.start(1)
            #expect(await eventually { one.status.snapshotsReceived == 1 })
            #expect(await pair.verified())
            #expect(try one.store.allSessions() == (try pair[2].store.allSessions()))
            for number in 0..<10 { #expect(try one.store.session(for: pairSession(number, owner: 2).ip) == nil) }
            #expect(one.store.count == 91)
        }
    }

    @Test(
        "a logout the returning device made while the peer could not hear it stays: it is logged again after the demotion, and reaches the new owner (R7)"
    )
    func logoutsSurviveTheDemotion() async throws {
        try await Pair.run { pair in
            try await pair.start(1)
            try await pair.start(2)
            for number in 0..<50 {
                try await pair[1].login(pairSession(number, owner: 1), writeConcern: .replicated(timeout: .seconds(10)))
            }
            for number in 0..<5 {
                try await pair[2].login(pairSession(number, owner: 2), writeConcern: .replicated(timeout: .seconds(10)))
            }
            #expect(await pair.converged())
            // The link goes; device 1 logs off one of its users and one of device 2's, and a new user in.
            await pair.stop(2)
            try await pair[1].logout(pairSession(5, owner: 1).ip, reason: .user)
            try await pair[1].logout(pairSession(3, owner: 2).ip, reason: .cutConnection)
            try await pair[1].login(pairSession(60, owner: 1))
            await pair.stop(1)
            // Device 2 takes over, never having heard of those logouts.
            let promoted = try await pair.start(2)
            var notices = promoted.store.automaticLogouts.makeAsyncIterator()
            try await promoted.promote()
            #expect(try promoted.store.session(for: pairSession(5, owner: 1).ip) != nil)

            let returning = try await pair.start(1)
            var events = returning.events.makeAsyncIterator()
            let demotion = try #require(await events.next())
            guard case .demoted(2, _, 3, 2) = demotion else {
                Issue.record("expected three discarded events, two logouts logged again; got \(demotion)")
                return
            }
            #expect(await pair.verified())
            for node in [promoted, returning] {
                #expect(try node.store.session(for: pairSession(5, owner: 1).ip) == nil)
                #expect(try node.store.session(for: pairSession(3, owner: 2).ip) == nil)
                #expect(try node.store.session(for: pairSession(60, owner: 1).ip) == nil)  // the discarded login
                #expect(node.store.count == 53)
            }
            // The new owner's controller hears of both (R7).
            var heard: Set<IPAddress> = []
            while heard.count < 2, let batch = await notices.next() { heard.formUnion(batch.map(\.ip)) }
            #expect(heard == [pairSession(5, owner: 1).ip, pairSession(3, owner: 2).ip])
        }
    }

    @Test(
        "a replicated write waiting when its device steps down ends as discarded, never acknowledged by the new history's acks"
    )
    func writeWaitingAcrossTheDemotion() async throws {
        try await Pair.run { pair in
            try await pair.start(1)
            try await pair.start(2)
            for number in 0..<20 {
                try await pair[1].login(pairSession(number, owner: 1), writeConcern: .replicated(timeout: .seconds(10)))
            }
            await pair.stop(1)
            try await pair[2].promote()
            await pair.stop(2)
            // Device 1 comes back on its old term with no peer yet, and logs users in that wait for the peer.
            let returning = try await pair.start(1)
            let waiting = Task {
                try await returning.login(pairSession(100, owner: 1), writeConcern: .replicated(timeout: .seconds(20)))
            }
            try await Task.sleep(for: .milliseconds(300))
            try await pair.start(2)  // term 2: device 1 steps down, and sends the peer a snapshot of its new history
            let outcome = await waiting.result
            #expect(await pair.verified())
            switch outcome {
            case .success(let session):
                // Acknowledged: the peer committed it before the demotion, so the pair has it.
                #expect(try pair[2].store.session(for: session.ip) != nil)
                #expect(try returning.store.session(for: session.ip) != nil)
            case .failure(let error):
                #expect((error as? LinkError)?.kind == .discarded, "\(error)")
                #expect(try pair[2].store.session(for: pairSession(100, owner: 1).ip) == nil)
            }
        }
    }

    @Test("acknowledgements after a demotion never end a wait for an event it discarded")
    func ackTrackerAcrossDemotion() async {
        let acks = AckTracker()
        acks.reset(to: 10)
        let early = Task { await acks.wait(for: 12, timeout: .seconds(10)) }
        let kept = Task { await acks.wait(for: 11, timeout: .seconds(10)) }
        try? await Task.sleep(for: .milliseconds(50))
        acks.demoted(kept: 11, last: 15, term: 2)
        #expect(await kept.value == .acknowledged)
        #expect(await early.value == .discarded(term: 2))
        // The new history's acknowledgements run past 15; a late wait for a discarded event still fails.
        acks.reset(to: 0)
        acks.acknowledge(40)
        #expect(await acks.wait(for: 14, timeout: .seconds(1)) == .discarded(term: 2))
        #expect(await acks.wait(for: 30, timeout: .seconds(1)) == .acknowledged)
    }

    @Test(
        "a device whose store is replaced by a new one recovers its users from the peer, instead of wiping the peer's copy of them"
    )
    func replacedStoreRecovers() async throws {
        try await Pair.run { pair in
            try await pair.start(1)
            try await pair.start(2)
            for number in 0..<100 {
                try await pair[1].login(pairSession(number, owner: 1), writeConcern: .replicated(timeout: .seconds(10)))
            }
            for number in 0..<10 {
                try await pair[2].login(pairSession(number, owner: 2), writeConcern: .replicated(timeout: .seconds(10)))
            }
            #expect(await pair.verified())
            let before = try pair[2].store.allSessions()
            #expect(!pair[1].status.recovering && !pair[2].status.recovering)
            await pair.stop(1)
            try FileManager.default.removeItem(atPath: pair.path(1))  // a new disk, the same device
            let snapshotsBefore = pair[2].status.snapshotsReceived
            let fresh = try await pair.start(1)
            #expect(fresh.store.count == 0)
            #expect(await pair.verified())
            #expect(try fresh.store.allSessions() == before)
            #expect(try pair[2].store.allSessions() == before)
            // The new store sent its snapshot once its users were back: one snapshot, no divergence to repair.
            #expect(pair[2].status.snapshotsReceived == snapshotsBefore + 1)
            #expect(pair[1].status.digestMismatches == 0 && pair[2].status.digestMismatches == 0)
            // The recovered users are this device's own again: it expires them and logs them off.
            let mine = try #require(try fresh.store.session(for: pairSession(5, owner: 1).ip))
            #expect(fresh.store.effectiveOwner(of: mine) == 1)
            try await fresh.logout(mine.ip, reason: .user, writeConcern: .replicated(timeout: .seconds(10)))
            #expect(try pair[2].store.session(for: mine.ip) == nil)
        }
    }

    @Test(
        "a device that recovers while the peer's log loses what its stream needs gets everything again, and recovers"
    )
    func recoveryAcrossLostLog() async throws {
        try await Pair.run { pair in
            try await pair.start(1)
            // Device 2's log keeps nothing behind its checkpoint: every few commits, the peer's hold is dropped.
            try await pair.start(2) {
                $0.logQuotaBytes = 1
                $0.checkpointInterval = .milliseconds(20)
            }
            for start in stride(from: 0, to: 10_000, by: 1_000) {
                _ = try await pair[1].login(contentsOf: (start..<start + 1_000).map { pairSession($0, owner: 1) })
                _ = try await pair[2].login(contentsOf: (start..<start + 1_000).map { pairSession($0, owner: 2) })
            }
            #expect(await pair.converged(within: .seconds(30)))
            // Device 1's store is replaced while device 2 logs users in: device 2's checkpoints run on, and the log
            // the stream after the snapshot needs can go before device 1 has all of it. Whether it does depends
            // on how fast each device runs, so device 1 is replaced again (up to ten times) until a recovery
            // met that loss; every recovery must complete.
            var next = 10_000
            var lossMet = false
            for _ in 1...10 where !lossMet {
                await pair.stop(1)
                try FileManager.default.removeItem(atPath: pair.path(1))  // a new disk, the same device
                let stop = Locked(false)
                let first = next
                let logins = Task {
                    var number = first
                    while !stop.withLock({ $0 }), number < first + 5_000 {
                        _ = try await pair[2].login(
                            contentsOf: (number..<number + 20).map { pairSession($0, owner: 2) }
                        )
                        number += 20
                        try await Task.sleep(for: .milliseconds(5))
                    }
                    return number
                }
                let fresh = try await pair.start(1)
                // The loss is met when device 1 needed a second snapshot: one came while it still recovered (one
                // reading of its status: the count is read before `recovering`, which only goes from true to
                // false), or the second one's end completed the recovery (counted just after the commit that
                // ended it; a snapshot after the recovery takes a lost log and a whole snapshot, far longer than
                // the 20 ms allowed for that count).
                let deadline = ContinuousClock.now + .seconds(20)
                while ContinuousClock.now < deadline {
                    let status = fresh.status
                    if status.snapshotsReceived >= 2 && status.recovering { lossMet = true }
                    if !status.recovering {
                        try await Task.sleep(for: .milliseconds(20))
                        if fresh.status.snapshotsReceived >= 2 { lossMet = true }
                    }
                    if lossMet || !status.recovering { break }
                    try await Task.sleep(for: .milliseconds(1))
                }
                stop.withLock { $0 = true }
                next = try await logins.value
                #expect(await pair.verified(within: .seconds(60)))
                #expect(!fresh.status.recovering)
                // In synchronization, the stream may still carry the last logins: the tables agree once it has.
                #expect(await pair.converged(within: .seconds(30)))
            }
            #expect(lossMet, "in ten recoveries, the peer's log never lost what the stream after a snapshot needed")
            let fresh = pair[1]
            #expect(fresh.store.count == 10_000 + next)
            #expect(try fresh.store.allSessions() == pair[2].store.allSessions())
            // Device 1's users are its own again.
            let mine = try #require(try fresh.store.session(for: pairSession(7, owner: 1).ip))
            #expect(fresh.store.effectiveOwner(of: mine) == 1)
        }
    }

    @Test("logouts a recovering device makes of the peer's users while it recovers reach the peer (R7)")
    func logoutsWhileRecovering() async throws {
        try await Pair.run { pair in
            try await pair.start(1)
            try await pair.start(2) { $0.checkpointInterval = .milliseconds(20) }
            let users = (0..<20_000).map { pairSession($0, owner: 2) }
            for start in stride(from: 0, to: users.count, by: 1000) {
                _ = try await pair[2].login(contentsOf: Array(users[start..<start + 1000]))
            }
            #expect(await pair.verified(within: .seconds(60)))
            await pair.stop(1)
            try FileManager.default.removeItem(atPath: pair.path(1))
            let fresh = try await pair.start(1)
            // While device 1 recovers, it logs off whichever of device 2's users it already has back.
            // (The snapshot comes in address order: the users come back one after the other.)
            var loggedOff: [IPAddress] = []
            var next = 0
            let deadline = ContinuousClock.now + .seconds(60)
            while fresh.status.recovering, next < users.count, ContinuousClock.now < deadline {
                if (try? fresh.store.session(for: users[next].ip)) ?? nil != nil {
                    do {
                        try await fresh.logout(users[next].ip, reason: .cutConnection)
                        loggedOff.append(users[next].ip)
                        next += 1
                    } catch let error as SessionStoreError where error.kind == .notOnline {
                        continue  // a new connection began the recovery again meanwhile
                    }
                } else {
                    try await Task.sleep(for: .milliseconds(1))
                }
            }
            #expect(!loggedOff.isEmpty, "no logout happened while device 1 recovered")
            #expect(await pair.verified(within: .seconds(60)))
            #expect(await pair.converged(within: .seconds(30)))
            for ip in loggedOff { #expect(try pair[2].store.session(for: ip) == nil) }
        }
    }
}
