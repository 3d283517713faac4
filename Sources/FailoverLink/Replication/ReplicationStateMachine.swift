import SessionStore

/// The replication rules of a device's link to its peer, without sockets, tasks or a clock of its own.
///
/// It takes the inputs of a connection — the peer's stream request, its acknowledgements, the outcome of each
/// read of the log and of each batch of the peer's stream applied, digest points and matches, resync requests,
/// the time — with the facts the store states at that moment, and answers with what to do: step down, send a
/// snapshot (of everything, or one that keeps the peer's copy), move the log's hold or drop the recovery's,
/// read the log from a position and send what it holds, acknowledge, answer a digest request, report a match,
/// ask for a resynchronization, announce synchronization. The connection code carries the actions out: it only
/// moves bytes and calls the store.
///
/// Counters (digests compared, mismatches, snapshots sent and received) and the resync throttle span
/// connections; everything else starts again with each connection (``connectionStarted(installsBase:now:)``).
struct ReplicationStateMachine: Sendable {
    /// How long after a resync request this device asks for no other.
    static let resyncInterval: Duration = .seconds(5)
    /// How often the log's hold follows the peer's acknowledgements at most.
    static let holdInterval: Duration = .milliseconds(100)

    // Across connections.
    private(set) var digestsCompared = 0
    private(set) var digestMismatches = 0
    private(set) var snapshotsSent = 0
    private(set) var snapshotsReceived = 0
    private var lastResyncRequest: ContinuousClock.Instant?
    /// A snapshot was asked for (a resync request, a mismatch): the sender's next step sends one.
    private var snapshotForced = false
    /// A change of the log's holds runs (at most one at a time, whichever connection started it: a change an
    /// earlier connection started lands before the next connection places its own hold).
    private(set) var holdWorkRunning = false

    /// The current connection's state; `nil` while none runs.
    private var connection: Connection?
    /// The last connection's ID.
    private var lastConnectionID: UInt64 = 0

    init() {}

    /// One connection's state.
    private struct Connection: Sendable {
        /// Identifies the connection, so that work it started is not taken for the next one's.
        var id: UInt64
        /// The peer at the other end.
        var peer: DeviceID
        /// The store's snapshot installs when the connection began.
        var installsBase: UInt64
        var verification = VerificationState()
        /// What the peer's stream request said, once it came.
        var request: Request?
        /// The stream sender's state, once the request came.
        var sender: Sender?
        /// The peer acknowledged this device's log through here (on this connection, or in its request).
        var acknowledged: UInt64 = 0
        /// Sessions of the snapshot being received so far.
        var snapshotSessions = 0
    }

    private struct Request: Sendable {
        /// How far the peer applied this device's log, in its current history.
        var applied: UInt64
        /// The peer's log's history.
        var history: UInt64
        /// The peer recovers its users from this device.
        var recovering: Bool
        /// The position the stream resumes after; `nil`: a snapshot first.
        var resumeAfter: UInt64?
    }

    /// The stream sender's state.
    private struct Sender: Sendable {
        /// The last sequence of this device's log the peer has (or that was sent).
        var position: UInt64
        /// A snapshot must go before the stream goes on.
        var needSnapshot: Bool
        /// The next snapshot may keep the peer's copy of this device's users (the first, when it recovered
        /// from this peer).
        var mayKeep: Bool
        /// The next snapshot is one of everything (the peer recovers).
        var everything: Bool
        /// After a snapshot of everything, the stream carries every record through here.
        var everythingThrough: UInt64 = 0
        /// A snapshot of everything was sent, and the peer recovers until it acknowledges this sequence (its
        /// copy is whole through it then): until then, any further snapshot is one of everything too, or, once
        /// the stream has sent through it, waits for that acknowledgement.
        var peerRecoversThrough: UInt64?
        /// Records of the peer's up to this position are not sent back (see `SessionStore.readStream`).
        var sentBackAfter: UInt64 = 0
        /// Where the log is held for the peer from.
        var heldFrom: UInt64
        var lastHoldMove: ContinuousClock.Instant
        /// The last damaged record of the log met: the next snapshot's stream goes on after it.
        var damagedThrough: UInt64 = 0
        /// The recovered position of a snapshot that keeps the peer's copy, while it is being sent.
        var keeping: UInt64?
    }

