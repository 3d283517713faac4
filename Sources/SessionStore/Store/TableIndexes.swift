import LMDB
import Locking

#if canImport(Glibc)
import Glibc
#endif

/// The users table's indexes, kept in memory for the sessions on disk: by MAC address, by user name and by
/// session-timeout deadline.
///
/// The checkpointer builds them from the table when the store opens, before its first checkpoint, and keeps
/// them current as its checkpoints commit; nothing else writes the table while the store is open. Lookups wait
/// until they are built. Sessions still in memory (``ChangeSet``, and the writer's own deadlines) have indexes
/// of their own.
///
/// A lookup returns candidates, which the caller checks against each session: a user name is kept as a 64-bit
/// hash of its bytes, so a collision adds a candidate and never loses one, and a deadline by its second, so
/// expiry checks each due session's deadline again. The addresses whose sessions a checkpoint is writing are
/// in the frozen change set until it is dropped, and a reader takes those from memory, so the moment within
/// the checkpoint at which their entries here change does not matter.
final class TableIndexes: Sendable {
    private let lock = ConditionLock()
    /// Guarded by `lock`.
    private nonisolated(unsafe) var byMAC = AddressMultimap()
    private nonisolated(unsafe) var byUserName = AddressMultimap()
    private nonisolated(unsafe) var byDeadline = DeadlineBuckets()
    private nonisolated(unsafe) var built = false
    /// Callers of ``whenBuilt()`` waiting for the build.
    private nonisolated(unsafe) var waiting: [CheckedContinuation<Void, Never>] = []
    /// Why the build failed: a stored session whose fields could not be read.
    private nonisolated(unsafe) var failure: SessionStoreError?
    /// How often the table was emptied (``removeAll()``): a build during which it was is dropped.
    private nonisolated(unsafe) var emptied: UInt64 = 0

    /// What a session is indexed under.
    struct Fields: Equatable {
        var mac: UInt64
        var userName: UInt64
        var deadline: Timestamp?

        /// The fields of a stored session, from ``RecordCodec/peekSessionIndexFields(_:)``.
        init(
            _ peeked: (
                mac: MACAddress, userNameBytes: UnsafeRawBufferPointer, deadline: Timestamp?, generation: Generation
            )
        ) {
            mac = peeked.mac.rawValue
            userName = TableIndexes.userNameKey(peeked.userNameBytes)
            deadline = peeked.deadline
        }
    }

    /// One session's change, as a checkpoint writes it: its index fields before (`nil`: none was stored) and
    /// after (`nil`: it ended).
    struct Change {
        var ip: IPAddress
        var old: Fields?
        var new: Fields?
    }

