import ArgumentParser
import Foundation
import LMDB
import Logging
import SessionStore

/// The `install` scenario: what writing a snapshot of N users straight into an empty users table costs in LMDB
/// alone, the floor under a full sync that would install a peer's snapshot without logging it.
///
/// A fresh standby's full sync today logs every session of the peer's snapshot, keeps it in memory and lets the
/// checkpointer write it into the users table and its indexes. An install could instead write the sessions
/// straight into the table, in the address order the snapshot arrives in. This scenario builds a store of N
/// users, reads its users table and indexes back into memory, and times writing them into a new, empty
/// environment of the same layout, committed and synced every `--transaction-size` users, two ways:
/// - `streamed`: as a snapshot arrives, in address order. The users table takes each session with `MDB_APPEND`;
///   each index takes the same users' entries at their places in its own key order.
/// - `sorted`: every table and index in its own key order, all with `MDB_APPEND`, as an install could do when it
///   gathers each index's entries and sorts them before writing.
struct InstallScenario: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "install",
        abstract: "Time writing N users straight into an empty users table and its indexes (LMDB alone).",
        discussion: """
            Builds a store of N users (the sessions of the other scenarios, logged in --build-batch per
            call), closes it, reads its users table and the indexes on disk (none since the indexes by
            MAC address, user name and deadline are kept in memory; index_entries_per_user is then 0)
            into memory, then writes them into a new environment of the same layout twice:
              streamed  in address order, as a snapshot arrives: users appended, index entries put
                        at their places (install_streamed_users_per_s, install_streamed_cpu_us_per_user);
              sorted    each table and index in its own key order, every write an append
                        (install_sorted_users_per_s, install_sorted_cpu_us_per_user).
            Each way commits and syncs every --transaction-size users and starts from an empty file.
            Nothing else runs meanwhile: this is the floor of an install that would not log the
            snapshot, not a figure of Tandem's full sync (tandem-bench failover reports that).

            Example:
              swift run -c release --package-path bench tandem-bench install --users 1000000 --json
            """
    )

    @Option(help: "Users in the snapshot.")
    var users = 1_000_000

    @Option(help: "Users per transaction, each committed and synced.")
    var transactionSize = 16_384

    @Option(help: "Logins per call while building the source store.")
    var buildBatch = 1_024

    @Option(help: "The directory to work in (default: a new temporary directory, removed at the end).")
    var path: String?

    @Flag(help: "Print one JSON object instead of a table.")
    var json = false

    func validate() throws {
        guard users > 0 else { throw ValidationError("--users must be at least 1") }
        guard transactionSize > 0 else { throw ValidationError("--transaction-size must be at least 1") }
        guard buildBatch > 0 else { throw ValidationError("--build-batch must be at least 1") }
    }

    func run() async throws {
        let directory = path ?? NSTemporaryDirectory() + "tandem-bench-install-\(getpid())"
        defer { if path == nil { try? FileManager.default.removeItem(atPath: directory) } }
        try? FileManager.default.removeItem(atPath: directory)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var report = Report()
        report.add("scenario", "install")
        report.add("users", users)
        report.add("transaction_size", transactionSize)

        progress("building a store of \(users) users")
        let source = directory + "/source"
        var configuration = SessionStore.Configuration(deviceID: 1, portalGroup: "bench")
        configuration.durability = .noSync
        var logger = Logger(label: "bench.install")
        logger.logLevel = .warning
        let store = try SessionStore.open(at: source, configuration: configuration, logger: logger)
        for first in stride(from: 0, to: users, by: buildBatch) {
            let sessions = (first..<min(first + buildBatch, users)).map(BenchSession.make)
            for result in try await store.login(contentsOf: sessions) { _ = try result.get() }
        }
        await store.close()

        progress("reading its users table and indexes")
        let tables = try UsersTables(readingFrom: source + "/users.mdb")
        guard tables.users.count == users else {
            throw ValidationError("the source store holds \(tables.users.count) users, not \(users)")
        }
        report.add("value_bytes_per_user", Double(tables.users.valueBytes) / Double(users))
        report.add("index_entries_per_user", Double(tables.indexEntryCount) / Double(users))

        for way in ["streamed", "sorted"] {
            let target = directory + "/install-\(way).mdb"
            progress("install, \(way): \(users) users, \(transactionSize) per transaction")
            let clock = PhaseClock()
            try tables.install(into: target, sorted: way == "sorted", transactionSize: transactionSize)
            report.addPhase("install_\(way)_users", events: users, clock: clock, unit: "user")
            report.add("install_\(way)_file_mib", Double(fileSize(target)) / 1_048_576)
            try? FileManager.default.removeItem(atPath: target)
            try? FileManager.default.removeItem(atPath: target + "-lock")
        }
        report.add("peak_rss_mib", peakRSSMiB())
        report.print(json: json)
    }
}

