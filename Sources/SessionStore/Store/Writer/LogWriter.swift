import LMDB
import Logging
import Metrics

/// The store's single writer: a queue and a thread. It takes every pending request at once, stages them on
/// its ``WriterState`` in one read transaction of the users table, appends what they staged to the log in one
/// LMDB transaction with one sync (group commit), applies it, and answers each caller once its event is
/// durable under the store's durability setting. Between batches it schedules checkpoints (holding callers
/// back while too many changes wait in memory), truncates the log and expires sessions, each by its policy
/// (`Store/Policies`).
///
/// Each operation is a method below that queues its request — its staging step and its reply
/// (`Writer/Requests.swift`, `Writer/OwnEvents.swift`, `Replica/PeerApply.swift`), or work that runs alone —
/// and `process` runs a batch of them without knowing what they are. A reply answers once: its consuming
/// `resume` is the only way out.
///
/// `@unchecked Sendable` invariant: the queue fields are guarded by `queue`; every other mutable field, and
/// `state`, is touched only on the writer thread (after `start`) or before `start` by the opening thread.
final class LogWriter: @unchecked Sendable {
    /// What the queue holds: callers' requests (each carries its own staging step or work, and its reply) and
    /// the checkpointer's reports.
    enum Request: Sendable {
        /// Staged with the rest of its batch and answered once the batch commits (see ``StagedRequest``).
        case staged(any StagedRequest)
        /// Runs alone after its batch commits (see ``AloneRequest``).
        case alone(any AloneRequest)
        /// Answered once the users table on disk holds everything logged before it.
        case checkpoint(PendingReply<UInt64>)
        case checkpointDone(Result<UInt64, SessionStoreError>)

        /// Answers the caller with `error`, without running the request.
        func reject(_ error: SessionStoreError) {
            switch self {
            case .staged(let request):
                request.fail(error)
                request.answer()
            case .alone(let request): request.reject(error)
            case .checkpoint(let reply): reply.resume(.failure(error))
            case .checkpointDone: break
            }
        }
    }

    let files: StoreFiles
    let overlay: Overlay
    let configuration: SessionStore.Configuration
    let logger: Logger
    /// What the writer publishes for readers: identity, status, digests, the commit observer.
    let shared: WriterShared
    /// The logouts the store makes by itself (session-timeout expiry, the peer's events), for the controller.
    let automaticLogouts: AsyncStream<[Logout]>.Continuation
    /// The updates of this device's users that the peer made, for the controller.
    let peerUpdates: AsyncStream<[PeerUpdate]>.Continuation
    private var checkpointer: Checkpointer!

    /// Why checkpoints are failing (they retry), until one commits.
    var checkpointFailure: String? { checkpointer?.failure.withLock { $0 } }

    // The queue, guarded by `queue`.
    private let queue = ConditionLock()
    private var pending: [Request] = []
    private var closing = false
    private var closeWaiters: [UnsafeContinuation<Void, Never>] = []
    private var finished = false
    private var thread: StoreThread?

    // Writer-thread state.
    private let state: WriterState
    private var checkpointWaiters: [(UInt64, PendingReply<UInt64>)] = []
    private var checkpointRunning = false
    private var checkpointFailedWhileClosing = false
    private var lastFreeze = monotonicNanoseconds()
    private let checkpointPolicy: CheckpointPolicy
    private let retention: RetentionPolicy
    private var expiry: ExpirySchedule
    /// Holds the quota dropped after a checkpoint, staged with the next commit until one succeeds.
    private var droppedHolds: [(String, UInt64)] = []
    /// The staged requests of the batch, answered once it commits; kept so that each batch does not allocate.
    private var batchRequests: [any StagedRequest] = []

    private let commitTimer = Metrics.Timer(label: "tandem_commit_duration")
    /// Events logged, by kind (`login`, `logout`, `update`, `device-id-change`, `takeover`), the peer's
    /// included; index = ``Event/Kind`` raw value.
    private let eventCounters: [Counter?] =
        [nil] + Event.Kind.allCases.map { Counter(label: "tandem_events_total", dimensions: [("kind", "\($0)")]) }
    private let batchRecorder = Recorder(label: "tandem_commit_events")
    private let holdsDropped = Counter(label: "tandem_log_holds_dropped_total")
    private let backPressureWaits = Counter(label: "tandem_backpressure_waits_total")