    /// The current connection's ID; 0 while none runs.
    var connectionID: UInt64 { connection?.id ?? 0 }

    /// The current connection's verification state.
    var verification: VerificationState { connection?.verification ?? VerificationState() }

    /// The store's snapshot installs when the current connection began.
    var installsBase: UInt64 { connection?.installsBase ?? 0 }

    /// How far the peer acknowledged this device's log on the current connection.
    var acknowledged: UInt64 { connection?.acknowledged ?? 0 }

    /// Whether the peer said it recovers its users from this device.
    var peerRecovering: Bool { connection?.request?.recovering ?? false }

    /// The peer's log's history, as its stream request said.
    var peerHistory: UInt64 { connection?.request?.history ?? 0 }

    /// A new connection to `peer` begins: its state starts again.
    mutating func connectionStarted(peer: DeviceID, installsBase: UInt64) {
        lastConnectionID += 1
        connection = Connection(id: lastConnectionID, peer: peer, installsBase: installsBase)
    }

    /// Connection `id` ended: until the next one begins, nothing is known of the tables.
    mutating func connectionEnded(_ id: UInt64) {
        if connection?.id == id { connection = nil }
    }

    // MARK: - The peer's stream request

    /// What this device knows of itself when the peer's stream request arrives.
    struct Standing: Sendable {
        var deviceID: DeviceID
        var term: UInt32
        /// This log's current history.
        var history: UInt64
        /// The takeover of the peer's users in effect here, if any.
        var takeoverOfPeer: Takeover?
    }

    /// What the peer's stream request leads to.
    enum RequestAction: Sendable, Equatable {
        /// The peer's term prevails: this device steps down, keeping what the peer had of its log.
        case demote(term: UInt32, keepThrough: UInt64)
        /// Acknowledgements count from `acknowledged` on; the sender starts.
        case stream(acknowledged: UInt64)
    }

    /// The peer asked for this device's stream. A position in another history of this log (a store replaced,
    /// restored or reset) counts for nothing: the peer gets a snapshot, and nothing is acknowledged until
    /// then. A recovering peer gets a snapshot of everything, whatever its position.
    mutating func streamRequested(_ request: StreamRequest, standing: Standing) -> RequestAction {
        let applied = request.applied.sequence(in: standing.history)
        if let peer = connection?.peer, Self.mustDemote(for: request, standing: standing, peer: peer) {
            return .demote(term: request.term, keepThrough: applied)
        }
        let resumes = request.applied.counts(in: standing.history) && !request.recovering
        connection?.request = Request(
            applied: applied,
            history: request.history,
            recovering: request.recovering,
            resumeAfter: resumes ? request.applied.sequence : nil
        )
        connection?.acknowledged = applied
        return .stream(acknowledged: applied)
    }

    /// Whether the peer's term says this device must step down: the peer promoted past this device's term, or
    /// both promoted to the same term while apart (split brain) and the peer has the lower device ID.
    static func mustDemote(for request: StreamRequest, standing: Standing, peer: DeviceID) -> Bool {
        let term = standing.term
        if request.term > term { return true }
        guard request.term == term, request.adoptedYouAt == term else { return false }
        let mine = standing.takeoverOfPeer
        return mine?.term == term && mine?.to == standing.deviceID && peer < standing.deviceID
    }

