import CLMDB
import Locking
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An open LMDB environment: one memory-mapped file holding up to
/// ``Configuration/maxDatabases`` named databases.
///
/// Share one instance across the process; it is thread-safe. Read with ``read(_:)`` from any
/// number of threads at once; write with ``write(_:)``, which runs one body at a time. Both are
/// synchronous and keep the transaction inside the body, so a transaction never hops threads.
///
/// The memory map grows by itself: a valid write never fails with ``LMDBError/Code/mapFull``.
///
/// ```swift
/// let env = try Environment(path: "/var/lib/tandem/store.mdb")
/// let users = try env.openDatabase("users", flags: .create)
/// try env.write { txn in try txn.put(key, value, in: users) }
/// let value = try env.read { txn in try txn.value(forKey: key, in: users) }
/// ```
///
/// Open one `Environment` per file per process: LMDB does not support two in one process.
/// Transactions must not be nested on one thread: do not call ``write(_:)``, ``copy(to:compact:)``
/// or a first ``openDatabase(_:flags:)`` from inside a read or write body (they throw
/// ``LMDBError/Code/wouldDeadlock``). Reads inside a read or write body are allowed.
public final class Environment: @unchecked Sendable {
    // Why `@unchecked Sendable` is safe:
    // - `environment` is an `MDB_env *` opened with MDB_NOTLS, whose read transactions may begin on
    //   any thread; write transactions (and `mdb_dbi_open`) are serialized by `writerLock`;
    //   `mdb_env_set_mapsize` runs only under `mapLock` held exclusively, while every transaction of
    //   this process holds it shared for its whole life, so no thread reads the map while it moves.
    // - `mapLock`, `writerLock`, `depthKey` and `mapFull` are created in `init`, never reassigned, and
    //   destroyed only in `deinit`, when no other reference (hence no transaction) exists.
    // - `mapFull` is read and written only by the thread holding `writerLock`.
    // - `databases` is guarded by its own lock, `unmapped` is atomic; every other stored property is
    //   an immutable value.

    /// The path the environment was opened with: the data file, or with
    /// ``Configuration/isDirectory`` the directory holding it.
    public let path: String

    /// The configuration the environment was opened with.
    public let configuration: Configuration

    /// The `MDB_env *`.
    let environment: OpaquePointer
    /// The database page size in bytes.
    let pageSize: Int
    /// Held shared by every transaction for its whole life, exclusively while the map is resized.
    let mapLock: UnsafeMutablePointer<pthread_rwlock_t>
    /// Serializes write transactions and `mdb_dbi_open`.
    let writerLock: UnsafeMutablePointer<pthread_mutex_t>
    /// Per thread: how many of this environment's transactions the thread has open.
    let depthKey: pthread_key_t
    /// Set when an operation of the current write transaction hit `MDB_MAP_FULL`; the environment's
    /// LMDB user context points here.
    let mapFull: UnsafeMutablePointer<Bool>
    /// Opened databases by name.
    private let databases = Locked<[String?: Database]>([:])
    /// Set when a failed `mdb_env_set_mapsize` left the environment without a map.
    let unmapped = Atomic<Bool>(false)

