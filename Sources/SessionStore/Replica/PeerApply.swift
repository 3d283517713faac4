import LMDB

// The requests that concern the peer: a batch of its stream or snapshot, and a promotion over it. Each holds its
// arguments, its staging step and its outcome, like the requests for this device's own events.
//
// `@unchecked Sendable` invariant of each: its outcome is touched only on the writer thread once the request is
// queued (by `stage`, `fail` and `answer`); its arguments never change.

extension LogWriter {
    final class PeerRequest: StagedRequest, @unchecked Sendable {
        private let batch: PeerBatch
        private var outcome: Outcome<PeerApplied>
        init(_ batch: PeerBatch, _ reply: consuming Reply<PeerApplied>) {
            self.batch = batch
            outcome = Outcome(reply)
        }
        func stage(_ state: WriterState, _ txn: borrowing ReadTransaction) {
            outcome.set(
                Result { () throws(SessionStoreError) in
                    try state.stagingPeerRecords { () throws(SessionStoreError) in
                        try PeerApply(state: state).stage(batch, txn: txn)
                    }
                }
            )
        }
        func fail(_ error: SessionStoreError) { outcome.fail(error) }
        func answer() { outcome.answer() }
    }

    final class PromotionRequest: StagedRequest, @unchecked Sendable {
        private let peer: DeviceID
        private let peerTerm: UInt32
        private var outcome: Outcome<Promotion>
        init(_ peer: DeviceID, _ peerTerm: UInt32, _ reply: consuming Reply<Promotion>) {
            self.peer = peer
            self.peerTerm = peerTerm
            outcome = Outcome(reply)
        }
        func stage(_ state: WriterState, _ txn: borrowing ReadTransaction) {
            outcome.set(Result { () throws(SessionStoreError) in try stagePromotion(on: state) })
        }
        func fail(_ error: SessionStoreError) { outcome.fail(error) }
        func answer() { outcome.answer() }

        /// Stages a takeover of `peer`'s users, raising the term above both devices' terms.
        private func stagePromotion(on state: WriterState) throws(SessionStoreError) -> Promotion {
            guard peer != state.origin else {
                throw SessionStoreError(.invalidArgument("a device cannot take over its own users (device \(peer))"))
            }
            let term = state.term
            let (newTerm, overflow) = max(term, peerTerm).addingReportingOverflow(1)
            guard !overflow else {
                throw SessionStoreError(.invalidArgument("the term cannot be raised past \(term)"))
            }
            let before = state.takeovers
            state.raiseTerm(to: newTerm)
            let sequence = state.nextSequence()
            state.emit(.takeover(from: peer, to: state.origin, term: newTerm), time: .now)
            // Written to the metadata only when in effect: a takeover of the peer's users already known at a
            // higher term (by a third device, in a hostile stream) stays the one the next open finds.
            state.recordTakeover(Takeover(from: peer, to: state.origin, term: newTerm))
            state.logger.notice(
                "promoted: this device takes over the users of device \(peer)",
                metadata: ["tandem.term": "\(newTerm)", "tandem.peer": "\(peer)"]
            )
            return Promotion(term: newTerm, sequence: sequence, before: before, after: state.takeovers)
        }
    }
}

/// The staging step of a batch of the peer's stream or snapshot: the rules the log is replayed with, applied
/// through the writer state's staging primitives. Everything is checked before anything is staged, so a bad
/// batch changes nothing.
struct PeerApply {
    let state: WriterState