    init(
        files: StoreFiles,
        overlay: Overlay,
        configuration: SessionStore.Configuration,
        logger: Logger,
        recovered: Recovered,
        automaticLogouts: AsyncStream<[Logout]>.Continuation,
        peerUpdates: AsyncStream<[PeerUpdate]>.Continuation
    ) {
        self.files = files
        self.overlay = overlay
        self.configuration = configuration
        self.logger = logger
        self.shared = WriterShared(recovered)
        self.automaticLogouts = automaticLogouts
        self.peerUpdates = peerUpdates
        self.state = WriterState(files: files, overlay: overlay, shared: shared, logger: logger, recovered: recovered)
        self.checkpointPolicy = CheckpointPolicy(configuration)
        self.retention = RetentionPolicy(
            quotaBytes: configuration.logQuotaBytes,
            truncationBatch: configuration.truncationBatch
        )
        self.expiry = ExpirySchedule(
            interval: configuration.expiryInterval.map { UInt64($0.nanoseconds) },
            now: monotonicNanoseconds()
        )
    }

    func start() {
        checkpointer = Checkpointer(files: files, indexes: overlay.tableIndexes, logger: logger) { [weak self] result in
            _ = self?.enqueue(.checkpointDone(result), fromStore: true)
        }
        checkpointer.start()
        thread = StoreThread(name: "tandem-writer") { [self] in run() }
    }

    /// Queues a request; `false` when the store is closing and the request came from a caller.
    func enqueue(_ request: Request, fromStore: Bool = false) -> Bool {
        queue.lock()
        defer { queue.unlock() }
        if (closing && !fromStore) || finished { return false }
        pending.append(request)
        queue.signal()
        return true
    }

    /// Queues a caller's request and waits for its answer.
    private func submit<T: Sendable>(_ make: (consuming Reply<T>) -> Request) async -> Result<T, SessionStoreError> {
        await withUnsafeContinuation { continuation in
            let request = make(Reply(continuation))
            if !enqueue(request) { request.reject(SessionStoreError(.closed)) }
        }
    }

    /// Queues `work`, to run alone after the batch it comes in, and waits for it.
    private func alone<T: Sendable>(_ work: @escaping Alone<T>.Work) async -> Result<T, SessionStoreError> {
        await submit { reply in .alone(Alone(work, reply)) }
    }

    // MARK: - Requests: an operation is its request type (with its staging step) and the method that queues it

    func login(_ session: Session) async -> Result<Session, SessionStoreError> {
        await submit { .staged(LoginRequest(session, $0)) }
    }

    /// Each session of the batch succeeds or fails alone; the whole fails when the batch cannot commit.
    func loginBatch(_ sessions: [Session]) async -> Result<[Result<Session, SessionStoreError>], SessionStoreError> {
        await submit { .staged(LoginBatchRequest(sessions, $0)) }
    }

    func logoutBatch(
        _ logouts: [(IPAddress, LogoutReason)]
    ) async -> Result<[Result<Logout, SessionStoreError>], SessionStoreError> {
        await submit { .staged(LogoutBatchRequest(logouts, $0)) }
    }

    func logout(_ ip: IPAddress, reason: LogoutReason) async -> Result<LoggedLogout, SessionStoreError> {
        await submit { .staged(LogoutRequest(ip, reason, $0)) }
    }

    func update(_ change: SessionUpdate) async -> Result<LoggedUpdate, SessionStoreError> {
        await submit { .staged(UpdateRequest(change, $0)) }
    }

    /// Each change of the batch succeeds or fails alone; the whole fails when the batch cannot commit.
    func updateBatch(
        _ changes: [SessionUpdate]
    ) async -> Result<[Result<Session, SessionStoreError>], SessionStoreError> {
        await submit { .staged(UpdateBatchRequest(changes, $0)) }
    }

    func expire(_ now: Timestamp) async -> Result<[Logout], SessionStoreError> {
        await submit { .staged(ExpiryRequest(now, $0)) }
    }

    func changeDeviceID(to newID: DeviceID) async -> Result<Int, SessionStoreError> {
        await submit { .staged(DeviceIDRequest(newID, $0)) }
    }

    /// Answers once the users table on disk holds everything logged before this request.
    func checkpoint() async -> Result<UInt64, SessionStoreError> {
        await submit { .checkpoint(PendingReply($0)) }
    }

