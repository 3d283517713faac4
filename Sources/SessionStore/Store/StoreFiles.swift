import LMDB

/// The two LMDB environments of a store and their databases.
package struct StoreFiles: Sendable {
    let path: String
    package let logEnvironment: Environment
    package let usersEnvironment: Environment
    package let log: Database
    package let logMeta: Database
    package let users: Database
    package let usersMeta: Database

    /// Opens (and with `create`, creates) the environments of the store in directory `path`.
    package init(path: String, durability: SessionStore.Durability, initialMapSize: Int, readOnly: Bool) throws {
        self.path = path
        var logConfiguration = Environment.Configuration()
        logConfiguration.maxDatabases = 4
        logConfiguration.durability = durability.environment
        logConfiguration.initialMapSize = initialMapSize
        logConfiguration.readOnly = readOnly
        var usersConfiguration = Environment.Configuration()
        usersConfiguration.maxDatabases = 8
        // Checkpoints are always synced: the log behind them is deleted once they commit.
        usersConfiguration.durability = .syncEveryCommit
        usersConfiguration.initialMapSize = initialMapSize
        usersConfiguration.readOnly = readOnly
        logEnvironment = try Environment(path: path + "/" + StoreLayout.logFile, configuration: logConfiguration)
        usersEnvironment = try Environment(
            path: path + "/" + StoreLayout.usersFile,
            configuration: usersConfiguration
        )
        let create: DatabaseFlags = readOnly ? [] : [.create]
        log = try logEnvironment.openDatabase("log", flags: create)
        logMeta = try logEnvironment.openDatabase("meta", flags: create)
        users = try usersEnvironment.openDatabase("users", flags: create)
        usersMeta = try usersEnvironment.openDatabase("meta", flags: create)
        if !readOnly { try Self.emptyRetiredIndexes(usersEnvironment) }
    }

    /// Empties the indexes that stores kept on disk before they were kept in memory
    /// (``TableIndexes``), so that they neither take space nor answer for sessions that changed since.
    private static func emptyRetiredIndexes(_ environment: Environment) throws {
        for name in StoreLayout.retiredIndexes {
            guard let index = try existingDatabase(name, in: environment) else { continue }
            let entries = try environment.read { txn in try txn.statistics(index).entries }
            if entries > 0 { try environment.write { txn in try txn.clear(index) } }
        }
    }

    private static func existingDatabase(_ name: String, in environment: Environment) throws -> Database? {
        do {
            return try environment.openDatabase(name, flags: .duplicateSort)
        } catch  where error.code == .notFound {
            return nil
        }
    }

    /// The session stored for `ip` in the users table on disk.
    func baseSession(_ ip: IPAddress, in txn: borrowing some TransactionProtocol & ~Copyable) throws -> Session? {
        try ip.withUnsafeBytes { key in
            try txn.withValue(forKey: key, in: users) { value -> Session? in
                guard let value else { return nil }
                return try decodeStoredSession(value, ip: ip)
            }
        }
    }

    /// Reads the log's records in order from sequence `first`, in `txn`, passing each to `body`, and returns
    /// the sequence after the last record read (`first` when there is none).
    ///
    /// - Throws: ``SessionStoreError/Kind/logGap`` at the first record that does not continue the one before
    ///   it (or `first`), ``SessionStoreError/Kind/corruptRecord`` for a record that does not decode, and what
    ///   `body` throws.
    package func readLog(
        from first: UInt64,
        in txn: borrowing some TransactionProtocol & ~Copyable,
        _ body: (LogRecord) throws -> Void
    ) throws -> UInt64 {
        var expected = first
        try txn.withCursor(log) { cursor in
            var entry = try withUnsafeBytes(of: StoreLayout.sequenceKey(expected)) { try cursor.seek(atLeast: $0) }
            while let (key, value) = entry {
                let record = try decodeLogEntry(key: key, value: value)
                guard record.sequence == expected else {
                    throw SessionStoreError(.logGap(checkpoint: expected - 1, firstRetained: record.sequence))
                }
                try body(record)
                expected += 1
                entry = try cursor.move(.next)
            }
        }
        return expected
    }

    /// The bytes the retained log takes (its tree's pages), or 0 when it cannot be read.
    func retainedLogBytes() -> Int {
        (try? logEnvironment.read { txn in
            let stats = try txn.statistics(log)
            return (stats.branchPages + stats.leafPages + stats.overflowPages) * stats.pageSize
        }) ?? 0
    }

    /// The sequence of the first record in the log, or `nil` when the log is empty.
    package func firstLogSequence(in txn: borrowing some TransactionProtocol & ~Copyable) throws -> UInt64? {
        try txn.withCursor(log) { cursor in
            try cursor.move(.first).flatMap { StoreLayout.decodeSequenceKey($0.key) }
        }
    }
}

/// Decodes a users-table value, naming its place when it is corrupt.
package func decodeStoredSession(_ value: UnsafeRawBufferPointer, ip: IPAddress) throws(SessionStoreError) -> Session {
    do throws(CorruptRecordError) {
        return try RecordCodec.decodeSessionValue(value, ip: ip)
    } catch {
        throw SessionStoreError(.corruptRecord(error, location: "users table, key \(ip)"))
    }
}

/// Reads the owner and generation of a users-table value without decoding the rest (its checksum is checked),
/// naming its place when it is corrupt.
func peekStoredSessionOwner(
    _ value: UnsafeRawBufferPointer,
    ip: IPAddress
) throws(SessionStoreError) -> (owner: DeviceID, generation: Generation) {
    do throws(CorruptRecordError) {
        return try RecordCodec.peekSessionOwner(value)
    } catch {
        throw SessionStoreError(.corruptRecord(error, location: "users table, key \(ip)"))
    }
}

/// Reads the fields of a users-table value without decoding it (``RecordCodec/peekSessionValueFields(_:checkingRules:)``:
/// every field is checked as a decode checks it, unless `checkingRules` is `false`), naming its place when it is
/// corrupt.
func peekStoredSessionFields(
    _ value: UnsafeRawBufferPointer,
    ip: IPAddress,
    checkingRules: Bool = true
) throws(SessionStoreError) -> RecordCodec.SessionValueFields {
    do throws(CorruptRecordError) {
        return try RecordCodec.peekSessionValueFields(value, checkingRules: checkingRules)
    } catch {
        throw SessionStoreError(.corruptRecord(error, location: "users table, key \(ip)"))
    }
}

/// Decodes one log entry, naming its place when it is corrupt.
package func decodeLogEntry(
    key: UnsafeRawBufferPointer,
    value: UnsafeRawBufferPointer
) throws(SessionStoreError) -> LogRecord {
    guard let sequence = StoreLayout.decodeSequenceKey(key) else {
        throw SessionStoreError(.corruptMetadata(key: "log", detail: "a log key of \(key.count) bytes, expected 8"))
    }
    let record: LogRecord
    do throws(CorruptRecordError) {
        record = try RecordCodec.decodeRecord(value)
    } catch {
        throw SessionStoreError(.corruptRecord(error, location: "log sequence \(sequence)"))
    }
    guard record.sequence == sequence else {
        throw SessionStoreError(
            .corruptMetadata(key: "log", detail: "the record at key \(sequence) says sequence \(record.sequence)")
        )
    }
    return record
}
