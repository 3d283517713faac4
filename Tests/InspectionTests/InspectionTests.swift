import Foundation
import Inspection
import LMDB
import SessionStore
import Testing

/// A store in a temporary directory, removed at the end.
final class ScratchStore {
    let directory = NSTemporaryDirectory() + "tandem-inspect-" + UUID().uuidString
    var path: String { directory + "/store" }

    init() throws { try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) }
    deinit { try? FileManager.default.removeItem(atPath: directory) }

    func open() throws -> SessionStore {
        var configuration = SessionStore.Configuration(deviceID: 1, portalGroup: "campus")
        configuration.expiryInterval = nil
        return try SessionStore.open(at: path, configuration: configuration)
    }
}

func user(_ number: Int, owner: DeviceID = 1) -> Session {
    Session(
        ip: IPAddress(ipv4: 0x0A00_0000 | UInt32(number)),
        mac: MACAddress(rawValue: 0x0200_0000_0000 | UInt64(number)),
        userName: "user\(number)",
        vlan: 10,
        accessInterface: "GigabitEthernet1/0/\(number % 48 + 1)",
        portalGroup: "campus",
        owner: owner,
        loginTime: Timestamp(microsecondsSinceEpoch: 1_795_000_000_000_000 + Int64(number)),
        sessionTimeout: 0
    )
}

/// A store with a known history: users 1...5 log in, 2 and 4 log off (for different reasons), 6 logs in.
/// The whole log is kept (a hold at 1), and the store is closed (checkpointed).
func knownHistory(_ scratch: ScratchStore) async throws {
    let store = try scratch.open()
    try await store.holdLog("inspection", from: 1)
    for number in 1...5 { try await store.login(user(number)) }
    try await store.logout(user(2).ip, reason: .deleteUser)
    try await store.logout(user(4).ip, reason: .idleTimeout)
    try await store.login(user(6))
    await store.close()
}

/// The lines of a chunk of output.
func splitLines(_ chunk: [UInt8]) -> [String] {
    String(decoding: chunk, as: UTF8.self).split(separator: "\n").map(String.init)
}

/// Masks the time column (the store stamps records with the time they were logged).
func maskTimes(_ text: String) -> String {
    text.replacingOccurrences(
        of: #"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z"#,
        with: "<time>",
        options: .regularExpression
    )
}

@Suite("Log inspection")
struct InspectionTests {
    @Test("dump prints one aligned line per record (golden output), and filters")
    func golden() async throws {
        let scratch = try ScratchStore()
        try await knownHistory(scratch)
        let reader = try StoreReader(path: scratch.path)
        var lines: [String] = []
        try dumpLog(reader, filter: LogFilter(), json: false) { lines += splitLines($0).map(maskTimes) }
        let golden = """
                     1  <time>  dev 1    login             10.0.0.1                                 02:00:00:00:00:01  user1
                     2  <time>  dev 1    login             10.0.0.2                                 02:00:00:00:00:02  user2
                     3  <time>  dev 1    login             10.0.0.3                                 02:00:00:00:00:03  user3
                     4  <time>  dev 1    login             10.0.0.4                                 02:00:00:00:00:04  user4
                     5  <time>  dev 1    login             10.0.0.5                                 02:00:00:00:00:05  user5
                     6  <time>  dev 1    logout            10.0.0.2                                 02:00:00:00:00:02  user2  delete-user
                     7  <time>  dev 1    logout            10.0.0.4                                 02:00:00:00:00:04  user4  idle-timeout
                     8  <time>  dev 1    login             10.0.0.6                                 02:00:00:00:00:06  user6
            """
        #expect(lines.joined(separator: "\n") == golden)

        var filter = LogFilter()
        filter.kind = .logout
        var logouts: [String] = []
        try dumpLog(reader, filter: filter, json: false) { logouts += splitLines($0) }
        #expect(logouts.count == 2)
        filter = LogFilter()
        filter.user = "user4"
        filter.from = 2
        var user4: [String] = []
        try dumpLog(reader, filter: filter, json: false) { user4 += splitLines($0).map(maskTimes) }
        #expect(user4.map { $0.prefix(10).trimmingCharacters(in: .whitespaces) } == ["4", "7"])
    }

