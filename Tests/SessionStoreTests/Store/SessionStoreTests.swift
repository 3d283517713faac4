import Foundation
import TestSupport
import Testing

@testable import SessionStore

@Suite("Session store")
struct SessionStoreTests {
    @Test("login, lookups by address, MAC and user name, logout")
    func loginLookupLogout() async throws {
        let directory = TemporaryDirectory()
        let store = try SessionStore.open(at: directory.path, configuration: .test())
        let alice = try await store.login(testSession(1))
        #expect(alice.generation.sequence == 1)
        #expect(alice.generation.term == 1)
        var bob = testSession(2)
        bob.mac = alice.mac  // one device with two addresses
        bob.userName = "alice"
        try await store.login(bob)
        try await store.login(testSession(3))
        #expect(store.count == 3)
        #expect(try store.session(for: alice.ip) == alice)
        #expect(try store.sessions(withMAC: alice.mac).map(\.ip) == [alice.ip, bob.ip].sorted())
        #expect(try store.sessions(withUserName: "alice").map(\.ip) == [bob.ip])
        #expect(try store.sessions(withUserName: "user1").map(\.ip) == [alice.ip])
        #expect(try store.sessions(withUserName: "nobody").isEmpty)

        let logout = try await store.logout(alice.ip, reason: .deleteUser)
        #expect(logout.reason == .deleteUser)
        #expect(logout.generation == alice.generation)
        #expect(logout.userName == "user1")
        #expect(try store.session(for: alice.ip) == nil)
        #expect(try store.sessions(withMAC: alice.mac).map(\.ip) == [bob.ip])
        #expect(store.count == 2)

        // The same lookups after the changes are checkpointed to disk.
        try await store.checkpoint()
        #expect(try store.session(for: alice.ip) == nil)
        #expect(try store.sessions(withMAC: alice.mac).map(\.ip) == [bob.ip])
        #expect(try store.sessions(withUserName: "alice").map(\.userName) == ["alice"])
        #expect(try store.allSessions().count == 2)
        await store.close()
    }

    @Test("refused writes give a clear error and store nothing")
    func refusedWrites() async throws {
        let directory = TemporaryDirectory()
        let store = try SessionStore.open(at: directory.path, configuration: .test())
        let first = try await store.login(testSession(1))
        let before = store.logStatus.lastSequence

        let again = await #expect(throws: SessionStoreError.self) { try await store.login(testSession(1)) }
        #expect(again?.kind == .alreadyOnline)
        #expect(again?.description.contains("user1") == true)

        var badVLAN = testSession(2)
        badVLAN.vlan = 5000
        let vlan = await #expect(throws: SessionStoreError.self) { try await store.login(badVLAN) }
        #expect(vlan?.kind == .invalidSession)
        #expect(vlan?.invalidField?.field == "vlan")

        var reDHCP = testSession(3)
        reDHCP.authenticationMode = .reDHCP
        let r10 = await #expect(throws: SessionStoreError.self) { try await store.login(reDHCP) }
        #expect(r10?.invalidField?.field == "authenticationMode")

        let foreign = await #expect(throws: SessionStoreError.self) {
            try await store.login(testSession(4, portalGroup: "guests"))
        }
        #expect(foreign?.kind == .foreignPortalGroup)

        let owner = await #expect(throws: SessionStoreError.self) { try await store.login(testSession(5, owner: 2)) }
        #expect(owner?.kind == .invalidArgument)
        #expect(owner?.description.contains("owned by device 2") == true)

