/// A batch of the peer's replication stream, decoded and ready for the writer.
package enum PeerBatch: Sendable {
    /// Records of the peer's own log of history `history`, in order, complete through the peer's sequence
    /// `through` (records of this device that the peer's log holds are left out of its stream).
    case records(origin: DeviceID, through: UInt64, history: UInt64, [LogRecord])
    /// A full resynchronization begins: this device's copy of the peer's users is dropped, and the peer's
    /// takeovers are recorded. A snapshot of `everything`, which a recovering device asked for, holds this
    /// device's users too: every session is dropped but this device's logins since it began to recover.
    /// A snapshot that `keep`s the copy: the peer recovered its users from this device, which holds them as it
    /// sent them; nothing is dropped, and the stream after it brings what the peer did since.
    case snapshotBegin(origin: DeviceID, takeovers: [Takeover], everything: Bool = false, keep: Bool = false)
    /// Sessions of the peer's users table, checked and still encoded.
    case snapshotSessions(origin: DeviceID, SnapshotSessions)
    /// The snapshot is complete; it stood at the peer's sequence `position` of history `history`, and the
    /// stream goes on after it. Read in several transactions, it holds states of the peer's table up to its
    /// sequence `wholeFrom`: once the stream is applied through there, this device's copy is the peer's
    /// table at a position again. After a snapshot of everything, the stream carries every record of the
    /// peer's log through its sequence `everythingThrough`, this device's own changes included.
    case snapshotEnd(
        origin: DeviceID,
        position: UInt64,
        wholeFrom: UInt64,
        everythingThrough: UInt64 = 0,
        history: UInt64
    )

    var origin: DeviceID {
        switch self {
        case .records(let origin, _, _, _), .snapshotBegin(let origin, _, _, _), .snapshotSessions(let origin, _),
            .snapshotEnd(let origin, _, _, _, _):
            origin
        }
    }
}

/// What applying a peer batch came to.
package struct PeerApplied: Sendable, Equatable {
    /// The peer's sequence this device has now applied through (what it acknowledges).
    package var through: UInt64
    /// The peer took this device's users over at a term above this device's: the device is demoted, and
    /// must reset and resynchronize. Records after the takeover were not applied.
    package var takeover: Takeover?
}

/// A logout as logged: what it ended, and the sequence of its record.
package struct LoggedLogout: Sendable {
    package var logout: Logout
    package var sequence: UInt64
}

/// What a demotion did with this device's events that the peer never acknowledged.
package struct Demotion: Sendable, Equatable {
    /// The last sequence of the log before the demotion: the events after the kept position, through it,
    /// are gone.
    package var lastDiscarded: UInt64
    /// How many of them were discarded.
    package var discardedEvents: Int
    /// How many of those were logouts, logged again in the new term.
    package var logoutsLoggedAgain: Int
}

/// A promotion that committed.
package struct Promotion: Sendable {
    /// The term the promotion raised the store to.
    package var term: UInt32
    /// The sequence of the takeover record.
    package var sequence: UInt64
    /// The takeovers known before and after it.
    package var before: Takeovers
    package var after: Takeovers
}