    /// Keeps the log from `requested` on; `nil` means the first position after the current checkpoint.
    func hold(_ name: String, from requested: UInt64?) async -> Result<Void, SessionStoreError> {
        await submit { .staged(MetaRequest(.hold(name, requested), $0)) }
    }

    func release(_ name: String) async -> Result<Void, SessionStoreError> {
        await submit { .staged(MetaRequest(.release(name), $0)) }
    }

    /// Forgets that this device recovered from the peer (the peer has everything since).
    func forgetRecovery(_ peer: DeviceID) async -> Result<Void, SessionStoreError> {
        await submit { .staged(MetaRequest(.forgetRecovery(peer), $0)) }
    }

    /// Applies a batch of the peer's stream (or of a snapshot of its users).
    func applyPeer(_ batch: PeerBatch) async -> Result<PeerApplied, SessionStoreError> {
        await submit { .staged(PeerRequest(batch, $0)) }
    }

    /// Takes over the peer's users and raises the term above the peer's.
    func promote(over peer: DeviceID, peerTerm: UInt32) async -> Result<Promotion, SessionStoreError> {
        await submit { .staged(PromotionRequest(peer, peerTerm, $0)) }
    }

    /// Demotion (see ``reset(term:keepThrough:peer:holdName:)``).
    func resetForResync(
        term: UInt32,
        keepThrough: UInt64,
        peer: DeviceID,
        holdName: String
    ) async -> Result<Demotion, SessionStoreError> {
        await alone { writer in writer.reset(term: term, keepThrough: keepThrough, peer: peer, holdName: holdName) }
    }

    /// Computes the users table's digest once; commits keep it up to date from then on.
    func initializeDigest() async -> Result<Void, SessionStoreError> {
        await alone { writer in writer.state.initializeDigest() }
    }

    /// Empties a damaged store to recover from the peer.
    func repairDamage() async -> Result<Wipe, SessionStoreError> {
        await alone { writer in writer.repairDamage() }
    }

    /// Stops accepting requests, finishes the pending ones, checkpoints everything, and stops the threads.
    func close() async {
        await withUnsafeContinuation { (waiter: UnsafeContinuation<Void, Never>) in
            queue.lock()
            if finished {
                queue.unlock()
                waiter.resume()
                return
            }
            closing = true
            closeWaiters.append(waiter)
            queue.signal()
            queue.unlock()
        }
        thread?.join()
    }

    /// Stops without waiting (the store was released without being closed).
    func closeWithoutWaiting() {
        queue.withLock {
            closing = true
            queue.signal()
        }
    }

    // MARK: - The writer thread

    private func run() {
        var batch: [Request] = []
        batch.reserveCapacity(4096)
        var draining = false
        while true {
            waitForCheckpointIfTooFarAhead()
            queue.lock()
            while pending.isEmpty && !(closing && !draining) && !truncationPending && droppedHolds.isEmpty {
                let now = monotonicNanoseconds()
                let wake = nextWake()
                if wake <= now { break }
                queue.wait(nanoseconds: Int64(min(wake - now, 1_000_000_000)))
            }
            swap(&pending, &batch)
            let isClosing = closing
            queue.unlock()

            if !batch.isEmpty {
                process(batch)
            } else if truncationPending || !droppedHolds.isEmpty {
                beginBatch()
                _ = commit()  // a failure is logged, and the truncation or the drop tried again
            }
            batch.removeAll(keepingCapacity: true)
            runTimers()
            if isClosing {
                if !draining { checkpointer.giveUpOnFailure() }
                draining = true
                if drainStep() { break }
            }
        }
        checkpointer.stop()
        queue.lock()
        finished = true
        let rejected = pending
        pending.removeAll()
        let waiters = closeWaiters
        closeWaiters.removeAll()
        queue.unlock()
        for request in rejected { request.reject(SessionStoreError(.closed)) }
        automaticLogouts.finish()
        peerUpdates.finish()
        for waiter in waiters { waiter.resume() }
    }

    /// Back-pressure: while the changes in memory exceed ``SessionStore/Configuration/maxChangesInMemory``
    /// and a checkpoint is running, takes no new request and waits for that checkpoint, so that memory stays
    /// bounded however far the callers outrun the checkpointer.
    private func waitForCheckpointIfTooFarAhead() {
        while checkpointPolicy.holdsBack(checkpointRunning: checkpointRunning, changes: overlay.active.count) {
            guard waitForRunningCheckpoint() else { return }
            backPressureWaits.increment()
            maybeFreeze(now: monotonicNanoseconds())
        }
    }

