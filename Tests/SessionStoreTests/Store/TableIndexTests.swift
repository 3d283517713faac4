import Foundation
import LMDB
import TestSupport
import Testing

@testable import SessionStore

@Suite("Lookups by MAC address and user name")
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
        // 40 addresses, each logged in over time with sessions of different MACs and names; 12 MACs and 9 names
        // are shared between addresses, so one key lists several addresses on disk and in memory.
        func session(_ number: Int) -> Session {
            var session = testSession(number % 40)
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
        // The indexes as earlier stores kept them, one of them stale: it lists user 0's MAC at user 1's address.
        do {
            let environment = try Environment(path: directory.path + "/" + StoreLayout.usersFile)
            let byMAC = try environment.openDatabase("by-mac", flags: [.create, .duplicateSort])
            let byUser = try environment.openDatabase("by-user", flags: [.create, .duplicateSort])
            try environment.write { txn in
                for user in users {
                    let ip = user.ip.withUnsafeBytes { Array($0) }
                    try txn.put(withUnsafeBytes(of: StoreLayout.macKey(user.mac)) { Array($0) }, ip, in: byMAC)
                    try txn.put(Array(user.userName.utf8), ip, in: byUser)
                }
                let stale = users[1].ip.withUnsafeBytes { Array($0) }
                try txn.put(withUnsafeBytes(of: StoreLayout.macKey(users[0].mac)) { Array($0) }, stale, in: byMAC)
            }
            #expect(try environment.read { txn in try txn.statistics(byMAC).entries } == 21)
        }

        store = try SessionStore.open(at: directory.path, configuration: .test())
        #expect(try store.sessions(withMAC: users[0].mac).map(\.ip) == [users[0].ip])
        #expect(try store.sessions(withUserName: users[7].userName).map(\.ip) == [users[7].ip])
        await store.close()
        let reopened = try Environment(path: directory.path + "/" + StoreLayout.usersFile)
        for name in ["by-mac", "by-user"] {
            let index = try reopened.openDatabase(name, flags: .duplicateSort)
            #expect(try reopened.read { txn in try txn.statistics(index).entries } == 0, "\(name)")
        }
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

    @Test("a user name's key is the same from its string and from its stored bytes")
    func userNameKey() {
        for name in ["alice", "bob@example.org", "ünïcödé", String(repeating: "x", count: 200)] {
            #expect(TableIndexes.userNameKey(name.utf8) == TableIndexes.userNameKey(Array(name.utf8)))
        }
        #expect(TableIndexes.userNameKey("alice".utf8) != TableIndexes.userNameKey("alicf".utf8))
    }
}
