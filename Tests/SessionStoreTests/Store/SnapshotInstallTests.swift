import LMDB
import TestSupport
import Testing

@testable import SessionStore

/// A peer's snapshot sessions reach the writer as the values the peer stored (``SnapshotSessions``): at an address
/// where no session is online, the writer logs and stores them without decoding them; what a reader, the log, the
/// lookups and the digest then see must be what the sessions decoded would have left.
@Suite("A peer's snapshot stored as it came")
struct SnapshotInstallTests {
    /// Device 2's sessions `count`, with and without parts, each at an address of its own, of generations
    /// 1...count of term 1.
    static func peerSessions(_ count: Int, seed: UInt64) -> [Session] {
        var random = SeededGenerator(seed: seed)
        var seen = Set<IPAddress>()
        var sessions: [Session] = []
        while sessions.count < count {
            var session = randomSession(using: &random, owner: 2)
            guard seen.insert(session.ip).inserted else { continue }
            session.generation = Generation(term: 1, sequence: UInt64(sessions.count + 1))
            sessions.append(session)
        }
        return sessions
    }

    /// The records of `store`'s log from `first` on.
    static func logged(_ store: SessionStore, from first: UInt64 = 1) throws -> [LogRecord] {
        var records: [LogRecord] = []
        try store.forEachLogRecord(from: first) { record in
            records.append(record)
            return true
        }
        return records
    }