    /// The peer acknowledged this device's log through `sequence`. An acknowledgement on this connection
    /// comes after the peer installed the snapshot the sender sent first, if any: once it reaches the end of a
    /// snapshot of everything, the peer has recovered.
    mutating func acknowledged(_ sequence: UInt64) {
        guard connection != nil else { return }
        connection!.acknowledged = max(connection!.acknowledged, sequence)
        if let through = connection!.sender?.peerRecoversThrough, sequence >= through {
            connection!.sender!.peerRecoversThrough = nil
        }
    }

    // MARK: - The stream sender

    /// Whether the peer's stream request came, so that the sender may start.
    var senderMayStart: Bool { connection?.request != nil }

    /// How the sender starts.
    enum SenderStart: Sendable, Equatable {
        /// Not yet: the peer's stream request has not come, or a change of the log's holds that an earlier
        /// connection started still runs, and lands first.
        case wait
        /// A snapshot comes first.
        case snapshotFirst
        /// The stream resumes: hold the log for the peer from here before streaming.
        case resume(holdFrom: UInt64)
    }

    /// The sender starts, once the stream request came and no change of the log's holds runs (an earlier
    /// connection's may outlive it, and would otherwise land after this one's hold). It resumes after the peer's
    /// position, or sends a snapshot first when the peer has no position in this history, none yet, or one past
    /// the log's end (a peer that has nothing of this device's gets one too, rather than the whole log: the
    /// snapshot brings this device's takeovers first, so the peer knows who owns what before the stream).
    mutating func senderStarts(lastLogged: UInt64, now: ContinuousClock.Instant) -> SenderStart {
        guard let request = connection?.request, !holdWorkRunning else { return .wait }
        let requested = request.resumeAfter
        let position = requested ?? 0
        let needSnapshot = requested == nil || position == 0 || position > lastLogged
        connection?.sender = Sender(
            position: position,
            needSnapshot: needSnapshot,
            mayKeep: needSnapshot,
            everything: request.recovering,
            heldFrom: position + 1,
            lastHoldMove: now
        )
        return needSnapshot ? .snapshotFirst : .resume(holdFrom: position + 1)
    }

    /// The log no longer holds what the peer resumes from: a snapshot comes first.
    mutating func holdFailed() {
        connection?.sender?.needSnapshot = true
    }

    /// The peer asked for a resynchronization, or a comparison found the tables differ: the sender's next
    /// step is a snapshot, one that lists the users (on the next connection, when none runs now).
    mutating func forceSnapshot() {
        snapshotForced = true
    }

    /// What the store states when the sender takes its next step.
    struct SenderFacts: Sendable {
        /// The store installs a snapshot of the peer's users.
        var installing: Bool
        /// The store recovers its own users from the peer.
        var recovering: Bool
        /// The position this device recovered from the peer at, until the peer has what followed.
        var recoveredPosition: UInt64?
        /// Where the recovery's hold keeps the log from, if it does.
        var recoveryHold: UInt64?
    }

    /// The sender's next step.
    enum SenderStep: Sendable, Equatable {
        /// Wait a moment and ask again: a hold still moves, this device may not send its users now, or a
        /// snapshot waits for the acknowledgement that says whether the peer has recovered.
        case pause
        /// Send a snapshot: of every session this device holds when `everything`; one that keeps the peer's
        /// copy (no sessions) when `keep`; its stream goes on after a position no earlier than `after`.
        case sendSnapshot(everything: Bool, keep: Bool, after: UInt64)
        /// Start `work` on the log's holds (in the background), then read the log as `read` says.
        case stream(StreamRead, holdWork: HoldWork?)
    }

    /// A read of the log for the peer.
    struct StreamRead: Sendable, Equatable {
        /// The records after this sequence.
        var after: UInt64
        /// Every record through here, this device's own changes to the peer's copy included.
        var everythingThrough: UInt64
        /// Records of the peer's own through here are not sent back.
        var sentBackAfter: UInt64
    }