    /// Takes no new request until the running checkpoint reports; `false` when the store began closing first.
    private func waitForRunningCheckpoint() -> Bool {
        var results: [Result<UInt64, SessionStoreError>] = []
        queue.lock()
        while !pending.contains(where: { if case .checkpointDone = $0 { true } else { false } }) && !closing {
            queue.wait(nanoseconds: 100_000_000)
        }
        if closing {
            queue.unlock()
            return false
        }
        pending.removeAll { request in
            guard case .checkpointDone(let result) = request else { return false }
            results.append(result)
            return true
        }
        queue.unlock()
        for result in results { checkpointCompleted(result) }
        return true
    }

    private func nextWake() -> UInt64 {
        min(
            checkpointPolicy.deadline(lastFreeze: lastFreeze, checkpointRunning: checkpointRunning),
            expiry.wake ?? .max
        )
    }

    private func runTimers() {
        let now = monotonicNanoseconds()
        if expiry.take(now: now) { expireInBackground() }
        maybeFreeze(now: now)
    }

    private func expireInBackground() {
        beginBatch()
        var expired: [Logout] = []
        do {
            try files.usersEnvironment.read { txn in
                expired = try ExpiryRequest.stage(Timestamp.now, limit: 50_000, on: state, txn: txn)
            }
        } catch {
            logger.error("session-timeout expiry failed", metadata: ["tandem.error": "\(error)"])
            return
        }
        guard !expired.isEmpty else { return }
        if let failure = commit() {
            logger.error("session-timeout expiry failed", metadata: ["tandem.error": "\(failure)"])
        } else {
            logger.debug("sessions expired", metadata: ["tandem.expired": "\(expired.count)"])
            automaticLogouts.yield(expired)
        }
    }

    /// One step of closing; `true` when everything is checkpointed, or when a checkpoint failed (the log
    /// keeps what it would have written, and the next open replays it).
    private func drainStep() -> Bool {
        if checkpointRunning { return false }
        if checkpointFailedWhileClosing { return true }
        if !overlay.active.isEmpty || overlay.active.throughSequence > state.checkpointSequence {
            freeze()
            return false
        }
        return true
    }

    private func maybeFreeze(now: UInt64) {
        guard !checkpointRunning else { return }
        resumeCheckpointWaiters()
        let active = overlay.active
        switch checkpointPolicy.step(
            now: now,
            lastFreeze: lastFreeze,
            changes: active.count,
            pendingPosition: active.throughSequence > state.checkpointSequence,
            waiters: !checkpointWaiters.isEmpty
        ) {
        case .freeze: freeze()
        case .restartInterval: lastFreeze = now
        case .wait: break
        }
    }

    private func freeze() {
        guard let frozen = overlay.freeze() else { return }
        checkpointRunning = true
        lastFreeze = monotonicNanoseconds()
        checkpointer.submit(frozen)
    }

    private func checkpointCompleted(_ result: Result<UInt64, SessionStoreError>) {
        checkpointRunning = false
        switch result {
        case .success(let position):
            checkpointer.discard(overlay.dropFrozen())
            state.checkpointed(at: position)
            resumeCheckpointWaiters()
            enforceQuota()
        case .failure(let error):
            for (_, reply) in checkpointWaiters { reply.resume(.failure(error)) }
            checkpointWaiters.removeAll()
            checkpointFailedWhileClosing = true
            logger.error(
                "closing without a final checkpoint; the log keeps every change and the next open replays it",
                metadata: ["tandem.error": "\(error)"]
            )
        }
    }

    /// Resumes the `checkpoint()` callers whose position the users table on disk has reached.
    private func resumeCheckpointWaiters() {
        let position = state.checkpointSequence
        guard checkpointWaiters.contains(where: { $0.0 <= position }) else { return }
        let ready = checkpointWaiters.filter { $0.0 <= position }
        checkpointWaiters.removeAll { $0.0 <= position }
        for (_, reply) in ready { reply.resume(.success(position)) }
    }

