/// A users table built in memory from log records, by the same rules the store applies.
///
/// It is the reference the store's table is checked against (`tandem log verify`), the way to rebuild
/// who was online at a past time, and what a device applies its peer's stream with. Two rules make
/// duplicated, reordered or replayed records harmless:
/// - each origin's records apply in sequence order: a record at or below the highest sequence already
///   applied from its origin changes nothing;
/// - per-user generations: a login applies only over an older generation or a free address, a logout only
///   to the exact generation it ends.
///
/// ```swift
/// var table = SessionTable()
/// try store.forEachLogRecord { record in
///     table.apply(record)
///     return true
/// }
/// print(table.count, "users online")
/// ```
public struct SessionTable: Sendable, Hashable {
    /// The online sessions, by address.
    public private(set) var sessions: [IPAddress: Session] = [:]
    /// The highest sequence applied from each origin device.
    public private(set) var applied: [DeviceID: UInt64] = [:]

    /// An empty table.
    public init() {}

    /// An empty table with room for `capacity` sessions.
    /// - Parameter capacity: the sessions expected.
    public init(reservingCapacity capacity: Int) {
        sessions.reserveCapacity(capacity)
    }

    /// The number of online users.
    public var count: Int { sessions.count }

    /// Applies one record.
    ///
    /// - Parameter record: a log record.
    /// - Returns: whether the table changed (`false` for a duplicate, stale or bookkeeping record).
    @discardableResult
    public mutating func apply(_ record: LogRecord) -> Bool {
        if let last = applied[record.origin], record.sequence <= last { return false }
        applied[record.origin] = record.sequence
        guard let ip = record.event.address else { return false }
        guard let (_, entry) = ApplyRule.change(for: record.event, current: sessions[ip]) else { return false }
        sessions[ip] = entry.session
        return true
    }
}

extension SessionTable {
    /// Whether `event` changes its address when `current` holds it (`nil`: the address is free), by the
    /// rules ``apply(_:)`` follows.
    public static func changes(_ event: Event, current: Session?) -> Bool {
        ApplyRule.change(for: event, current: current) != nil
    }
}

extension Event {
    /// The address the event is about, if it is about one user.
    public var address: IPAddress? {
        switch self {
        case .login(let session): session.ip
        case .logout(let logout): logout.ip
        case .update(let update): update.ip
        case .deviceIDChanged, .takeover: nil
        }
    }
}