    /// A change of the log's holds that the sender starts and does not wait for.
    enum HoldWork: Sendable, Equatable {
        /// The peer has everything this device did since it recovered from the peer: that is forgotten.
        case forgetRecovery
        /// This device recovered and the peer has what the recovery's hold kept: the hold goes.
        case releaseRecoveryHold
        /// The peer's hold follows its acknowledgements, never past what the stream still has to send.
        case moveHold(from: UInt64)
    }

    /// The sender's next step. A device never sends its users while it installs the peer's, or while it
    /// recovers its own from the peer (what it has would wipe the peer's copy of them), unless the peer
    /// recovers too: both send what they have. A snapshot sent to a peer that has not yet installed the whole of
    /// a snapshot of everything (the log lost what its stream needed, or it asked for a resync) is one of
    /// everything again: one of this device's users alone would end the peer's recovery without its users.
    /// Once the stream has carried the records that complete that install, the sender waits for the peer's
    /// acknowledgement of them instead, which says whether it recovered.
    /// A hold still moving, whichever connection started it, lands before a snapshot places its own.
    /// The hold follows the acknowledgements at most every ``holdInterval``, off the stream's path: moving it
    /// is a commit of its own, which the next batch must not wait for.
    mutating func nextSenderStep(_ facts: SenderFacts, now: ContinuousClock.Instant) -> SenderStep {
        guard var connection, var sender = connection.sender else { return .pause }
        defer {
            connection.sender = sender
            self.connection = connection
        }
        if snapshotForced {
            snapshotForced = false
            sender.needSnapshot = true
            sender.mayKeep = false
        }
        if sender.needSnapshot {
            let peerRecovering = connection.request?.recovering ?? false
            if holdWorkRunning || ((facts.installing || facts.recovering) && !peerRecovering) { return .pause }
            if let through = sender.peerRecoversThrough {
                // Short of `through` in what was sent, the peer cannot have recovered: everything again. Past it,
                // it may have, and its acknowledgement be on the way (it would refuse a snapshot of everything).
                if sender.position >= through { return .pause }
                sender.everything = true
            }
            let keeping = sender.mayKeep && !sender.everything ? facts.recoveredPosition : nil
            sender.keeping = keeping
            connection.verification.beginSnapshot()
            return .sendSnapshot(everything: sender.everything, keep: keeping != nil, after: sender.damagedThrough)
        }
        let keepFrom = min(connection.acknowledged, sender.position) + 1
        var work: HoldWork?
        if !holdWorkRunning {
            if let recovered = facts.recoveredPosition, connection.acknowledged >= recovered {
                work = .forgetRecovery
            } else if let recovery = facts.recoveryHold, !facts.recovering, keepFrom > recovery {
                work = .releaseRecoveryHold
            } else if keepFrom > sender.heldFrom, sender.lastHoldMove.duration(to: now) >= Self.holdInterval {
                work = .moveHold(from: keepFrom)
                sender.heldFrom = keepFrom
                sender.lastHoldMove = now
            }
            if work != nil { holdWorkRunning = true }
        }
        let read = StreamRead(
            after: sender.position,
            everythingThrough: sender.everythingThrough,
            sentBackAfter: sender.sentBackAfter
        )
        return .stream(read, holdWork: work)
    }

    /// The hold work that ran ended (it may be an earlier connection's).
    mutating func holdWorkEnded() {
        holdWorkRunning = false
    }

    /// The snapshot was sent; the stream goes on after `position`, carrying every record through
    /// `everythingThrough` for a snapshot of everything.
    mutating func snapshotSent(position: UInt64, everythingThrough: UInt64) {
        guard var sender = connection?.sender else { return }
        sender.position = position
        sender.everythingThrough = everythingThrough
        sender.sentBackAfter = sender.keeping ?? 0
        sender.keeping = nil
        if sender.everything { sender.peerRecoversThrough = everythingThrough }
        sender.everything = false
        sender.mayKeep = false
        sender.heldFrom = position + 1
        sender.needSnapshot = false
        connection?.sender = sender
        connection?.verification.endSnapshot()
        snapshotsSent += 1
    }