    @Test(
        "a fresh copy's snapshot reads back as the sessions sent, logs each as its login, finds each by MAC address and user name, and keeps the digest a recount finds, across a reopen"
    )
    func freshCopy() async throws {
        let directory = TemporaryDirectory()
        let store = try SessionStore.open(at: directory.path, configuration: .test(deviceID: 1))
        try await store.initializeDigest()
        let sent = Self.peerSessions(80, seed: 3)
        #expect(sent.contains { $0.hasParts } && sent.contains { !$0.hasParts })
        _ = try await store.applyPeer(.snapshotBegin(origin: 2, takeovers: []))
        // Two batches, the second applied after a checkpoint: the first's sessions are on disk by then.
        // A hold keeps every record in the log across the checkpoints, the one below and any the store starts.
        try await store.holdLog("test", from: 1)
        _ = try await store.applyPeer(.snapshotSessions(origin: 2, SnapshotSessions(Array(sent[..<40]))))
        try await store.checkpoint()
        _ = try await store.applyPeer(.snapshotSessions(origin: 2, SnapshotSessions(Array(sent[40...]))))
        let records = try Self.logged(store)
        _ = try await store.applyPeer(.snapshotEnd(origin: 2, position: 80, wholeFrom: 80, history: 9))

        #expect(store.count == 80)
        for session in sent {
            #expect(try store.session(for: session.ip) == session)
            #expect(try store.sessions(withMAC: session.mac).contains(session))
            #expect(try store.sessions(withUserName: session.userName).contains(session))
        }
        let logins = records.compactMap { record -> Session? in
            guard case .login(let session) = record.event else { return nil }
            #expect(record.origin == 2)
            return session
        }
        #expect(logins == sent)

        let (_, count) = try await closeAndRecount(store, at: directory.path, deviceID: 1)
        #expect(count == 80)
        let reopened = try SessionStore.open(at: directory.path, configuration: .test(deviceID: 1))
        for session in sent { #expect(try reopened.session(for: session.ip) == session) }
        await reopened.close()
    }

    @Test(
        "a session already online here with the same bytes logs nothing; one that replaces an older session here, one in the previous format, and one this device ended are applied by the rules of a login"
    )
    func sessionsAlreadyHere() async throws {
        let directory = TemporaryDirectory()
        let store = try SessionStore.open(at: directory.path, configuration: .test(deviceID: 1))
        try await store.initializeDigest()
        try await store.holdLog("test", from: 1)  // every record stays in the log, whatever checkpoints run
        let sent = Self.peerSessions(6, seed: 5)
        // The peer's older session at sent[1]'s address, and sent[2] itself, ended here since.
        var older = sent[1]
        older.generation = Generation(term: 1, sequence: 0)
        older.userName = "older-\(older.userName.prefix(40))"
        let records = [
            LogRecord(sequence: 1, term: 1, origin: 2, time: .now, event: .login(older)),
            LogRecord(sequence: 2, term: 1, origin: 2, time: .now, event: .login(sent[2])),
        ]
        _ = try await store.applyPeer(.records(origin: 2, through: 3, history: 9, records))
        try await store.logout(sent[2].ip, reason: .deleteUser)
        _ = try await store.applyPeer(.snapshotBegin(origin: 2, takeovers: []))
        _ = try await store.applyPeer(.snapshotSessions(origin: 2, SnapshotSessions(sent)))
        #expect(try store.session(for: sent[1].ip) == sent[1])
        #expect(try store.sessions(withUserName: older.userName).isEmpty)
        #expect(try store.session(for: sent[2].ip) == nil)

        // The same snapshot again: every session online here is the same, nothing is logged.
        let last = store.lastLoggedSequence
        _ = try await store.applyPeer(.snapshotSessions(origin: 2, SnapshotSessions(sent)))
        #expect(store.lastLoggedSequence == last)

        // A session value of the previous format (version 1: no parts byte) is decoded and logged in the current one.
        let v1IP = try #require(IPAddress("10.0.0.1"))
        var batch: [UInt8] = []
        v1IP.withUnsafeBytes { batch.append(contentsOf: $0) }
        withUnsafeBytes(of: UInt32(GoldenBytesV1.sessionValue.count).bigEndian) { batch.append(contentsOf: $0) }
        batch.append(contentsOf: GoldenBytesV1.sessionValue)
        let v1 = try batch.withUnsafeBytes { try SnapshotSessions(checking: $0) }
        let expected = try #require(v1.sessions.first)
        _ = try await store.applyPeer(.snapshotSessions(origin: 2, v1))
        #expect(try store.session(for: v1IP) == expected)
        let v1Login = try #require(try Self.logged(store, from: last + 1).last)
        #expect(v1Login.event == .login(expected))
        _ = try await store.applyPeer(.snapshotEnd(origin: 2, position: 9, wholeFrom: 9, history: 9))

        let (_, count) = try await closeAndRecount(store, at: directory.path, deviceID: 1)
        #expect(count == 6)  // sent, but sent[2], and the version 1 session
    }

    @Test(
        "a snapshot batch whose value is damaged or cut short is refused, naming the address, and nothing of it is applied"
    )
    func damagedBatches() async throws {
        let sent = Self.peerSessions(3, seed: 8)
        var bytes: [UInt8] = []
        for session in sent {
            var value: [UInt8] = []
            RecordCodec.encodeSessionValue(session, into: &value)
            session.ip.withUnsafeBytes { bytes.append(contentsOf: $0) }
            withUnsafeBytes(of: UInt32(value.count).bigEndian) { bytes.append(contentsOf: $0) }
            bytes.append(contentsOf: value)
        }
        var damaged = bytes
        damaged[damaged.count - 10] ^= 0x40  // inside the last session's value
        let error = try #require(throws: SessionStoreError.self) {
            try damaged.withUnsafeBytes { try SnapshotSessions(checking: $0) }
        }
        #expect(error.kind == .corruptRecord)
        #expect("\(error)".contains("session \(sent[2].ip) of a peer snapshot batch"))
        #expect(throws: SessionStoreError.self) {
            try bytes.dropLast(3).withUnsafeBytes { try SnapshotSessions(checking: $0) }
        }
        let sound = try bytes.withUnsafeBytes { try SnapshotSessions(checking: $0) }
        #expect(sound.count == 3)
        #expect(sound.sessions == sent)

        // A batch naming a session of this device's own, in a snapshot of the peer's users, changes nothing.
        let directory = TemporaryDirectory()
        let store = try SessionStore.open(at: directory.path, configuration: .test(deviceID: 1))
        var stray = sent[0]
        stray.owner = 1
        _ = try await store.applyPeer(.snapshotBegin(origin: 2, takeovers: []))
        let last = store.lastLoggedSequence
        await #expect(throws: SessionStoreError.self) {
            try await store.applyPeer(.snapshotSessions(origin: 2, SnapshotSessions([sent[1], stray])))
        }
        #expect(store.lastLoggedSequence == last)
        #expect(try store.session(for: sent[1].ip) == nil)
        await store.close()
    }
}