/// The entries of one LMDB database in key order (and, with duplicates, in value order), packed in one array:
/// each is its key's length and its value's length (two bytes each, little-endian), then the key and the value.
struct PackedEntries {
    private(set) var bytes: [UInt8] = []
    private var starts: [Int] = []
    /// The values' bytes, all entries together.
    private(set) var valueBytes = 0

    var count: Int { starts.count }

    mutating func append(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) {
        starts.append(bytes.count)
        valueBytes += value.count
        withUnsafeBytes(of: UInt16(key.count).littleEndian) { bytes.append(contentsOf: $0) }
        withUnsafeBytes(of: UInt16(value.count).littleEndian) { bytes.append(contentsOf: $0) }
        bytes.append(contentsOf: key)
        bytes.append(contentsOf: value)
    }

    /// Calls `body` with the key and value of entry `index`.
    func withEntry<R>(
        _ index: Int,
        _ body: (_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws -> R
    ) rethrows -> R {
        try bytes.withUnsafeBytes { all in
            let (key, value) = ranges(of: index, in: all)
            return try body(UnsafeRawBufferPointer(rebasing: all[key]), UnsafeRawBufferPointer(rebasing: all[value]))
        }
    }

    /// Where the key and the value of entry `index` lie in `all`, the packed bytes.
    private func ranges(of index: Int, in all: UnsafeRawBufferPointer) -> (key: Range<Int>, value: Range<Int>) {
        let start = starts[index]
        let keyCount = Int(all[start]) | Int(all[start + 1]) << 8
        let valueCount = Int(all[start + 2]) | Int(all[start + 3]) << 8
        return ((start + 4)..<(start + 4 + keyCount), (start + 4 + keyCount)..<(start + 4 + keyCount + valueCount))
    }

    /// The entries' order when sorted by value, ties kept in key order: for an index, whose values are addresses,
    /// the order of the users they belong to.
    func orderByValue() -> [Int] {
        var order = Array(0..<count)
        bytes.withUnsafeBytes { all in
            order.sort { left, right in
                let (a, b) = (ranges(of: left, in: all).value, ranges(of: right, in: all).value)
                let order = memcmp(
                    all.baseAddress! + a.lowerBound,
                    all.baseAddress! + b.lowerBound,
                    min(a.count, b.count)
                )
                return order != 0 ? order < 0 : (a.count != b.count ? a.count < b.count : left < right)
            }
        }
        return order
    }
}

/// A users table and its indexes on disk, read from a store's `users.mdb` (the layout of the catalog's
/// OnDiskFormat article): none since the indexes are kept in memory, but the way indexes were written stays
/// measurable with `indexNames`.
struct UsersTables {
    static let indexNames: [String] = []

    var users = PackedEntries()
    var indexes: [PackedEntries] = []
    /// The entries of each index in the order of the users they belong to, for the streamed way.
    var streamOrders: [[Int]] = []

    var indexEntryCount: Int { indexes.reduce(0) { $0 + $1.count } }