    /// The key a user name is kept under: FNV-1a over its UTF-8 bytes, stable and fast for short names.
    static func userNameKey<Bytes: Sequence<UInt8>>(_ bytes: Bytes) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bytes { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3 }
        return hash
    }

    /// Reads every session of the users table and lists it; called once, on the checkpointer thread, before
    /// its first checkpoint. `stop` is asked now and then: a `true` (the store is closing) ends the build, and
    /// lookups then fail with ``SessionStoreError/Kind/closed`` rather than answer from part of the table.
    ///
    /// The deadlines are read on a thread of their own, at the calling thread's nice value, while the calling
    /// thread builds the lookups by MAC address and user name: each reads the whole table, in a read transaction
    /// of its own. Checkpoints do not run meanwhile, so both see the same table, unless the writer empties it
    /// (a demotion or a repair, then ``removeAll()``): a build during which that happened is dropped, and the
    /// emptied indexes stay, which are right for the emptied table.
    ///
    /// - Returns: why the build failed (a damaged stored session, say), after which lookups throw it and expiry
    ///   takes no session on disk until the table is emptied; `nil` when it succeeded.
    @discardableResult
    func build(from files: StoreFiles, stop: @escaping @Sendable () -> Bool) -> SessionStoreError? {
        let emptiedBefore = lock.withLock { emptied }
        let niceness = Self.currentNiceness()
        let deadlines = Locked<Result<DeadlineBuckets, SessionStoreError>?>(nil)
        let deadlineThread = StoreThread(name: "tandem-index") {
            Self.setNiceness(niceness)
            let result = Self.reading(files, "reading the users table to index it") { txn in
                var deadline = DeadlineBuckets()
                try Self.walk(files, txn, stop: stop) { ip, _, _, due in
                    if let due { deadline.insert(due, ip) }
                }
                return deadline
            }
            deadlines.withLock { $0 = result }
        }
        let lookups = Self.reading(files, "reading the users table to index it") { txn in
            var mac = AddressMultimap()
            var userName = AddressMultimap()
            let count = try txn.statistics(files.users).entries
            var first = true
            try Self.walk(files, txn, stop: stop) { ip, macAddress, userNameBytes, _ in
                if first {
                    first = false
                    // Room for the whole table in the family of its first address; the other grows as needed.
                    let room = ip.isIPv4 ? (ipv4: count, other: 0) : (ipv4: 0, other: count)
                    mac.reserveCapacity(ipv4: room.ipv4, other: room.other)
                    userName.reserveCapacity(ipv4: room.ipv4, other: room.other)
                }
                mac.insert(macAddress.rawValue, ip)
                userName.insert(Self.userNameKey(userNameBytes), ip)
            }
            return (mac, userName)
        }
        deadlineThread.join()
        let deadlineResult = deadlines.withLock { $0 } ?? .failure(SessionStoreError(.closed))
        let result: Result<(AddressMultimap, AddressMultimap, DeadlineBuckets), SessionStoreError>
        switch (lookups, deadlineResult) {
        case (.success(let (mac, userName)), .success(let deadline)): result = .success((mac, userName, deadline))
        case (.failure(let error), _), (_, .failure(let error)): result = .failure(error)
        }
        let (waiters, dropped) = lock.withLock {
            let dropped = emptied != emptiedBefore
            switch result {
            case _ where dropped:
                break
            case .success(let (mac, userName, deadline)):
                byMAC = mac
                byUserName = userName
                byDeadline = deadline
            case .failure(let error):
                failure = error
            }
            built = true
            lock.broadcast()
            defer { waiting = [] }
            return (waiting, dropped)
        }
        for waiter in waiters { waiter.resume() }
        if !dropped, case .failure(let error) = result { return error }
        return nil
    }

    /// Returns once the indexes are built.
    func whenBuilt() async {
        await withCheckedContinuation { continuation in
            let now = lock.withLock {
                if built { return true }
                waiting.append(continuation)
                return false
            }
            if now { continuation.resume() }
        }
    }

    /// `body` in a read transaction of the users environment, its errors as ``SessionStoreError``s.
    private static func reading<T>(
        _ files: StoreFiles,
        _ doing: String,
        _ body: (borrowing ReadTransaction) throws -> T
    ) -> Result<T, SessionStoreError> {
        do {
            return .success(try files.usersEnvironment.read { txn in try body(txn) })
        } catch let error as SessionStoreError {
            return .failure(error)
        } catch {
            return .failure(SessionStoreError.storage(error, doing: doing))
        }
    }

    /// Calls `body` with every stored session's address and index fields, in address order.
    private static func walk(
        _ files: StoreFiles,
        _ txn: borrowing ReadTransaction,
        stop: () -> Bool,
        _ body: (IPAddress, _ mac: MACAddress, _ userNameBytes: UnsafeRawBufferPointer, _ deadline: Timestamp?) -> Void
    ) throws {
        try txn.withCursor(files.users) { cursor in
            var entry = try cursor.move(.first)
            var seen = 0
            while let (key, value) = entry {
                let ip = IPAddress(bytes: key)
                do throws(CorruptRecordError) {
                    let fields = try RecordCodec.peekSessionIndexFields(value)
                    body(ip, fields.mac, fields.userNameBytes, fields.deadline)
                } catch {
                    throw SessionStoreError(.corruptRecord(error, location: "users table, key \(ip)"))
                }
                seen += 1
                if seen % 4096 == 0, stop() { throw SessionStoreError(.closed) }
                entry = try cursor.move(.next)
            }
        }
    }

    private static func currentNiceness() -> Int32 {
        #if os(Linux)
        errno = 0
        let value = getpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0)
        return errno == 0 ? value : 0
        #else
        return 0
        #endif
    }

    private static func setNiceness(_ value: Int32) {
        #if os(Linux)
        // On Linux, a nice value set for "this process" applies to the calling thread only.
        if value != 0 { _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, value) }
        #endif
    }

    /// Applies what a checkpoint transaction wrote, once it has committed.
    func apply(_ changes: [Change]) {
        guard !changes.isEmpty else { return }
        lock.withLock {
            for change in changes {
                if let old = change.old {
                    byMAC.remove(old.mac, change.ip)
                    byUserName.remove(old.userName, change.ip)
                    if let deadline = old.deadline { byDeadline.remove(deadline, change.ip) }
                }
                if let new = change.new {
                    byMAC.insert(new.mac, change.ip)
                    byUserName.insert(new.userName, change.ip)
                    if let deadline = new.deadline { byDeadline.insert(deadline, change.ip) }
                }
            }
        }
    }

    /// Forgets every session, after the users table was emptied (which also repairs a table whose damage failed
    /// the build: the empty indexes are then right).
    func removeAll() {
        lock.withLock {
            emptied &+= 1
            failure = nil
            byMAC = AddressMultimap()
            byUserName = AddressMultimap()
            byDeadline = DeadlineBuckets()
        }
    }

    /// Up to `limit` addresses on disk whose deadline may be at or before `now`, earliest first; empty until the
    /// indexes are built (the writer does not wait: its next expiry round finds them).
    func dueIfBuilt(asOf now: Timestamp, limit: Int) -> [IPAddress] {
        lock.withLock { built ? byDeadline.due(asOf: now, limit: limit) : [] }
    }

    /// What a lookup looks for.
    enum Key {
        case mac(MACAddress)
        case userName(String)
    }

    /// Addresses on disk that may hold `key`, once the indexes are built.
    func candidates(_ key: Key) throws(SessionStoreError) -> [IPAddress] {
        let result: Result<[IPAddress], SessionStoreError> = lock.withLock {
            while !built { lock.wait() }
            if let failure { return .failure(failure) }
            switch key {
            case .mac(let mac): return .success(byMAC[mac.rawValue])
            case .userName(let name): return .success(byUserName[Self.userNameKey(name.utf8)])
            }
        }
        return try result.get()
    }
}

