extension Environment {
    /// Environment flags, as passed to `mdb_env_open`; raw values are LMDB's `MDB_*` constants.
    ///
    /// ``Environment/init(path:configuration:)`` derives them from ``Configuration``; read them back
    /// with ``Environment/flags``.
    public struct Flags: OptionSet, Sendable, Hashable {
        /// The `MDB_*` bits.
        public let rawValue: UInt32

        /// Wraps `MDB_*` environment flag bits.
        ///
        /// - Parameter rawValue: A bitwise OR of `MDB_*` environment flags.
        public init(rawValue: UInt32) {
            self.rawValue = rawValue
        }

        /// `MDB_NOSUBDIR`: the path names the data file itself; the lock file is the path with
        /// `-lock` appended.
        public static let noSubdirectory = Flags(rawValue: 0x4000)
        /// `MDB_RDONLY`: open the environment read-only; no write transaction can begin.
        public static let readOnly = Flags(rawValue: 0x20000)
        /// `MDB_WRITEMAP`: write through a writable memory map; faster for databases that fit in RAM,
        /// but stray pointer writes can corrupt the database.
        public static let writeMap = Flags(rawValue: 0x80000)
        /// `MDB_NOMETASYNC`: flush data but not the meta page at commit; a system crash may undo the
        /// last committed transaction, integrity is kept.
        public static let noMetaSync = Flags(rawValue: 0x40000)
        /// `MDB_NOSYNC`: do not flush at commit; a system crash may undo the last transactions.
        public static let noSync = Flags(rawValue: 0x10000)
        /// `MDB_MAPASYNC`: with ``writeMap``, flush asynchronously.
        public static let mapAsync = Flags(rawValue: 0x100000)
        /// `MDB_NOTLS`: tie reader slots to transactions instead of threads. Always set by this
        /// wrapper, because Swift code moves between threads.
        public static let noTLS = Flags(rawValue: 0x200000)
        /// `MDB_NOLOCK`: no locking at all; the caller must serialize every access.
        public static let noLock = Flags(rawValue: 0x400000)
        /// `MDB_NORDAHEAD`: turn off OS read-ahead, which helps random reads of a database larger
        /// than RAM.
        public static let noReadAhead = Flags(rawValue: 0x800000)
        /// `MDB_NOMEMINIT`: do not zero malloc'd pages before writing them.
        public static let noMemoryInit = Flags(rawValue: 0x100_0000)
    }
}