    @Test("JSON lines parse back to the records' fields")
    func jsonRoundTrip() async throws {
        let scratch = try ScratchStore()
        try await knownHistory(scratch)
        let reader = try StoreReader(path: scratch.path)
        var records: [LogRecord] = []
        try reader.forEachRecord {
            records.append($0)
            return true
        }
        var lines: [String] = []
        try dumpLog(reader, filter: LogFilter(), json: true) { lines += splitLines($0) }
        #expect(lines.count == records.count)
        for (line, record) in zip(lines, records) {
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            #expect(object["sequence"] as? Int == Int(record.sequence))
            #expect(object["kind"] as? String == record.event.kind.description)
            #expect(object["time"] as? String == record.time.description)
            #expect(object["origin"] as? Int == 1)
            #expect(object["ip"] as? String == record.event.address.map { "\($0)" })
            if case .logout(let logout) = record.event {
                #expect(object["reason"] as? String == logout.reason.description)
                #expect(object["user"] as? String == logout.userName)
            }
        }
    }

    @Test("JSON lines escape what a user name may hold")
    func jsonEscaping() throws {
        var session = user(1)
        session.userName = #"o"brien\d ü"#
        let record = LogRecord(sequence: 1, term: 1, origin: 1, time: .now, event: .login(session))
        let object = try #require(
            try JSONSerialization.jsonObject(with: Data(LogLine.json(record).utf8)) as? [String: Any]
        )
        #expect(object["user"] as? String == session.userName)
    }

    @Test("a user's JSON line holds every field of the row, escaped, and says whose copy it is")
    func userJSON() throws {
        var session = user(7, owner: 2)
        session.userName = #"o"brien\d ü"#
        session.idleTimeout = 600
        session.generation = Generation(term: 3, sequence: 1_048_576)
        let line = UserRow.json(session, owner: 1, device: 1)
        #expect(!line.contains("\n"))
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(object["ip"] as? String == "10.0.0.7")
        #expect(object["mac"] as? String == session.mac.description)
        #expect(object["user"] as? String == session.userName)
        #expect(object["vlan"] as? Int == 10)
        #expect(object["interface"] as? String == session.accessInterface)
        #expect(object["owner"] as? Int == 1)
        #expect(object["logged_in_owner"] as? Int == 2)
        #expect(object["copy"] as? String == "primary")
        #expect(object["login_time"] as? String == session.loginTime.description)
        #expect(object["portal_group"] as? String == "campus")
        #expect(object["session_timeout"] as? Int == 0)
        #expect(object["idle_timeout"] as? Int == 600)
        #expect(object["generation"] as? String == "3.1048576")
        // The parts updates change: empty ones too, so that a reader finds every key.
        #expect(object["authorization"] as? [String: Int] == ["accounting_interval": 0])
        #expect(
            object["accounting"] as? [String: Int]
                == ["input_octets": 0, "output_octets": 0, "input_packets": 0, "output_packets": 0]
        )
        #expect(object["revisions"] as? [String: String] == ["authorization": "0", "accounting": "0", "activity": "0"])
        #expect(object["last_activity"] == nil)
        #expect(object.count == 16)
        session.authorization = Authorization(
            acl: .name("guests"),
            userProfile: "visitor",
            inboundCAR: .init(cir: 1_000, cbs: 64_000),
            vpnInstance: "vpn1",
            filterID: #"f"1"#,
            accountingInterval: 600
        )
        session.accounting = AccountingState(inputOctets: 1 << 40, outputPackets: 3, reportedAt: session.loginTime)
        session.lastActivity = session.loginTime.adding(seconds: 5)
        session.revisions.accounting = Revision(term: 3, sequence: 1_048_600, device: 2)
        let full = try #require(
            try JSONSerialization.jsonObject(with: Data(UserRow.json(session, owner: 1, device: 1).utf8))
                as? [String: Any]
        )
        let authorization = try #require(full["authorization"] as? [String: Any])
        #expect(authorization["acl"] as? String == "guests")
        #expect(authorization["user_profile"] as? String == "visitor")
        #expect(authorization["inbound_car"] as? [String: Int] == ["cir": 1_000, "cbs": 64_000])
        #expect(authorization["outbound_car"] == nil)
        #expect(authorization["vpn_instance"] as? String == "vpn1")
        #expect(authorization["filter_id"] as? String == #"f"1"#)
        #expect(authorization["accounting_interval"] as? Int == 600)
        let accounting = try #require(full["accounting"] as? [String: Any])
        #expect(accounting["input_octets"] as? Int == 1 << 40)
        #expect(accounting["output_packets"] as? Int == 3)
        #expect(accounting["reported_at"] as? String == session.loginTime.description)
        #expect(full["last_activity"] as? String == session.lastActivity?.description)
        #expect((full["revisions"] as? [String: String])?["accounting"] == "3.1048600@2")
        let backup = try #require(
            try JSONSerialization.jsonObject(with: Data(UserRow.json(session, owner: 2, device: 1).utf8))
                as? [String: Any]
        )
        #expect(backup["copy"] as? String == "backup")
        let difference = try #require(differences([session], []).first)
        let parsed = try #require(
            try JSONSerialization.jsonObject(with: Data(difference.json.utf8)) as? [String: String]
        )
        #expect(parsed == ["kind": "only-in-first", "ip": "10.0.0.7", "detail": difference.detail])
        #expect(difference.detail.contains(session.userName))
    }

    @Test("a dump line read straight from the stored record is the line of the record decoded and encoded again")
    func fastJSONMatchesDecoded() async throws {
        let scratch = try ScratchStore()
        let store = try scratch.open()
        try await store.holdLog("inspection", from: 1)
        for number in 1...40 {
            var session = user(number)
            if number % 3 == 0 { session.ip = IPAddress("2001:db8::\(number)")! }
            if number % 5 == 0 { session.userName = #"o"brien\\"# + "\(number)" }
            try await store.login(session)
        }
        for number in stride(from: 1, through: 40, by: 4) {
            let ip = number % 3 == 0 ? IPAddress("2001:db8::\(number)")! : user(number).ip
            try await store.logout(ip, reason: LogoutReason.allCases[number % LogoutReason.allCases.count])
        }
        _ = try await store.promote(over: 2, peerTerm: 1)
        _ = try await store.changeDeviceID(to: 3)
        await store.close()

        let reader = try StoreReader(path: scratch.path)
        var kinds = Set<String>()
        try reader.forEachRawRecord { _, value in
            var fast: [UInt8] = []
            try RecordCodec.appendJSON(ofRecord: value, to: &fast)
            let record = try RecordCodec.decodeRecord(value)
            kinds.insert(record.event.kind.description)
            #expect(String(decoding: fast, as: UTF8.self) == LogLine.json(record))
            return true
        }
        #expect(kinds == ["login", "logout", "takeover", "device-id-change"])
        // The whole dump is the same whichever path prints it (a time filter takes the decoding path).
        var fastDump: [UInt8] = []
        try dumpLog(reader, filter: LogFilter(), json: true) { fastDump += $0 }
        var filter = LogFilter()
        filter.since = Timestamp(microsecondsSinceEpoch: 0)
        var decodedDump: [UInt8] = []
        try dumpLog(reader, filter: filter, json: true) { decodedDump += $0 }
        #expect(fastDump == decodedDump)
    }

    @Test("verify finds a clean store clean")
    func verifyClean() async throws {
        let scratch = try ScratchStore()
        try await knownHistory(scratch)
        let result = try verifyStore(try StoreReader(path: scratch.path))
        #expect(result.problems.isEmpty)
        #expect(result.records == 8)
        #expect(result.fullReplay)
        #expect(result.checkpointedSessions == 4)
    }

    @Test("verify catches a corrupted record, a sequence gap and a table that disagrees with its log")
    func verifyProblems() async throws {
        // A flipped byte inside record 3.
        var scratch = try ScratchStore()
        try await knownHistory(scratch)
        try editLog(scratch.path) { txn, log in
            let key = withUnsafeBytes(of: UInt64(3).bigEndian) { Array($0) }
            var value = try #require(try txn.value(forKey: key, in: log))
            value[12] ^= 0x40
            _ = try txn.put(key, value, in: log)
        }
        var result = try verifyStore(try StoreReader(path: scratch.path))
        #expect(result.problems.map(\.kind) == [.corruptRecord])
        #expect(result.problems.first?.detail.contains("sequence 3") == true)

        // Record 5 deleted.
        scratch = try ScratchStore()
        try await knownHistory(scratch)
        try editLog(scratch.path) { txn, log in
            _ = try withUnsafeBytes(of: UInt64(5).bigEndian) { try txn.delete(key: $0, in: log) }
        }
        result = try verifyStore(try StoreReader(path: scratch.path))
        #expect(result.problems.contains { $0.kind == .sequenceGap && $0.detail.contains("records 5...5") })

        // User 3 removed from the users table, outside the log.
        scratch = try ScratchStore()
        try await knownHistory(scratch)
        do {
            let environment = try Environment(path: scratch.path + "/users.mdb")
            let users = try environment.openDatabase("users")
            try environment.write { txn in _ = try user(3).ip.withUnsafeBytes { try txn.delete(key: $0, in: users) } }
        }
        result = try verifyStore(try StoreReader(path: scratch.path))
        #expect(result.problems.map(\.kind) == [.tableMismatch])
        #expect(result.problems.first?.detail.contains("10.0.0.3") == true)
    }

    @Test("verify accepts a table past its checkpoint position, as a crash inside a large checkpoint leaves it")
    func verifyTablePastCheckpoint() async throws {
        let scratch = try ScratchStore()
        let (position, all) = try await checkpointCutShort(scratch)
        var result = try verifyStore(try StoreReader(path: scratch.path))
        #expect(try StoreReader(path: scratch.path).positions().checkpointSequence == position)
        #expect(result.fullReplay)
        #expect(result.problems.isEmpty, "\(result.problems.prefix(3))")

        // Checked against the log after the position: the records before it gone.
        try truncateLog(scratch.path, through: position)
        result = try verifyStore(try StoreReader(path: scratch.path))
        #expect(!result.fullReplay)
        #expect(result.problems.isEmpty, "\(result.problems.prefix(3))")

        // The store opens on it: the log after the position, replayed over the table, changes nothing there.
        let store = try scratch.open()
        #expect(store.count == all.count)
        #expect(try store.allSessions() == all)
        await store.close()
    }

    @Test("verify still reports what a crash inside a checkpoint cannot leave")
    func verifyTablePastCheckpointProblems() async throws {
        // The table cut short as above, then user 18,000 (not changed after the position) removed, and user 20,000's
        // session stored at user 5's address, where the log after the position never brings it.
        var scratch = try ScratchStore()
        _ = try await checkpointCutShort(scratch)
        try editUsers(scratch.path) { txn, databases in
            _ = try user(18_000).ip.withUnsafeBytes { try txn.delete(key: $0, in: databases.users) }
            let value = try #require(
                try user(20_000).ip.withUnsafeBytes { try txn.value(forKey: Array($0), in: databases.users) }
            )
            try txn.put(user(5).ip.withUnsafeBytes { Array($0) }, value, in: databases.users)
        }
        var result = try verifyStore(try StoreReader(path: scratch.path))
        #expect(result.fullReplay)
        #expect(result.problems.map(\.kind) == [.tableMismatch, .tableMismatch])
        #expect(result.problems.contains { $0.detail.hasPrefix("\(user(5).ip) differs") })
        #expect(result.problems.contains { $0.detail.hasPrefix("\(user(18_000).ip) is online by the log") })
        // Against the log after the position, only user 5's address shows: its logout finds another session, which
        // no later record brings. (No record after the position concerns user 18,000.)
        try truncateLog(scratch.path, through: try StoreReader(path: scratch.path).positions().checkpointSequence)
        result = try verifyStore(try StoreReader(path: scratch.path))
        #expect(!result.fullReplay)
        #expect(result.problems.map(\.kind) == [.tableMismatch])
        #expect(result.problems.first?.detail.contains("logs out \(user(5).ip)") == true)

        // Fewer addresses changed after the position than one checkpoint transaction writes: a table past it
        // cannot come from a crash, and is reported. (The known history checkpointed through record 8, its position
        // put back to 5.)
        scratch = try ScratchStore()
        try await knownHistory(scratch)
        try editUsers(scratch.path) { txn, databases in try setCheckpointPosition(5, txn, databases) }
        result = try verifyStore(try StoreReader(path: scratch.path))
        #expect(result.problems.count == 3)
        #expect(result.problems.allSatisfy { $0.kind == .tableMismatch })
    }

    @Test("users --at rebuilds who was online at a past time from the log")
    func usersAt() async throws {
        let scratch = try ScratchStore()
        let store = try scratch.open()
        try await store.holdLog("inspection", from: 1)
        try await store.login(user(1))
        try await store.login(user(2))
        try await Task.sleep(for: .milliseconds(5))
        let first = Timestamp.now
        try await Task.sleep(for: .milliseconds(5))
        try await store.logout(user(1).ip, reason: .user)
        try await store.login(user(3))
        try await Task.sleep(for: .milliseconds(5))
        let second = Timestamp.now
        try await Task.sleep(for: .milliseconds(5))
        try await store.logout(user(2).ip, reason: .portalServer)
        await store.close()

        let reader = try StoreReader(path: scratch.path)
        #expect(try sessions(at: first, in: reader).map(\.userName) == ["user1", "user2"])
        #expect(try sessions(at: second, in: reader).map(\.userName) == ["user2", "user3"])
        #expect(try sessions(at: .now, in: reader).map(\.userName) == ["user3"])
        #expect(try reader.onlineSessions().map(\.userName) == ["user3"])
    }

    @Test("--at on a log truncated behind a checkpoint says why it cannot answer")
    func usersAtTruncated() async throws {
        let scratch = try ScratchStore()
        let store = try scratch.open()
        for number in 1...3 { try await store.login(user(number)) }
        await store.close()
        let reopened = try scratch.open()
        try await reopened.login(user(9))
        _ = try await reopened.checkpoint()
        await reopened.close()
        let error = #expect(throws: InspectionError.self) {
            try sessions(at: .now, in: try StoreReader(path: scratch.path))
        }
        #expect(error?.kind == .pastTruncated)
        #expect(error?.description.contains("truncated") == true)
    }

    @Test("diff finds a planted difference, and nothing between a store and its copy")
    func diff() async throws {
        let scratch = try ScratchStore()
        let store = try scratch.open()
        for number in 1...20 { try await store.login(user(number)) }
        let copy = scratch.directory + "/copy"
        try await store.copy(to: copy)
        #expect(
            differences(
                try StoreReader(path: scratch.path).onlineSessions(),
                try StoreReader(path: copy).onlineSessions()
            ).isEmpty
        )
        try await store.logout(user(7).ip, reason: .cutConnection)
        try await store.login(user(30))
        await store.close()
        let found = differences(
            try StoreReader(path: scratch.path).onlineSessions(),
            try StoreReader(path: copy).onlineSessions()
        )
        #expect(found.map(\.kind) == [.onlyInSecond, .onlyInFirst])
        #expect(found.map(\.ip) == [user(7).ip, user(30).ip])
    }

    @Test("a missing directory, a foreign directory and a store of a newer format are refused clearly")
    func refusals() async throws {
        let scratch = try ScratchStore()
        var error = #expect(throws: SessionStoreError.self) { try StoreReader(path: scratch.directory + "/nothing") }
        #expect(error?.kind == .notAStore)
        #expect(error?.description.contains("does not exist") == true)
        error = #expect(throws: SessionStoreError.self) { try StoreReader(path: scratch.directory) }
        #expect(error?.kind == .notAStore)
        #expect(error?.description.contains("log.mdb is missing") == true)

        try await knownHistory(scratch)
        do {
            let environment = try Environment(path: scratch.path + "/log.mdb")
            let meta = try environment.openDatabase("meta")
            try environment.write { txn in
                _ = try txn.put(Array("format".utf8), withUnsafeBytes(of: UInt64(9).bigEndian) { Array($0) }, in: meta)
            }
        }
        error = #expect(throws: SessionStoreError.self) { try StoreReader(path: scratch.path) }
        #expect(error?.kind == .unsupportedFormat)
    }

    @Test("a reader follows a store that a device has open, without stopping its writes")
    func liveStore() async throws {
        let scratch = try ScratchStore()
        let store = try scratch.open()
        for number in 1...100 { try await store.login(user(number)) }
        let reader = try StoreReader(path: scratch.path)
        #expect(try reader.onlineSessions().count == 100)
        for number in 101...150 { try await store.login(user(number)) }
        #expect(try reader.onlineSessions().count == 150)
        #expect(try reader.positions().lastSequence == 150)
        await store.close()
    }

    @Test("a reader beside a store that checkpoints and deletes the log behind it reads a whole table every time")
    func readerBesideCheckpoints() async throws {
        let scratch = try ScratchStore()
        var configuration = SessionStore.Configuration(deviceID: 1, portalGroup: "campus")
        configuration.expiryInterval = nil
        configuration.durability = .noSync
        configuration.checkpointThreshold = 50
        configuration.checkpointInterval = .milliseconds(2)
        let store = try SessionStore.open(at: scratch.path, configuration: configuration)
        for number in 1...200 { try await store.login(user(number)) }
        let reader = try StoreReader(path: scratch.path)
        // Each round logs one user out and another in while the reader reads: the count stays 200, and each
        // checkpoint (every 50 changes or 2 ms) deletes the log behind it.
        let writes = Task {
            for round in 0..<3000 {
                try await store.logout(user(1 + round % 200).ip, reason: .user)
                try await store.login(user(1 + round % 200))
            }
        }
        var reads = 0
        var counts: Set<Int> = []
        var deletedThrough: UInt64 = 0
        while !writes.isCancelled, reads < 400 {
            counts.insert(try reader.onlineSessions().count)
            deletedThrough = max(deletedThrough, store.logStatus.firstRetainedSequence ?? 0)
            reads += 1
            await Task.yield()
        }
        try await writes.value
        #expect(counts.isSubset(of: [199, 200]), "\(counts)")
        #expect(try reader.onlineSessions().count == 200)
        #expect(deletedThrough > 1000)  // the log was deleted behind checkpoints meanwhile
        await store.close()
    }
}

