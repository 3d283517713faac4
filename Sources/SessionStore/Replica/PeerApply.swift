import LMDB

/// A batch of the peer's replication stream, decoded and ready for the writer.
package enum PeerBatch: Sendable {
    /// Records of the peer's own log of history `history`, in order, complete through the peer's sequence
    /// `through` (records of this device that the peer's log holds are left out of its stream).
    case records(origin: DeviceID, through: UInt64, history: UInt64, [LogRecord])
    /// A full resynchronization begins: this device's copy of the peer's users is dropped, and the peer's
    /// takeovers are recorded.
    case snapshotBegin(origin: DeviceID, adoptions: [Adoption])
    /// Sessions of the peer's users table.
    case snapshotSessions(origin: DeviceID, [Session])
    /// The snapshot is complete; it stood at the peer's sequence `position` of history `history`, and the
    /// stream goes on after it.
    case snapshotEnd(origin: DeviceID, position: UInt64, history: UInt64)

    var origin: DeviceID {
        switch self {
        case .records(let origin, _, _, _), .snapshotBegin(let origin, _), .snapshotSessions(let origin, _),
            .snapshotEnd(let origin, _, _):
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
    package var takeover: Adoption?
}

/// A promotion that committed.
package struct Promotion: Sendable {
    /// The term the promotion raised the store to.
    package var term: UInt32
    /// The sequence of the takeover record.
    package var sequence: UInt64
    /// The takeovers known before and after it.
    package var before: Adoptions
    package var after: Adoptions
}

/// The users table's digest after recent commits, with the positions it stood at.
package struct DigestHistory: Sendable {
    package struct Point: Sendable, Equatable {
        /// This store's last sequence.
        package var through: UInt64
        /// The peer positions applied.
        package var applied: [DeviceID: UInt64]
        /// The digest of every session in the table.
        package var value: UInt64
    }

    static let capacity = 4096
    private(set) var points: [Point] = []
    private var next = 0

    mutating func append(_ point: Point) {
        if points.count < Self.capacity {
            points.append(point)
        } else {
            points[next] = point
            next = (next + 1) % Self.capacity
        }
    }

    mutating func removeAll() {
        points.removeAll()
        next = 0
    }

    /// The latest point.
    package var latest: Point? {
        points.isEmpty ? nil : points[(next + points.count - 1) % points.count]
    }

    /// The point at which this store stood at `through` with `peer` applied through `peerApplied`.
    package func point(through: UInt64, peer: DeviceID, peerApplied: UInt64) -> Point? {
        points.last { $0.through == through && ($0.applied[peer] ?? 0) == peerApplied }
    }
}

extension LogWriter {
    /// Stages a batch of the peer's stream by the same rules the log is replayed with. Everything is
    /// checked before anything is staged, so a bad batch changes nothing.
    func stagePeer(_ batch: PeerBatch, txn: borrowing ReadTransaction) throws(SessionStoreError) -> PeerApplied {
        let peer = batch.origin
        guard peer != origin else {
            throw SessionStoreError(
                .invalidArgument("the peer's stream claims this device's own ID \(origin); check the peer's device ID")
            )
        }
        let known = stagedApplied[peer] ?? applied[peer] ?? 0
        switch batch {
        case .records(_, let through, let history, let records):
            var previous: UInt64 = 0
            for record in records {
                guard record.origin == peer else {
                    throw SessionStoreError(
                        .invalidArgument("a record of device \(record.origin) in device \(peer)'s stream")
                    )
                }
                guard record.sequence > previous, record.sequence <= through else {
                    throw SessionStoreError(
                        .invalidArgument(
                            "record \(record.sequence) out of order in device \(peer)'s stream (through \(through))"
                        )
                    )
                }
                if case .login(let session) = record.event, session.owner != peer {
                    throw SessionStoreError(
                        .invalidArgument("device \(peer) streamed a login of a session owned by \(session.owner)")
                    )
                }
                previous = record.sequence
            }
            var position = max(known, through)
            var takeover: Adoption?
            for record in records where record.sequence > known {
                if case .takeover(let from, let to, let newTerm) = record.event, from == origin, newTerm > term {
                    takeover = Adoption(from: from, to: to, term: newTerm)
                    position = record.sequence - 1
                    break
                }
                try applyPeerEvent(record.event, term: record.term, origin: peer, time: record.time, txn: txn)
            }
            stagedApplied[peer] = position
            metaChanges.append(.applied(peer, position))
            metaChanges.append(.appliedHistory(peer, history))
            return PeerApplied(through: position, takeover: takeover)
        case .snapshotBegin(_, let peerAdoptions):
            for adoption in peerAdoptions {
                adoptions.record(adoption)
                metaChanges.append(.adoption(adoption))
            }
            let now = Timestamp.now
            for session in try onlineSessions(txn: txn) where adoptions.effectiveOwner(of: session) == peer {
                sequence += 1
                let logout = Logout(ending: session, reason: .resync)
                appendRecord { buffer in
                    RecordCodec.encode(
                        LogRecord(sequence: sequence, term: term, origin: peer, time: now, event: .logout(logout)),
                        into: &buffer
                    )
                }
                stage(session.ip, .offline(session.generation), replacing: session)
            }
            stagedApplied[peer] = 0
            metaChanges.append(.applied(peer, 0))
            return PeerApplied(through: 0, takeover: nil)
        case .snapshotSessions(_, let sessions):
            for session in sessions where adoptions.effectiveOwner(of: session) != peer {
                throw SessionStoreError(
                    .invalidArgument(
                        "device \(peer)'s snapshot holds \(session.ip), owned by device \(session.owner), not by it"
                    )
                )
            }
            let now = Timestamp.now
            for session in sessions {
                try applyPeerEvent(.login(session), term: term, origin: peer, time: now, txn: txn)
            }
            return PeerApplied(through: known, takeover: nil)
        case .snapshotEnd(_, let position, let history):
            stagedApplied[peer] = position
            metaChanges.append(.applied(peer, position))
            metaChanges.append(.appliedHistory(peer, history))
            return PeerApplied(through: position, takeover: nil)
        }
    }

    /// Applies one of the peer's events, logging it here (under the peer's origin, so that it is never
    /// streamed back) when it changes the table.
    private func applyPeerEvent(
        _ event: Event,
        term recordTerm: UInt32,
        origin peer: DeviceID,
        time: Timestamp,
        txn: borrowing ReadTransaction
    ) throws(SessionStoreError) {
        switch event {
        case .login(let session):
            let current = try resolve(session.ip, txn: txn)
            guard let (_, entry) = ApplyRule.change(for: event, current: current) else { return }
            if let current, adoptions.effectiveOwner(of: current) == origin {
                peerNotices.append(Logout(ending: current, reason: .superseded))
            }
            sequence += 1
            appendRecord { buffer in
                RecordCodec.encodeLogin(
                    session,
                    sequence: sequence,
                    term: recordTerm,
                    origin: peer,
                    time: time,
                    into: &buffer
                )
            }
            stage(session.ip, entry, replacing: current)
            if let deadline = session.deadline {
                newDeadlines.append(.init(deadline: deadline, ip: session.ip, generation: session.generation))
            }
        case .logout(let logout):
            let current = try resolve(logout.ip, txn: txn)
            guard let current, let (_, entry) = ApplyRule.change(for: event, current: current) else { return }
            if adoptions.effectiveOwner(of: current) == origin { peerNotices.append(logout) }
            sequence += 1
            appendRecord { buffer in
                RecordCodec.encode(
                    LogRecord(sequence: sequence, term: recordTerm, origin: peer, time: time, event: event),
                    into: &buffer
                )
            }
            stage(logout.ip, entry, replacing: current)
        case .takeover(let from, let to, let newTerm):
            let adoption = Adoption(from: from, to: to, term: newTerm)
            adoptions.record(adoption)
            metaChanges.append(.adoption(adoption))
            sequence += 1
            appendRecord { buffer in
                RecordCodec.encode(
                    LogRecord(sequence: sequence, term: recordTerm, origin: peer, time: time, event: event),
                    into: &buffer
                )
            }
        case .deviceIDChanged:
            break
        }
    }

    /// Stages a takeover of `peer`'s users, raising the term above both devices' terms.
    func stagePromotion(over peer: DeviceID, peerTerm: UInt32) throws(SessionStoreError) -> Promotion {
        guard peer != origin else {
            throw SessionStoreError(.invalidArgument("a device cannot take over its own users (device \(peer))"))
        }
        let (newTerm, overflow) = max(term, peerTerm).addingReportingOverflow(1)
        guard !overflow else { throw SessionStoreError(.invalidArgument("the term cannot be raised past \(term)")) }
        let before = adoptions
        term = newTerm
        let adoption = Adoption(from: peer, to: origin, term: newTerm)
        adoptions.record(adoption)
        sequence += 1
        emit(.takeover(from: peer, to: origin, term: newTerm), time: .now)
        metaChanges.append(.term(newTerm))
        metaChanges.append(.adoption(adoption))
        logger.notice(
            "promoted: this device takes over the users of device \(peer)",
            metadata: ["tandem.term": "\(newTerm)", "tandem.peer": "\(peer)"]
        )
        return Promotion(term: newTerm, sequence: sequence, before: before, after: adoptions)
    }
}
