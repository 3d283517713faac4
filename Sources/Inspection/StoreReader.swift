import LMDB
import SessionStore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A store opened read-only, for the operator's tools: the log, the users table and the metadata of a store
/// that a running device may have open, or of a copy.
///
/// Every read is an LMDB read transaction: it never takes the writer's lock, so it never blocks or slows the
/// device that owns the store.
///
/// ```swift
/// let reader = try StoreReader(path: "/var/lib/portal/tandem")
/// try reader.forEachRecord(from: 1) { record in print(record); return true }
/// let online = try reader.onlineSessions()   // the users table now: its checkpoint plus the log after it
/// ```
public final class StoreReader: Sendable {
    /// The store's directory.
    public let path: String
    let files: StoreFiles

    /// Opens the store in `path` read-only.
    ///
    /// - Parameter path: the store's directory.
    /// - Throws: ``SessionStore/SessionStoreError`` of kind ``SessionStore/SessionStoreError/Kind/notAStore`` when
    ///   `path` does not exist or holds something else, ``SessionStore/SessionStoreError/Kind/unsupportedFormat``
    ///   when a newer Tandem wrote it, and ``SessionStore/SessionStoreError/Kind/storage`` when its files cannot be
    ///   read.
    public init(path: String) throws(SessionStoreError) {
        self.path = path
        var info = stat()
        guard stat(path, &info) == 0 else {
            throw SessionStoreError(.notAStore(path: path, detail: "it does not exist; pass the store's directory"))
        }
        guard (info.st_mode & S_IFMT) == S_IFDIR else {
            throw SessionStoreError(.notAStore(path: path, detail: "it is a file; pass the store's directory"))
        }
        for file in [StoreLayout.logFile, StoreLayout.usersFile] where access(path + "/" + file, R_OK) != 0 {
            throw SessionStoreError(
                .notAStore(path: path, detail: "\(file) is missing or unreadable: this is not a Tandem store")
            )
        }
        do {
            files = try StoreFiles(path: path, durability: .syncEveryCommit, initialMapSize: 1 << 20, readOnly: true)
        } catch let error as LMDBError where error.code == .notFound {
            throw SessionStoreError(.notAStore(path: path, detail: "its files hold no Tandem databases"))
        } catch {
            throw SessionStoreError.storage(error, doing: "opening the store at \(path) read-only")
        }
        let format = try identity.format
        guard format <= StoreLayout.formatVersion else {
            throw SessionStoreError(
                .unsupportedFormat(path: path, found: format, supported: StoreLayout.formatVersion)
            )
        }
    }

    /// Who the store belongs to.
    public struct Identity: Sendable, Hashable {
        /// The store format version.
        public var format: UInt32
        /// The device's ID.
        public var deviceID: DeviceID
        /// The portal group it backs up.
        public var portalGroup: PortalGroup
        /// The device's term.
        public var term: UInt32
        /// The takeovers it knows.
        public var takeovers: Takeovers
    }

    /// The store's identity, read from its metadata.
    public var identity: Identity {
        get throws(SessionStoreError) {
            try read("reading the store's identity") {
                try files.logEnvironment.read { txn in
                    let format = try txn.metaUInt64(StoreLayout.MetaKey.format, in: files.logMeta) ?? 0
                    let stored = try StoreIdentity.read(txn, meta: files.logMeta)
                    return Identity(
                        format: UInt32(truncatingIfNeeded: format),
                        deviceID: stored.deviceID,
                        portalGroup: stored.portalGroup,
                        term: stored.term,
                        takeovers: stored.takeovers
                    )
                }
            }
        }
    }

    /// Where the log and the table stand.
    public struct Positions: Sendable, Hashable {
        /// The sequence of the last record logged.
        public var lastSequence: UInt64
        /// The first record the log still holds (`nil` when it is empty).
        public var firstRetained: UInt64?
        /// The log position the users table on disk reflects.
        public var checkpointSequence: UInt64
        /// The holds on the log (a peer that has not acknowledged, say): name → first sequence kept.
        public var holds: [String: UInt64]
        /// Holds dropped because the log passed its quota.
        public var droppedHolds: [String: UInt64]
        /// How far this device applied each peer's stream.
        public var peerApplied: [DeviceID: UInt64]
        /// Users in the table on disk (at the checkpoint).
        public var checkpointedUsers: Int
        /// The bytes of the log's and the users table's files.
        public var logFileBytes: Int
        public var usersFileBytes: Int
    }

    /// Where the log and the table stand.
    public func positions() throws(SessionStoreError) -> Positions {
        try read("reading the store's positions") {
            let (checkpoint, users) = try files.usersEnvironment.read { txn in
                (
                    try txn.metaUInt64(StoreLayout.MetaKey.checkpointSequence, in: files.usersMeta) ?? 0,
                    try txn.statistics(files.users).entries
                )
            }
            return try files.logEnvironment.read { txn in
                let meta = files.logMeta
                var applied: [DeviceID: UInt64] = [:]
                for (name, value) in try txn.metaUInt64s(prefix: StoreLayout.MetaKey.appliedPrefix, in: meta) {
                    if let device = UInt8(name).flatMap({ DeviceID(rawValue: $0) }) { applied[device] = value }
                }
                return Positions(
                    lastSequence: try txn.metaUInt64(StoreLayout.MetaKey.lastSequence, in: meta) ?? 0,
                    firstRetained: try files.firstLogSequence(in: txn),
                    checkpointSequence: checkpoint,
                    holds: Dictionary(
                        try txn.metaUInt64s(prefix: StoreLayout.MetaKey.holdPrefix, in: meta),
                        uniquingKeysWith: { $1 }
                    ),
                    droppedHolds: Dictionary(
                        try txn.metaUInt64s(prefix: StoreLayout.MetaKey.droppedHoldPrefix, in: meta),
                        uniquingKeysWith: { $1 }
                    ),
                    peerApplied: applied,
                    checkpointedUsers: users,
                    logFileBytes: fileBytes(StoreLayout.logFile),
                    usersFileBytes: fileBytes(StoreLayout.usersFile)
                )
            }
        }
    }