    /// Opens (and, unless read-only, creates) an environment.
    ///
    /// - Parameters:
    ///   - path: The data file; or, with ``Configuration/isDirectory``, an existing directory.
    ///   - configuration: How to open it.
    /// - Throws: ``LMDBError`` whose ``LMDBError/operation`` names the path:
    ///   ``LMDBError/Code/noSuchFile`` when the directory (or, read-only, the file) is missing,
    ///   ``LMDBError/Code/permissionDenied``, ``LMDBError/Code/versionMismatch``,
    ///   ``LMDBError/Code/invalid`` for a file that is not LMDB's, or
    ///   ``LMDBError/Code/invalidArgument`` for a configuration value out of range.
    public init(path: String, configuration: Configuration = .init()) throws(LMDBError) {
        try Self.validate(configuration)
        var created: OpaquePointer?
        try check(mdb_env_create(&created), "mdb_env_create")
        let environment = created!
        var stat = MDB_stat()
        do throws(LMDBError) {
            try check(
                mdb_env_set_maxdbs(environment, MDB_dbi(configuration.maxDatabases)),
                "mdb_env_set_maxdbs(\(configuration.maxDatabases))"
            )
            try check(
                mdb_env_set_maxreaders(environment, UInt32(configuration.maxReaders)),
                "mdb_env_set_maxreaders(\(configuration.maxReaders))"
            )
            let mapSize = Self.roundedUp(configuration.initialMapSize, to: Int(sysconf(Int32(_SC_PAGESIZE))))
            try check(mdb_env_set_mapsize(environment, mapSize), "mdb_env_set_mapsize(\(mapSize))")
            try check(
                mdb_env_open(environment, path, configuration.flags.rawValue, mdb_mode_t(configuration.fileMode)),
                "mdb_env_open(\(path))"
            )
            try check(mdb_env_stat(environment, &stat), "mdb_env_stat(\(path))")
        } catch {
            mdb_env_close(environment)
            throw error
        }

        self.path = path
        self.configuration = configuration
        self.environment = environment
        self.pageSize = Int(stat.ms_psize)

        mapLock = .allocate(capacity: 1)
        var attributes = pthread_rwlockattr_t()
        pthread_rwlockattr_init(&attributes)
        #if canImport(Glibc)
        // Writer preference, so a resize is not starved by a steady stream of readers. Nested reads on
        // one thread do not take the lock twice (see `acquireShared`), so this cannot self-deadlock.
        pthread_rwlockattr_setkind_np(&attributes, Int32(PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP))
        #endif
        pthread_rwlock_init(mapLock, &attributes)
        pthread_rwlockattr_destroy(&attributes)

        writerLock = .allocate(capacity: 1)
        pthread_mutex_init(writerLock, nil)

        var key = pthread_key_t()
        let keyStatus = pthread_key_create(&key, nil)
        precondition(keyStatus == 0, "pthread_key_create failed (\(keyStatus)): too many thread-specific keys")
        depthKey = key

        mapFull = .allocate(capacity: 1)
        mapFull.initialize(to: false)
        _ = mdb_env_set_userctx(environment, mapFull)  // fails only for a null environment
    }

    deinit {
        mdb_env_close(environment)
        pthread_rwlock_destroy(mapLock)
        mapLock.deallocate()
        pthread_mutex_destroy(writerLock)
        writerLock.deallocate()
        pthread_key_delete(depthKey)
        mapFull.deinitialize(count: 1)
        mapFull.deallocate()
    }

    /// Opens a database, creating it when `flags` has ``DatabaseFlags/create`` and the environment is
    /// not read-only. Handles are cached by name: later calls return the same ``Database``.
    ///
    /// The database is opened in a short transaction of its own (a write transaction, or a read
    /// transaction in a read-only environment). Open databases up front, before writing: the first
    /// opening of a name cannot happen inside a read or write body.
    ///
    /// - Parameters:
    ///   - name: The database's name, or `nil` for the unnamed main database.
    ///   - flags: The flags it is (or is to be) created with; the same every time, apart from
    ///     ``DatabaseFlags/create``.
    /// - Returns: The database handle.
    /// - Throws: ``LMDBError``: ``LMDBError/Code/notFound`` when it does not exist and is not to be
    ///   created, ``LMDBError/Code/incompatible`` when it exists with other flags,
    ///   ``LMDBError/Code/databasesFull`` past ``Configuration/maxDatabases``,
    ///   ``LMDBError/Code/wouldDeadlock`` for a first opening inside a transaction body.
    public func openDatabase(_ name: String?, flags: DatabaseFlags = []) throws(LMDBError) -> Database {
        let wanted = flags.subtracting(.create)
        if let database = try cachedDatabase(name, wanted) { return database }
        // Opening takes `writerLock`, which a thread inside a transaction must not wait for.
        guard transactionDepth == 0 else {
            throw LMDBError(code: .wouldDeadlock, operation: "openDatabase(\(name ?? "main")) inside a transaction")
        }
        if configuration.readOnly {
            return try openDatabaseReadOnly(name, wanted)
        }
        let openFlags = flags.contains(.create) ? wanted.union(.create) : wanted
        let database: Database
        do {
            database = try write { txn throws(LMDBError) -> Database in
                if let database = try cachedDatabase(name, wanted) { return database }
                return try Self.open(name, openFlags, wanted, in: txn.handle)
            }
        } catch let error as LMDBError {
            throw error
        } catch {
            preconditionFailure("openDatabase's body throws only LMDBError, got \(error)")
        }
        return remember(database)
    }