    /// Drops the holds that keep the log above its quota, loudly; the next commit writes the drops.
    private func enforceQuota() {
        var bytes = 0
        let dropped = retention.holdsToDrop(holds: state.holds, checkpoint: state.checkpointSequence) {
            bytes = files.retainedLogBytes()
            return bytes
        }
        for (name, position) in dropped where !droppedHolds.contains(where: { $0.0 == name }) {
            holdsDropped.increment()
            logger.error(
                "the log exceeded its quota: dropping the hold of '\(name)', which must now resynchronize in full",
                metadata: [
                    "tandem.log.bytes": "\(bytes)", "tandem.log.quota_bytes": "\(retention.quotaBytes)",
                    "tandem.hold.name": "\(name)", "tandem.hold.sequence": "\(position)",
                ]
            )
            droppedHolds.append((name, position))
        }
    }

    // MARK: - Batches

    private func beginBatch() { state.beginBatch() }

    /// Stages the batch's requests in one read transaction of the users table, commits what they staged, answers
    /// them, then runs the requests that run alone.
    private func process(_ batch: [Request]) {
        beginBatch()
        var checkpointResults: [Result<UInt64, SessionStoreError>] = []
        var aloneRequests: [any AloneRequest] = []
        var taken = 0  // the requests of the batch handled so far
        func take(_ request: Request) {
            switch request {
            case .staged(let request): batchRequests.append(request)
            case .alone(let request): aloneRequests.append(request)
            case .checkpoint(let reply): checkpointWaiters.append((state.sequence, reply))
            case .checkpointDone(let result): checkpointResults.append(result)
            }
            taken += 1
        }
        do {
            try files.usersEnvironment.read { txn in
                for request in batch {
                    if case .staged(let request) = request { request.stage(state, txn) }
                    take(request)
                }
            }
        } catch {
            // The users table could not be read: nothing of this batch is written, and its staged requests fail.
            let failure = SessionStoreError.storage(error, doing: "reading the users table")
            beginBatch()
            for request in batch[taken...] { take(request) }
            for request in batchRequests { request.fail(failure) }
        }
        for result in checkpointResults { checkpointCompleted(result) }
        if let failure = commit() {
            for request in batchRequests { request.fail(failure) }
        }
        for request in batchRequests { request.answer() }
        batchRequests.removeAll(keepingCapacity: true)
        for request in aloneRequests { request.run(self) }
    }

    /// Whether log entries behind the checkpoint wait to be deleted.
    private var truncationPending: Bool { (state.firstRetained ?? .max) <= truncationTarget() }

    /// The highest sequence the log may delete: behind the checkpoint, and before every hold.
    private func truncationTarget() -> UInt64 {
        retention.truncationTarget(holds: state.holds, checkpoint: state.checkpointSequence)
    }

    /// Writes what the batch staged (and deletes log records behind the checkpoint and every hold), then
    /// applies it; on failure, changes nothing and returns the error, for the batch's requests.
    private func commit() -> SessionStoreError? {
        for (name, position) in droppedHolds { state.stageMeta(.droppedHold(name, position)) }
        let target = truncationTarget()
        let mayTruncate = truncationPending
        guard state.hasWrites || mayTruncate else {
            state.applyWithoutWrites()
            return nil
        }
        let started = monotonicNanoseconds()
        let truncationBatch = retention.truncationLimit(logged: state.stagedRecords)
        let truncated: UInt64??
        do {
            truncated = try files.logEnvironment.write { txn -> UInt64?? in
                try state.write(into: txn)
                guard mayTruncate else { return nil }
                return try txn.withCursor(files.log) { cursor in
                    var deleted = 0
                    var entry = try cursor.move(.first)
                    while let (key, _) = entry, deleted < truncationBatch,
                        let position = StoreLayout.decodeSequenceKey(key), position <= target
                    {
                        try cursor.deleteCurrent()
                        deleted += 1
                        entry = try cursor.move(.first)
                    }
                    return .some(entry.flatMap { StoreLayout.decodeSequenceKey($0.key) })
                }
            }
        } catch {
            let failure = SessionStoreError.storage(error, doing: "appending to the log")
            logger.error("group commit failed; its callers get the error", metadata: ["tandem.error": "\(failure)"])
            return failure
        }
        commitTimer.recordNanoseconds(Int64(monotonicNanoseconds() - started))
        droppedHolds.removeAll()
        let applied = state.applyCommitted(truncated: truncated)
        if applied.records > 0 {
            for (kind, count) in applied.kinds.enumerated() where count > 0 {
                eventCounters[kind]?.increment(by: count)
            }
            batchRecorder.record(applied.records)
            if let observer = shared.commitObserver.withLock({ $0 }) { observer.call(applied.lastSequence) }
        }
        if !applied.peerNotices.isEmpty { automaticLogouts.yield(applied.peerNotices) }
        if !applied.peerUpdates.isEmpty { peerUpdates.yield(applied.peerUpdates) }
        return nil
    }

