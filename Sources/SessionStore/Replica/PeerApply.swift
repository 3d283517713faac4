import LMDB

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
    /// Sessions of the peer's users table.
    case snapshotSessions(origin: DeviceID, [Session])
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
            installs: UInt64,
            whole: Bool
        ) {
            self.through = through
            self.applied = applied
            self.appliedHistory = appliedHistory
            self.value = value
            self.ownThrough = ownThrough
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

    /// This store's recent own changes, oldest first, and the last sequence of those forgotten.
    private(set) var own: [OwnDelta] = []
    private var ownHead = 0
    private(set) var forgottenThrough: UInt64 = 0
    /// The index in `own` (counted from the first ever kept) of the latest own change of each address.
    private var latestOwn: [IPAddress: Int] = [:]
    private var ownBase = 0

    package init() {}

    /// Notes the own changes of a commit, and the addresses the peer's events of that commit changed.
    package mutating func noteChanges(own changes: [OwnDelta], touchedByPeer addresses: [IPAddress]) {
        for change in changes {
            latestOwn[change.ip] = ownBase + own.count
            own.append(change)
        }
        for ip in addresses {
            if let index = latestOwn[ip], index >= ownBase + ownHead { own[index - ownBase].disturbed = true }
        }
        if own.count - ownHead > Self.ownCapacity {
            let drop = own.count - ownHead - Self.ownCapacity
            forgottenThrough = max(forgottenThrough, own[ownHead + drop - 1].sequence)
            ownHead += drop
        }
        if ownHead > Self.ownCapacity {
            for index in 0..<ownHead where latestOwn[own[index].ip] == ownBase + index {
                latestOwn[own[index].ip] = nil
            }
            own.removeFirst(ownHead)
            ownBase += ownHead
            ownHead = 0
        }
    }

    /// Forgets this store's own changes through `sequence`: those made before it was opened, or before it was
    /// emptied, whose changes to the digest it never knew. A comparison that would take one of them out waits
    /// until the peer has them.
    package mutating func forgetOwnChanges(through sequence: UInt64) {
        forgottenThrough = max(forgottenThrough, sequence)
    }

    /// The digest `point` would have had without this store's own changes after `ownThrough` (the peer had
    /// not seen them); `nil` when one of them is forgotten, or touched by a peer's event since.
    package func value(of point: Point, withOwnThrough ownThrough: UInt64) -> UInt64? {
        guard point.ownThrough > ownThrough else { return point.value }
        guard forgottenThrough <= ownThrough else { return nil }
        var value = point.value
        for change in own[ownHead...].reversed() {
            if change.sequence <= ownThrough { break }
            if change.sequence > point.through { continue }
            if change.disturbed { return nil }
            value &-= change.delta
        }
        return value
    }
    private(set) var points: [Point] = []
    private var next = 0

    package mutating func append(_ point: Point) {
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
        own.removeAll()
        ownHead = 0
        ownBase = 0
        latestOwn.removeAll()
        forgottenThrough = 0
    }

    /// The latest point.
    package var latest: Point? {
        points.isEmpty ? nil : points[(next + points.count - 1) % points.count]
    }

    /// The points from the oldest to the latest.
    package var chronological: [Point] { Array(points[next...] + points[..<next]) }

    /// The latest point at this store's sequence `through`.
    package func latest(through: UInt64) -> Point? {
        chronological.last { $0.through == through }
    }

    /// The first whole point, after this store's latest snapshot install began, at which it had applied
    /// `peer`'s stream through exactly `peerApplied`.
    package func first(applying peer: DeviceID, through peerApplied: UInt64) -> Point? {
        guard let installs = latest?.installs else { return nil }
        return points.filter { $0.installs == installs && $0.whole && ($0.applied[peer] ?? 0) == peerApplied }
            .min { $0.through < $1.through }
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
        stagingPeer = true
        defer { stagingPeer = false }
        switch batch {
        case .records(_, let through, let history, let records):
            var previous: UInt64 = 0
            for record in records {
                // The peer's own events, and this device's that the peer sends back (see `readStream`).
                guard record.origin == peer || record.origin == origin else {
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
                if case .login(let session) = record.event, session.owner != peer,
                    record.origin == peer || session.owner != origin
                {
                    throw SessionStoreError(
                        .invalidArgument("device \(peer) streamed a login of a session owned by \(session.owner)")
                    )
                }
                previous = record.sequence
            }
            var position = max(known, through)
            var takeover: Takeover?
            for record in records where record.sequence > known {
                // This device's own event, back from the peer: it matters only to the copy of the peer's
                // users, which a snapshot may have rebuilt without it; this device's own users have it, unless
                // they are being recovered from the peer, through the sequence its snapshot said.
                if record.origin == origin, record.sequence > stagedRecoveredThrough[peer] ?? 0,
                    !concernsCopy(of: peer, record.event)
                {
                    continue
                }
                if case .takeover(let from, let to, let newTerm) = record.event, from == origin, newTerm > term,
                    record.origin == peer
                {
                    takeover = Takeover(from: from, to: to, term: newTerm)
                    position = record.sequence - 1
                    break
                }
                try applyPeerEvent(record.event, term: record.term, origin: peer, time: record.time, txn: txn)
            }
            stagedApplied[peer] = position
            metaChanges.append(.applied(peer, position))
            metaChanges.append(.appliedHistory(peer, history))
            if let wholeFrom = stagedInstalling[peer], position >= wholeFrom {
                try stageInstalling(peer, nil, txn: txn)
            }
            return PeerApplied(through: position, takeover: takeover)
        case .snapshotBegin(_, let peerTakeovers, let everything, let keep):
            if everything && recoveringFrom == nil {
                throw SessionStoreError(
                    .invalidArgument(
                        "device \(peer) sent a snapshot of everything, which only a recovering device asks for"
                    )
                )
            }
            for takeover in peerTakeovers { recordTakeover(takeover) }
            // The sessions this snapshot replaces go at its end, those it did not list (see `listed`).
            if keep { endListing(peer) } else { beginListing(peer) }
            stagedApplied[peer] = 0
            metaChanges.append(.applied(peer, 0))
            try stageInstalling(peer, .max, txn: txn)
            stagedRecoveredThrough[peer] = nil
            if everything { stagedEverything.insert(peer) } else { stagedEverything.remove(peer) }
            if keep { stagedKeeping.insert(peer) } else { stagedKeeping.remove(peer) }
            return PeerApplied(through: 0, takeover: nil)
        case .snapshotSessions(_, let sessions):
            guard stagedInstalling[peer] == .max else {
                throw SessionStoreError(.invalidArgument("device \(peer) sent snapshot sessions outside a snapshot"))
            }
            guard !stagedKeeping.contains(peer) || sessions.isEmpty else {
                throw SessionStoreError(
                    .invalidArgument("device \(peer) sent sessions in a snapshot that keeps this device's copy")
                )
            }
            let everything = stagedEverything.contains(peer)
            for session in sessions
            where everything
                ? session.owner != peer && session.owner != origin : takeovers.effectiveOwner(of: session) != peer
            {
                throw SessionStoreError(
                    .invalidArgument(
                        "device \(peer)'s snapshot holds \(session.ip), owned by device \(session.owner), not by it"
                    )
                )
            }
            let now = Timestamp.now
            for session in sessions {
                noteListed(session.ip, by: peer)
                try applyPeerEvent(.login(session), term: term, origin: peer, time: now, txn: txn)
            }
            return PeerApplied(through: known, takeover: nil)
        case .snapshotEnd(_, let position, let wholeFrom, let everythingThrough, let history):
            guard stagedInstalling[peer] == .max else {
                throw SessionStoreError(.invalidArgument("device \(peer) ended a snapshot it never began"))
            }
            guard wholeFrom >= position else {
                throw SessionStoreError(
                    .invalidArgument("device \(peer)'s snapshot at \(position) claims to be whole from \(wholeFrom)")
                )
            }
            if !stagedKeeping.contains(peer) { try dropUnlisted(by: peer, txn: txn) }
            stagedApplied[peer] = position
            metaChanges.append(.applied(peer, position))
            metaChanges.append(.appliedHistory(peer, history))
            let whole = stagedEverything.contains(peer) ? max(wholeFrom, everythingThrough) : wholeFrom
            if stagedEverything.contains(peer) { stagedRecoveredThrough[peer] = everythingThrough }
            try stageInstalling(peer, whole > position ? whole : nil, txn: txn)
            return PeerApplied(through: position, takeover: nil)
        }
    }

    /// At the end of `peer`'s snapshot, drops the sessions it replaces that it did not list: the peer's copy
    /// (those `peer` owns in effect), or for a snapshot of everything, all but this device's own sessions
    /// logged in since it began to recover.
    private func dropUnlisted(by peer: DeviceID, txn: borrowing ReadTransaction) throws(SessionStoreError) {
        let listed = listedSoFar(by: peer)
        endListing(peer)
        let everything = stagedEverything.contains(peer)
        let kept = recoveringFrom ?? 0
        let now = Timestamp.now
        for session in try onlineSessions(txn: txn)
        where !listed.contains(session.ip)
            && (everything
                ? !(session.owner == origin && session.generation.sequence > kept)
                : takeovers.effectiveOwner(of: session) == peer)
        {
            sequence += 1
            let logout = Logout(ending: session, reason: .resync)
            appendRecord { buffer in
                RecordCodec.encode(
                    LogRecord(sequence: sequence, term: term, origin: peer, time: now, event: .logout(logout)),
                    into: &buffer
                )
            }
            stage(session.ip, .offline(session.generation), replacing: session, resync: true)
        }
    }

    /// Notes where `peer`'s snapshot install stands; `nil`: this device's copy is whole again, and when the
    /// snapshot was one of everything, this device has recovered.
    private func stageInstalling(
        _ peer: DeviceID,
        _ wholeFrom: UInt64?,
        txn: borrowing ReadTransaction
    ) throws(SessionStoreError) {
        stagedInstalling[peer] = wholeFrom
        metaChanges.append(.installing(peer, wholeFrom))
        if wholeFrom == nil, stagedEverything.remove(peer) != nil, let from = recoveringFrom {
            metaChanges.append(.recovered(peer, sequence))
            try logOffAgain(after: from, txn: txn)
        }
    }

    /// The logouts this device logged again when it began to recover: the peer's snapshot brought back the
    /// sessions they ended (the peer had not heard of them yet); they are ended again, as new events.
    private func logOffAgain(after from: UInt64, txn: borrowing ReadTransaction) throws(SessionStoreError) {
        var logouts: [Logout] = []
        do {
            try files.logEnvironment.read { logTxn in
                try logTxn.withCursor(files.log) { cursor in
                    var entry = try withUnsafeBytes(of: StoreLayout.sequenceKey(from + 1)) {
                        try cursor.seek(atLeast: $0)
                    }
                    while let (key, value) = entry {
                        if let record = try? decodeLogEntry(key: key, value: value), record.origin == origin,
                            case .logout(let logout) = record.event
                        {
                            logouts.append(logout)
                        }
                        entry = try cursor.move(.next)
                    }
                }
            }
        } catch {
            throw SessionStoreError.storage(error, doing: "reading the logouts to log again")
        }
        stagingPeer = false
        defer { stagingPeer = true }
        let now = Timestamp.now
        // These logouts repeat the ones logged again when the recovery began, which the peer may have.
        try stageRepeatingOwnChanges { () throws(SessionStoreError) in
            for logout in logouts {
                guard let session = try resolve(logout.ip, txn: txn), session.owner == logout.owner,
                    session.generation == logout.generation
                else { continue }
                _ = stageLogout(session, reason: logout.reason, time: now)
            }
        }
    }

    /// Records a takeover the peer sent, and stages it for the log's metadata only when it is now the one in
    /// effect: one that a takeover already known covers (of a higher term, or of the same term and recorded
    /// first) changes nothing, and writing it would replace that one on disk, where the store would find it
    /// on its next open.
    private func recordTakeover(_ takeover: Takeover) {
        let known = takeovers.byDevice[takeover.from]
        takeovers.record(takeover)
        if takeovers.byDevice[takeover.from] != known { metaChanges.append(.takeover(takeover)) }
    }

    /// Whether `event` changes a session that `peer` owns in effect (a login or logout of one).
    private func concernsCopy(of peer: DeviceID, _ event: Event) -> Bool {
        switch event {
        case .login(let session):
            takeovers.effectiveOwner(of: session) == peer
        case .logout(let logout):
            takeovers.effectiveOwner(owner: logout.owner, term: logout.generation.term) == peer
        case .deviceIDChanged, .takeover:
            false
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
            // A session that ended here never comes back: the peer sent it before it heard of the end.
            guard !hasEnded(session) else { return }
            let current = try resolve(session.ip, txn: txn)
            guard let (_, entry) = ApplyRule.change(for: event, current: current) else { return }
            if let current, takeovers.effectiveOwner(of: current) == origin {
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
            if takeovers.effectiveOwner(of: current) == origin { peerNotices.append(logout) }
            sequence += 1
            appendRecord { buffer in
                RecordCodec.encode(
                    LogRecord(sequence: sequence, term: recordTerm, origin: peer, time: time, event: event),
                    into: &buffer
                )
            }
            stage(logout.ip, entry, replacing: current)
        case .takeover(let from, let to, let newTerm):
            recordTakeover(Takeover(from: from, to: to, term: newTerm))
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
        let before = takeovers
        term = newTerm
        sequence += 1
        emit(.takeover(from: peer, to: origin, term: newTerm), time: .now)
        metaChanges.append(.term(newTerm))
        // Written to the metadata only when in effect: a takeover of the peer's users already known at a
        // higher term (by a third device, in a hostile stream) stays the one the next open finds.
        recordTakeover(Takeover(from: peer, to: origin, term: newTerm))
        logger.notice(
            "promoted: this device takes over the users of device \(peer)",
            metadata: ["tandem.term": "\(newTerm)", "tandem.peer": "\(peer)"]
        )
        return Promotion(term: newTerm, sequence: sequence, before: before, after: takeovers)
    }
}
