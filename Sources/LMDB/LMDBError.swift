import CLMDB

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An error returned by LMDB, or by this wrapper when it refuses an operation before calling LMDB.
///
/// The error carries LMDB's return ``code``, the ``operation`` that failed (the C function, with the
/// path or argument that matters), and LMDB's own ``message``. Its ``description`` adds a hint a
/// person can act on for the errors an operator meets in the field (disk full, permissions, reader
/// slots, version or flag mismatches).
///
/// Compare codes, not messages:
///
/// ```swift
/// do {
///     try env.write { txn in try txn.put(key: key, value: value, in: db, flags: .append) }
/// } catch let error as LMDBError where error.code == .keyExists {
///     // out-of-order append
/// }
/// ```
public struct LMDBError: Error, Sendable, Equatable, CustomStringConvertible {
    /// An LMDB return code: one of LMDB's own `MDB_*` error codes or a system `errno` value.
    ///
    /// The set is open: any nonzero return code of LMDB can be represented, so new codes of a newer
    /// LMDB (or unusual `errno` values) are carried faithfully even without a named constant.
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        /// The C return code (`MDB_*` constant or `errno` value).
        public var rawValue: Int32

        /// Wraps a C return code.
        ///
        /// - Parameter rawValue: An `MDB_*` error constant or an `errno` value.
        public init(rawValue: Int32) {
            self.rawValue = rawValue
        }

        /// `MDB_KEYEXIST`: the key/data pair already exists (a `noOverwrite` or `noDuplicateData`
        /// put), or an `append` put was given a key that does not sort after the last one.
        public static let keyExists = Code(rawValue: -30799)
        /// `MDB_NOTFOUND`: no matching key/data pair. The wrapper returns `nil` or `false` for it
        /// where "not found" is an ordinary answer.
        public static let notFound = Code(rawValue: -30798)
        /// `MDB_PAGE_NOTFOUND`: a requested page was not found; usually corruption.
        public static let pageNotFound = Code(rawValue: -30797)
        /// `MDB_CORRUPTED`: a page has an invalid type; the database is damaged.
        public static let corrupted = Code(rawValue: -30796)
        /// `MDB_PANIC`: a fatal error happened earlier (for example a failed commit write) and the
        /// environment must be closed and reopened.
        public static let panic = Code(rawValue: -30795)
        /// `MDB_VERSION_MISMATCH`: the environment was created by an LMDB with another data format.
        public static let versionMismatch = Code(rawValue: -30794)
        /// `MDB_INVALID`: the file is not an LMDB file, or its header is damaged.
        public static let invalid = Code(rawValue: -30793)
        /// `MDB_MAP_FULL`: the memory map is full. ``Environment/write(_:)`` grows the map and retries,
        /// so this code only escapes when growing itself failed.
        public static let mapFull = Code(rawValue: -30792)
        /// `MDB_DBS_FULL`: more named databases than ``Environment/Configuration/maxDatabases``.
        public static let databasesFull = Code(rawValue: -30791)
        /// `MDB_READERS_FULL`: every reader slot is taken (see ``Environment/Configuration/maxReaders``).
        public static let readersFull = Code(rawValue: -30790)
        /// `MDB_TLS_FULL`: too many thread-local keys; cannot happen with `MDB_NOTLS`, which this
        /// wrapper always uses.
        public static let tlsFull = Code(rawValue: -30789)
        /// `MDB_TXN_FULL`: the write transaction has too many dirty pages; split it into smaller ones.
        public static let transactionFull = Code(rawValue: -30788)
        /// `MDB_CURSOR_FULL`: the cursor stack is too deep (internal error).
        public static let cursorFull = Code(rawValue: -30787)
        /// `MDB_PAGE_FULL`: a page has no more space (internal error).
        public static let pageFull = Code(rawValue: -30786)
        /// `MDB_MAP_RESIZED`: another process grew the map beyond this process's mapping. The wrapper
        /// adopts the new size and retries, except inside a nested transaction on the same thread.
        public static let mapResized = Code(rawValue: -30785)
        /// `MDB_INCOMPATIBLE`: the operation does not fit the database's flags (for example a
        /// duplicate count on a database without `duplicateSort`), or the database was opened with
        /// other flags than those it was created with.
        public static let incompatible = Code(rawValue: -30784)
        /// `MDB_BAD_RSLOT`: invalid reuse of a reader lock-table slot.
        public static let badReaderSlot = Code(rawValue: -30783)
        /// `MDB_BAD_TXN`: the transaction must abort, has a child, or is invalid (for example an
        /// earlier operation in it failed).
        public static let badTransaction = Code(rawValue: -30782)
        /// `MDB_BAD_VALSIZE`: a key or value has an unsupported size (empty key, key longer than
        /// the maximum key size, or a wrong size for `integerKey` / `duplicateFixed`).
        public static let badValueSize = Code(rawValue: -30781)
        /// `MDB_BAD_DBI`: the database handle was closed or changed unexpectedly.
        public static let badDBI = Code(rawValue: -30780)

