import CLMDB
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// How transactions and map resizes exclude each other.
//
// `mdb_env_set_mapsize` unmaps and remaps the file, so it may only run while no transaction of this
// process is open. Every transaction holds `mapLock` shared for its whole life; a resize holds it
// exclusively. A thread that already holds it (a read nested in a read or write body) does not take
// it again, which keeps the writer-preferring lock from deadlocking against a waiting resize; the
// per-thread count lives in `depthKey`. A thread that holds it must never wait for the exclusive
// lock or for `writerLock`, hence the `wouldDeadlock` refusals of nested writes.
extension Environment {
    /// How many transactions of this environment the calling thread has open.
    var transactionDepth: Int {
        Int(bitPattern: pthread_getspecific(depthKey))
    }

    private func setTransactionDepth(_ depth: Int) {
        _ = pthread_setspecific(depthKey, UnsafeRawPointer(bitPattern: depth))  // fails only for a bad key
    }

    /// Holds `mapLock` shared on behalf of one more transaction of this thread.
    func acquireShared() {
        let depth = transactionDepth
        if depth == 0 { pthread_rwlock_rdlock(mapLock) }
        setTransactionDepth(depth + 1)
    }

    /// Releases what ``acquireShared()`` took.
    func releaseShared() {
        let depth = transactionDepth - 1
        setTransactionDepth(depth)
        if depth == 0 { pthread_rwlock_unlock(mapLock) }
    }

    /// Begins a transaction and holds `mapLock` shared for it; the caller ends the transaction and
    /// then calls ``releaseShared()``. When another process grew the map beyond this process's
    /// mapping (`MDB_MAP_RESIZED`), adopts the new size and tries again.
    func beginTransaction(readOnly: Bool) throws(LMDBError) -> OpaquePointer {
        while true {
            acquireShared()
            do throws(LMDBError) {
                try checkMapped()
            } catch {
                releaseShared()
                throw error
            }
            var txn: OpaquePointer?
            let rc = mdb_txn_begin(environment, nil, readOnly ? UInt32(MDB_RDONLY) : 0, &txn)
            if rc == MDB_SUCCESS, let txn { return txn }
            releaseShared()
            if rc == MDB_MAP_RESIZED && transactionDepth == 0 {
                try adoptMapSize()
                continue
            }
            try check(rc, readOnly ? "mdb_txn_begin(read-only, \(path))" : "mdb_txn_begin(read-write, \(path))")
        }
    }

    /// Doubles the map, unless it already grew past `observed` meanwhile. The caller holds
    /// `writerLock` and no transaction.
    func growMap(from observed: Int) throws(LMDBError) {
        pthread_rwlock_wrlock(mapLock)
        defer { pthread_rwlock_unlock(mapLock) }
        try checkMapped()
        guard unlockedInfo().mapSize <= observed else { return }
        let (doubled, overflow) = observed.multipliedReportingOverflow(by: 2)
        guard !overflow else {
            throw LMDBError(code: .mapFull, operation: "mdb_env_set_mapsize(\(observed) * 2, \(path))")
        }
        let size = Self.roundedUp(doubled, to: pageSize)
        try resizeMap(to: size)
    }

    /// Adopts the map size another process set (`mdb_env_set_mapsize(env, 0)`), never shrinking
    /// this process's map. The caller holds no transaction.
    func adoptMapSize() throws(LMDBError) {
        pthread_rwlock_wrlock(mapLock)
        defer { pthread_rwlock_unlock(mapLock) }
        try checkMapped()
        let before = unlockedInfo().mapSize
        try resizeMap(to: 0)
        if unlockedInfo().mapSize < before {
            try resizeMap(to: before)
        }
    }

    /// `mdb_env_set_mapsize`; the caller holds `mapLock` exclusively. LMDB unmaps the file before
    /// mapping it again, so when the new mapping fails (address space exhausted) the environment has
    /// no map left: it is marked unusable, and every later transaction fails with a clear error
    /// instead of touching unmapped memory.
    private func resizeMap(to size: Int) throws(LMDBError) {
        let rc = mdb_env_set_mapsize(environment, size)
        if rc != MDB_SUCCESS { unmapped.store(true, ordering: .releasing) }
        try check(rc, "mdb_env_set_mapsize(\(size), \(path))")
    }

    /// Throws when a failed resize left the environment without a map.
    func checkMapped() throws(LMDBError) {
        if unmapped.load(ordering: .acquiring) {
            throw LMDBError(code: .panic, operation: "Environment(\(path)) lost its map in a failed resize; reopen it")
        }
    }
}