    func stage(_ batch: PeerBatch, txn: borrowing ReadTransaction) throws(SessionStoreError) -> PeerApplied {
        let peer = batch.origin
        let origin = state.origin
        guard peer != origin else {
            throw SessionStoreError(
                .invalidArgument("the peer's stream claims this device's own ID \(origin); check the peer's device ID")
            )
        }
        let known = state.appliedPosition(of: peer)
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
                if record.origin == origin, record.sequence > state.recoveredThrough(from: peer) ?? 0,
                    !concernsCopy(of: peer, record.event)
                {
                    continue
                }
                if case .takeover(let from, let to, let newTerm) = record.event, from == origin, newTerm > state.term,
                    record.origin == peer
                {
                    takeover = Takeover(from: from, to: to, term: newTerm)
                    position = record.sequence - 1
                    break
                }
                try applyPeerEvent(record.event, term: record.term, origin: peer, time: record.time, txn: txn)
                // This device's own change to its own users, recovered from the peer: it goes back to the peer,
                // whose table may have lost it since (see `DigestHistory.Point.returnedThrough`).
                if record.origin == origin, !concernsCopy(of: peer, record.event) { state.noteReturned() }
            }
            state.setApplied(peer, position, history: history)
            if let wholeFrom = state.installingPosition(of: peer), position >= wholeFrom {
                try stageInstalling(peer, nil, txn: txn)
            }
            return PeerApplied(through: position, takeover: takeover)
        case .snapshotBegin(_, let peerTakeovers, let everything, let keep):
            if everything && state.recoveringFrom == nil {
                throw SessionStoreError(
                    .invalidArgument(
                        "device \(peer) sent a snapshot of everything, which only a recovering device asks for"
                    )
                )
            }
            for takeover in peerTakeovers { state.recordTakeover(takeover) }
            // The sessions this snapshot replaces go at its end, those it did not list (see `listed`).
            if keep { state.endListing(peer) } else { state.beginListing(peer) }
            state.setApplied(peer, 0)
            try stageInstalling(peer, .max, txn: txn)
            state.setRecoveredThrough(from: peer, nil)
            state.setInstallsEverything(from: peer, everything)
            state.setKeepsCopy(of: peer, keep)
            return PeerApplied(through: 0, takeover: nil)
        case .snapshotSessions(_, let sessions):
            guard state.installingPosition(of: peer) == .max else {
                throw SessionStoreError(.invalidArgument("device \(peer) sent snapshot sessions outside a snapshot"))
            }
            guard !state.keepsCopy(of: peer) || sessions.isEmpty else {
                throw SessionStoreError(
                    .invalidArgument("device \(peer) sent sessions in a snapshot that keeps this device's copy")
                )
            }
            let everything = state.installsEverything(from: peer)
            let takeovers = state.takeovers
            try sessions.forEachValue { (ip, value) throws(SessionStoreError) in
                let subject = try snapshotValue(value, at: ip) { value throws(CorruptRecordError) in
                    try RecordCodec.peekSessionOwner(value)
                }
                guard
                    everything
                        ? subject.owner == peer || subject.owner == origin
                        : takeovers.effectiveOwner(owner: subject.owner, term: subject.generation.term) == peer
                else {
                    throw SessionStoreError(
                        .invalidArgument(
                            "device \(peer)'s snapshot holds \(ip), owned by device \(subject.owner), not by it"
                        )
                    )
                }
            }
            let now = Timestamp.now
            try sessions.forEachValue { (ip, value) throws(SessionStoreError) in
                state.noteListed(ip, by: peer)
                try applySnapshotSession(value, at: ip, origin: peer, time: now, txn: txn)
            }
            return PeerApplied(through: known, takeover: nil)
        case .snapshotEnd(_, let position, let wholeFrom, let everythingThrough, let history):
            guard state.installingPosition(of: peer) == .max else {
                throw SessionStoreError(.invalidArgument("device \(peer) ended a snapshot it never began"))
            }
            guard wholeFrom >= position else {
                throw SessionStoreError(
                    .invalidArgument("device \(peer)'s snapshot at \(position) claims to be whole from \(wholeFrom)")
                )
            }
            if !state.keepsCopy(of: peer) { try dropUnlisted(by: peer, txn: txn) }
            state.setApplied(peer, position, history: history)
            let everything = state.installsEverything(from: peer)
            let whole = everything ? max(wholeFrom, everythingThrough) : wholeFrom
            if everything { state.setRecoveredThrough(from: peer, everythingThrough) }
            try stageInstalling(peer, whole > position ? whole : nil, txn: txn)
            return PeerApplied(through: position, takeover: nil)
        }
    }

    /// At the end of `peer`'s snapshot, drops the sessions it replaces that it did not list: the peer's copy
    /// (those `peer` owns in effect), or for a snapshot of everything, all but this device's own sessions
    /// logged in since it began to recover.
    private func dropUnlisted(by peer: DeviceID, txn: borrowing ReadTransaction) throws(SessionStoreError) {
        let listed = state.listedSoFar(by: peer)
        state.endListing(peer)
        let everything = state.installsEverything(from: peer)
        let kept = state.recoveringFrom ?? 0
        let origin = state.origin
        let term = state.term
        let now = Timestamp.now
        // Only the sessions it did not list and that it replaces are decoded, chosen by their owner and generation
        // read first: after the snapshot of a fresh copy, none, however many users this device has of its own.
        let takeovers = state.takeovers
        let replaced: (DeviceID, Generation) -> Bool =
            everything
            ? { owner, generation in !(owner == origin && generation.sequence > kept) }
            : { owner, generation in takeovers.effectiveOwner(owner: owner, term: generation.term) == peer }
        for session in try state.onlineSessions(txn: txn, skipping: listed, owned: replaced) {
            let sequence = state.nextSequence()
            let logout = Logout(ending: session, reason: .resync)
            state.appendRecord { buffer in
                RecordCodec.encode(
                    LogRecord(sequence: sequence, term: term, origin: peer, time: now, event: .logout(logout)),
                    into: &buffer
                )
            }
            state.stage(session.ip, .offline(session.generation), replacing: session, resync: true)
            if takeovers.effectiveOwner(of: session) == origin { state.noteReturned() }
        }
    }

    /// Notes where `peer`'s snapshot install stands; `nil`: this device's copy is whole again, and when the
    /// snapshot was one of everything, this device has recovered.
    private func stageInstalling(
        _ peer: DeviceID,
        _ wholeFrom: UInt64?,
        txn: borrowing ReadTransaction
    ) throws(SessionStoreError) {
        state.setInstalling(peer, wholeFrom)
        guard wholeFrom == nil else { return }
        let everything = state.installsEverything(from: peer)
        state.setInstallsEverything(from: peer, false)
        if everything, let from = state.recoveringFrom {
            state.stageMeta(.recovered(peer, state.sequence))
            try logOffAgain(after: from, txn: txn)
        }
    }

    /// The logouts this device logged again when it began to recover: the peer's snapshot brought back the
    /// sessions they ended (the peer had not heard of them yet); they are ended again, as new events.
    private func logOffAgain(after from: UInt64, txn: borrowing ReadTransaction) throws(SessionStoreError) {
        var logouts: [Logout] = []
        let files = state.files
        let origin = state.origin
        do {
            try files.logEnvironment.read { logTxn in
                try logTxn.withCursor(files.log) { cursor in
                    var entry = try withUnsafeBytes(of: StoreLayout.sequenceKey(from + 1)) {
                        try cursor.seek(atLeast: $0)
                    }
                    while let (key, value) = entry {
                        // Most records here are the peer's (its snapshot and stream): only this device's logouts
                        // are decoded.
                        if value.count > 1, value[1] == Event.Kind.logout.rawValue,
                            RecordCodec.peekOrigin(value) == origin,
                            let record = try? decodeLogEntry(key: key, value: value), record.origin == origin,
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
        let now = Timestamp.now
        try state.stagingOwnRecords { () throws(SessionStoreError) in
            // These logouts repeat the ones logged again when the recovery began, which the peer may have.
            try state.stageRepeatingOwnChanges { () throws(SessionStoreError) in
                for logout in logouts {
                    guard let session = try state.resolve(logout.ip, txn: txn), session.owner == logout.owner,
                        session.generation == logout.generation
                    else { continue }
                    _ = state.stageLogout(session, reason: logout.reason, time: now)
                }
            }
        }
    }

    /// Applies a session of the peer's snapshot, from its value as the peer sent it: a login of it, logged and
    /// staged as it came, without decoding it and encoding it again, when no session is online at its address;
    /// nothing when the same bytes are online there; otherwise decoded and applied as a login of the stream is.
    /// A value of an older format version is decoded too: its body is not a current login record's.
    private func applySnapshotSession(
        _ value: UnsafeRawBufferPointer,
        at ip: IPAddress,
        origin peer: DeviceID,
        time: Timestamp,
        txn: borrowing ReadTransaction
    ) throws(SessionStoreError) {
        // Checked against the rules when it came (``SnapshotSessions``).
        let fields = try snapshotValue(value, at: ip) { value throws(CorruptRecordError) in
            try RecordCodec.peekSessionValueFields(value, checkingRules: false)
        }
        defer {
            if state.takeovers.effectiveOwner(owner: fields.owner, term: fields.generation.term) == state.origin {
                state.noteReturned()
            }
        }
        // A session that ended here never comes back: the peer sent it before it heard of the end.
        guard !state.hasEnded(EndedSessions.Key(ip: ip, owner: fields.owner, generation: fields.generation)) else {
            return
        }
        let same = try state.withStoredSession(at: ip, txn: txn) { current in current.elementsEqual(value) }
        if same == true { return }  // the same session, with the same parts: what a login of it changes is nothing
        guard same == nil, value[0] == RecordCodec.version else {
            let session = try snapshotValue(value, at: ip) { value throws(CorruptRecordError) in
                try RecordCodec.decodeSessionValue(value, ip: ip)
            }
            try applyPeerEvent(.login(session), term: state.term, origin: peer, time: time, txn: txn)
            return
        }
        let sequence = state.nextSequence()
        let term = state.term
        state.appendRecord { buffer in
            RecordCodec.encodeLogin(
                storedValue: value,
                ip: ip,
                sequence: sequence,
                term: term,
                origin: peer,
                time: time,
                into: &buffer
            )
        }
        state.stageOnline(ip, stored: value, fields)
    }

    /// What `read` reads from the value of the session at `ip` of a peer's snapshot, naming its place when it is
    /// corrupt (``SnapshotSessions`` checked it when it arrived: only a value changed in memory since fails here).
    private func snapshotValue<T>(
        _ value: UnsafeRawBufferPointer,
        at ip: IPAddress,
        _ read: (UnsafeRawBufferPointer) throws(CorruptRecordError) -> T
    ) throws(SessionStoreError) -> T {
        do throws(CorruptRecordError) {
            return try read(value)
        } catch {
            throw SessionStoreError(.corruptRecord(error, location: "session \(ip) of a peer snapshot batch"))
        }
    }

    /// Whether `event` changes a session that `peer` owns in effect (a login, logout or update of one).
    private func concernsCopy(of peer: DeviceID, _ event: Event) -> Bool {
        switch event {
        case .login(let session):
            state.takeovers.effectiveOwner(of: session) == peer
        case .logout(let logout):
            state.takeovers.effectiveOwner(owner: logout.owner, term: logout.generation.term) == peer
        case .update(let update):
            state.takeovers.effectiveOwner(owner: update.owner, term: update.generation.term) == peer
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
            guard !state.hasEnded(session) else { return }
            let current = try state.resolve(session.ip, txn: txn)
            guard let (_, entry) = ApplyRule.change(for: event, current: current) else { return }
            if let current, state.takeovers.effectiveOwner(of: current) == state.origin,
                current.generation != session.generation || current.owner != session.owner
            {
                state.notePeerNotice(Logout(ending: current, reason: .superseded))
            }
            let sequence = state.nextSequence()
            state.appendRecord { buffer in
                RecordCodec.encodeLogin(
                    session,
                    sequence: sequence,
                    term: recordTerm,
                    origin: peer,
                    time: time,
                    into: &buffer
                )
            }
            state.stage(session.ip, entry, replacing: current)
            state.addDeadline(of: session)
        case .logout(let logout):
            // The session it ends is read from its stored bytes, not decoded; ``ApplyRule/ends(_:owner:generation:)``
            // is the rule ``ApplyRule/change(for:current:)`` applies to a decoded one.
            _ = try state.withStoredSession(at: logout.ip, txn: txn) { value throws(SessionStoreError) in
                let current = try peekStoredSessionFields(value, ip: logout.ip)
                guard ApplyRule.ends(logout, owner: current.owner, generation: current.generation) else { return }
                if state.takeovers.effectiveOwner(owner: current.owner, term: current.generation.term) == state.origin {
                    state.notePeerNotice(logout)
                }
                let sequence = state.nextSequence()
                state.appendRecord { buffer in
                    RecordCodec.encode(
                        LogRecord(sequence: sequence, term: recordTerm, origin: peer, time: time, event: event),
                        into: &buffer
                    )
                }
                state.stageEnd(logout.ip, of: current)
            }
        case .update(let update):
            let current = try state.resolve(update.ip, txn: txn)
            guard let current, let (_, entry) = ApplyRule.change(for: event, current: current) else { return }
            let updated = entry.session  // once: each `entry.session` copies the session
            if state.takeovers.effectiveOwner(of: current) == state.origin, let updated {
                state.notePeerUpdate(updated, reason: update.reason)
            }
            let sequence = state.nextSequence()
            state.appendRecord { buffer in
                RecordCodec.encode(
                    LogRecord(sequence: sequence, term: recordTerm, origin: peer, time: time, event: event),
                    into: &buffer
                )
            }
            state.stage(update.ip, entry, replacing: current)
            if let updated, updated.deadline != current.deadline { state.addDeadline(of: updated) }
        case .takeover(let from, let to, let newTerm):
            state.recordTakeover(Takeover(from: from, to: to, term: newTerm))
            let sequence = state.nextSequence()
            state.appendRecord { buffer in
                RecordCodec.encode(
                    LogRecord(sequence: sequence, term: recordTerm, origin: peer, time: time, event: event),
                    into: &buffer
                )
            }
        case .deviceIDChanged:
            break
        }
    }
}
