/// The state of one address that differs from the users table on disk.
package enum TableEntry: Sendable, Hashable {
    /// The address is held by this session. Boxed (`indirect`), so that entries stay small and moving
    /// them through the writer's batches copies a pointer, not a session. A ``ChangeSet`` keeps it encoded
    /// (``StoredEntry``).
    indirect case online(Session)
    /// The address is free; the session of this generation ended there.
    case offline(Generation)

    package var session: Session? {
        if case .online(let session) = self { return session }
        return nil
    }
}

/// An address's entry in a change set, kept compact: an online session is held as its users-table value,
/// the bytes a checkpoint writes. That takes about a third of the memory of a `Session` with its strings
/// (about 180 bytes against 500 for a typical session), so more changes fit in memory between checkpoints, and
/// the checkpointer writes the bytes without encoding the session again.
enum StoredEntry: Sendable {
    /// The address is held by the session encoded in `value` (``RecordCodec/encodeSessionValue(_:into:)``).
    case online(value: [UInt8])
    /// The address is free; the session of this generation ended there.
    case offline(Generation)

    /// Encodes `entry`.
    init(_ entry: TableEntry) {
        switch entry {
        case .online(let session):
            var value: [UInt8] = []
            RecordCodec.encodeSessionValue(session, into: &value)
            self = .online(value: value)
        case .offline(let generation):
            self = .offline(generation)
        }
    }

    /// The entry of address `ip`, decoded.
    func entry(at ip: IPAddress) -> TableEntry {
        switch self {
        case .online(let value): .online(Self.decode(value, ip: ip))
        case .offline(let generation): .offline(generation)
        }
    }

    /// The session of address `ip`, decoded; `nil` when the address is free.
    func session(at ip: IPAddress) -> Session? {
        guard case .online(let value) = self else { return nil }
        return Self.decode(value, ip: ip)
    }

    private static func decode(_ value: [UInt8], ip: IPAddress) -> Session {
        value.withUnsafeBytes { bytes in
            do {
                return try RecordCodec.decodeSessionValue(bytes, ip: ip)
            } catch {
                // The bytes were encoded by this process from a valid session, or checked as a decode checks them
                // when they came from the peer (``SnapshotSessions``), and never left its memory since.
                preconditionFailure("the change in memory for \(ip) does not decode: \(error)")
            }
        }
    }
}

/// A change of one address, encoded as a ``ChangeSet`` keeps it, with the keys of its lookups by MAC address and
/// user name: what the writer stages, so that a session is encoded once, when it is staged, and a change read
/// from stored bytes (a peer's snapshot) is never decoded.
struct EncodedChange: Sendable {
    let ip: IPAddress
    let stored: StoredEntry
    /// The lookup keys of the session online (``TableIndexes/userNameKey(_:)`` for the user name); `nil` for
    /// a free address.
    let lookupKeys: (mac: UInt64, userName: UInt64)?

    /// Encodes `entry`.
    init(_ ip: IPAddress, _ entry: TableEntry) {
        self.ip = ip
        stored = StoredEntry(entry)
        if case .online(let session) = entry {
            lookupKeys = (session.mac.rawValue, TableIndexes.userNameKey(session.userName.utf8))
        } else {
            lookupKeys = nil
        }
    }

    /// A session online at `ip`, stored as `value`, whose fields are `fields` (read from `value`).
    init(_ ip: IPAddress, value: [UInt8], fields: borrowing RecordCodec.SessionValueFields) {
        self.ip = ip
        stored = .online(value: value)
        lookupKeys = (fields.mac.rawValue, TableIndexes.userNameKey(fields.userName))
    }

    /// The session this change puts online, decoded; `nil` for a free address.
    var session: Session? { stored.session(at: ip) }
}

/// Changes to the users table kept in memory until a checkpoint writes them to disk.
///
/// Besides the entries, it keeps candidate lists for lookups by MAC address and user name: every address
/// that held that MAC or name at some point since the set began. Candidates are checked against the
/// entries when read, so stale ones cost a lookup, never a wrong answer.
struct ChangeSet: Sendable {
    private(set) var entries: [IPAddress: StoredEntry] = [:]
    private var byMAC = AddressMultimap()
    private var byUserName = AddressMultimap()
    /// The log position these changes bring the table to.
    var throughSequence: UInt64 = 0

    init() {}

    /// An empty set with room for a quarter more changes than `previous` holds (and at least `minimum`), its
    /// lookups' room shared between the address families as in `previous`, so that it does not rehash as it
    /// fills.
    init(roomAfter previous: borrowing ChangeSet, minimum: Int) {
        let room = max(previous.count + previous.count / 4, minimum)
        entries.reserveCapacity(room)
        let keys = previous.byMAC.keyCounts
        let ipv4 = keys.ipv4 + keys.other == 0 ? room : room * keys.ipv4 / (keys.ipv4 + keys.other)
        byMAC.reserveCapacity(ipv4: ipv4, other: room - ipv4)
        byUserName.reserveCapacity(ipv4: ipv4, other: room - ipv4)
    }

    var count: Int { entries.count }
    var isEmpty: Bool { entries.isEmpty }

    /// The entry for `ip`, decoded; `nil` when the address did not change.
    subscript(ip: IPAddress) -> TableEntry? { entries[ip]?.entry(at: ip) }

    /// Whether the address changed, without decoding its entry.
    func contains(_ ip: IPAddress) -> Bool { entries[ip] != nil }

