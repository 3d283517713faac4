import Foundation
import SessionStore
import TestSupport
import Testing

@testable import FailoverLink

/// Right after a snapshot, a device's table can hold changes the sender's does not, for a while: the digest
/// comparison must not take that moment for a difference. Two stores on disk, joined by the test, which
/// carries each one's snapshot and stream to the other as a connection would.
@Suite("Digest comparisons right after a snapshot")
struct SnapshotComparisonTests {
    /// Opens (or reopens) device `id`'s store; `lagging`: its checkpoints wait for the test.
    static func open(_ id: UInt8, in directory: TemporaryDirectory, lagging: Bool = false) async throws -> SessionStore
    {
        var configuration = SessionStore.Configuration(deviceID: DeviceID(rawValue: id)!, portalGroup: "campus")
        if lagging {
            configuration.checkpointInterval = .seconds(3600)
            configuration.checkpointThreshold = 1_000_000
        }
        let store = try SessionStore.open(at: directory.child("device\(id)"), configuration: configuration)
        try await store.initializeDigest()
        // The log is held for the peer, as a connection holds it, so that the test can stream all of it.
        _ = try await store.holdAfterCheckpoint(SessionStore.holdName(forPeer: id == 1 ? 2 : 1))
        return store
    }

    /// What `store` sends `peer` as a snapshot, as the sender does: the log held for the peer after the
    /// checkpoint, the sessions read from the table on disk, and the end, which says where the stream goes
    /// on. `checkpointFirst`: the table is checkpointed after the hold is placed, before it is read.
    static func snapshot(
        of store: SessionStore,
        for peer: DeviceID,
        everything: Bool,
        checkpointFirst: Bool = false
    ) async throws -> (sessions: [Session], end: SnapshotEndMessage) {
        let heldFrom = try await store.holdAfterCheckpoint(SessionStore.holdName(forPeer: peer))
        if checkpointFirst { try await store.checkpoint() }
        var buffer: [UInt8] = []
        var after: IPAddress?
        var checkpoint: UInt64?
        repeat {
            let read = try store.readSnapshot(after: after, maxSessions: 100, everything: everything, into: &buffer)
            if checkpoint == nil { checkpoint = read.checkpoint }
            after = read.last
        } while after != nil
        let sessions = try buffer.withUnsafeBytes { try SnapshotSessions(checking: $0).sessions }
        let end = SnapshotEndMessage.closing(
            position: min(checkpoint ?? 0, heldFrom - 1),
            lastLogged: store.lastLoggedSequence,
            everything: everything
        )
        return (sessions, end)
    }

    /// Installs `snapshot`, of `sender`'s users (of everything it holds, for `everything`), into `receiver`.
    static func install(
        _ snapshot: (sessions: [Session], end: SnapshotEndMessage),
        everything: Bool,
        from sender: SessionStore,
        into receiver: SessionStore
    ) async throws {
        let origin = sender.deviceID
        _ = try await receiver.applyPeer(.snapshotBegin(origin: origin, takeovers: [], everything: everything))
        _ = try await receiver.applyPeer(.snapshotSessions(origin: origin, SnapshotSessions(snapshot.sessions)))
        _ = try await receiver.applyPeer(
            .snapshotEnd(
                origin: origin,
                position: snapshot.end.position,
                wholeFrom: snapshot.end.wholeFrom,
                everythingThrough: snapshot.end.everythingThrough,
                history: sender.historyID
            )
        )
    }

    /// Applies to `receiver` what `sender` streams to it after `position`; returns the new position.
    @discardableResult
    static func stream(
        from sender: SessionStore,
        to receiver: SessionStore,
        after position: UInt64,
        everythingThrough: UInt64
    ) async throws -> UInt64 {
        var buffer: [UInt8] = []
        let read = try sender.readStream(
            after: position,
            for: receiver.deviceID,
            everythingThrough: everythingThrough,
            maxBytes: 1 << 20,
            into: &buffer
        )
        guard case .records(let through, _) = read else {
            Issue.record("the stream could not be read: \(read)")
            return position
        }
        let records = try buffer.withUnsafeBytes { try SessionStore.decodeStream($0) }
        _ = try await receiver.applyPeer(
            .records(origin: sender.deviceID, through: through, history: sender.historyID, records)
        )
        return through
    }

