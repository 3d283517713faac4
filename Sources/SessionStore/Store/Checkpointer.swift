import LMDB
import Locking
import Logging
import Metrics

#if canImport(Glibc)
import Glibc
#endif

/// Writes frozen change sets into the users table on disk, on its own thread and in its own LMDB
/// environment, so that it never holds the log's write lock.
///
/// One change set is written in one transaction, in address order, so each page of the table is copied
/// once per checkpoint however many of its users changed.
final class Checkpointer: Sendable {
    private let files: StoreFiles
    private let indexes: TableIndexes
    private let logger: Logger
    private let queue = ConditionLock()
    /// Guarded by `queue`.
    private nonisolated(unsafe) var job: ChangeSet?
    private nonisolated(unsafe) var stopping = false
    /// Set when the store closes: a failing checkpoint then gives up instead of retrying (the log keeps
    /// its changes, and the next open replays them).
    private nonisolated(unsafe) var closing = false
    private nonisolated(unsafe) var garbage: [ChangeSet] = []
    private nonisolated(unsafe) var thread: StoreThread?
    /// Why the running checkpoint is failing (it retries), until one commits.
    let failure = Locked<String?>(nil)
    private let duration = Metrics.Timer(label: "tandem_checkpoint_duration")
    private let written = Counter(label: "tandem_checkpoint_users_total")

    /// Called on the checkpointer thread when a change set has committed (or failed for good).
    private let completion: @Sendable (Result<UInt64, SessionStoreError>) -> Void

    init(
        files: StoreFiles,
        indexes: TableIndexes,
        logger: Logger,
        completion: @escaping @Sendable (Result<UInt64, SessionStoreError>) -> Void
    ) {
        self.files = files
        self.indexes = indexes
        self.logger = logger
        self.completion = completion
    }

    func start() {
        thread = StoreThread(name: "tandem-checkpt") { [self] in run() }
    }

    /// Hands over a frozen change set; the previous one must have completed.
    func submit(_ changes: ChangeSet) {
        queue.withLock {
            precondition(job == nil, "a checkpoint is already running")
            job = changes
            queue.signal()
        }
    }

    /// Takes a change set that is no longer needed, to free it on this thread rather than the writer's.
    func discard(_ changes: ChangeSet?) {
        guard let changes else { return }
        queue.withLock {
            garbage.append(changes)
            queue.signal()
        }
    }

    /// Makes a failing checkpoint give up rather than retry, so that closing never waits for disk space.
    func giveUpOnFailure() {
        queue.withLock {
            closing = true
            queue.signal()
        }
    }

    /// Stops the thread once the current job is done.
    func stop() {
        queue.withLock {
            stopping = true
            queue.signal()
        }
        thread?.join()
    }