    /// Runs `body` in a read-only transaction, a consistent snapshot of the last commit, and aborts
    /// it afterwards.
    ///
    /// Any number of reads run at once, on any threads, beside the writer. Keep bodies short: a
    /// reader holds its snapshot's pages (the file grows while old snapshots are read), and a map
    /// resize waits for every running body.
    ///
    /// - Parameter body: Reads through the transaction; must not let pointers escape.
    /// - Returns: What `body` returns.
    /// - Throws: ``LMDBError`` from `mdb_txn_begin` (``LMDBError/Code/readersFull`` when every reader
    ///   slot is taken), or what `body` throws.
    public func read<R>(_ body: (borrowing ReadTransaction) throws -> R) throws -> R {
        let txn = ReadTransaction(handle: try beginTransaction(readOnly: true))
        let outcome = Result { () throws -> R in try body(txn) }
        txn.abort()
        releaseShared()
        return try outcome.get()
    }

    /// Runs `body` in the write transaction: commits when it returns, aborts and rethrows when it
    /// throws (the body's own error, the first one thrown).
    ///
    /// Writers are serialized: one body runs at a time, and the call blocks until it is its turn.
    /// Call it from a thread that may block (a dedicated writer thread or executor), not from a
    /// cooperative-pool task.
    ///
    /// **The body may run more than once.** When the memory map is full (any put, reserve, delete,
    /// or the commit returns `MDB_MAP_FULL`, even if the body catches that error), the transaction is
    /// aborted, the map doubles, and the body runs again from the start in a new transaction. The map
    /// also doubles before a transaction begins when more than three quarters of it is in use. So
    /// keep side effects (counters, sends, logging of "done") out of the body and act on its result.
    ///
    /// - Parameter body: Writes through the transaction; must not let pointers escape.
    /// - Returns: What `body` returns, after the commit succeeded (discardable, since bodies often end
    ///   with a ``WriteTransaction/put(_:_:in:flags:)`` whose `Bool` is of no interest).
    /// - Throws: What `body` throws; or ``LMDBError`` from beginning or committing
    ///   (``LMDBError/Code/permissionDenied`` in a read-only environment,
    ///   ``LMDBError/Code/diskFull`` when the disk is full, ``LMDBError/Code/wouldDeadlock`` when
    ///   called inside a read or write body on the same thread).
    @discardableResult
    public func write<R>(_ body: (borrowing WriteTransaction) throws -> R) throws -> R {
        guard transactionDepth == 0 else {
            throw LMDBError(code: .wouldDeadlock, operation: "Environment.write inside a transaction")
        }
        pthread_mutex_lock(writerLock)
        defer { pthread_mutex_unlock(writerLock) }
        while true {
            let handle = try beginTransaction(readOnly: false)
            let info = unlockedInfo()
            if info.usedSize > info.mapSize / 4 * 3 {
                mdb_txn_abort(handle)
                releaseShared()
                try growMap(from: info.mapSize)
                continue
            }
            mapFull.pointee = false
            let txn = WriteTransaction(handle: handle)
            let outcome = Result { () throws -> R in try body(txn) }
            if mapFull.pointee {
                txn.abort()
                releaseShared()
                try growMap(from: info.mapSize)
                continue
            }
            guard case .success(let value) = outcome else {
                txn.abort()
                releaseShared()
                return try outcome.get()
            }
            let rc = txn.commit()
            releaseShared()
            if rc == MDB_MAP_FULL {
                try growMap(from: info.mapSize)
                continue
            }
            try check(rc, "mdb_txn_commit")
            return value
        }
    }