    init(readingFrom path: String) throws {
        var configuration = Environment.Configuration()
        configuration.maxDatabases = 8
        configuration.readOnly = true
        let environment = try Environment(path: path, configuration: configuration)
        let usersDatabase = try environment.openDatabase("users")
        let indexDatabases = try Self.indexNames.map { try environment.openDatabase($0, flags: .duplicateSort) }
        // Each database in a cursor walk of its own, in key order: the users table first, then each index.
        var all: [PackedEntries] = []
        try environment.read { txn in
            for database in [usersDatabase] + indexDatabases {
                var entries = PackedEntries()
                try txn.withCursor(database) { cursor in
                    var entry = try cursor.move(.first)
                    while let (key, value) = entry {
                        entries.append(key: key, value: value)
                        entry = try cursor.move(.next)
                    }
                }
                all.append(entries)
            }
        }
        users = all[0]
        indexes = Array(all.dropFirst())
        streamOrders = indexes.map { $0.orderByValue() }
    }

    /// Writes every table into a new environment at `path`, then checks that it holds as many entries in each
    /// table as were read and written.
    func install(into path: String, sorted: Bool, transactionSize: Int) throws {
        var configuration = Environment.Configuration()
        configuration.maxDatabases = 8
        configuration.durability = .syncEveryCommit
        configuration.initialMapSize = max(1 << 30, users.bytes.count * 4)
        let environment = try Environment(path: path, configuration: configuration)
        let usersDatabase = try environment.openDatabase("users", flags: .create)
        let indexDatabases = try Self.indexNames.map {
            try environment.openDatabase($0, flags: [.create, .duplicateSort])
        }
        var written = 0
        // Each transaction takes `transactionSize` users, and in the sorted way the same share of each index.
        let rounds = (users.count + transactionSize - 1) / transactionSize
        var next = Array(repeating: 0, count: indexes.count)
        for round in 0..<rounds {
            let range = (round * transactionSize)..<min((round + 1) * transactionSize, users.count)
            // The body may run again when the map grows: it works on copies and its result is kept once it commits.
            let (roundNext, roundWritten) = try environment.write { txn -> ([Int], Int) in
                var next = next
                var written = 0
                for index in range {
                    _ = try users.withEntry(index) { key, value in
                        try txn.put(key: key, value: value, in: usersDatabase, flags: .append)
                    }
                }
                written += range.count
                for (position, entries) in indexes.enumerated() {
                    let database = indexDatabases[position]
                    if sorted {
                        // An equal share of this index, each entry appended (a duplicate after its key's last one).
                        let end = round == rounds - 1 ? entries.count : entries.count * (round + 1) / rounds
                        for entry in next[position]..<end {
                            try entries.withEntry(entry) { key, value in
                                let same =
                                    entry > 0
                                    && entries.withEntry(entry - 1) { previous, _ in previous.elementsEqual(key) }
                                try txn.put(
                                    key: key,
                                    value: value,
                                    in: database,
                                    flags: same ? .appendDuplicate : .append
                                )
                            }
                        }
                        written += end - next[position]
                        next[position] = end
                    } else {
                        // The entries of this transaction's users, whose values (addresses) are at most the last one's.
                        let last = users.withEntry(range.upperBound - 1) { key, _ in Array(key) }
                        let order = streamOrders[position]
                        while next[position] < order.count {
                            let entry = order[next[position]]
                            let mine = try entries.withEntry(entry) { key, value -> Bool in
                                guard value.lexicographicallyPrecedes(last) || value.elementsEqual(last) else {
                                    return false
                                }
                                try txn.put(key: key, value: value, in: database)
                                return true
                            }
                            guard mine else { break }
                            next[position] += 1
                            written += 1
                        }
                    }
                }
                return (next, written)
            }
            next = roundNext
            written += roundWritten
        }
        // What the environment holds, counted by LMDB: the caller checks it against what was read.
        let stored = try environment.read { txn in
            try ([usersDatabase] + indexDatabases).map { try txn.statistics($0).entries }
        }
        guard stored == [users.count] + indexes.map(\.count), written == stored.reduce(0, +) else {
            throw ValidationError(
                "the install holds \(stored) entries (users, then each index), not \([users.count] + indexes.map(\.count))"
            )
        }
    }
}

/// The size of a file in bytes, 0 when it cannot be read.
func fileSize(_ path: String) -> Int {
    var info = stat()
    return stat(path, &info) == 0 ? Int(info.st_size) : 0
}