        let absent = await #expect(throws: SessionStoreError.self) {
            try await store.logout(testSession(6).ip, reason: .user)
        }
        #expect(absent?.kind == .notOnline)

        #expect(store.count == 1)
        #expect(store.logStatus.lastSequence == before)
        #expect(try store.allSessions() == [first])
        await store.close()
    }

    @Test("re-DHCP authentication is accepted when the device is not in stateful failover mode")
    func reDHCPWithoutFailover() async throws {
        let directory = TemporaryDirectory()
        var configuration = SessionStore.Configuration.test()
        configuration.statefulFailover = false
        let store = try SessionStore.open(at: directory.path, configuration: configuration)
        var session = testSession(1)
        session.authenticationMode = .reDHCP
        try await store.login(session)
        #expect(try store.session(for: session.ip)?.authenticationMode == .reDHCP)
        await store.close()
    }

    @Test("a batch of logins and logouts: each refused one fails alone, the others are stored together")
    func batches() async throws {
        let directory = TemporaryDirectory()
        let store = try SessionStore.open(at: directory.path, configuration: .test())
        try await store.login(testSession(0))
        var invalid = testSession(2)
        invalid.userName = ""
        let sessions = [testSession(1), testSession(0), invalid, testSession(3), testSession(1), testSession(4)]
        let results = try await store.login(contentsOf: sessions)
        #expect(results.count == 6)
        #expect(try results[0].get().generation.sequence == 2)
        #expect(results[1].kindOfFailure == .alreadyOnline)  // online before the batch
        #expect(results[2].kindOfFailure == .invalidSession)
        #expect(try results[3].get().ip == testSession(3).ip)
        #expect(results[4].kindOfFailure == .alreadyOnline)  // logged in earlier in the same batch
        #expect(try results[5].get().generation.sequence == 4)
        #expect(store.count == 4)
        #expect(store.logStatus.lastSequence == 4)

        let logouts = try await store.logout(contentsOf: [
            (testSession(1).ip, .portalServer), (testSession(9).ip, .user), (testSession(3).ip, .idleTimeout),
        ])
        #expect(try logouts[0].get().reason == .portalServer)
        #expect(logouts[1].kindOfFailure == .notOnline)
        #expect(try logouts[2].get().userName == "user3")
        #expect(store.count == 2)
        #expect(try store.allSessions().map(\.ip) == [testSession(0).ip, testSession(4).ip])
        #expect(try await store.login(contentsOf: []).isEmpty)
        await store.close()
    }

    @Test("a closed store refuses writes")
    func closedStore() async throws {
        let directory = TemporaryDirectory()
        let store = try SessionStore.open(at: directory.path, configuration: .test())
        await store.close()
        let error = await #expect(throws: SessionStoreError.self) { try await store.login(testSession(1)) }
        #expect(error?.kind == .closed)
    }

    @Test("closing a store again, or from two tasks at once, returns each time and joins its threads once")
    func closedTwice() async throws {
        let directory = TemporaryDirectory()
        let store = try SessionStore.open(at: directory.path, configuration: .test())
        try await store.login(testSession(1))
        // Two closes at once: one joins the writer's thread, the other waits for that join. (A second join of
        // a thread is undefined behaviour; under ThreadSanitizer it stops the process.)
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await store.close() }
            group.addTask { await store.close() }
        }
        await store.close()
        let error = await #expect(throws: SessionStoreError.self) { try await store.login(testSession(2)) }
        #expect(error?.kind == .closed)
        let reopened = try SessionStore.open(at: directory.path, configuration: .test())
        #expect(try reopened.allSessions().map(\.ip) == [testSession(1).ip])
        await reopened.close()
    }

    #if os(Linux)
    @Test("the store's own threads carry their names, as top -H and /proc show them")
    func threadNames() async throws {
        let directory = TemporaryDirectory()
        let store = try SessionStore.open(at: directory.path, configuration: .test())
        let names = try FileManager.default.contentsOfDirectory(atPath: "/proc/self/task").compactMap {
            try? String(contentsOfFile: "/proc/self/task/\($0)/comm", encoding: .utf8)
                .trimmingCharacters(in: .whitespacesAndNewlines)
        }
        #expect(names.contains("tandem-writer"))
        #expect(names.contains("tandem-checkpt"))
        await store.close()
    }
    #endif

    @Test("many concurrent callers are group-committed and all acknowledged")
    func concurrentCallers() async throws {
        let directory = TemporaryDirectory()
        var configuration = SessionStore.Configuration.test()
        configuration.durability = .syncEveryCommit
        let store = try SessionStore.open(at: directory.path, configuration: configuration)
        let stored = try await withThrowingTaskGroup(of: [Session].self) { group in
            for caller in 0..<64 {
                group.addTask {
                    var mine: [Session] = []
                    for index in 0..<50 { mine.append(try await store.login(testSession(caller * 50 + index))) }
                    return mine
                }
            }
            return try await group.reduce(into: []) { $0 += $1 }
        }
        #expect(stored.count == 3200)
        #expect(Set(stored.map(\.generation.sequence)) == Set(1...3200))
        #expect(store.count == 3200)
        for session in stored { #expect(try store.session(for: session.ip) == session) }
        await store.close()
    }

    @Test("back-pressure keeps the changes in memory near their bound when callers outrun checkpoints")
    func backPressure() async throws {
        let directory = TemporaryDirectory()
        var configuration = SessionStore.Configuration.test()
        configuration.checkpointThreshold = 200
        configuration.maxChangesInMemory = BackPressureProbe.bound
        let store = try SessionStore.open(at: directory.path, configuration: configuration)
        let most = try await withThrowingTaskGroup(of: Int.self) { group in
            for caller in 0..<16 {
                group.addTask {
                    var most = 0
                    for round in 0..<10 {
                        let first = (caller * 10 + round) * 250
                        let results = try await store.login(contentsOf: (first..<first + 250).map { testSession($0) })
                        for result in results { _ = try result.get() }
                        most = max(most, store.logStatus.changesInMemory)
                    }
                    return most
                }
            }
            return try await group.reduce(0) { max($0, $1) }
        }
        // The active and the frozen set can each pass the bound by one batch (every caller's logins); without
        // back-pressure this run holds 25,000 and more.
        #expect(most <= 2 * (BackPressureProbe.bound + 16 * 250))
        #expect(store.count == 40_000)
        await store.close()
    }

    @Test("closing and reopening restores every user")
    func reopen() async throws {
        let directory = TemporaryDirectory()
        var store = try SessionStore.open(at: directory.path, configuration: .test())
        for number in 0..<2000 { try await store.login(testSession(number)) }
        for number in stride(from: 0, to: 2000, by: 7) { try await store.logout(testSession(number).ip, reason: .user) }
        let before = try store.allSessions()
        let status = store.logStatus
        await store.close()

        store = try SessionStore.open(at: directory.path, configuration: .test())
        #expect(try store.allSessions() == before)
        #expect(store.count == before.count)
        #expect(store.logStatus.lastSequence == status.lastSequence)
        // Sequences go on from where they stopped.
        let next = try await store.login(testSession(5000))
        #expect(next.generation.sequence == status.lastSequence + 1)
        await store.close()
    }

    @Test("an open with another device ID or portal group is refused, and nothing changes")
    func identityRefusal() async throws {
        let directory = TemporaryDirectory()
        let store = try SessionStore.open(at: directory.path, configuration: .test())
        try await store.login(testSession(1))
        await store.close()

        let other = #expect(throws: SessionStoreError.self) {
            try SessionStore.open(at: directory.path, configuration: .test(deviceID: 2))
        }
        #expect(other?.kind == .deviceIDMismatch)
        #expect(other?.description.contains("device ID 1, not 2") == true)
        #expect(other?.description.contains("changeDeviceID") == true)

        let group = #expect(throws: SessionStoreError.self) {
            try SessionStore.open(at: directory.path, configuration: .test(portalGroup: "guests"))
        }
        #expect(group?.kind == .portalGroupMismatch)

        let reopened = try SessionStore.open(at: directory.path, configuration: .test())
        #expect(reopened.count == 1)
        await reopened.close()
    }

    @Test("a path that is not a store is refused")
    func notAStore() async throws {
        let directory = TemporaryDirectory()
        let file = directory.child("file")
        _ = FileManager.default.createFile(atPath: file, contents: Data("hello".utf8))
        let error = #expect(throws: SessionStoreError.self) {
            try SessionStore.open(at: file, configuration: .test())
        }
        #expect(error?.kind == .notAStore)

        let half = directory.child("half")
        try FileManager.default.createDirectory(atPath: half, withIntermediateDirectories: false)
        _ = FileManager.default.createFile(atPath: half + "/log.mdb", contents: Data())
        let missing = #expect(throws: SessionStoreError.self) {
            try SessionStore.open(at: half, configuration: .test())
        }
        #expect(missing?.description.contains("users.mdb is missing") == true)

        let orphan = directory.child("absent") + "/store"
        let noParent = #expect(throws: SessionStoreError.self) {
            try SessionStore.open(at: orphan, configuration: .test())
        }
        #expect(noParent?.kind == .notAStore)
        #expect(noParent?.description.contains("neither does its parent directory") == true)
        #expect(!FileManager.default.fileExists(atPath: orphan))
    }

    @Test("changing the device ID logs every user off through logged events")
    func changeDeviceID() async throws {
        let directory = TemporaryDirectory()
        let store = try SessionStore.open(at: directory.path, configuration: .test())
        try await store.holdLog("test", from: 1)  // checkpoints do not truncate the records counted below
        for number in 0..<30 { try await store.login(testSession(number)) }
        try await store.checkpoint()
        for number in 30..<40 { try await store.login(testSession(number)) }  // some only in memory
        try await store.logout(testSession(3).ip, reason: .user)

        let loggedOff = try await store.changeDeviceID(to: 2)
        #expect(loggedOff == 39)
        #expect(store.count == 0)
        #expect(store.deviceID == 2)
        #expect(try store.allSessions().isEmpty)

        var reasons: [LogoutReason: Int] = [:]
        var change: (DeviceID, DeviceID)?
        try store.forEachLogRecord { record in
            if case .logout(let logout) = record.event { reasons[logout.reason, default: 0] += 1 }
            if case .deviceIDChanged(let from, let to) = record.event { change = (from, to) }
            return true
        }
        #expect(reasons[.deviceIDChange] == 39)
        #expect(change?.0 == 1 && change?.1 == 2)
        let same = await #expect(throws: SessionStoreError.self) { try await store.changeDeviceID(to: 2) }
        #expect(same?.kind == .sameDeviceID)
        // New logins belong to the new device ID.
        try await store.login(testSession(100, owner: 2))
        await store.close()

        #expect(throws: SessionStoreError.self) {
            try SessionStore.open(at: directory.path, configuration: .test(deviceID: 1))
        }
        let reopened = try SessionStore.open(at: directory.path, configuration: .test(deviceID: 2))
        #expect(reopened.count == 1)
        await reopened.close()
    }

    @Test("sessions past their session-timeout deadline are logged out by ordinary logout events")
    func sessionTimeout() async throws {
        let directory = TemporaryDirectory()
        let store = try SessionStore.open(at: directory.path, configuration: .test())
        try await store.holdLog("test", from: 1)  // checkpoints do not truncate the logouts counted below
        let longAgo = Timestamp.now.adding(seconds: -7200)
        var pastDeadline: [Session] = []
        for number in 0..<10 {
            pastDeadline.append(try await store.login(testSession(number, loginTime: longAgo, sessionTimeout: 3600)))
        }
        try await store.checkpoint()  // these deadlines are now indexed on disk
        for number in 10..<20 {
            pastDeadline.append(try await store.login(testSession(number, loginTime: longAgo, sessionTimeout: 3600)))
        }
        for number in 20..<30 { try await store.login(testSession(number, sessionTimeout: 3600)) }
        for number in 30..<35 { try await store.login(testSession(number)) }  // no session timeout

        let expired = try await store.expireSessions()
        // Each logout names the session it ends as it was, read from the table or from memory.
        #expect(Set(expired) == Set(pastDeadline.map { Logout(ending: $0, reason: .sessionTimeout) }))
        #expect(store.count == 15)
        #expect(try await store.expireSessions().isEmpty)
        // Later, the others expire too.
        let later = try await store.expireSessions(asOf: Timestamp.now.adding(seconds: 3700))
        #expect(later.count == 10)
        #expect(store.count == 5)
        var logged = 0
        try store.forEachLogRecord { record in
            if case .logout(let logout) = record.event, logout.reason == .sessionTimeout { logged += 1 }
            return true
        }
        #expect(logged == 30)
        await store.close()
    }

    @Test(
        "a device expires only the sessions it owns in effect: the peer's copies past their deadline stay until the peer logs them off, or until this device takes the peer's users over"
    )
    func expiryOfOwnSessionsOnly() async throws {
        let directory = TemporaryDirectory()
        let store = try SessionStore.open(at: directory.path, configuration: .test())
        let longAgo = Timestamp.now.adding(seconds: -7200)
        let own = try await store.login(testSession(1, loginTime: longAgo, sessionTimeout: 3600))
        var copy = testSession(2, owner: 2, loginTime: longAgo, sessionTimeout: 3600)
        copy.generation = Generation(term: 1, sequence: 1)
        let login = LogRecord(sequence: 1, term: 1, origin: 2, time: .now, event: .login(copy))
        _ = try await store.applyPeer(.records(origin: 2, through: 1, history: 9, [login]))
        try await store.checkpoint()  // one of each on disk, one of each in memory
        let ownInMemory = try await store.login(testSession(3, loginTime: longAgo, sessionTimeout: 3600))
        var copyInMemory = testSession(4, owner: 2, loginTime: longAgo, sessionTimeout: 3600)
        copyInMemory.generation = Generation(term: 1, sequence: 2)
        let login2 = LogRecord(sequence: 2, term: 1, origin: 2, time: .now, event: .login(copyInMemory))
        _ = try await store.applyPeer(.records(origin: 2, through: 2, history: 9, [login2]))

        let expired = try await store.expireSessions()
        #expect(Set(expired) == Set([own, ownInMemory].map { Logout(ending: $0, reason: .sessionTimeout) }))
        #expect(try store.session(for: copy.ip) == copy)
        #expect(try store.session(for: copyInMemory.ip) == copyInMemory)
        // Taken over, the copies are this device's to expire.
        _ = try await store.promote(over: 2, peerTerm: 1)
        let taken = try await store.expireSessions()
        #expect(Set(taken.map(\.ip)) == [copy.ip, copyInMemory.ip])
        #expect(store.count == 0)
        await store.close()
    }

    @Test("the store expires sessions by itself")
    func automaticExpiry() async throws {
        let directory = TemporaryDirectory()
        var configuration = SessionStore.Configuration.test()
        configuration.expiryInterval = .milliseconds(50)
        let store = try SessionStore.open(at: directory.path, configuration: configuration)
        try await store.login(testSession(1, loginTime: Timestamp.now.adding(seconds: -10), sessionTimeout: 5))
        try await store.login(testSession(2, sessionTimeout: 3600))
        #expect(await eventually { store.count == 1 })
        #expect(try store.session(for: testSession(2).ip) != nil)
        // The controller learns who the store logged off.
        var iterator = store.automaticLogouts.makeAsyncIterator()
        let batch = await iterator.next()
        #expect(batch?.map(\.ip) == [testSession(1).ip])
        #expect(batch?.first?.reason == .sessionTimeout)
        await store.close()
    }

    @Test("the log is truncated behind checkpoints, and kept for a holder")
    func logRetention() async throws {
        let directory = TemporaryDirectory()
        let store = try SessionStore.open(at: directory.path, configuration: .test())
        try await store.holdLog("peer", from: 1)
        for number in 0..<500 { try await store.login(testSession(number)) }
        try await store.checkpoint()
        #expect(store.logStatus.checkpointSequence == 500)
        #expect(store.logStatus.firstRetainedSequence == 1)
        #expect(store.logStatus.holds == ["peer": 1])

        try await store.holdLog("peer", from: 301)
        #expect(await eventually { store.logStatus.firstRetainedSequence == 301 })
        var first: UInt64?
        try store.forEachLogRecord { record in
            first = record.sequence
            return false
        }
        #expect(first == 301)

        let gone = await #expect(throws: SessionStoreError.self) { try await store.holdLog("late", from: 10) }
        #expect(gone?.kind == .logTruncated)
        let walk = #expect(throws: SessionStoreError.self) { try store.forEachLogRecord(from: 10) { _ in true } }
        #expect(walk?.kind == .logTruncated)
        #expect(walk?.description.contains("starts at 301") == true)

        try await store.releaseLog("peer")
        try await store.login(testSession(1000))
        try await store.checkpoint()
        #expect(await eventually { store.logStatus.firstRetainedSequence == nil })
        #expect(store.count == 501)
        await store.close()

        let reopened = try SessionStore.open(at: directory.path, configuration: .test())
        #expect(reopened.count == 501)
        #expect(reopened.logStatus.lastSequence == 501)
        await reopened.close()
    }

    @Test("past the quota a hold is dropped loudly, never silently")
    func logQuota() async throws {
        let directory = TemporaryDirectory()
        var configuration = SessionStore.Configuration.test()
        configuration.logQuotaBytes = 64 << 10
        let store = try SessionStore.open(at: directory.path, configuration: configuration)
        try await store.holdLog("peer", from: 1)
        for number in 0..<3000 { try await store.login(testSession(number)) }
        try await store.checkpoint()
        try await store.login(testSession(5000))  // the next commit records the drop
        #expect(await eventually { store.logStatus.droppedHolds["peer"] == 1 })
        #expect(store.logStatus.holds.isEmpty)
        await store.close()

        // The drop survives a restart, so the holder learns it must resynchronize in full.
        let reopened = try SessionStore.open(at: directory.path, configuration: configuration)
        #expect(reopened.logStatus.droppedHolds["peer"] == 1)
        await reopened.close()
    }

    @Test("the map grows by itself: a valid write never fails for want of space")
    func mapGrowth() async throws {
        let directory = TemporaryDirectory()
        var configuration = SessionStore.Configuration.test()
        configuration.initialMapSize = 256 << 10
        configuration.checkpointThreshold = 5000
        let store = try SessionStore.open(at: directory.path, configuration: configuration)
        for batch in 0..<40 {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for number in batch * 500..<(batch + 1) * 500 {
                    group.addTask { try await store.login(testSession(number)) }
                }
                try await group.waitForAll()
            }
        }
        try await store.checkpoint()
        #expect(store.count == 20_000)
        #expect(store.diskUsage.usersBytes > 256 << 10)
        #expect(try store.session(for: testSession(19_999).ip) != nil)
        await store.close()
    }

    @Test("a compacted copy opens as a store with the same users")
    func compactedCopy() async throws {
        let directory = TemporaryDirectory()
        let store = try SessionStore.open(at: directory.child("store"), configuration: .test())
        for number in 0..<1000 { try await store.login(testSession(number)) }
        for number in 0..<500 { try await store.logout(testSession(number).ip, reason: .portalServer) }
        try await store.copy(to: directory.child("copy"))
        let expected = try store.allSessions()
        await store.close()
        let copy = try SessionStore.open(at: directory.child("copy"), configuration: .test())
        #expect(try copy.allSessions() == expected)
        await copy.close()
    }
}

extension Result where Failure == SessionStoreError {
    /// The kind of the failure, or `nil` for a success.
    var kindOfFailure: SessionStoreError.Kind? {
        if case .failure(let error) = self { return error.kind }
        return nil
    }
}

enum BackPressureProbe {
    static let bound = 400
}