    /// Flushes written data to disk (`mdb_env_sync`). Needed only with ``Durability/noSync`` or
    /// ``Durability/noMetaSync``, to choose when the flush happens.
    ///
    /// - Parameter force: Flush even when the environment's durability says not to; without it, an
    ///   ``Durability/noSync`` environment is not flushed. Default `true`.
    /// - Throws: ``LMDBError``; ``LMDBError/Code/permissionDenied`` in a read-only environment.
    public func sync(force: Bool = true) throws(LMDBError) {
        acquireShared()
        defer { releaseShared() }
        try checkMapped()
        try check(mdb_env_sync(environment, force ? 1 : 0), "mdb_env_sync(\(path))")
    }

    /// The current size of the memory map in bytes; it grows as data is written.
    public var mapSize: Int {
        info().mapSize
    }

    /// The flags the environment was opened with (`mdb_env_get_flags`).
    public var flags: Flags {
        var flags: UInt32 = 0
        _ = mdb_env_get_flags(environment, &flags)  // fails only for a null environment
        return Flags(rawValue: flags)
    }

    /// The largest key, in bytes, LMDB accepts (`mdb_env_get_maxkeysize`); also the largest value
    /// in a ``DatabaseFlags/duplicateSort`` database.
    public var maxKeySize: Int {
        Int(mdb_env_get_maxkeysize(environment))
    }

    /// The state of the map and the reader table (`mdb_env_info`, `mdb_env_stat`).
    ///
    /// - Returns: Map size, last page and transaction, reader slots and page size; all zero but the
    ///   page size after a failed map resize left the environment unusable.
    public func info() -> Info {
        acquireShared()
        defer { releaseShared() }
        return unlockedInfo()
    }

    /// Writes a consistent copy of the environment to a new file (`mdb_env_copy2`), while readers
    /// and the writer go on.
    ///
    /// The copy is a snapshot of the last commit; it has no lock file. A map resize waits until the
    /// copy is done.
    ///
    /// - Parameters:
    ///   - path: The new data file, which must not exist; with ``Configuration/isDirectory``, an
    ///     existing empty directory that receives `data.mdb`.
    ///   - compact: Omit free pages and renumber the rest (`MDB_CP_COMPACT`): a smaller file, at
    ///     some CPU cost.
    /// - Throws: ``LMDBError`` naming the destination; `EEXIST` when it exists,
    ///   ``LMDBError/Code/wouldDeadlock`` inside a transaction body.
    public func copy(to path: String, compact: Bool) throws(LMDBError) {
        guard transactionDepth == 0 else {
            throw LMDBError(code: .wouldDeadlock, operation: "Environment.copy(to: \(path)) inside a transaction")
        }
        let flags = compact ? UInt32(MDB_CP_COMPACT) : 0
        while true {
            acquireShared()
            let rc = unmapped.load(ordering: .acquiring) ? MDB_PANIC : mdb_env_copy2(environment, path, flags)
            releaseShared()
            try checkMapped()
            if rc == MDB_MAP_RESIZED {
                // The copy's snapshot did not fit this process's map: LMDB had created the file only.
                unlink(configuration.isDirectory ? path + "/data.mdb" : path)
                try adoptMapSize()
                continue
            }
            try check(rc, "mdb_env_copy2(\(path))")
            return
        }
    }

    /// Frees the reader slots of processes that died while reading (`mdb_reader_check`).
    ///
    /// - Returns: The number of slots freed.
    /// - Throws: ``LMDBError``.
    public func clearStaleReaders() throws(LMDBError) -> Int {
        var dead: Int32 = 0
        try check(mdb_reader_check(environment, &dead), "mdb_reader_check(\(path))")
        return Int(dead)
    }

    // MARK: - Internals

    /// Records a `MDB_MAP_FULL` in `transaction` on its environment, so ``write(_:)`` grows the map
    /// and retries. Called on the writer's thread, which holds `writerLock`.
    static func noteMapFull(in transaction: OpaquePointer) {
        guard let environment = mdb_txn_env(transaction), let context = mdb_env_get_userctx(environment) else {
            return
        }
        context.assumingMemoryBound(to: Bool.self).pointee = true
    }