    /// What a read of the log found.
    enum ReadResult: Sendable, Equatable {
        /// The log no longer holds the records after the position (past its quota, or emptied).
        case truncated
        /// This record of the log is damaged and cannot be sent.
        case damaged(UInt64)
        /// Records through this sequence (the position itself when there is nothing new).
        case records(through: UInt64)
    }

    /// What to do after a read.
    enum AfterRead: Sendable, Equatable {
        /// A snapshot comes next (the log lost what the peer needs).
        case snapshot
        /// A snapshot comes next, from a users table that holds the damaged record's change: when the
        /// checkpoint is behind it, checkpoint first.
        case snapshotAfterDamage(checkpointFirst: Bool)
        /// Send the records read, through this sequence, then see to a digest request.
        case send(through: UInt64)
        /// Nothing new: see to a digest request, or wait for the log to grow.
        case caughtUp
    }

    /// Takes what a read of the log found; `checkpoint` is the last sequence the users table on disk holds.
    mutating func read(_ result: ReadResult, checkpoint: UInt64) -> AfterRead {
        guard var sender = connection?.sender else { return .caughtUp }
        defer { connection?.sender = sender }
        switch result {
        case .truncated:
            sender.mayKeep = false
            sender.needSnapshot = true
            return .snapshot
        case .damaged(let sequence):
            sender.damagedThrough = max(sender.damagedThrough, sequence)
            sender.mayKeep = false
            sender.needSnapshot = true
            return .snapshotAfterDamage(checkpointFirst: checkpoint < sequence)
        case .records(let through):
            guard through != sender.position else { return .caughtUp }
            sender.position = through
            return .send(through: through)
        }
    }

    /// Where the sender stands in this device's log.
    var senderPosition: UInt64 { connection?.sender?.position ?? 0 }

    // MARK: - Applying the peer's stream

    /// What applying a batch of the peer's records leads to.
    enum AfterApply: Sendable, Equatable {
        /// Acknowledge the peer's stream through this sequence.
        case acknowledge(UInt64)
        /// The peer took this device's users over at a higher term: step down, keeping what the peer has
        /// (what it acknowledged on this connection, or had applied when it asked for the stream).
        case demote(term: UInt32, keepThrough: UInt64)
    }

    /// A batch of the peer's records was applied through `through`, stopping before `takeover` when the peer
    /// took this device's users over in it.
    func recordsApplied(through: UInt64, takeover: Takeover?) -> AfterApply {
        if let takeover {
            let kept = max(connection?.request?.applied ?? 0, connection?.acknowledged ?? 0)
            return .demote(term: takeover.term, keepThrough: kept)
        }
        return .acknowledge(through)
    }

    /// A snapshot of the peer's users began to be installed: the tables are no longer known to agree.
    mutating func snapshotBegan() {
        connection?.verification.unverify()
        connection?.snapshotSessions = 0
    }

    /// Sessions of the peer's snapshot were installed.
    mutating func snapshotSessionsInstalled(_ count: Int) {
        connection?.snapshotSessions += count
    }

    /// The peer's snapshot was installed: the copy is compared with the peer's table as soon as it is whole,
    /// so a digest point is asked for now. Returns how many sessions the snapshot held.
    mutating func snapshotInstalled(now: ContinuousClock.Instant) -> Int {
        connection?.verification.requested(at: now)
        snapshotsReceived += 1
        return connection?.snapshotSessions ?? 0
    }

    // MARK: - Digests

    /// Whether to ask the peer for a digest point now, or how long to wait first: at once on a new connection,
    /// soon again after each answer while the tables are not known to agree, then every `interval`.
    mutating func digestRequestDelay(now: ContinuousClock.Instant, interval: Duration) -> Duration? {
        guard connection != nil else { return interval }
        if let delay = connection!.verification.requestDelay(now: now, interval: interval) { return delay }
        connection!.verification.requested(at: now)
        return nil
    }

