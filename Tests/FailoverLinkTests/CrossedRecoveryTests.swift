import Foundation
import SessionStore
import TestSupport
import Testing

@testable import FailoverLink

/// Two devices that both recover at once send each other a snapshot of everything they hold. Each one's
/// copy of its own users then comes from the other's snapshot, and the records of it go back to the other,
/// whose table may not hold them yet: the digest comparison must not take that moment for a difference.
@Suite("Two devices recovering from each other at once")
struct CrossedRecoveryTests {
    static func open(_ id: UInt8, in directory: TemporaryDirectory) async throws -> SessionStore {
        let store = try SessionStore.open(
            at: directory.child("device\(id)"),
            configuration: .init(deviceID: DeviceID(rawValue: id)!, portalGroup: "campus")
        )
        try await store.initializeDigest()
        return store
    }

    /// What `store` sends a recovering peer: a snapshot of everything it holds, and through which sequence the
    /// stream after it carries every record. The log is held for the peer from its start, and the table read
    /// is checkpointed, so that the snapshot stands at position 0.
    static func snapshot(
        of store: SessionStore,
        for peer: DeviceID
    ) async throws -> (sessions: [Session], everythingThrough: UInt64) {
        #expect(try await store.holdAfterCheckpoint(SessionStore.holdName(forPeer: peer)) == 1)
        try await store.checkpoint()
        var buffer: [UInt8] = []
        var after: IPAddress?
        repeat {
            after = try store.readSnapshot(after: after, maxSessions: 100, everything: true, into: &buffer).last
        } while after != nil
        let sessions = try buffer.withUnsafeBytes { try SessionStore.decodeSnapshot($0) }
        return (sessions, store.lastLoggedSequence)
    }

    /// Installs `snapshot` of device `origin`'s, taken at position 0 of its log, into `store`.
    static func install(
        _ snapshot: (sessions: [Session], everythingThrough: UInt64),
        from origin: DeviceID,
        history: UInt64,
        into store: SessionStore
    ) async throws {
        _ = try await store.applyPeer(.snapshotBegin(origin: origin, takeovers: [], everything: true))
        _ = try await store.applyPeer(.snapshotSessions(origin: origin, snapshot.sessions))
        _ = try await store.applyPeer(
            .snapshotEnd(
                origin: origin,
                position: 0,
                wholeFrom: 0,
                everythingThrough: snapshot.everythingThrough,
                history: history
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

    /// How `store` finds the peer's point, having sent the peer one snapshot.
    static func compare(_ point: DigestMessage, on store: SessionStore, peer: DeviceID) -> DigestComparison {
        DigestComparison.compare(
            point,
            with: store.digestHistory,
            peer: peer,
            history: store.historyID,
            snapshotsSent: 1
        )
    }

    @Test(
        "crossed snapshots of everything: no difference is reported while a user restored on one device has not gone back to the other, and both tables agree once it has"
    )
    func crossedSnapshotsOfEverything() async throws {
        let directory = TemporaryDirectory()
        let one = try await Self.open(1, in: directory)
        let two = try await Self.open(2, in: directory)
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
        let fromOne = try await Self.snapshot(of: one, for: 2)
        let fromTwo = try await Self.snapshot(of: two, for: 1)
        #expect(fromOne.sessions.isEmpty && fromTwo.sessions == [user])
        try await Self.install(fromTwo, from: 2, history: two.historyID, into: one)
        try await Self.install(fromOne, from: 1, history: one.historyID, into: two)
        // Device 1 has its user back; device 2 dropped it, as device 1 did not list it.
        #expect(try one.session(for: user.ip) != nil)
        #expect(try two.session(for: user.ip) == nil)

        // Device 1 applies device 2's stream through device 2's last record. Device 2's table there lacks the
        // user that device 1's stream is about to bring back: the tables do not hold the same changes yet.
        var oneApplied = try await Self.stream(
            from: two,
            to: one,
            after: 0,
            everythingThrough: fromTwo.everythingThrough
        )
        let early = try Self.digestPoint(of: two, peer: 1)
        #expect(early.appliedOfYou == 0)
        #expect(Self.compare(early, on: one, peer: 2) == .inconclusive)

        // Device 1's stream brings the user back to device 2.
        let twoApplied = try await Self.stream(
            from: one,
            to: two,
            after: 0,
            everythingThrough: fromOne.everythingThrough
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
}
