/// The users table's digest after recent commits, with the positions it stood at, and the digest change of
/// each recent record of this store's own.
///
/// Two devices' tables are compared at a *digest point* of one of them, `(through, applied)`, and a point of
/// the other that had applied the first one's stream through exactly `through`. Both tables then hold the
/// same changes once the second device's own changes that had not reached the first by its point (those
/// after the first one's `applied`) are taken back out of the second one's digest, and when neither table
/// was half-way through a snapshot (``Point/whole``). An own change that a peer's event touched since (the
/// same address) is not taken out: the comparison waits for a later point.
package struct DigestHistory: Sendable {
    package struct Point: Sendable, Equatable {
        /// This store's last sequence.
        package var through: UInt64
        /// The peer positions applied.
        package var applied: [DeviceID: UInt64]
        /// The history of each peer's log that `applied` counts in.
        package var appliedHistory: [DeviceID: UInt64]
        /// The digest of every session in the table.
        package var value: UInt64
        /// The last sequence of a record this store logged of its own, not applied from a peer's stream.
        package var ownThrough: UInt64
        /// The last sequence of a record this store logged from a peer's snapshot, or of its own events it
        /// recovered from the peer's stream, about a session it owns in effect. Such a record goes back to the
        /// peer, whose table may have lost its change since (two devices that recover at once each drop what
        /// the other's snapshot did not list): until the peer has applied this store's stream through it, the
        /// two tables may not hold the same changes.
        package var returnedThrough: UInt64
        /// How many snapshots this store had begun to install since it was opened.
        package var installs: UInt64
        /// Whether no snapshot was half-way installed: the table is a state the peer's table was in too.
        package var whole: Bool

        package init(
            through: UInt64,
            applied: [DeviceID: UInt64],
            appliedHistory: [DeviceID: UInt64],
            value: UInt64,
            ownThrough: UInt64,
            returnedThrough: UInt64 = 0,
            installs: UInt64,
            whole: Bool
        ) {
            self.through = through
            self.applied = applied
            self.appliedHistory = appliedHistory
            self.value = value
            self.ownThrough = ownThrough
            self.returnedThrough = returnedThrough
            self.installs = installs
            self.whole = whole
        }
    }

    /// The change one record of this store's own made to the digest.
    package struct OwnDelta: Sendable, Equatable {
        package var sequence: UInt64
        package var ip: IPAddress
        package var delta: UInt64
        /// A peer's event changed the same address since: the change may not stand apart from the peer's.
        package var disturbed = false

        package init(sequence: UInt64, ip: IPAddress, delta: UInt64) {
            self.sequence = sequence
            self.ip = ip
            self.delta = delta
        }
    }

    /// How many points are kept.
    package static let capacity = 4096
    /// How many own changes are kept.
    package static let ownCapacity = 1 << 16

    /// This store's recent own changes, oldest first. Each change that falls out of the ring is forgotten as the
    /// next one comes in, so that no commit pays for forgetting thousands.
    private var own = Ring<OwnDelta>(capacity: ownCapacity)
    /// The last sequence of the own changes forgotten.
    private(set) var forgottenThrough: UInt64 = 0
    /// The ring index of the latest own change of each address in the ring.
    private var latestOwn: [IPAddress: Int] = [:]

    package init() {}

    /// Notes the own changes of a commit, and the addresses the peer's events of that commit changed.
    package mutating func noteChanges(own changes: [OwnDelta], touchedByPeer addresses: [IPAddress]) {
        if own.isEmpty, !changes.isEmpty {
            // Room for the whole ring at once: growing it, and the map, would copy them within a commit.
            own.reserveFullCapacity()
            latestOwn.reserveCapacity(Self.ownCapacity)
        }
        for change in changes {
            if let oldest = own.append(change) {
                forgottenThrough = max(forgottenThrough, oldest.sequence)
                if latestOwn[oldest.ip] == own.startIndex - 1 { latestOwn[oldest.ip] = nil }
            }
            latestOwn[change.ip] = own.endIndex - 1
        }
        for ip in addresses {
            if let index = latestOwn[ip] { own[index].disturbed = true }
        }
    }

    /// Forgets this store's own changes through `sequence`: those made before it was opened, or before it was
    /// emptied, whose changes to the digest it never knew. A comparison that would take one of them out waits
    /// until the peer has them.
    package mutating func forgetOwnChanges(through sequence: UInt64) {
        forgottenThrough = max(forgottenThrough, sequence)
    }

    /// The digest `point` would have had without this store's own changes after `ownThrough` (the peer had
    /// not seen them); `nil` when one of them is forgotten, or touched by a peer's event since, or when the
    /// point holds a record returned to the peer after `ownThrough` (see ``Point/returnedThrough``).
    package func value(of point: Point, withOwnThrough ownThrough: UInt64) -> UInt64? {
        guard point.returnedThrough <= ownThrough else { return nil }
        guard point.ownThrough > ownThrough else { return point.value }
        guard forgottenThrough <= ownThrough else { return nil }
        var value = point.value
        for change in own.reversed() {
            if change.sequence <= ownThrough { break }
            if change.sequence > point.through { continue }
            if change.disturbed { return nil }
            value &-= change.delta
        }
        return value
    }
    private(set) var points = Ring<Point>(capacity: capacity)

    package mutating func append(_ point: Point) {
        points.append(point)
    }

    mutating func removeAll() {
        points.removeAll()
        own.removeAll()
        latestOwn.removeAll()
        forgottenThrough = 0
    }

    /// The latest point.
    package var latest: Point? { points.last }

    /// The points from the oldest to the latest.
    package var chronological: [Point] { Array(points) }

    /// The latest point at this store's sequence `through`.
    package func latest(through: UInt64) -> Point? {
        points.last { $0.through == through }
    }

    /// The first whole point, after this store's latest snapshot install began, at which it had applied
    /// `peer`'s stream through exactly `peerApplied`.
    package func first(applying peer: DeviceID, through peerApplied: UInt64) -> Point? {
        guard let installs = latest?.installs else { return nil }
        return points.filter { $0.installs == installs && $0.whole && ($0.applied[peer] ?? 0) == peerApplied }
            .min { $0.through < $1.through }
    }
}
