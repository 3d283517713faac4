import Foundation
import LMDB
import SessionStore
import Testing

@testable import FailoverLink

/// A store found damaged: detected, reported, never served, repaired by recovering from the peer.
@Suite("Damaged stores repaired from the peer", .serialized)
struct DamageTests {
    /// Flips one byte in the middle of the value stored under `key` in database `name` of `file`.
    static func damage(_ file: String, database name: String, key: [UInt8]) throws {
        let environment = try Environment(path: file)
        let database = try environment.openDatabase(name)
        var value = try #require(try environment.read { txn in try txn.value(forKey: key, in: database) })
        value[value.count / 2] ^= 0x20
        try environment.write { txn in try txn.put(key, value, in: database) }
    }

    static func ipKey(_ ip: IPAddress) -> [UInt8] { ip.withUnsafeBytes { Array($0) } }

    static func recovering(_ configuration: inout SessionStore.Configuration) {
        configuration.onDamage = .recoverFromPeer
    }

    @Test("a damaged session in the standby's users table is found, never served, and repaired from the peer")
    func damagedSession() async throws {
        try await Pair.run { pair in
            try await pair.start(1)
            try await pair.start(2, tune: Self.recovering)
            for number in 0..<50 {
                try await pair[1].login(pairSession(number, owner: 1), writeConcern: .replicated(timeout: .seconds(10)))
            }
            for number in 0..<5 {
                try await pair[2].login(pairSession(number, owner: 2), writeConcern: .replicated(timeout: .seconds(10)))
            }
            #expect(await pair.verified())
            let expected = try pair[1].store.allSessions()
            await pair.stop(2)
            // Bit rot in two sessions of device 2's table: a copy of device 1's user, and one of its own.
            for session in [pairSession(7, owner: 1), pairSession(2, owner: 2)] {
                try Self.damage(pair.path(2) + "/users.mdb", database: "users", key: Self.ipKey(session.ip))
            }
            // Opened as it is, the store never serves the damaged session as valid.
            do {
                let damaged = try SessionStore.open(
                    at: pair.path(2),
                    configuration: .init(deviceID: 2, portalGroup: "campus")
                )
                #expect(throws: SessionStoreError.self) { try damaged.session(for: pairSession(7, owner: 1).ip) }
                await #expect(throws: SessionStoreError.self) { try await damaged.initializeDigest() }
                await damaged.close()
            }
            let repaired = try await pair.start(2, tune: Self.recovering)
            #expect(await pair.verified())
            #expect(try repaired.store.allSessions() == expected)
            #expect(try pair[1].store.allSessions() == expected)
            let own = try #require(try repaired.store.session(for: pairSession(2, owner: 2).ip))
            #expect(repaired.store.effectiveOwner(of: own) == 2)
            #expect(!repaired.status.recovering)
            #expect(repaired.status.digestMismatches == 0 && pair[1].status.digestMismatches == 0)
        }
    }

    @Test("a damaged record in the log after the checkpoint: the store opens emptied, keeps its logouts, and recovers")
    func damagedLog() async throws {
        try await Pair.run { pair in
            try await pair.start(1)
            try await pair.start(2) { $0.checkpointInterval = .seconds(3600) }
            for number in 0..<30 {
                try await pair[1].login(pairSession(number, owner: 1), writeConcern: .replicated(timeout: .seconds(10)))
            }
            for number in 0..<5 {
                try await pair[2].login(pairSession(number, owner: 2), writeConcern: .replicated(timeout: .seconds(10)))
            }
            #expect(await pair.verified())
            await pair.stop(1)
            // Device 2 logs one of device 1's users off while device 1 is away, then its log rots.
            try await pair[2].logout(pairSession(4, owner: 1).ip, reason: .deleteUser)
            let last = pair[2].store.logStatus.lastSequence
            #expect(pair[2].store.logStatus.checkpointSequence < last - 3)
            // A copy as a crash leaves the store: its log after the checkpoint must be replayed.
            let copy = pair.directory + "/copy2"
            try await pair[2].store.copy(to: copy)
            await pair.stop(2)
            try FileManager.default.removeItem(atPath: pair.path(2))
            try FileManager.default.moveItem(atPath: copy, toPath: pair.path(2))
            try Self.damage(
                pair.path(2) + "/log.mdb",
                database: "log",
                key: withUnsafeBytes(of: (last - 3).bigEndian) { Array($0) }
            )
            #expect(throws: SessionStoreError.self) {
                _ = try SessionStore.open(at: pair.path(2), configuration: .init(deviceID: 2, portalGroup: "campus"))
            }
            try await pair.start(1)
            let repaired = try await pair.start(2, tune: Self.recovering)
            #expect(repaired.status.recovering)
            #expect(await pair.verified())
            #expect(try repaired.store.allSessions() == (try pair[1].store.allSessions()))
            #expect(try repaired.store.session(for: pairSession(4, owner: 1).ip) == nil)
            #expect(repaired.store.count == 34)
            #expect(repaired.status.digestMismatches == 0 && pair[1].status.digestMismatches == 0)
        }
    }
}