    /// Sets the entry of `ip`, encoding it.
    mutating func set(_ ip: IPAddress, _ entry: TableEntry) {
        set(EncodedChange(ip, entry))
    }

    /// Sets the entry of an address to a change already encoded.
    mutating func set(_ change: EncodedChange) {
        if let keys = change.lookupKeys {
            byMAC.insert(keys.mac, change.ip)
            byUserName.insert(keys.userName, change.ip)
        }
        entries[change.ip] = change.stored
    }

    /// Addresses that may hold `mac`.
    func candidates(mac: MACAddress) -> [IPAddress] { byMAC[mac.rawValue] }

    /// Addresses that may hold `userName`.
    func candidates(userName: String) -> [IPAddress] { byUserName[TableIndexes.userNameKey(userName.utf8)] }
}

/// How a logged event changes the users table.
///
/// Per-user generations make a duplicated, reordered or replayed event harmless: a login applies only over
/// an older session (or a free address), a logout only to the exact session it ends (its owner and
/// generation), an update only to the exact session it changes, and to each of its parts (authorization,
/// accounting, activity) only over an older revision of that part. A login of the session already there
/// (a duplicate, or a snapshot's copy of it) takes the parts of it that are newer.
///
/// Sessions are ordered by generation (term, then sequence), then by owner: when both devices of a pair log
/// in the same address, both keep the same one of the two.
package enum ApplyRule {
    /// The change `event` makes, given the session that holds its address now; `nil` when it changes nothing.
    package static func change(for event: Event, current: Session?) -> (IPAddress, TableEntry)? {
        switch event {
        case .login(let session):
            if let current, current.generation == session.generation, current.owner == session.owner {
                // The same session again (a duplicate, or a snapshot's copy): its parts that are newer win.
                let merged = merging(session, into: current)
                return merged == current ? nil : (session.ip, .online(merged))
            }
            if let current, !precedes(current, session) { return nil }
            return (session.ip, .online(session))
        case .update(let update):
            guard let current, current.generation == update.generation, current.owner == update.owner else {
                return nil
            }
            let updated = update.applied(to: current)
            return updated == current ? nil : (update.ip, .online(updated))
        case .logout(let logout):
            guard let current, ends(logout, owner: current.owner, generation: current.generation) else { return nil }
            return (logout.ip, .offline(logout.generation))
        case .deviceIDChanged, .takeover:
            return nil
        }
    }

    /// Whether `logout` ends the session of `owner` and `generation` that holds its address: a logout ends the
    /// session it names, and nothing else (a later login at the address is another session).
    package static func ends(_ logout: Logout, owner: DeviceID, generation: Generation) -> Bool {
        generation == logout.generation && owner == logout.owner
    }

    /// `current` with each part of `other` (the same session) whose revision is higher.
    static func merging(_ other: Session, into current: Session) -> Session {
        let theirs = other.revisions
        let ours = current.revisions
        // Nothing newer (a plain login's copy has every revision zero): the session as it is, with no new box.
        guard
            theirs.authorization > ours.authorization || theirs.accounting > ours.accounting
                || theirs.activity > ours.activity
        else { return current }
        var merged = current
        if theirs.authorization > ours.authorization {
            merged.sessionTimeout = other.sessionTimeout
            merged.idleTimeout = other.idleTimeout
        }
        merged.changeParts { parts in
            if theirs.authorization > ours.authorization {
                parts.authorization = other.authorization
                parts.revisions.authorization = theirs.authorization
            }
            if theirs.accounting > ours.accounting {
                parts.accounting = other.accounting
                parts.revisions.accounting = theirs.accounting
            }
            if theirs.activity > ours.activity {
                parts.lastActivity = other.lastActivity
                parts.revisions.activity = theirs.activity
            }
        }
        return merged
    }

    /// Whether session `a` is older than `b` in the order logins replace each other by.
    static func precedes(_ a: Session, _ b: Session) -> Bool {
        if a.generation != b.generation { return a.generation < b.generation }
        return a.owner < b.owner
    }
}

/// A min-heap of session deadlines, for session-timeout expiry of sessions not yet checkpointed.
struct DeadlineHeap: Sendable {
    struct Item: Sendable {
        var deadline: Timestamp
        var ip: IPAddress
        var generation: Generation
    }

    private var items: [Item] = []

    var first: Item? { items.first }

    mutating func push(_ item: Item) {
        items.append(item)
        var child = items.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard items[child].deadline < items[parent].deadline else { break }
            items.swapAt(child, parent)
            child = parent
        }
    }

    /// Removes the items that match `predicate` (after a checkpoint, whose deadlines are indexed on disk).
    mutating func removeAll(where predicate: (Item) -> Bool) {
        items.removeAll(where: predicate)
        items.sort { $0.deadline < $1.deadline }  // a sorted array is a valid min-heap
    }

    mutating func pop() -> Item? {
        guard !items.isEmpty else { return nil }
        items.swapAt(0, items.count - 1)
        let top = items.removeLast()
        var parent = 0
        while true {
            let left = 2 * parent + 1
            let right = left + 1
            var smallest = parent
            if left < items.count, items[left].deadline < items[smallest].deadline { smallest = left }
            if right < items.count, items[right].deadline < items[smallest].deadline { smallest = right }
            if smallest == parent { break }
            items.swapAt(parent, smallest)
            parent = smallest
        }
        return top
    }
}