    /// The digest point `store` sends its peer at its latest sequence, on a connection on which it installed
    /// one snapshot of the peer's.
    static func digestPoint(of store: SessionStore, peer: DeviceID) throws -> DigestMessage {
        let point = try #require(store.digestHistory.latest(through: store.lastLoggedSequence))
        return DigestMessage(
            through: point.through,
            appliedOfYou: point.applied[peer] ?? 0,
            appliedHistoryOfYou: point.appliedHistory[peer] ?? 0,
            value: point.value,
            installedOfYou: UInt32(point.installs)
        )
    }

    /// How `store` finds the peer's point, having sent the peer `sent` snapshots.
    static func compare(
        _ point: DigestMessage,
        on store: SessionStore,
        peer: DeviceID,
        sent: UInt32 = 1
    ) -> DigestComparison {
        DigestComparison.compare(
            point,
            with: store.digestHistory,
            peer: peer,
            history: store.historyID,
            snapshotsSent: sent
        )
    }

    @Test(
        "crossed snapshots of everything: no difference is reported while a user restored on one device has not gone back to the other, and both tables agree once it has",
        arguments: [true, false]
    )
    func crossedSnapshotsOfEverything(checkpointed: Bool) async throws {
        let directory = TemporaryDirectory()
        let one = try await Self.open(1, in: directory)
        let two = try await Self.open(2, in: directory, lagging: !checkpointed)
        // Device 2 holds a user of device 1's from a log of device 1's that is gone: device 1 is a new store.
        var user = pairSession(1, owner: 1)
        user.generation = Generation(term: 1, sequence: 1)
        _ = try await two.applyPeer(
            .records(
                origin: 1,
                through: 1,
                history: 77,
                [LogRecord(sequence: 1, term: 1, origin: 1, time: .now, event: .login(user))]
            )
        )

        // Both recover: each sends the other a snapshot of everything, read before it installs the other's.
        // Device 2's snapshot holds the user when its table was checkpointed; otherwise the stream after the
        // snapshot brings it, as one of device 1's own records.
        let fromOne = try await Self.snapshot(of: one, for: 2, everything: true, checkpointFirst: true)
        let fromTwo = try await Self.snapshot(of: two, for: 1, everything: true, checkpointFirst: checkpointed)
        #expect(fromOne.sessions.isEmpty && fromTwo.sessions == (checkpointed ? [user] : []))
        #expect(fromOne.end.position == 0 && fromTwo.end.position == 0)
        try await Self.install(fromTwo, everything: true, from: two, into: one)
        try await Self.install(fromOne, everything: true, from: one, into: two)
        // Device 2 dropped the user, as device 1 did not list it.
        #expect(try two.session(for: user.ip) == nil)

        // Device 1 applies device 2's stream through device 2's last record, and has its user back. Device 2's
        // table there lacks the user that device 1's stream is about to bring back: the tables do not hold the
        // same changes yet.
        var oneApplied = try await Self.stream(
            from: two,
            to: one,
            after: 0,
            everythingThrough: fromTwo.end.everythingThrough
        )
        #expect(try one.session(for: user.ip) != nil)
        let early = try Self.digestPoint(of: two, peer: 1)
        #expect(early.appliedOfYou == 0)
        #expect(Self.compare(early, on: one, peer: 2) == .inconclusive)

        // Device 1's stream brings the user back to device 2.
        let twoApplied = try await Self.stream(
            from: one,
            to: two,
            after: 0,
            everythingThrough: fromOne.end.everythingThrough
        )
        #expect(twoApplied == one.lastLoggedSequence)
        #expect(try two.session(for: user.ip) == user)
        // Device 2 compares device 1's point with its own after it applied device 1's stream: equal.
        let pointOfOne = try Self.digestPoint(of: one, peer: 2)
        guard case .equal = Self.compare(pointOfOne, on: two, peer: 1) else {
            Issue.record("device 2 found \(Self.compare(pointOfOne, on: two, peer: 1)) at device 1's point")
            return
        }
        // And device 1 compares device 2's point with its own after it applied device 2's stream there: equal.
        oneApplied = try await Self.stream(from: two, to: one, after: oneApplied, everythingThrough: 0)
        #expect(oneApplied == two.lastLoggedSequence)
        let late = try Self.digestPoint(of: two, peer: 1)
        guard case .equal = Self.compare(late, on: one, peer: 2) else {
            Issue.record("device 1 found \(Self.compare(late, on: one, peer: 2)) at device 2's point")
            return
        }
        #expect(one.count == 1 && two.count == 1)
        #expect(!one.isRecovering && !two.isRecovering)
        await one.close()
        await two.close()
    }

