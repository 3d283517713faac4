import Synchronization

/// The users table's in-memory layers over the copy on disk: the active change set that the writer applies
/// committed events to, and the frozen one that the checkpointer is writing to disk.
///
/// `@unchecked Sendable` invariant: `active`, `frozen` and the counters change only on the writer thread,
/// always with `lock` held. The writer reads them without the lock (nothing else writes them); every other
/// thread reads them with `lock` held.
final class Overlay: @unchecked Sendable {
    private let lock = ConditionLock()
    private(set) var active = ChangeSet()
    private(set) var frozen: ChangeSet?
    /// Change sets handed to the checkpointer so far.
    private(set) var handedOff: UInt64 = 0
    /// Change sets whose checkpoint committed and that were dropped from memory.
    private(set) var dropped: UInt64 = 0
    /// Users online, kept by the writer.
    let onlineCount = Atomic<Int>(0)
    /// The lookups by MAC address and user name of the sessions on disk, kept by the checkpointer.
    let tableIndexes = TableIndexes()

    /// The entry for `ip` in memory, newest layer first, still encoded: readers decode it once the lock is
    /// released.
    func entry(for ip: IPAddress) -> StoredEntry? {
        lock.withLock { active.entries[ip] ?? frozen?.entries[ip] }
    }

    /// Runs `body` with the lock held, for readers that need several values at one instant.
    func withLock<R>(_ body: (borrowing ChangeSet, borrowing ChangeSet?, UInt64, UInt64) throws -> R) rethrows -> R {
        try lock.withLock { try body(active, frozen, handedOff, dropped) }
    }

    /// The entry for `ip` as the writer sees it, without the lock, decoded.
    func writerEntry(for ip: IPAddress) -> TableEntry? {
        writerStoredEntry(for: ip)?.entry(at: ip)
    }

    /// The entry for `ip` as the writer sees it, without the lock, still encoded.
    func writerStoredEntry(for ip: IPAddress) -> StoredEntry? {
        active.entries[ip] ?? frozen?.entries[ip]
    }

    /// Whether `ip` has an entry in memory, as the writer sees it, without the lock.
    func writerHolds(_ ip: IPAddress) -> Bool {
        active.contains(ip) || frozen?.contains(ip) == true
    }

    // MARK: writer thread only

    /// Applies the changes of a batch that committed, encoded when they were staged (so that the lock is held
    /// only to insert them).
    func apply(_ changes: borrowing [EncodedChange], countDelta: Int, throughSequence: UInt64) {
        lock.lock()
        for index in changes.indices { active.set(changes[index]) }
        active.throughSequence = throughSequence
        lock.unlock()
        if countDelta != 0 { onlineCount.add(countDelta, ordering: .relaxed) }
    }

    /// Moves the active set to frozen for the checkpointer; returns it, or `nil` when one is already frozen.
    func freeze() -> ChangeSet? {
        // Sized with room over the last one, so the new set does not rehash as it fills.
        var fresh = ChangeSet(roomAfter: active, minimum: 4096)
        fresh.throughSequence = active.throughSequence
        return lock.withLock { () -> ChangeSet? in
            guard frozen == nil else { return nil }
            frozen = active
            active = fresh
            handedOff += 1
            return frozen
        }
    }

    /// Drops the frozen set once its checkpoint has committed, and returns it so that the caller can
    /// free it on another thread.
    func dropFrozen() -> ChangeSet? {
        lock.withLock {
            defer {
                frozen = nil
                dropped += 1
            }
            return frozen
        }
    }
}

extension Overlay {
    /// Loads what recovery replayed, before the writer starts.
    func load(_ changes: ChangeSet, count: Int) {
        lock.withLock { active = changes }
        onlineCount.store(count, ordering: .relaxed)
    }
}