    private func fileBytes(_ file: String) -> Int {
        var info = stat()
        return stat(path + "/" + file, &info) == 0 ? Int(info.st_size) : 0
    }

    // MARK: The log

    /// Calls `body` with each record from sequence `first` through `last`, in order, from one snapshot of the
    /// log; `body` returns `false` to stop.
    ///
    /// - Throws: ``SessionStore/SessionStoreError`` of kind ``SessionStore/SessionStoreError/Kind/corruptRecord`` at a
    ///   damaged record (see ``forEachRawRecord(from:through:_:)`` to go on past one), or what `body` throws.
    public func forEachRecord(
        from first: UInt64 = 0,
        through last: UInt64 = .max,
        _ body: (LogRecord) throws -> Bool
    ) throws {
        try forEachRawRecord(from: first, through: last) { key, value in
            try body(try decodeLogEntry(key: key, value: value))
        }
    }

    /// Calls `body` with the key and bytes of each log entry from `first` through `last`, undecoded.
    public func forEachRawRecord(
        from first: UInt64 = 0,
        through last: UInt64 = .max,
        _ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> Bool
    ) throws {
        do {
            try files.logEnvironment.read { txn in
                try txn.withCursor(files.log) { cursor in
                    var entry = try withUnsafeBytes(of: StoreLayout.sequenceKey(first)) { try cursor.seek(atLeast: $0) }
                    while let (key, value) = entry {
                        if let sequence = StoreLayout.decodeSequenceKey(key), sequence > last { return }
                        guard try body(key, value) else { return }
                        entry = try cursor.move(.next)
                    }
                }
            }
        } catch let error as LMDBError {
            throw SessionStoreError.storage(error, doing: "reading the log")
        }
    }

    // MARK: The users table

    /// Calls `body` with each session of the users table on disk (as of its checkpoint), in address order.
    public func forEachCheckpointedSession(_ body: (Session) throws -> Void) throws {
        do {
            try files.usersEnvironment.read { txn in
                try txn.withCursor(files.users) { cursor in
                    var entry = try cursor.move(.first)
                    while let (key, value) = entry {
                        guard key.count == 16 else {
                            throw SessionStoreError(
                                .corruptMetadata(key: "users", detail: "a key of \(key.count) bytes, expected 16")
                            )
                        }
                        try body(try decodeStoredSession(value, ip: IPAddress(bytes: key)))
                        entry = try cursor.move(.next)
                    }
                }
            }
        } catch let error as LMDBError {
            throw SessionStoreError.storage(error, doing: "reading the users table")
        }
    }

    /// The users online now: the table's checkpoint with the log after it replayed, as the device itself
    /// would rebuild it, in address order.
    ///
    /// The log is read in a transaction begun before the table's: the log's records are deleted only after a
    /// checkpoint that holds them has committed, so whatever checkpoint the table's transaction then sees, the
    /// log's snapshot still holds every record after it, even on a running device that checkpoints meanwhile.
    ///
    /// - Throws: ``SessionStore/SessionStoreError`` of kind ``SessionStore/SessionStoreError/Kind/logGap`` when the log
    ///   does not continue the checkpoint, and the errors of reading.
    public func onlineSessions() throws(SessionStoreError) -> [Session] {
        try read("reading the users table") {
            try files.logEnvironment.read { logTxn in
                var table: [IPAddress: Session] = [:]
                let checkpoint = try files.usersEnvironment.read { txn in
                    try txn.withCursor(files.users) { cursor in
                        var entry = try cursor.move(.first)
                        while let (key, value) = entry, key.count == 16 {
                            let ip = IPAddress(bytes: key)
                            table[ip] = try decodeStoredSession(value, ip: ip)
                            entry = try cursor.move(.next)
                        }
                    }
                    return try txn.metaUInt64(StoreLayout.MetaKey.checkpointSequence, in: files.usersMeta) ?? 0
                }
                let expected = try files.readLog(from: checkpoint + 1, in: logTxn) { record in
                    if let ip = record.event.address,
                        let (_, change) = ApplyRule.change(for: record.event, current: table[ip])
                    {
                        table[ip] = change.session
                    }
                }
                let last = try logTxn.metaUInt64(StoreLayout.MetaKey.lastSequence, in: files.logMeta) ?? 0
                if last >= expected, expected == checkpoint + 1 {
                    throw SessionStoreError(.logGap(checkpoint: checkpoint, firstRetained: last))
                }
                return table.values.sorted { $0.ip < $1.ip }
            }
        }
    }

    private func read<T>(_ doing: String, _ body: () throws -> T) throws(SessionStoreError) -> T {
        do {
            return try body()
        } catch let error as SessionStoreError {
            throw error
        } catch {
            throw SessionStoreError.storage(error, doing: doing)
        }
    }
}
