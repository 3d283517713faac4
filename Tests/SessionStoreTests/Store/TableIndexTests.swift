import Foundation
import LMDB
import Synchronization
import TestSupport
import Testing

@testable import SessionStore

@Suite("The indexes kept in memory: lookups by MAC address and user name, expiry by deadline")
struct TableIndexTests {
    @Test(
        "random logins and logouts with shared MAC addresses and user names, checkpoints and reopens: every lookup matches a model",
        arguments: [11, 12, 13] as [UInt64]
    )
    func lookupsMatchAModel(seed: UInt64) async throws {
        var random = SeededGenerator(seed: seed)
        let directory = TemporaryDirectory()
        var configuration = SessionStore.Configuration.test()
        configuration.checkpointThreshold = 30
        configuration.checkpointInterval = .milliseconds(15)
        var store = try SessionStore.open(at: directory.path, configuration: configuration)
        // 40 addresses, about half of them IPv6, each logged in over time with sessions of different MACs and
        // names; 12 MACs and 9 names are shared between addresses, so one key lists several addresses of both
        // families on disk and in memory.
        func session(_ number: Int) -> Session {
            var session = testSession(number % 40)
            if number % 40 % 3 == 0 { session.ip = IPAddress(high: 0x2001_0db8_0000_0000, low: UInt64(number % 40)) }
            session.mac = MACAddress(rawValue: 0x0200_0000_0000 | UInt64(number % 12))
            session.userName = "user\(number % 9)"
            return session
        }
        var model: [IPAddress: Session] = [:]
        func expected(_ matches: (Session) -> Bool) -> [Session] {
            model.values.filter(matches).sorted { $0.ip < $1.ip }
        }

        for step in 0..<900 {
            let pick = session(Int.random(in: 0..<200, using: &random))
            switch Int.random(in: 0..<100, using: &random) {
            case 0..<55:
                if let online = model[pick.ip] {
                    try await store.logout(online.ip, reason: .user)
                    model[pick.ip] = nil
                } else {
                    model[pick.ip] = try await store.login(pick)
                }
            case 55..<95:
                if model[pick.ip] != nil {
                    try await store.logout(pick.ip, reason: .idleTimeout)
                    model[pick.ip] = nil
                }
            case 95..<98:
                try await store.checkpoint()
            default:
                await store.close()
                store = try SessionStore.open(at: directory.path, configuration: configuration)
            }
            #expect(try store.sessions(withMAC: pick.mac) == expected { $0.mac == pick.mac }, "step \(step)")
            #expect(
                try store.sessions(withUserName: pick.userName) == expected { $0.userName == pick.userName },
                "step \(step)"
            )
        }
        try await store.checkpoint()
        await store.close()
        store = try SessionStore.open(at: directory.path, configuration: configuration)
        for number in 0..<12 {
            let mac = session(number).mac
            #expect(try store.sessions(withMAC: mac) == expected { $0.mac == mac })
        }
        for number in 0..<9 {
            let name = session(number).userName
            #expect(try store.sessions(withUserName: name) == expected { $0.userName == name })
        }
        #expect(try store.sessions(withUserName: "nobody").isEmpty)
        await store.close()
    }

    @Test(
        "a store that kept its MAC and user-name indexes on disk has them emptied on open, and its lookups still answer"
    )
    func retiredIndexesAreEmptied() async throws {
        let directory = TemporaryDirectory()
        var store = try SessionStore.open(at: directory.path, configuration: .test())
        let users = (0..<20).map { testSession($0) }
        for user in users { try await store.login(user) }
        try await store.checkpoint()
        await store.close()
        // The indexes as earlier stores kept them (MAC and deadline keys of 8 big-endian bytes), and one stale
        // entry: user 0's MAC listed at user 1's address.
        do {
            let environment = try Environment(path: directory.path + "/" + StoreLayout.usersFile)
            let indexes = try ["by-mac", "by-user", "by-deadline"].map {
                try environment.openDatabase($0, flags: [.create, .duplicateSort])
            }
            try environment.write { txn in
                for (number, user) in users.enumerated() {
                    let ip = user.ip.withUnsafeBytes { Array($0) }
                    try txn.put(withUnsafeBytes(of: user.mac.rawValue.bigEndian) { Array($0) }, ip, in: indexes[0])
                    try txn.put(Array(user.userName.utf8), ip, in: indexes[1])
                    try txn.put(withUnsafeBytes(of: UInt64(number).bigEndian) { Array($0) }, ip, in: indexes[2])
                }
                let stale = users[1].ip.withUnsafeBytes { Array($0) }
                try txn.put(withUnsafeBytes(of: users[0].mac.rawValue.bigEndian) { Array($0) }, stale, in: indexes[0])
            }
            #expect(try environment.read { txn in try txn.statistics(indexes[0]).entries } == 21)
        }

        store = try SessionStore.open(at: directory.path, configuration: .test())
        #expect(try store.sessions(withMAC: users[0].mac).map(\.ip) == [users[0].ip])
        #expect(try store.sessions(withUserName: users[7].userName).map(\.ip) == [users[7].ip])
        await store.close()
        let reopened = try Environment(path: directory.path + "/" + StoreLayout.usersFile)
        for name in ["by-mac", "by-user", "by-deadline"] {
            let index = try reopened.openDatabase(name, flags: .duplicateSort)
            #expect(try reopened.read { txn in try txn.statistics(index).entries } == 0, "\(name)")
        }
    }

    @Test("sessions on disk expire right after a reopen: expiry waits for their deadlines to be read")
    func expiryAfterReopen() async throws {
        let directory = TemporaryDirectory()
        var store = try SessionStore.open(at: directory.path, configuration: .test())
        let longAgo = Timestamp.now.adding(seconds: -7200)
        for number in 0..<300 {
            // Every third session is past its deadline; every fifth has none.
            let loginTime = number % 3 == 0 ? longAgo : .now
            try await store.login(testSession(number, loginTime: loginTime, sessionTimeout: number % 5 == 0 ? 0 : 3600))
        }
        try await store.checkpoint()
        await store.close()
        store = try SessionStore.open(at: directory.path, configuration: .test())
        let expired = try await store.expireSessions()
        let expected = (0..<300).filter { $0 % 3 == 0 && $0 % 5 != 0 }.map { testSession($0).ip }
        #expect(Set(expired.map(\.ip)) == Set(expected))
        #expect(expired.count == expected.count)
        #expect(store.count == 300 - expected.count)
        // Ended in memory, they are still indexed on disk until the next checkpoint: none is expired twice.
        #expect(try await store.expireSessions().isEmpty)
        try await store.checkpoint()
        #expect(try await store.expireSessions().isEmpty)
        let later = try await store.expireSessions(asOf: Timestamp.now.adding(seconds: 3700))
        #expect(later.count == (0..<300).filter { $0 % 3 != 0 && $0 % 5 != 0 }.count)
        await store.close()
    }

    @Test("a damaged stored session fails the build with its place, and lookups answer again once the table is emptied")
    func damagedTable() async throws {
        let directory = TemporaryDirectory()
        let store = try SessionStore.open(at: directory.path, configuration: .test())
        let users = (0..<3).map { testSession($0) }
        for user in users { try await store.login(user) }
        try await store.checkpoint()
        await store.close()
        // One byte of user 1's stored value rots.
        do {
            let environment = try Environment(path: directory.path + "/" + StoreLayout.usersFile)
            let table = try environment.openDatabase("users")
            let key = users[1].ip.withUnsafeBytes { Array($0) }
            var value = try #require(try environment.read { txn in try txn.value(forKey: key, in: table) })
            value[value.count / 2] ^= 0x40
            try environment.write { txn in try txn.put(key, value, in: table) }
        }
        let files = try StoreFiles(path: directory.path, durability: .noSync, initialMapSize: 16 << 20, readOnly: true)
        let indexes = TableIndexes()
        let failure = indexes.build(from: files, stop: { false })
        #expect(failure?.kind == .corruptRecord)
        #expect(failure?.description.contains(users[1].ip.description) == true)
        let error = #expect(throws: SessionStoreError.self) { try indexes.candidates(.mac(users[0].mac)) }
        #expect(error?.kind == .corruptRecord)
        #expect(indexes.dueIfBuilt(asOf: .now, limit: 10).isEmpty)
        indexes.removeAll()
        #expect(try indexes.candidates(.mac(users[0].mac)).isEmpty)
    }

    @Test(
        "a build that the closing store stops fails as closed, on both of its threads, and answers no lookup; one during which the table is emptied is dropped"
    )
    func stoppedBuild() async throws {
        let directory = TemporaryDirectory()
        let store = try SessionStore.open(at: directory.path, configuration: .test())
        let users = (0..<5_000).map { testSession($0, sessionTimeout: 60) }
        _ = try await store.login(contentsOf: users)
        try await store.checkpoint()
        await store.close()
        let files = try StoreFiles(path: directory.path, durability: .noSync, initialMapSize: 16 << 20, readOnly: true)
        let asked = Atomic<Int>(0)
        let indexes = TableIndexes()
        // Stopped at the first question, which each thread asks after 4,096 sessions.
        let failure = indexes.build(from: files) { asked.add(1, ordering: .relaxed).newValue > 0 }
        #expect(failure?.kind == .closed)
        #expect(asked.load(ordering: .relaxed) == 2)
        let error = #expect(throws: SessionStoreError.self) { try indexes.candidates(.mac(users[0].mac)) }
        #expect(error?.kind == .closed)
        #expect(indexes.dueIfBuilt(asOf: users[0].loginTime.adding(seconds: 1_000_000), limit: 10).isEmpty)

        // Only the deadlines' thread is stopped: the whole build fails, though the lookups were read.
        let caller = pthread_self()
        let halfStopped = TableIndexes()
        #expect(halfStopped.build(from: files) { pthread_equal(pthread_self(), caller) == 0 }?.kind == .closed)
        #expect(throws: SessionStoreError.self) { try halfStopped.candidates(.mac(users[0].mac)) }

        let whole = TableIndexes()
        #expect(whole.build(from: files) { false } == nil)
        #expect(try whole.candidates(.mac(users[4_999].mac)) == [users[4_999].ip])
        #expect(whole.dueIfBuilt(asOf: users[0].loginTime.adding(seconds: 1_000_000), limit: 10_000).count == 5_000)

        // The writer empties the table while the build reads it (a demotion): what the build read is dropped,
        // and the emptied indexes stay.
        let emptiedMeanwhile = TableIndexes()
        let emptiedOnce = Atomic<Bool>(false)
        let failed = emptiedMeanwhile.build(from: files) {
            if emptiedOnce.compareExchange(expected: false, desired: true, ordering: .relaxed).exchanged {
                emptiedMeanwhile.removeAll()
            }
            return false
        }
        #expect(failed == nil)
        #expect(try emptiedMeanwhile.candidates(.mac(users[4_999].mac)).isEmpty)
        #expect(emptiedMeanwhile.dueIfBuilt(asOf: users[0].loginTime.adding(seconds: 1_000_000), limit: 10).isEmpty)
    }

    @Test("deadlines are kept by their second, earliest first, each second's addresses in order, up to a limit")
    func deadlineBuckets() {
        let base = Timestamp(microsecondsSinceEpoch: 1_800_000_000_000_000)
        let ips = (0..<6).map { IPAddress(ipv4: 0x0A00_0000 | UInt32($0)) }
        var buckets = DeadlineBuckets()
        buckets.insert(base.adding(seconds: 5), ips[0])
        buckets.insert(base.adding(seconds: 1), ips[3])
        buckets.insert(Timestamp(microsecondsSinceEpoch: base.microsecondsSinceEpoch + 1_000_500), ips[2])
        buckets.insert(base.adding(seconds: 3), ips[1])
        buckets.insert(base.adding(seconds: 3), ips[1])  // again: listed once
        buckets.insert(Timestamp(microsecondsSinceEpoch: -1), ips[5])  // before the epoch: its own second, -1
        #expect(buckets.count == 5)
        #expect(buckets.due(asOf: Timestamp(microsecondsSinceEpoch: -2), limit: 10) == [ips[5]])
        #expect(buckets.due(asOf: Timestamp(microsecondsSinceEpoch: 0), limit: 10) == [ips[5]])
        #expect(buckets.due(asOf: base, limit: 10) == [ips[5]])
        // The second of a deadline counts whole: the caller checks each deadline again.
        #expect(buckets.due(asOf: base.adding(seconds: 1), limit: 10) == [ips[5], ips[2], ips[3]])
        #expect(buckets.due(asOf: base.adding(seconds: 9), limit: 3) == [ips[5], ips[2], ips[3]])
        #expect(buckets.due(asOf: base.adding(seconds: 9), limit: 10) == [ips[5], ips[2], ips[3], ips[1], ips[0]])
        buckets.remove(base.adding(seconds: 1), ips[3])
        buckets.remove(base.adding(seconds: 1), ips[4])  // not listed: nothing changes
        buckets.remove(base.adding(seconds: 2), ips[2])  // listed under another second: nothing changes
        buckets.remove(Timestamp(microsecondsSinceEpoch: -1), ips[5])
        #expect(buckets.due(asOf: base.adding(seconds: 4), limit: 10) == [ips[2], ips[1]])
        buckets.remove(base.adding(seconds: 1), ips[2])
        buckets.remove(base.adding(seconds: 3), ips[1])
        buckets.remove(base.adding(seconds: 5), ips[0])
        #expect(buckets.count == 0)
        #expect(buckets.due(asOf: base.adding(seconds: 9), limit: 10).isEmpty)
    }

    @Test("a multimap lists each address once per key, and removing one keeps the others")
    func multimap() {
        let a = IPAddress(ipv4: 0x0A00_0001)
        let b = IPAddress(ipv4: 0x0A00_0002)
        let c = IPAddress(ipv4: 0x0A00_0003)
        var map = AddressMultimap()
        #expect(map[7].isEmpty)
        map.insert(7, a)
        map.insert(7, a)
        #expect(map[7] == [a])
        map.insert(7, b)
        map.insert(7, c)
        map.insert(7, b)
        map.insert(8, c)
        #expect(Set(map[7]) == [a, b, c])
        #expect(map[7].count == 3)
        #expect(map.count == 4)
        map.remove(7, a)  // the first listed: another takes its place
        #expect(Set(map[7]) == [b, c])
        map.remove(7, b)
        map.remove(7, a)  // not listed any more: nothing changes
        #expect(map[7] == [c])
        map.remove(9, c)
        map.remove(7, c)
        #expect(map[7].isEmpty)
        #expect(map[8] == [c])
        #expect(map.count == 1)
    }

    @Test("IPv4 and IPv6 addresses under one key or one second are listed, ordered and removed alike")
    func mixedFamilies() {
        let v4 = IPAddress("10.0.0.1")!
        let v6 = IPAddress("2001:db8::1")!
        let low6 = IPAddress("::1")!  // sorts before every IPv4 address
        let lastV4 = IPAddress("255.255.255.255")!
        var map = AddressMultimap()
        map.reserveCapacity(ipv4: 16, other: 0)
        for ip in [v6, v4, low6, lastV4, v4, v6] { map.insert(42, ip) }
        #expect(Set(map[42]) == [v4, v6, low6, lastV4])
        #expect(map.count == 4)
        #expect(map.keyCounts == (ipv4: 1, other: 1))
        map.remove(42, v4)
        map.remove(42, low6)
        #expect(Set(map[42]) == [v6, lastV4])
        map.remove(42, lastV4)
        map.remove(42, v6)
        #expect(map[42].isEmpty)
        #expect(map.keyCounts == (ipv4: 0, other: 0))

        let base = Timestamp(microsecondsSinceEpoch: 1_800_000_000_000_000)
        var buckets = DeadlineBuckets()
        for ip in [v6, lastV4, v4, low6] { buckets.insert(base, ip) }
        buckets.insert(base.adding(seconds: 1), v6)
        #expect(buckets.count == 5)
        #expect(buckets.due(asOf: base, limit: 10) == [low6, v4, lastV4, v6])
        #expect(buckets.due(asOf: base, limit: 2) == [low6, v4])
        buckets.remove(base, v6)
        buckets.remove(base, v4)
        #expect(buckets.due(asOf: base.adding(seconds: 1), limit: 10) == [low6, lastV4, v6])
    }

    @Test("a user name's key is the same from its string and from its stored bytes")
    func userNameKey() {
        for name in ["alice", "bob@example.org", "ünïcödé", String(repeating: "x", count: 200)] {
            #expect(TableIndexes.userNameKey(name.utf8) == TableIndexes.userNameKey(Array(name.utf8)))
        }
        #expect(TableIndexes.userNameKey("alice".utf8) != TableIndexes.userNameKey("alicf".utf8))
    }
}
