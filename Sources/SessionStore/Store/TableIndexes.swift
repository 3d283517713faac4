import LMDB

/// The users table's lookups by MAC address and user name, kept in memory for the sessions on disk.
///
/// The checkpointer builds them from the table when the store opens, before its first checkpoint, and keeps
/// them current as its checkpoints commit; nothing else writes the table while the store is open. Lookups wait
/// until they are built. Sessions still in memory (``ChangeSet``) have lookups of their own.
///
/// A lookup returns candidates, which the caller checks against each session: a user name is kept as a 64-bit
/// hash of its bytes, so a collision adds a candidate and never loses one. The addresses whose sessions a
/// checkpoint is writing are in the frozen change set until it is dropped, and a reader takes those from
/// memory, so the moment within the checkpoint at which their entries here change does not matter.
final class TableIndexes: Sendable {
    private let lock = ConditionLock()
    /// Guarded by `lock`.
    private nonisolated(unsafe) var byMAC = AddressMultimap()
    private nonisolated(unsafe) var byUserName = AddressMultimap()
    private nonisolated(unsafe) var built = false
    /// Why the build failed: a stored session whose fields could not be read.
    private nonisolated(unsafe) var failure: SessionStoreError?

    /// One session's change, as a checkpoint writes it: its index fields before (`nil`: none was stored) and
    /// after (`nil`: it ended).
    struct Change {
        var ip: IPAddress
        var old: (mac: UInt64, userName: UInt64)?
        var new: (mac: UInt64, userName: UInt64)?
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
    func build(from files: StoreFiles, stop: () -> Bool) {
        let result: Result<(AddressMultimap, AddressMultimap), SessionStoreError>
        do {
            result = .success(try files.usersEnvironment.read { txn in try Self.read(files, txn, stop: stop) })
        } catch let error as SessionStoreError {
            result = .failure(error)
        } catch {
            result = .failure(SessionStoreError.storage(error, doing: "reading the users table to index it"))
        }
        lock.withLock {
            switch result {
            case .success(let (mac, userName)):
                byMAC = mac
                byUserName = userName
            case .failure(let error):
                failure = error
            }
            built = true
            lock.broadcast()
        }
    }

    private static func read(
        _ files: StoreFiles,
        _ txn: borrowing ReadTransaction,
        stop: () -> Bool
    ) throws -> (AddressMultimap, AddressMultimap) {
        var mac = AddressMultimap()
        var userName = AddressMultimap()
        let count = try txn.statistics(files.users).entries
        mac.reserveCapacity(count)
        userName.reserveCapacity(count)
        try txn.withCursor(files.users) { cursor in
            var entry = try cursor.move(.first)
            var seen = 0
            while let (key, value) = entry {
                let ip = IPAddress(bytes: key)
                do throws(CorruptRecordError) {
                    let fields = try RecordCodec.peekSessionIndexFields(value)
                    mac.insert(fields.mac.rawValue, ip)
                    userName.insert(userNameKey(fields.userNameBytes), ip)
                } catch {
                    throw SessionStoreError(.corruptRecord(error, location: "users table, key \(ip)"))
                }
                seen += 1
                if seen % 4096 == 0, stop() { throw SessionStoreError(.closed) }
                entry = try cursor.move(.next)
            }
        }
        return (mac, userName)
    }

    /// Applies what a checkpoint transaction wrote, once it has committed.
    func apply(_ changes: [Change]) {
        guard !changes.isEmpty else { return }
        lock.withLock {
            for change in changes {
                if let old = change.old {
                    byMAC.remove(old.mac, change.ip)
                    byUserName.remove(old.userName, change.ip)
                }
                if let new = change.new {
                    byMAC.insert(new.mac, change.ip)
                    byUserName.insert(new.userName, change.ip)
                }
            }
        }
    }

    /// Forgets every session, after the users table was emptied.
    func removeAll() {
        lock.withLock {
            byMAC = AddressMultimap()
            byUserName = AddressMultimap()
        }
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
struct AddressMultimap: Sendable {
    private var first: [UInt64: IPAddress] = [:]
    /// The addresses after the first, for the keys that have more than one.
    private var more: [UInt64: [IPAddress]] = [:]

    mutating func reserveCapacity(_ capacity: Int) { first.reserveCapacity(capacity) }

    /// Lists `ip` under `key`; listing it again changes nothing.
    mutating func insert(_ key: UInt64, _ ip: IPAddress) {
        guard let existing = first[key] else {
            first[key] = ip
            return
        }
        if existing == ip || more[key]?.contains(ip) == true { return }
        more[key, default: []].append(ip)
    }

    /// Removes `ip` from under `key`, if it is listed there.
    mutating func remove(_ key: UInt64, _ ip: IPAddress) {
        guard let existing = first[key] else { return }
        if existing == ip {
            if var others = more[key], let last = others.popLast() {
                first[key] = last
                more[key] = others.isEmpty ? nil : others
            } else {
                first[key] = nil
            }
        } else if var others = more[key], let index = others.firstIndex(of: ip) {
            others.remove(at: index)
            more[key] = others.isEmpty ? nil : others
        }
    }

    /// The addresses listed under `key`, in no particular order.
    subscript(key: UInt64) -> [IPAddress] {
        guard let existing = first[key] else { return [] }
        return [existing] + (more[key] ?? [])
    }

    /// How many addresses are listed, over all keys.
    var count: Int { first.count + more.values.reduce(0) { $0 + $1.count } }
}