/// Edits a closed store's log database directly (to damage it on purpose).
func editLog(_ path: String, _ body: (borrowing WriteTransaction, Database) throws -> Void) throws {
    let environment = try Environment(path: path + "/log.mdb")
    let log = try environment.openDatabase("log")
    try environment.write { txn in try body(txn, log) }
}

/// Edits a closed store's users table and its metadata directly.
func editUsers(
    _ path: String,
    _ body: (borrowing WriteTransaction, (users: Database, meta: Database)) throws -> Void
) throws {
    var configuration = Environment.Configuration()
    configuration.maxDatabases = 8
    let environment = try Environment(path: path + "/users.mdb", configuration: configuration)
    let databases = (users: try environment.openDatabase("users"), meta: try environment.openDatabase("meta"))
    try environment.write { txn in try body(txn, databases) }
}

/// Puts the checkpoint position recorded in a users environment edited with `editUsers`.
func setCheckpointPosition(
    _ position: UInt64,
    _ txn: borrowing WriteTransaction,
    _ databases: (users: Database, meta: Database)
) throws {
    try txn.put(
        Array("checkpoint-sequence".utf8),
        withUnsafeBytes(of: position.bigEndian) { Array($0) },
        in: databases.meta
    )
}

/// A store left as a crash inside a checkpoint of more addresses than one transaction writes leaves it. Users 1
/// to 20,000 log in and are checkpointed (the position); then users 1 to 17,000 log out, 1 to 10 log in again
/// and 20,001 and 20,002 log in, and a checkpoint writes it all. The position is then put back, and the
/// addresses from user 9,000 up get back what they held at the position, as if only the transactions of the
/// lower addresses had committed. The whole log is kept.
///
/// - Returns: the position, and the online sessions the store holds.
func checkpointCutShort(_ scratch: ScratchStore) async throws -> (position: UInt64, sessions: [Session]) {
    var store = try scratch.open()
    try await store.holdLog("inspection", from: 1)
    for first in stride(from: 1, through: 20_000, by: 1_000) {
        for result in try await store.login(contentsOf: (first..<first + 1_000).map { user($0) }) {
            _ = try result.get()
        }
    }
    await store.close()
    let position = try StoreReader(path: scratch.path).positions().checkpointSequence
    try FileManager.default.copyItem(
        atPath: scratch.path + "/users.mdb",
        toPath: scratch.directory + "/at-position.mdb"
    )
    store = try scratch.open()
    for first in stride(from: 1, through: 17_000, by: 1_000) {
        _ = try await store.logout(contentsOf: (first..<first + 1_000).map { (user($0).ip, .user) })
    }
    for result in try await store.login(contentsOf: (Array(1...10) + [20_001, 20_002]).map { user($0) }) {
        _ = try result.get()
    }
    let sessions = try store.allSessions()
    await store.close()

    var configuration = Environment.Configuration()
    configuration.maxDatabases = 8
    configuration.readOnly = true
    let before = try Environment(path: scratch.directory + "/at-position.mdb", configuration: configuration)
    let beforeUsers = try before.openDatabase("users")
    try editUsers(scratch.path) { txn, databases in
        try setCheckpointPosition(position, txn, databases)
        for number in Array(9_000...17_000) + [20_001, 20_002] {
            let key = user(number).ip.withUnsafeBytes { Array($0) }
            if let old = try before.read({ try $0.value(forKey: key, in: beforeUsers) }) {
                try txn.put(key, old, in: databases.users)
            } else {
                _ = try key.withUnsafeBytes { try txn.delete(key: $0, in: databases.users) }
            }
        }
    }
    return (position, sessions)
}

/// Deletes a closed store's log records through `last`.
func truncateLog(_ path: String, through last: UInt64) throws {
    try editLog(path) { txn, log in
        for sequence in 1...last {
            _ = try withUnsafeBytes(of: sequence.bigEndian) { try txn.delete(key: $0, in: log) }
        }
    }
}