        /// `ENOSPC`: no space left on the device holding the database.
        public static let diskFull = Code(rawValue: ENOSPC)
        /// `EACCES`: permission denied by the file system, or a write attempted in a read-only
        /// environment or transaction.
        public static let permissionDenied = Code(rawValue: EACCES)
        /// `ENOENT`: the file, or the directory that should hold it, does not exist.
        public static let noSuchFile = Code(rawValue: ENOENT)
        /// `EINVAL`: an invalid argument, such as a database handle of another environment, or a
        /// configuration value out of range.
        public static let invalidArgument = Code(rawValue: EINVAL)
        /// `EDQUOT`: the user's disk quota is exhausted.
        public static let quotaExceeded = Code(rawValue: EDQUOT)
        /// `EROFS`: the file system is mounted read-only.
        public static let readOnlyFileSystem = Code(rawValue: EROFS)
        /// `EDEADLK`: refused by this wrapper because the operation would deadlock: a write, a
        /// copy, or opening a new database was started inside another transaction's body on the
        /// same thread.
        public static let wouldDeadlock = Code(rawValue: EDEADLK)

        /// The name of the constant for known codes (`"mapFull"`), else the number.
        public var description: String {
            Self.names[self] ?? "code \(rawValue)"
        }

        private static let names: [Code: String] = [
            .keyExists: "keyExists", .notFound: "notFound", .pageNotFound: "pageNotFound",
            .corrupted: "corrupted", .panic: "panic", .versionMismatch: "versionMismatch",
            .invalid: "invalid", .mapFull: "mapFull", .databasesFull: "databasesFull",
            .readersFull: "readersFull", .tlsFull: "tlsFull", .transactionFull: "transactionFull",
            .cursorFull: "cursorFull", .pageFull: "pageFull", .mapResized: "mapResized",
            .incompatible: "incompatible", .badReaderSlot: "badReaderSlot",
            .badTransaction: "badTransaction", .badValueSize: "badValueSize", .badDBI: "badDBI",
            .diskFull: "diskFull", .permissionDenied: "permissionDenied", .noSuchFile: "noSuchFile",
            .invalidArgument: "invalidArgument", .quotaExceeded: "quotaExceeded",
            .readOnlyFileSystem: "readOnlyFileSystem", .wouldDeadlock: "wouldDeadlock",
        ]
    }

    /// What went wrong, as LMDB's return code.
    public let code: Code

    /// The operation that failed: the C function, with the path or argument that matters, such as
    /// `"mdb_put"` or `"mdb_env_open(/var/lib/tandem/store.mdb)"`.
    public let operation: String

    /// Creates an error.
    ///
    /// - Parameters:
    ///   - code: The LMDB or `errno` code.
    ///   - operation: The operation that failed, named so a person can find it.
    public init(code: Code, operation: String) {
        self.code = code
        self.operation = operation
    }

    /// LMDB's own message for ``code``, from `mdb_strerror` (which falls back to `strerror` for
    /// `errno` values).
    public var message: String {
        String(cString: mdb_strerror(code.rawValue))
    }

    /// `"<operation>: <message> (code N)"`, followed by a hint for errors a person can fix.
    public var description: String {
        let base = "\(operation): \(message) (code \(code.rawValue))"
        guard let hint else { return base }
        return "\(base). \(hint)"
    }

    /// A suggestion of what to do, for the errors an operator or an embedding engineer can fix.
    var hint: String? {
        switch code {
        case .diskFull, .quotaExceeded:
            "The file system holding the database is out of space or quota: free space or move the "
                + "database to a larger volume, then retry."
        case .permissionDenied:
            "Check that this process may read and write the data file and its lock file (owner and "
                + "mode), and that no write is attempted in an environment opened read-only."
        case .readOnlyFileSystem:
            "The file system is mounted read-only: open the environment with readOnly, or remount."
        case .noSuchFile:
            "The directory that holds the database must exist before the environment is opened."
        case .readersFull:
            "Every reader slot is in use: finish long-running read transactions, call "
                + "Environment.clearStaleReaders() to free slots of dead processes, or raise "
                + "Configuration.maxReaders in every process that opens the file."
        case .versionMismatch:
            "The file was created by an LMDB with another data format version: open it with that "
                + "version, or dump it there and load the dump here."
        case .incompatible:
            "The database exists with other flags than those asked for (such as duplicateSort or "
                + "integerKey), or the operation needs a flag the database lacks: open it with the flags "
                + "it was created with."
        case .invalid, .corrupted, .pageNotFound:
            "The file is not an LMDB environment or is damaged: restore it from a copy."
        case .mapResized:
            "Another process grew the map: end the enclosing transaction on this thread and retry."
        case .wouldDeadlock:
            "Finish the enclosing read or write body on this thread first; do not nest a write, a copy "
                + "or the first opening of a database inside another transaction."
        case .transactionFull:
            "The write transaction touches too many pages: split it into smaller transactions."
        default:
            nil
        }
    }
}