    @Test(
        "a snapshot read at a checkpoint that lags holds users the receiver logged off and forgot: its table is compared only once the stream after the snapshot has ended them again"
    )
    func snapshotFromALaggingCheckpoint() async throws {
        let directory = TemporaryDirectory()
        var one = try await Self.open(1, in: directory)
        let two = try await Self.open(2, in: directory, lagging: true)
        // Device 2 logs 100 users in and checkpoints; device 1 applies them from device 2's stream.
        for number in 0..<100 { _ = try await two.login(pairSession(number, owner: 2)) }
        try await two.checkpoint()
        try await Self.stream(from: two, to: one, after: 0, everythingThrough: 0)
        #expect(one.count == 100)
        // Device 1 logs ten of device 2's users off (R7) and one of its own in. Device 2 applies that, and its
        // table on disk stays at its checkpoint.
        for number in 0..<10 { _ = try await one.logout(pairSession(number, owner: 2).ip, reason: .deleteUser) }
        _ = try await one.login(pairSession(1, owner: 1))
        let oneBeforeRestart = try await Self.stream(from: one, to: two, after: 0, everythingThrough: 0)
        #expect(two.count == 91)
        #expect(two.logStatus.checkpointSequence == 100 && two.lastLoggedSequence == 111)

        // Device 1 restarts, which forgets the users it logged off lately, and gets a snapshot of device 2's
        // users read from the table at the checkpoint: the ten come back on device 1 for now.
        await one.close()
        one = try await Self.open(1, in: directory)
        try await two.holdLog(SessionStore.holdName(forPeer: 1), from: 101)  // device 1 had acknowledged it all
        let snapshot = try await Self.snapshot(of: two, for: 1, everything: false)
        #expect(snapshot.sessions.count == 100 && snapshot.end.position == 100)
        try await Self.install(snapshot, everything: false, from: two, into: one)
        #expect(one.count == 101)
        // Device 2 applies device 1's stream through its end (device 1's copy of device 2's users is not sent).
        let oneBefore = one.lastLoggedSequence
        try await Self.stream(from: one, to: two, after: oneBeforeRestart, everythingThrough: 0)
        // Device 1's table is no state of device 2's yet: no point of it is whole, so none goes to device 2,
        // which would find the ten users there and not in its own table.
        let early = try #require(one.digestHistory.latest(through: oneBefore))
        #expect(!early.whole)
        #expect(one.isInstallingSnapshot)

        // The stream after the snapshot brings device 1's own logouts back: the copy is whole, and the two
        // tables compare equal both ways.
        try await Self.stream(from: two, to: one, after: 100, everythingThrough: 0)
        #expect(!one.isInstallingSnapshot)
        #expect(one.count == 91)
        for number in 0..<10 { #expect(try one.session(for: pairSession(number, owner: 2).ip) == nil) }
        try await Self.stream(from: one, to: two, after: oneBefore, everythingThrough: 0)
        let pointOfOne = try Self.digestPoint(of: one, peer: 2)
        let pointOfTwo = try Self.digestPoint(of: two, peer: 1)
        guard case .equal = Self.compare(pointOfOne, on: two, peer: 1),
            case .equal = Self.compare(pointOfTwo, on: one, peer: 2, sent: 0)
        else {
            Issue.record(
                "device 2 found \(Self.compare(pointOfOne, on: two, peer: 1)), device 1 found \(Self.compare(pointOfTwo, on: one, peer: 2, sent: 0))"
            )
            return
        }
        await one.close()
        await two.close()
    }
}