    /// `mdb_env_info` and the page size; the caller holds `mapLock`.
    func unlockedInfo() -> Info {
        var info = MDB_envinfo()
        if !unmapped.load(ordering: .acquiring) {
            _ = mdb_env_info(environment, &info)  // fails only for a null environment
        }
        return Info(
            mapSize: Int(info.me_mapsize),
            lastPageNumber: Int(info.me_last_pgno),
            lastTransactionID: Int(info.me_last_txnid),
            maxReaders: Int(info.me_maxreaders),
            numberOfReaders: Int(info.me_numreaders),
            pageSize: pageSize
        )
    }

    private func cachedDatabase(_ name: String?, _ wanted: DatabaseFlags) throws(LMDBError) -> Database? {
        guard let database = databases.withLock({ $0[name] }) else { return nil }
        guard database.flags == wanted else { throw Self.incompatible(name, database.flags, wanted) }
        return database
    }

    private func remember(_ database: Database) -> Database {
        databases.withLock { cache in
            if let existing = cache[database.name] { return existing }
            cache[database.name] = database
            return database
        }
    }

    private func openDatabaseReadOnly(_ name: String?, _ wanted: DatabaseFlags) throws(LMDBError) -> Database {
        // `mdb_dbi_open` must not run in two transactions at once.
        pthread_mutex_lock(writerLock)
        defer { pthread_mutex_unlock(writerLock) }
        if let database = try cachedDatabase(name, wanted) { return database }
        let txn = ReadTransaction(handle: try beginTransaction(readOnly: true))
        let database: Database
        do throws(LMDBError) {
            database = try Self.open(name, wanted, wanted, in: txn.handle)
        } catch {
            txn.abort()
            releaseShared()
            throw error
        }
        // A read transaction's database handles survive only its commit.
        let rc = txn.commit()
        releaseShared()
        try check(rc, "mdb_txn_commit(openDatabase \(name ?? "main"))")
        return remember(database)
    }

    /// `mdb_dbi_open` and a check of the database's stored flags against `wanted`.
    private static func open(
        _ name: String?,
        _ openFlags: DatabaseFlags,
        _ wanted: DatabaseFlags,
        in txn: OpaquePointer
    ) throws(LMDBError) -> Database {
        var dbi = MDB_dbi()
        try check(
            mdb_dbi_open(txn, name, openFlags.rawValue, &dbi),
            "mdb_dbi_open(\(name ?? "main"))",
            transaction: txn
        )
        var stored: UInt32 = 0
        try check(mdb_dbi_flags(txn, dbi, &stored), "mdb_dbi_flags(\(name ?? "main"))")
        let flags = DatabaseFlags(rawValue: stored)
        guard flags == wanted else { throw incompatible(name, flags, wanted) }
        return Database(handle: dbi, name: name, flags: flags)
    }

    private static func incompatible(_ name: String?, _ stored: DatabaseFlags, _ wanted: DatabaseFlags) -> LMDBError {
        LMDBError(
            code: .incompatible,
            operation: "openDatabase(\(name ?? "main")): stored flags 0x\(String(stored.rawValue, radix: 16)), "
                + "asked for 0x\(String(wanted.rawValue, radix: 16))"
        )
    }

    private static func validate(_ configuration: Configuration) throws(LMDBError) {
        func invalid(_ setting: String) -> LMDBError {
            LMDBError(code: .invalidArgument, operation: "Environment.Configuration.\(setting)")
        }
        guard (0...Int(Int32.max)).contains(configuration.maxDatabases) else {
            throw invalid("maxDatabases = \(configuration.maxDatabases)")
        }
        guard (1...Int(Int32.max)).contains(configuration.maxReaders) else {
            throw invalid("maxReaders = \(configuration.maxReaders)")
        }
        guard configuration.initialMapSize > 0 && configuration.initialMapSize <= Int.max / 2 else {
            throw invalid("initialMapSize = \(configuration.initialMapSize)")
        }
        guard configuration.fileMode <= 0o7777 else {
            throw invalid("fileMode = 0o\(String(configuration.fileMode, radix: 8))")
        }
    }

    static func roundedUp(_ size: Int, to multiple: Int) -> Int {
        (size + multiple - 1) / multiple * multiple
    }
}