/// A multimap from a 64-bit key to addresses, without an allocation in the usual case of one address per key.
///
/// IPv4 addresses are kept in 4 bytes rather than 16, which halves the memory of a table of IPv4 users.
struct AddressMultimap: Sendable {
    private var ipv4 = Multimap<UInt32>()
    private var other = Multimap<IPAddress>()

    /// Makes room for `ipv4` keys listing IPv4 addresses and `other` keys listing other addresses.
    mutating func reserveCapacity(ipv4: Int, other: Int) {
        if ipv4 > 0 { self.ipv4.reserveCapacity(ipv4) }
        if other > 0 { self.other.reserveCapacity(other) }
    }

    /// How many keys list IPv4 addresses, and how many list others.
    var keyCounts: (ipv4: Int, other: Int) { (ipv4.keyCount, other.keyCount) }

    /// Lists `ip` under `key`; listing it again changes nothing.
    mutating func insert(_ key: UInt64, _ ip: IPAddress) {
        if let address = ip.ipv4 { ipv4.insert(key, address) } else { other.insert(key, ip) }
    }

    /// Removes `ip` from under `key`, if it is listed there.
    mutating func remove(_ key: UInt64, _ ip: IPAddress) {
        if let address = ip.ipv4 { ipv4.remove(key, address) } else { other.remove(key, ip) }
    }

    /// The addresses listed under `key`, in no particular order.
    subscript(key: UInt64) -> [IPAddress] { ipv4[key].map { IPAddress(ipv4: $0) } + other[key] }

    /// How many addresses are listed, over all keys.
    var count: Int { ipv4.count + other.count }
}

/// A multimap from a 64-bit key to values, with one dictionary entry per key in the usual case of one value.
private struct Multimap<Value: Hashable & Sendable>: Sendable {
    private var first: [UInt64: Value] = [:]
    /// The values after the first, for the keys that have more than one.
    private var more: [UInt64: [Value]] = [:]

    mutating func reserveCapacity(_ capacity: Int) { first.reserveCapacity(capacity) }

    var keyCount: Int { first.count }