    private func run() {
        #if os(Linux)
        // Behind the writer and the callers when the cores are contended: checkpoints can wait a moment,
        // commits cannot. (On Linux, a nice value set for "this process" applies to the calling thread only.)
        _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, Self.niceness)
        #endif
        // Before any checkpoint: nothing else writes the table while the store is open.
        let started = monotonicNanoseconds()
        if let failure = indexes.build(from: files, stop: { [self] in queue.withLock { stopping } }) {
            logger.error(
                """
                the users table could not be indexed: lookups by MAC address and user name fail, and expiry \
                skips the sessions on disk, until the table is repaired
                """,
                metadata: ["tandem.error": "\(failure)"]
            )
        } else {
            logger.debug(
                "users table indexed",
                metadata: ["tandem.index.ms": "\((monotonicNanoseconds() - started) / 1_000_000)"]
            )
        }
        while true {
            queue.lock()
            while job == nil && garbage.isEmpty && !stopping { queue.wait() }
            var unused: [ChangeSet] = []
            swap(&unused, &garbage)
            let next = job
            queue.unlock()
            unused.removeAll()  // frees the dropped change sets here, off the writer's thread
            guard let changes = next else {
                if queue.withLock({ stopping }) { return }
                continue
            }
            var attempt = 0
            while true {
                let started = monotonicNanoseconds()
                do {
                    try write(changes)
                    duration.recordNanoseconds(Int64(monotonicNanoseconds() - started))
                    written.increment(by: changes.count)
                    logger.debug(
                        "checkpoint committed",
                        metadata: [
                            "tandem.checkpoint.sequence": "\(changes.throughSequence)",
                            "tandem.checkpoint.users": "\(changes.count)",
                            "tandem.checkpoint.ms": "\((monotonicNanoseconds() - started) / 1_000_000)",
                        ]
                    )
                    queue.withLock { job = nil }
                    failure.withLock { $0 = nil }
                    completion(.success(changes.throughSequence))
                    break
                } catch {
                    attempt += 1
                    let failure = SessionStoreError.storage(error, doing: "checkpointing the users table")
                    self.failure.withLock { $0 = "\(failure)" }
                    logger.error(
                        "checkpoint failed; the changes stay in memory and the log keeps them",
                        metadata: ["tandem.error": "\(failure)", "tandem.checkpoint.attempt": "\(attempt)"]
                    )
                    let giveUp = queue.withLock { stopping || closing }
                    if giveUp {
                        queue.withLock { job = nil }
                        completion(.failure(failure))
                        break
                    }
                    queue.withLock { queue.wait(nanoseconds: min(Int64(attempt), 10) * 200_000_000) }
                }
            }
        }
    }

    /// Writes `changes` into the users table and records the position they bring it to.
    ///
    /// A large set is written in several transactions of at most ``chunkSize`` users, which bounds the
    /// dirty pages of each (LMDB refuses more than 131,071 in one, and keeps their memory afterwards).
    /// Only the last records the checkpoint position: after a crash in between, recovery replays the log
    /// from the previous position over a table that already holds some of the changes, which the
    /// generation rules make harmless. Readers see the frozen set over the table until the end.
    func write(_ changes: ChangeSet) throws {
        let addresses = changes.entries.keys.sorted()
        var start = 0
        repeat {
            let end = min(start + Self.chunkSize, addresses.count)
            try write(changes, addresses[start..<end], last: end == addresses.count)
            start = end
        } while start < addresses.count
    }

    /// The nice value of the checkpointer thread: under contention it yields to the writer and the callers
    /// (back-pressure stops it from falling behind without bound).
    static let niceness: Int32 = 10

    /// The most users one checkpoint transaction writes.
    static let chunkSize = StoreLayout.checkpointTransactionSize

    /// Writes the changes at `addresses`, which are in key order, in one transaction, through one cursor: LMDB
    /// finds a key near the cursor's page without searching from the root, and an existing entry is replaced
    /// or deleted where the cursor found it.
    private func write(_ changes: ChangeSet, _ addresses: ArraySlice<IPAddress>, last: Bool) throws {
        var indexChanges: [TableIndexes.Change] = []
        indexChanges.reserveCapacity(addresses.count)
        try files.usersEnvironment.write { txn in
            indexChanges.removeAll(keepingCapacity: true)
            try txn.withCursor(files.users) { cursor in
                for ip in addresses {
                    try ip.withUnsafeBytes { key in
                        // The indexed fields of the session stored now.
                        var old: TableIndexes.Fields?
                        if let stored = try cursor.seek(exactly: key)?.value {
                            do throws(CorruptRecordError) {
                                old = TableIndexes.Fields(try RecordCodec.peekSessionIndexFields(stored))
                            } catch {
                                throw SessionStoreError(.corruptRecord(error, location: "users table, key \(ip)"))
                            }
                        }
                        var new: TableIndexes.Fields?
                        switch changes.entries[ip]! {
                        case .online(let value):
                            try value.withUnsafeBytes { value in
                                do throws(CorruptRecordError) {
                                    new = TableIndexes.Fields(try RecordCodec.peekSessionIndexFields(value))
                                } catch {
                                    preconditionFailure("the change in memory for \(ip) does not decode: \(error)")
                                }
                                // On the entry found: `current` replaces it (LMDB deletes and inserts again when
                                // the size differs).
                                try cursor.put(key: key, value: value, flags: old != nil ? .current : [])
                            }
                        case .offline:
                            if old != nil { try cursor.deleteCurrent() }
                        }
                        // An update changes none of the indexed fields but, at times, the deadline.
                        if old != new { indexChanges.append(.init(ip: ip, old: old, new: new)) }
                    }
                }
            }
            if last {
                try txn.putMeta(StoreLayout.MetaKey.checkpointSequence, changes.throughSequence, in: files.usersMeta)
            }
        }
        indexes.apply(indexChanges)
    }
}
