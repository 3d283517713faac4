/// The sessions this store saw end recently — logged out, or replaced by a newer login — so that a late copy
/// of one of them (in a peer's snapshot read before the peer heard of the logout, or in its stream) never
/// brings it back. A session, once ended, is never legitimately online again: its address and generation
/// name it for good. The users table keeps no tombstones, so this is what remembers, for the most recent
/// `capacity` ends, which covers any logout still on its way to or from the peer.
struct EndedSessions: Sendable {
    struct Key: Hashable, Sendable {
        var ip: IPAddress
        var owner: DeviceID
        var generation: Generation

        init(_ session: Session) {
            self.init(ip: session.ip, owner: session.owner, generation: session.generation)
        }

        init(ip: IPAddress, owner: DeviceID, generation: Generation) {
            self.ip = ip
            self.owner = owner
            self.generation = generation
        }
    }

    /// How many ends are remembered.
    static let capacity = 1 << 18

    private var keys: Set<Key> = []
    /// The remembered ends in the order they came.
    private var order = Ring<Key>(capacity: capacity)

    /// Whether the session `key` names ended here.
    func contains(_ key: Key) -> Bool {
        keys.contains(key)
    }

    /// Remembers that the session `key` names ended, forgetting the oldest end beyond `capacity`.
    ///
    /// The set and the ring take their full size at the first end: growing them would rehash or copy every
    /// end remembered, within one of the writer's commits.
    mutating func insert(_ key: Key) {
        if order.isEmpty {
            keys.reserveCapacity(Self.capacity + 1)
            order.reserveFullCapacity()
        }
        guard keys.insert(key).inserted else { return }
        if let forgotten = order.append(key) { keys.remove(forgotten) }
    }
}