    // MARK: - Work that runs alone

    /// Waits until no checkpoint runs; `false` when the store began closing first.
    private func waitForCheckpoints() -> Bool {
        while checkpointRunning {
            guard waitForRunningCheckpoint() else { return false }
        }
        return true
    }

    /// Demotion: waits for the running checkpoint, then empties the users table and the log and takes
    /// `newTerm`, so that the peer's snapshot and stream rebuild this device's state. The sequence goes on
    /// from where it was, so that the peer never mistakes new records for the discarded ones.
    ///
    /// The users table is emptied first: a crash between the two transactions leaves the old term, and the
    /// next connection to the peer resets again. The emptied store counts as installing `peer`'s snapshot
    /// until one is installed: its table is no state the peer's was in.
    ///
    /// The logouts among the discarded events are logged again, as new events of the new term, in the same
    /// transaction that empties the log: a user logged off on this device stays logged off on the pair (R7),
    /// even when the peer took over before it heard of the logout. They are held for the peer under
    /// `holdName`, so that the snapshot this device sends next streams them. Discarded logins are not:
    /// the controller logs those users in again.
    ///
    /// - Returns: how many of this device's events came after `keepThrough` (the peer never acknowledged
    ///   them), and how many of them were logouts logged again.
    private func reset(
        term newTerm: UInt32,
        keepThrough: UInt64,
        peer: DeviceID,
        holdName: String
    ) -> Result<Demotion, SessionStoreError> {
        wipe(term: newTerm, keepThrough: keepThrough, peers: { _ in [peer] }).map { wipe in
            logger.warning(
                "demoted: the store was emptied to resynchronize from the peer",
                metadata: [
                    "tandem.term": "\(newTerm)", "tandem.discarded_events": "\(wipe.discarded)",
                    "tandem.logouts_logged_again": "\(wipe.logoutsLoggedAgain)",
                ]
            )
            return Demotion(
                lastDiscarded: wipe.through,
                discardedEvents: wipe.discarded,
                logoutsLoggedAgain: wipe.logoutsLoggedAgain
            )
        }
    }

    /// Repairs a store whose users table or log is damaged: it is emptied like a demoted one (but keeps its
    /// term), and recovers its users from the peer.
    private func repairDamage() -> Result<Wipe, SessionStoreError> {
        let currentTerm = shared.identity.withLock { $0.term }
        return wipe(term: currentTerm, keepThrough: 0) { state in
            Array(Set(state.appliedPeers).union(Wipe.knownPeers(files)))
        }.map { wipe in
            logger.error(
                "the store was damaged: it was emptied, and recovers this device's users from the peer",
                metadata: [
                    "tandem.logouts_logged_again": "\(wipe.logoutsLoggedAgain)",
                    "tandem.unreadable_records": "\(wipe.unreadable)",
                ]
            )
            return wipe
        }
    }

    /// Empties the store once no checkpoint runs (see ``Wipe``), at `term`, keeping this device's events
    /// through `keepThrough`, marked as recovering from the `peers` it returns, and takes what it left.
    private func wipe(
        term: UInt32,
        keepThrough: UInt64,
        peers: (WriterState) -> [DeviceID]
    ) -> Result<Wipe, SessionStoreError> {
        guard waitForCheckpoints() else { return .failure(SessionStoreError(.closed)) }
        let me = shared.identity.withLock { $0.deviceID }
        let wipe: Wipe
        do {
            wipe = try Wipe.perform(
                files: files,
                me: me,
                term: term,
                keepThrough: keepThrough,
                lastSequence: state.lastSequence,
                peers: peers(state)
            )
        } catch {
            return .failure(error)
        }
        overlay.tableIndexes.removeAll()  // the table is empty; a stale candidate would cost only a lookup
        state.adopt(wipe, term: term)
        droppedHolds.removeAll()
        return .success(wipe)
    }
}

extension Duration {
    var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}