    /// The peer asks for a digest point in this device's stream.
    mutating func peerRequestedDigest() {
        connection?.verification.peerRequested = true
    }

    /// The digest point to send at the sender's position, when the peer asked for one and this device's table
    /// stood there whole (`point`, the store's latest point there, if any).
    mutating func digestPointToSend(installing: Bool, point: DigestHistory.Point?) -> DigestMessage? {
        guard let connection, connection.verification.peerRequested, !installing, let point, point.whole,
            let position = connection.sender?.position, point.through == position
        else { return nil }
        let message = DigestMessage(
            through: position,
            appliedOfYou: point.applied[connection.peer] ?? 0,
            appliedHistoryOfYou: point.appliedHistory[connection.peer] ?? 0,
            value: point.value,
            installedOfYou: UInt32(truncatingIfNeeded: point.installs - connection.installsBase)
        )
        self.connection?.verification.sentPoint(through: position, installs: point.installs)
        return message
    }

    /// What a comparison with the peer's digest point leads to.
    enum ComparisonAction: Sendable, Equatable {
        /// No point of this device matched the peer's: nothing to do.
        case nothing
        /// The tables are equal: tell the peer; `synchronized` when that verified the connection.
        case match(DigestMatchMessage, synchronized: Bool)
        /// The tables differ at this device's point `mine`; `resync` when both must resynchronize now (not
        /// within ``resyncInterval`` of the last request).
        case mismatch(DigestHistory.Point, resync: Bool)
    }

    /// Compares this device's table (its digest `history`, its log's `logHistory`) with the peer's point.
    /// While a snapshot is being installed nothing is known.
    mutating func compare(
        _ peerPoint: DigestMessage,
        history: DigestHistory,
        logHistory: UInt64,
        installing: Bool,
        now: ContinuousClock.Instant
    ) -> ComparisonAction {
        guard connection != nil else { return .nothing }
        let outcome =
            installing
            ? .inconclusive
            : DigestComparison.compare(
                peerPoint,
                with: history,
                peer: connection!.peer,
                history: logHistory,
                snapshotsSent: connection!.verification.snapshotsSent
            )
        connection!.verification.answered(at: now)
        switch outcome {
        case .inconclusive:
            return .nothing
        case .equal(let mine):
            digestsCompared += 1
            let message = DigestMatchMessage(
                atYour: peerPoint.through,
                through: mine.through,
                installedOfYou: UInt32(truncatingIfNeeded: mine.installs - connection!.installsBase)
            )
            return .match(message, synchronized: connection!.verification.matched())
        case .differ(let mine):
            connection!.verification.unverify()
            digestsCompared += 1
            digestMismatches += 1
            if let last = lastResyncRequest, last.duration(to: now) < Self.resyncInterval {
                return .mismatch(mine, resync: false)
            }
            lastResyncRequest = now
            return .mismatch(mine, resync: true)
        }
    }

    /// The peer found the tables equal at this device's digest point `atYour`; `true` when that verified the
    /// connection. It counts only for the last point sent, with no snapshot of the peer's begun here since
    /// (`installs`, and none being installed), and once the peer had installed every snapshot this device sent.
    mutating func peerMatched(_ message: DigestMatchMessage, installs: UInt64, installing: Bool) -> Bool {
        guard connection != nil, !installing,
            connection!.verification.acceptsPeerMatch(
                atYour: message.atYour,
                installedOfYou: message.installedOfYou,
                installs: installs
            )
        else { return false }
        return connection!.verification.matched()
    }

    /// What the pair still does before it is in synchronization, with the link up; `nil` when nothing.
    func catchUp(installing: Bool) -> CatchUp? {
        guard let connection else { return .comparingDigests }
        return connection.verification.catchUp(installing: installing)
    }
}