    /// Lists `value` under `key`; listing it again changes nothing. One hash lookup when `key` is new or
    /// `value` is listed first under it.
    mutating func insert(_ key: UInt64, _ value: Value) {
        guard let previous = first.updateValue(value, forKey: key), previous != value else { return }
        // `value` now comes first: the one it displaced joins the others, in its place if it was one of them.
        if var others = more.removeValue(forKey: key) {
            if let index = others.firstIndex(of: value) { others[index] = previous } else { others.append(previous) }
            more[key] = others
        } else {
            more[key] = [previous]
        }
    }

    /// Removes `value` from under `key`, if it is listed there.
    mutating func remove(_ key: UInt64, _ value: Value) {
        guard let existing = first[key] else { return }
        if existing == value {
            if var others = more[key], let last = others.popLast() {
                first[key] = last
                more[key] = others.isEmpty ? nil : others
            } else {
                first[key] = nil
            }
        } else if var others = more[key], let index = others.firstIndex(of: value) {
            others.remove(at: index)
            more[key] = others.isEmpty ? nil : others
        }
    }

    /// The values listed under `key`, in no particular order.
    subscript(key: UInt64) -> [Value] {
        guard let existing = first[key] else { return [] }
        return [existing] + (more[key] ?? [])
    }

    /// How many values are listed, over all keys.
    var count: Int { first.count + more.values.reduce(0) { $0 + $1.count } }
}

/// Addresses by the second of their deadline, the seconds in order.
struct DeadlineBuckets: Sendable {
    private var buckets: [Int64: Bucket] = [:]
    /// The keys of `buckets`, ascending.
    private var seconds: [Int64] = []

    /// One second's addresses; IPv4 addresses are kept in 4 bytes rather than 16.
    private struct Bucket: Sendable {
        var ipv4: Set<UInt32> = []
        var other: Set<IPAddress> = []

        init(_ ip: IPAddress) { insert(ip) }

        var isEmpty: Bool { ipv4.isEmpty && other.isEmpty }
        var count: Int { ipv4.count + other.count }

        mutating func insert(_ ip: IPAddress) {
            if let address = ip.ipv4 { ipv4.insert(address) } else { other.insert(ip) }
        }

        /// Whether `ip` was there.
        mutating func remove(_ ip: IPAddress) -> Bool {
            if let address = ip.ipv4 { ipv4.remove(address) != nil } else { other.remove(ip) != nil }
        }

        func sorted() -> [IPAddress] { (ipv4.map { IPAddress(ipv4: $0) } + other).sorted() }
    }

    private static func second(_ deadline: Timestamp) -> Int64 {
        let micros = deadline.microsecondsSinceEpoch
        return micros >= 0 ? micros / 1_000_000 : -((-micros + 999_999) / 1_000_000)
    }

    /// The position of `second` in `seconds`, or where it would go.
    private func position(_ second: Int64) -> Int {
        var low = 0
        var high = seconds.count
        while low < high {
            let middle = (low + high) / 2
            if seconds[middle] < second { low = middle + 1 } else { high = middle }
        }
        return low
    }

    mutating func insert(_ deadline: Timestamp, _ ip: IPAddress) {
        let second = Self.second(deadline)
        // In place: a copy of the bucket taken out of the dictionary would copy all its members.
        if buckets[second]?.insert(ip) == nil {
            buckets[second] = Bucket(ip)
            seconds.insert(second, at: position(second))
        }
    }

    mutating func remove(_ deadline: Timestamp, _ ip: IPAddress) {
        let second = Self.second(deadline)
        guard buckets[second]?.remove(ip) == true, buckets[second]?.isEmpty == true else { return }
        buckets[second] = nil
        seconds.remove(at: position(second))
    }

    /// Up to `limit` addresses whose deadline's second is at or before `now`'s, earliest second first, each
    /// second's in address order.
    func due(asOf now: Timestamp, limit: Int) -> [IPAddress] {
        let last = Self.second(now)
        var found: [IPAddress] = []
        for second in seconds {
            guard second <= last, found.count < limit else { break }
            found += buckets[second]!.sorted().prefix(limit - found.count)
        }
        return found
    }

    /// How many addresses are listed.
    var count: Int { buckets.values.reduce(0) { $0 + $1.count } }
}
