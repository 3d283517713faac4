import LMDB
import TestSupport
import Testing

@testable import SessionStore

/// What a device streams to its peer, and what it applies of the peer's stream, by the rule that a snapshot and
/// the stream after it hold every change to the sender's users, whichever device made it.
@Suite("Replication stream rules")
struct StreamRulesTests {
    /// The records `store` would stream to device `peer` after `position`.
    static func streamed(_ store: SessionStore, to peer: DeviceID, after position: UInt64 = 0) throws -> [LogRecord] {
        var buffer: [UInt8] = []
        guard case .records = try store.readStream(after: position, for: peer, maxBytes: 1 << 20, into: &buffer) else {
            Issue.record("the log was truncated")
            return []
        }
        return try buffer.withUnsafeBytes { try SessionStore.decodeStream($0) }
    }

    /// Device 1's login of its user `number`, as record `sequence` of device 1's log.
    static func peerLogin(_ number: Int, sequence: UInt64, term: UInt32 = 1) -> (LogRecord, Session) {
        var session = testSession(number, owner: 1)
        session.generation = Generation(term: term, sequence: sequence)
        return (LogRecord(sequence: sequence, term: term, origin: 1, time: .now, event: .login(session)), session)
    }

    @Test("a login or logout peeked from its bytes names the session's owner and term; other records name none")
    func peekSubject() {
        let (login, session) = Self.peerLogin(3, sequence: 9, term: 4)
        var bytes: [UInt8] = []
        RecordCodec.encode(login, into: &bytes)
        #expect(
            bytes.withUnsafeBytes { RecordCodec.peekSubject($0) }.map { [$0.owner.rawValue, UInt8($0.term)] } == [1, 4]
        )
        bytes.removeAll()
        let logout = LogRecord(
            sequence: 10,
            term: 5,
            origin: 2,
            time: .now,
            event: .logout(Logout(ending: session, reason: .user))
        )
        RecordCodec.encode(logout, into: &bytes)
        #expect(
            bytes.withUnsafeBytes { RecordCodec.peekSubject($0) }.map { [$0.owner.rawValue, UInt8($0.term)] } == [1, 4]
        )
        #expect(bytes.dropLast(8).withUnsafeBytes { RecordCodec.peekSubject($0) } == nil)
        bytes.removeAll()
        RecordCodec.encode(
            LogRecord(sequence: 11, term: 5, origin: 2, time: .now, event: .takeover(from: 1, to: 2, term: 5)),
            into: &bytes
        )
        #expect(bytes.withUnsafeBytes { RecordCodec.peekSubject($0) } == nil)
    }

    @Test(
        "the peer's changes come back to it only when they concern this device's users: its logouts of them, and its users taken over"
    )
    func senderSendsBackWhatConcernsItsUsers() async throws {
        let directory = TemporaryDirectory()
        let store = try SessionStore.open(at: directory.path, configuration: .test(deviceID: 2))
        try await store.holdLog("test", from: 1)  // checkpoints do not truncate what is read here
        try await store.initializeDigest()
        let own = try await store.login(testSession(50, owner: 2))
        // Device 1's stream: two logins of its users, and a logout of device 2's user (R7).
        let (first, _) = Self.peerLogin(1, sequence: 1)
        let (second, _) = Self.peerLogin(2, sequence: 2)
        let logoutOfOwn = LogRecord(
            sequence: 3,
            term: 1,
            origin: 1,
            time: .now,
            event: .logout(Logout(ending: own, reason: .deleteUser))
        )
        _ = try await store.applyPeer(.records(origin: 1, through: 3, history: 7, [first, second, logoutOfOwn]))
        #expect(store.count == 2)
        // Device 2's own login goes out; of device 1's records only the logout of device 2's user does.
        var kinds = try Self.streamed(store, to: 1).map { "\($0.origin):\($0.event.kind)" }
        #expect(kinds == ["2:login", "1:logout"])
        // Once device 2 took device 1's users over, device 1's logins of them go back too.
        _ = try await store.promote(over: 1, peerTerm: 1)
        kinds = try Self.streamed(store, to: 1).map { "\($0.origin):\($0.event.kind)" }
        #expect(kinds == ["2:login", "1:login", "1:login", "1:logout", "2:takeover"])
        await store.close()
    }

    @Test(
        "of its own changes sent back, a device applies those to the copy of the peer's users and leaves its own users alone"
    )
    func receiverAppliesOnlyToThePeersCopy() async throws {
        let directory = TemporaryDirectory()
        let store = try SessionStore.open(at: directory.path, configuration: .test(deviceID: 1))
        try await store.initializeDigest()
        let mine = try await store.login(testSession(1, owner: 1))
        try await store.logout(mine.ip, reason: .user)
        // Device 2 took device 1's users of term 1 over; its stream brings back device 1's old login of user 2,
        // and a stale login of user 1, whom device 1 logged out and still owns in effect at term 2.
        _ = try await store.applyPeer(.snapshotBegin(origin: 2, takeovers: [Takeover(from: 1, to: 2, term: 2)]))
        _ = try await store.applyPeer(.snapshotEnd(origin: 2, position: 0, wholeFrom: 0, history: 9))
        let (adopted, adoptedSession) = Self.peerLogin(2, sequence: 40, term: 1)
        var stale = mine
        stale.generation = Generation(term: 2, sequence: 1)
        let staleLogin = LogRecord(sequence: 5, term: 2, origin: 1, time: .now, event: .login(stale))
        let ownBack = LogRecord(
            sequence: 2,
            term: adopted.term,
            origin: 1,
            time: adopted.time,
            event: adopted.event
        )
        let applied = try await store.applyPeer(.records(origin: 2, through: 6, history: 9, [ownBack, staleLogin]))
        #expect(applied.through == 6)
        #expect(try store.session(for: adoptedSession.ip) == adoptedSession)
        #expect(store.effectiveOwner(of: adoptedSession) == 2)
        #expect(try store.session(for: mine.ip) == nil)
        // A record of a third device is refused, and changes nothing.
        let foreign = LogRecord(
            sequence: 7,
            term: 2,
            origin: 3,
            time: .now,
            event: .logout(Logout(ending: adoptedSession, reason: .user))
        )
        await #expect(throws: SessionStoreError.self) {
            _ = try await store.applyPeer(.records(origin: 2, through: 7, history: 9, [foreign]))
        }
        #expect(try store.session(for: adoptedSession.ip) == adoptedSession)
        await store.close()
    }

    @Test("a damaged record is never sent: the stream stops before it and says where it is")
    func damagedRecord() async throws {
        let directory = TemporaryDirectory()
        var store = try SessionStore.open(at: directory.path, configuration: .test(deviceID: 2))
        try await store.holdLog("peer-1", from: 1)
        for number in 0..<3 { try await store.login(testSession(number, owner: 2)) }
        await store.close()
        // One byte of record 2 rots on disk.
        do {
            let environment = try Environment(path: directory.path + "/log.mdb")
            let log = try environment.openDatabase("log")
            let key = withUnsafeBytes(of: UInt64(2).bigEndian) { Array($0) }
            var value = try environment.read { txn in try txn.value(forKey: key, in: log) } ?? []
            value[value.count / 2] ^= 0x40
            try environment.write { txn in try txn.put(key, value, in: log) }
        }
        store = try SessionStore.open(at: directory.path, configuration: .test(deviceID: 2))
        #expect(try Self.streamed(store, to: 1).map(\.sequence) == [1])
        var buffer: [UInt8] = []
        #expect(try store.readStream(after: 1, for: 1, maxBytes: 1 << 20, into: &buffer) == .damaged(sequence: 2))
        #expect(buffer.isEmpty)
        await store.close()
    }

    @Test("a session that ended here does not come back with a late copy from the peer, in a snapshot or in its stream")
    func endedSessionsStayEnded() async throws {
        let directory = TemporaryDirectory()
        let store = try SessionStore.open(at: directory.path, configuration: .test(deviceID: 1))
        try await store.initializeDigest()
        // Device 2's user, copied here, then logged off here (R7): device 2 has not heard of it yet.
        var user = testSession(5, owner: 2)
        user.generation = Generation(term: 1, sequence: 3)
        let login = LogRecord(sequence: 3, term: 1, origin: 2, time: .now, event: .login(user))
        _ = try await store.applyPeer(.records(origin: 2, through: 3, history: 9, [login]))
        try await store.logout(user.ip, reason: .deleteUser)
        // Device 2's snapshot, read before its logout reached it, still holds the user.
        _ = try await store.applyPeer(.snapshotBegin(origin: 2, takeovers: []))
        _ = try await store.applyPeer(.snapshotSessions(origin: 2, SnapshotSessions([user])))
        _ = try await store.applyPeer(.snapshotEnd(origin: 2, position: 3, wholeFrom: 3, history: 9))
        #expect(try store.session(for: user.ip) == nil)
        // Nor does the login's record, sent again.
        let again = LogRecord(sequence: 4, term: 1, origin: 2, time: .now, event: .login(user))
        _ = try await store.applyPeer(.records(origin: 2, through: 4, history: 9, [again]))
        #expect(try store.session(for: user.ip) == nil)
        // A new login of that address, a new generation, is a new session.
        var next = user
        next.generation = Generation(term: 1, sequence: 5)
        let fresh = LogRecord(sequence: 5, term: 1, origin: 2, time: .now, event: .login(next))
        _ = try await store.applyPeer(.records(origin: 2, through: 5, history: 9, [fresh]))
        #expect(try store.session(for: user.ip) == next)
        await store.close()
    }

    @Test(
        "a snapshot cut short leaves the copy it replaces whole, across a reopen too; the end of a complete one drops what it did not list, never this device's own users"
    )
    func snapshotReplacesTheCopyAtItsEnd() async throws {
        let directory = TemporaryDirectory()
        var store = try SessionStore.open(at: directory.path, configuration: .test(deviceID: 1))
        // Device 2's users 1...4, copied here.
        let users = (1...4).map { number in
            var user = testSession(number, owner: 2)
            user.generation = Generation(term: 1, sequence: UInt64(number))
            return user
        }
        let logins = users.map {
            LogRecord(sequence: $0.generation.sequence, term: 1, origin: 2, time: .now, event: .login($0))
        }
        _ = try await store.applyPeer(.records(origin: 2, through: 4, history: 9, logins))
        // This device's own users, one checkpointed to disk and one in memory: no snapshot of device 2's drops them.
        var own = [try await store.login(testSession(11))]
        try await store.checkpoint()
        own.append(try await store.login(testSession(12)))
        // A snapshot that lists users 1 and 5, cut short by its sender's death: users 2...4 stay meanwhile.
        var newcomer = testSession(5, owner: 2)
        newcomer.generation = Generation(term: 1, sequence: 8)
        _ = try await store.applyPeer(.snapshotBegin(origin: 2, takeovers: []))
        _ = try await store.applyPeer(.snapshotSessions(origin: 2, SnapshotSessions([users[0], newcomer])))
        for user in users + [newcomer] { #expect(try store.session(for: user.ip) == user) }
        #expect(store.count == 7)
        await store.close()
        // Reopened half-way: still whole; the next snapshot, complete, lists users 1 and 3 only.
        store = try SessionStore.open(at: directory.path, configuration: .test(deviceID: 1))
        #expect(store.count == 7)
        _ = try await store.applyPeer(.snapshotBegin(origin: 2, takeovers: []))
        _ = try await store.applyPeer(.snapshotSessions(origin: 2, SnapshotSessions([users[0]])))
        #expect(store.count == 7)
        _ = try await store.applyPeer(.snapshotSessions(origin: 2, SnapshotSessions([users[2]])))
        _ = try await store.applyPeer(.snapshotEnd(origin: 2, position: 9, wholeFrom: 9, history: 9))
        #expect(try store.session(for: users[0].ip) == users[0])
        #expect(try store.session(for: users[2].ip) == users[2])
        for user in [users[1], users[3], newcomer] { #expect(try store.session(for: user.ip) == nil) }
        for user in own { #expect(try store.session(for: user.ip) == user) }
        #expect(store.count == 4)
        await store.close()
        // The drops committed: reopened, the table is the same.
        store = try SessionStore.open(at: directory.path, configuration: .test(deviceID: 1))
        #expect(store.count == 4)
        for user in own { #expect(try store.session(for: user.ip) == user) }
        await store.close()
    }

    @Test(
        "the end of a snapshot of everything drops what it did not list, but for this device's own users logged in since its recovery began"
    )
    func snapshotOfEverythingKeepsTheNewOwnUsers() async throws {
        let directory = TemporaryDirectory()
        let store = try SessionStore.open(at: directory.path, configuration: .test(deviceID: 1))
        // A user of this device's from before it was demoted and emptied to recover from device 2.
        let early = try await store.login(testSession(21))
        _ = try await store.resetForResync(term: 2, keepThrough: 0, from: 2, holdName: "peer-2")
        #expect(store.count == 0)
        // Users logged in here since the recovery began, one checkpointed to disk and one in memory.
        var own = [try await store.login(testSession(22))]
        try await store.checkpoint()
        own.append(try await store.login(testSession(23)))
        let peerUsers = [24, 25].map { number in
            var user = testSession(number, owner: 2)
            user.generation = Generation(term: 1, sequence: UInt64(number))
            return user
        }
        // A first snapshot of everything, cut short, brings back the early user and both of device 2's.
        _ = try await store.applyPeer(.snapshotBegin(origin: 2, takeovers: [], everything: true))
        _ = try await store.applyPeer(.snapshotSessions(origin: 2, SnapshotSessions([early] + peerUsers)))
        #expect(store.count == 5)
        try await store.checkpoint()
        // The next one lists one of device 2's users alone, and ends.
        _ = try await store.applyPeer(.snapshotBegin(origin: 2, takeovers: [], everything: true))
        _ = try await store.applyPeer(.snapshotSessions(origin: 2, SnapshotSessions([peerUsers[0]])))
        _ = try await store.applyPeer(
            .snapshotEnd(origin: 2, position: 30, wholeFrom: 30, everythingThrough: 30, history: 9)
        )
        for user in [early, peerUsers[1]] { #expect(try store.session(for: user.ip) == nil) }
        for user in own + [peerUsers[0]] { #expect(try store.session(for: user.ip) == user) }
        #expect(store.count == 3)
        await store.close()
    }
}
