extension Environment {
    /// How hard a commit works to survive a crash of the operating system or the machine.
    ///
    /// A crash of the process alone never loses a committed transaction: the data is in the
    /// operating system's page cache. These options trade what a *system* crash may lose for commit
    /// speed (an fsync costs roughly 100 µs to several ms).
    public enum Durability: Sendable, Hashable {
        /// Flush data and meta page at every commit (`fsync`/`fdatasync`). A committed transaction
        /// survives a system crash. The slowest option, and the default.
        case syncEveryCommit
        /// Flush data at every commit but not the meta page (`MDB_NOMETASYNC`). A system crash may undo
        /// the last committed transaction; the database stays consistent (atomicity, consistency and
        /// isolation are kept, durability of the last commit is not).
        case noMetaSync
        /// Do not flush at commit (`MDB_NOSYNC`); the operating system writes pages back when it likes,
        /// or when ``Environment/sync(force:)`` is called. A system crash may undo the transactions
        /// committed since the last flush. On a file system that keeps write order the database stays
        /// consistent; on one that does not, a system crash can corrupt it.
        case noSync
    }

    /// How an environment is opened. Every default is stated where it is set.
    public struct Configuration: Sendable, Hashable {
        /// The most named databases the environment can hold (`mdb_env_set_maxdbs`). Default 16.
        public var maxDatabases: Int = 16

        /// Reader slots in the lock file: the most read transactions open at once across all
        /// processes (`mdb_env_set_maxreaders`). Default 126, LMDB's own default. Every process
        /// opening the file should use the same value.
        public var maxReaders: Int = 126

        /// The memory map size at open, in bytes; rounded up to a multiple of the page size. The map
        /// grows by itself as data is written (see ``Environment/write(_:)``), so this only sets the
        /// starting point. Default 1 GiB: on Linux it is address space, not memory or disk. When the
        /// file was already grown larger, the larger size is used.
        public var initialMapSize: Int = 1 << 30

        /// What a commit flushes. Default ``Durability/syncEveryCommit``.
        public var durability: Durability = .syncEveryCommit

        /// Open read-only (`MDB_RDONLY`): the file must exist, writes fail with
        /// ``LMDBError/Code/permissionDenied``. Default `false`.
        public var readOnly: Bool = false

        /// When `false` (the default), the path is the data file itself and the lock file is the path
        /// with `-lock` appended (`MDB_NOSUBDIR`). When `true`, the path is an existing directory that
        /// holds `data.mdb` and `lock.mdb`.
        public var isDirectory: Bool = false

        /// Turn off the operating system's read-ahead (`MDB_NORDAHEAD`), which helps random reads of
        /// a database larger than RAM. Default `true`.
        public var noReadAhead: Bool = true

        /// Permissions of files the environment creates, before the umask. Default `0o644`.
        public var fileMode: UInt32 = 0o644

        /// A configuration with every default.
        public init() {}

        /// The flags `mdb_env_open` receives for this configuration; ``Flags/noTLS`` is always set.
        var flags: Flags {
            var flags: Flags = [.noTLS]
            switch durability {
            case .syncEveryCommit: break
            case .noMetaSync: flags.insert(.noMetaSync)
            case .noSync: flags.insert(.noSync)
            }
            if readOnly { flags.insert(.readOnly) }
            if !isDirectory { flags.insert(.noSubdirectory) }
            if noReadAhead { flags.insert(.noReadAhead) }
            return flags
        }
    }
}
