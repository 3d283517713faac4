import Foundation
import LMDB
import SessionStore
import TestSupport
import Testing

@testable import FailoverLink

@Suite("Replication between two stores over TCP", .serialized)
struct ReplicationTests {
    @Test("mutual backup: each device's users reach the other, and each is primary for its own")
    func mutualBackup() async throws {
        try await Pair.run { pair in
            let one = try await pair.start(1)
            let two = try await pair.start(2)
            #expect(await pair.synchronized())
            for number in 0..<300 {
                try await one.login(pairSession(number, owner: 1))
                try await two.login(pairSession(number, owner: 2))
            }
            #expect(await pair.converged())
            #expect(one.store.count == 600)
            let copy = try #require(try two.store.session(for: pairSession(7, owner: 1).ip))
            #expect(copy.userName == "user1-7")
            #expect(two.store.effectiveOwner(of: copy) == 1)
            #expect(one.store.effectiveOwner(of: copy) == 1)
            // Each acknowledges the other's stream in full.
            #expect(await eventually { one.status.acknowledgedByPeer == one.store.logStatus.lastSequence })
            #expect(await eventually { two.status.appliedFromPeer == one.store.logStatus.lastSequence })
        }
    }

    @Test("a reconnecting peer resumes from its acknowledged position while the log holds it")
    func resume() async throws {
        try await Pair.run { pair in
            let one = try await pair.start(1)
            try await pair.start(2)
            for number in 0..<100 { try await one.login(pairSession(number, owner: 1)) }
            #expect(await pair.converged())
            await pair.stop(2)
            for number in 100..<400 { try await one.login(pairSession(number, owner: 1)) }
            _ = try await one.store.checkpoint()
            // The log behind the checkpoint is kept for the absent peer.
            #expect(one.store.logStatus.holds["peer-2"] != nil)
            let snapshotsBefore = one.status.snapshotsSent  // a peer that has nothing yet gets a snapshot
            try await pair.start(2)
            #expect(await pair.converged())
            #expect(pair[2].store.count == 400)
            #expect(one.status.snapshotsSent == snapshotsBefore)
            #expect(pair[2].status.snapshotsReceived == 0)
        }
    }

    @Test("a peer behind a log truncated past the quota gets a snapshot, then the stream")
    func fullResync() async throws {
        try await Pair.run { pair in
            let one = try await pair.start(1) { $0.logQuotaBytes = 1 }
            try await pair.start(2)
            for number in 0..<100 { try await one.login(pairSession(number, owner: 1)) }
            #expect(await pair.converged())
            await pair.stop(2)
            for number in 100..<2_000 { try await one.login(pairSession(number, owner: 1)) }
            for number in 0..<50 { try await one.logout(pairSession(number, owner: 1).ip, reason: .user) }
            _ = try await one.store.checkpoint()
            // Past the quota the hold is dropped, loudly, and the log behind the checkpoint goes.
            #expect(await eventually { one.store.logStatus.droppedHolds["peer-2"] != nil })
            let two = try await pair.start(2)
            #expect(await pair.converged())
            #expect(two.store.count == 1_950)
            // (A connection both devices open at once and then drop may carry a snapshot too.)
            #expect(one.status.snapshotsSent >= 1)
            #expect(await eventually { two.status.snapshotsReceived == 1 })
            // The stream goes on after the snapshot.
            try await one.login(pairSession(5_000, owner: 1))
            #expect(await eventually { (try? two.store.session(for: pairSession(5_000, owner: 1).ip)) != nil })
        }
    }

    @Test("the replicated write concern returns once the peer has committed the write; local does not wait")
    func durability() async throws {
        try await Pair.run { pair in
            let one = try await pair.start(1)
            let two = try await pair.start(2)
            #expect(await pair.synchronized())
            for number in 0..<50 {
                let session = try await one.login(pairSession(number, owner: 1), writeConcern: .replicated())
                // Already on the peer the moment the call returns.
                #expect(try two.store.session(for: session.ip) == session)
            }
            let batch = (50..<150).map { pairSession($0, owner: 1) }
            let results = try await one.login(contentsOf: batch, writeConcern: .replicated())
            #expect(results.allSatisfy { (try? $0.get()) != nil })
            for session in batch { #expect(try two.store.session(for: session.ip) != nil) }
            try await one.logout(pairSession(3, owner: 1).ip, reason: .deleteUser, writeConcern: .replicated())
            #expect(try two.store.session(for: pairSession(3, owner: 1).ip) == nil)

            await pair.stop(2)
            let started = ContinuousClock.now
            let error = await #expect(throws: LinkError.self) {
                try await one.login(pairSession(999, owner: 1), writeConcern: .replicated(timeout: .milliseconds(300)))
            }
            #expect(error?.kind == .notReplicated)
            #expect(error?.description.contains("independence") == true)
            #expect(started.duration(to: .now) >= .milliseconds(300))
            // Committed here all the same, and a local write does not wait for the absent peer.
            #expect(try one.store.session(for: pairSession(999, owner: 1).ip) != nil)
            try await one.login(pairSession(1_000, owner: 1), writeConcern: .local)
            // It reaches the peer when the peer is back.
            let back = try await pair.start(2)
            #expect(await eventually { (try? back.store.session(for: pairSession(999, owner: 1).ip)) != nil })
        }
    }

    @Test("a logout on either device deletes the user on both, whichever device owns it (R7)")
    func logoutEverywhere() async throws {
        try await Pair.run { pair in
            let one = try await pair.start(1)
            let two = try await pair.start(2)
            for number in 0..<20 {
                try await one.login(pairSession(number, owner: 1))
                try await two.login(pairSession(number, owner: 2))
            }
            #expect(await pair.converged())
            var notices = one.store.automaticLogouts.makeAsyncIterator()
            // Device 2 holds only the backup copy of device 1's user, and deletes it (`portal delete-user`).
            let deleted = pairSession(4, owner: 1).ip
            try await two.logout(deleted, reason: .deleteUser)
            #expect(await eventually { (try? one.store.session(for: deleted)) == nil })
            // The owner's controller learns it, with the reason, to remove the user from its data plane.
            let notice = try #require(await notices.next())
            #expect(notice.map(\.ip) == [deleted])
            #expect(notice.first?.reason == .deleteUser)
            // And the owner's own logout reaches the backup.
            try await one.logout(pairSession(5, owner: 1).ip, reason: .cutConnection)
            try await two.logout(pairSession(6, owner: 2).ip, reason: .user)
            #expect(await pair.converged())
            #expect(one.store.count == 37)
        }
    }
}
