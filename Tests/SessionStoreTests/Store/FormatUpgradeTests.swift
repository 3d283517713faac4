import Foundation
import TestSupport
import Testing

@testable import SessionStore

@Suite("A store of the previous format")
struct FormatUpgradeTests {
    /// A store of device 1, portal group "campus", written by the record format 1 of `tandem node`: a pair with
    /// users logged in and out on both devices; device 2 SIGKILLed, then device 1 a moment after more logins and
    /// logouts, so that its log holds records 21 to 26 and its checkpoint is at 21 (five records to replay). With
    /// it, `tandem users --json` of it by that version.
    static let fixture = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/format-v1-device1")

    /// A copy of the fixture to open (opening writes to a store).
    static func copyOfFixture() throws -> TemporaryDirectory {
        let directory = TemporaryDirectory()
        try FileManager.default.createDirectory(atPath: directory.child("store"), withIntermediateDirectories: false)
        for file in ["log.mdb", "users.mdb"] {
            try FileManager.default.copyItem(
                atPath: fixture.appendingPathComponent(file).path,
                toPath: directory.child("store/" + file)
            )
        }
        return directory
    }

    struct ListedUser: Decodable {
        var ip: String
        var mac: String
        var user: String
        var generation: String
        var owner: UInt8
        var vlan: UInt16
        var session_timeout: UInt32
        var idle_timeout: UInt32
        var interface: String
        var login_time: String
    }

    @Test("opens, with every user as the previous format listed it, and is marked with the new format once")
    func opensAndUpgrades() async throws {
        let directory = try Self.copyOfFixture()
        let path = directory.child("store")
        let listed = try String(contentsOf: Self.fixture.appendingPathComponent("users.jsonl"), encoding: .utf8)
            .split(separator: "\n")
            .map { try JSONDecoder().decode(ListedUser.self, from: Data($0.utf8)) }
        #expect(listed.count == 14)
        #expect(try formatOnDisk(path) == 1)

        let configuration = SessionStore.Configuration.test(deviceID: 1, portalGroup: "campus")
        var store = try SessionStore.open(at: path, configuration: configuration)
        #expect(store.count == 14)
        let sessions = try store.allSessions()
        #expect(sessions.map { "\($0.ip)" }.sorted() == listed.map(\.ip).sorted())
        for user in listed {
            let session = try #require(try store.session(for: IPAddress(user.ip)!))
            #expect("\(session.mac)" == user.mac)
            #expect(session.userName == user.user)
            #expect("\(session.generation)" == user.generation)
            #expect(session.owner.rawValue == user.owner)
            #expect(session.vlan == user.vlan)
            #expect(session.sessionTimeout == user.session_timeout)
            #expect(session.idleTimeout == user.idle_timeout)
            #expect(session.accessInterface == user.interface)
            #expect(session.loginTime.description == user.login_time)
            #expect(session.radius.nasIP == IPAddress("192.168.0.1"))
            // The parts the previous format did not have are as at a login without them.
            #expect(session.authorization == .none)
            #expect(session.accounting == .none)
            #expect(session.lastActivity == nil)
            #expect(session.revisions == .zero)
        }
        // The log of the previous format reads: the records kept for device 2, replayed at open past the checkpoint.
        var records: [LogRecord] = []
        try store.forEachLogRecord {
            records.append($0)
            return true
        }
        #expect(records.map(\.sequence) == Array(21...26))
        #expect(records.map(\.event.kind) == [.login, .login, .login, .logout, .logout, .login])
        #expect(store.logStatus.checkpointSequence == 21)
        #expect(try store.session(for: IPAddress("10.0.0.16")!)?.generation == Generation(term: 1, sequence: 26))
        #expect(try store.session(for: IPAddress("10.0.0.7")!) == nil)

        // New events go on in the new format beside the old records; the store reopens with both.
        let user1 = try #require(try store.session(for: IPAddress("10.0.0.1")!))
        let updated = try await store.update(
            .changeOfAuthorization(user1.ip, Authorization(acl: .name("guests"), accountingInterval: 600))
        )
        try await store.logout(IPAddress("10.0.0.2")!, reason: .disconnectMessage)
        #expect(try formatOnDisk(path) == 2)
        await store.close()
        store = try SessionStore.open(at: path, configuration: configuration)
        #expect(store.count == 13)
        #expect(store.logStatus.checkpointSequence == 28)
        #expect(try store.session(for: user1.ip) == updated)
        #expect(try store.session(for: IPAddress("10.0.0.4")!)?.userName == "user4")
        await store.close()
    }

    @Test("a store of a format newer than this build is refused, and not changed")
    func newerFormatRefused() throws {
        let directory = try Self.copyOfFixture()
        let path = directory.child("store")
        do {
            let files = try StoreFiles(path: path, durability: .noSync, initialMapSize: 16 << 20, readOnly: false)
            try files.logEnvironment.write { txn in
                try txn.putMeta(StoreLayout.MetaKey.format, UInt64(StoreLayout.formatVersion + 1), in: files.logMeta)
            }
        }
        let error = #expect(throws: SessionStoreError.self) {
            try SessionStore.open(at: path, configuration: .test())
        }
        #expect(error?.kind == .unsupportedFormat)
        #expect(try formatOnDisk(path) == UInt64(StoreLayout.formatVersion + 1))
    }

    private func formatOnDisk(_ path: String) throws -> UInt64? {
        let files = try StoreFiles(path: path, durability: .noSync, initialMapSize: 16 << 20, readOnly: true)
        return try files.logEnvironment.read { txn in
            try txn.metaUInt64(StoreLayout.MetaKey.format, in: files.logMeta)
        }
    }
}
