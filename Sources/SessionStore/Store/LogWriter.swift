import LMDB
import Logging
import Metrics
import Synchronization

/// The function called after each commit; a class, so that loading it from its lock copies a reference.
final class CommitObserver: Sendable {
    let call: @Sendable (UInt64) -> Void
    init(_ call: @escaping @Sendable (UInt64) -> Void) { self.call = call }
}

/// The store's single writer: it takes every pending request at once, appends their events to the log in
/// one LMDB transaction with one sync (group commit), applies them to the in-memory overlay, and resumes
/// each caller once its event is durable under the store's durability setting.
///
/// Each operation is a method (the "Requests" section) that queues its staging step, or its work that runs
/// alone, with its reply (`Writer/Requests.swift`); `process` runs a batch of them without knowing what they
/// are. A reply answers once: its consuming `resume` is the only way out.
///
/// `@unchecked Sendable` invariant: the queue fields are guarded by `queue`; every other mutable field is
/// touched only on the writer thread (after `start`) or before `start` by the opening thread.
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
    private var checkpointer: Checkpointer!

    /// Why checkpoints are failing (they retry), until one commits.
    var checkpointFailure: String? { checkpointer?.failure.withLock { $0 } }

    // Shared with readers.
    let identity: Mutex<StoreIdentity>
    /// The logouts the store makes by itself (session-timeout expiry), for the controller.
    let automaticLogouts: AsyncStream<[Logout]>.Continuation
    let status: Mutex<LogStatusState>
    /// Called on the writer thread after each commit that logged records, with the last sequence.
    let commitObserver = Mutex<CommitObserver?>(nil)
    /// The users table's digest after recent commits (once ``Request/initializeDigest(_:)`` ran).
    let digests = Mutex(DigestHistory())

    // The queue, guarded by `queue`.
    private let queue = ConditionLock()
    private var pending: [Request] = []
    private var closing = false
    private var closeWaiters: [UnsafeContinuation<Void, Never>] = []
    private var finished = false
    private var thread: StoreThread?

    // Writer-thread state.
    private var lastSequence: UInt64
    private var checkpointSequence: UInt64
    private var firstRetained: UInt64?
    private var holds: [String: UInt64]
    private var deadlines = DeadlineHeap()
    private var checkpointWaiters: [(UInt64, PendingReply<UInt64>)] = []
    private var checkpointRunning = false
    private var checkpointFailedWhileClosing = false
    private var lastFreeze = monotonicNanoseconds()
    private let checkpointPolicy: CheckpointPolicy
    private let retention: RetentionPolicy
    private var expiry: ExpirySchedule
    /// The highest sequence of each peer's stream applied (committed).
    var applied: [DeviceID: UInt64]
    /// The history of each peer's log that `applied` counts in.
    private var appliedHistory: [DeviceID: UInt64]
    /// The peers whose snapshot is being installed, with the position of their stream from which this
    /// device's copy of their users is whole again (`UInt64.max` until the snapshot's end is applied).
    var installing: [DeviceID: UInt64]
    /// How many snapshots this store began to install since it was opened.
    var installs: UInt64 = 0
    /// While this device recovers its users from the peer (a new store, a demotion, a repaired damage): the
    /// last sequence of its own before it began; its own logins after it are kept through the recovery.
    private(set) var recoveringFrom: UInt64?
    /// The peers whose snapshot of everything is being installed, and through which sequence of theirs their
    /// stream carries this device's own changes.
    private var everything: Set<DeviceID> = []
    private var recoveredThrough: [DeviceID: UInt64] = [:]
    /// The last sequence of a record this device logged of its own (not applied from a peer's stream).
    private var ownThrough: UInt64
    /// The users table's digest, once computed (``digestReady``).
    private var digest: UInt64 = 0
    private var digestReady = false

    // Batch scratch space, reused.
    /// The addresses this batch changed, with the index of their latest change in `changes`.
    private var staged: [IPAddress: Int] = [:]
    private var changes: [(IPAddress, TableEntry)] = []
    private var countDelta = 0
    private var digestDelta: UInt64 = 0
    /// The digest change of each own record of this batch, and the addresses the peer's events touched.
    private var ownDeltas: [DigestHistory.OwnDelta] = []
    /// The sessions that ended recently, and those this batch ends.
    private var ended = EndedSessions()
    private var endedThisBatch: Set<EndedSessions.Key> = []

    /// Runs `stage`, whose own changes may repeat an earlier one the peer already has: they are marked so
    /// that a digest comparison never takes them back out of this device's digest.
    func stageRepeatingOwnChanges(_ stage: () throws(SessionStoreError) -> Void) throws(SessionStoreError) {
        let first = ownDeltas.count
        try stage()
        for index in first..<ownDeltas.count { ownDeltas[index].disturbed = true }
    }
    private var peerTouched: [IPAddress] = []
    private var buffer: [UInt8] = []
    private var records: [(sequence: UInt64, range: Range<Int>)] = []
    var newDeadlines: [DeadlineHeap.Item] = []
    var sequence: UInt64 = 0
    var origin: DeviceID
    var term: UInt32
    var takeovers: Takeovers
    /// Peer positions this batch applies.
    var stagedApplied: [DeviceID: UInt64] = [:]
    /// `installing` as this batch leaves it.
    var stagedInstalling: [DeviceID: UInt64] = [:]
    /// `everything` and `recoveredThrough` as this batch leaves them.
    var stagedEverything: Set<DeviceID> = []
    /// The peers whose current snapshot keeps this device's copy (no sessions).
    var stagedKeeping: Set<DeviceID> = []
    private var keeping: Set<DeviceID> = []
    /// The addresses each snapshot being installed listed so far: its end drops the sessions it replaces that
    /// it did not list. Until then the copy it replaces stays whole, so that a snapshot cut short (its sender
    /// died) never leaves this device with part of the peer's users, the only copy if the peer's store is
    /// lost next. `listedThisBatch` and `listingBegun`/`listingEnded` are this batch's share.
    private var listed: [DeviceID: Set<IPAddress>] = [:]
    private var listedThisBatch: [DeviceID: [IPAddress]] = [:]
    private var listingBegun: Set<DeviceID> = []
    private var listingEnded: Set<DeviceID> = []
    var stagedRecoveredThrough: [DeviceID: UInt64] = [:]
    /// Whether the records staged now come from a peer's stream.
    var stagingPeer = false

    /// `ownThrough` as this batch leaves it.
    private var stagedOwnThrough: UInt64 = 0
    /// Own users that the peer's events logged off or replaced, for ``automaticLogouts``.
    var peerNotices: [Logout] = []
    var metaChanges: [MetaChange] = []
    /// The staged requests of the batch, answered once it commits; kept so that each batch does not allocate.
    private var batchRequests: [any StagedRequest] = []

    enum MetaChange {
        case deviceID(DeviceID)
        case hold(String, UInt64)
        case release(String)
        case droppedHold(String, UInt64)
        case term(UInt32)
        case takeover(Takeover)
        case applied(DeviceID, UInt64)
        case appliedHistory(DeviceID, UInt64)
        /// A snapshot of the peer's users is being installed, whole again from this position of its stream
        /// on; `nil`: the copy is whole.
        case installing(DeviceID, UInt64?)
        /// The recovery from `peer` is complete, at this device's sequence `position`.
        case recovered(DeviceID, UInt64)
        /// The peer has what this device did since it recovered from it.
        case forgetRecovery(DeviceID)
    }

    private let commitTimer = Metrics.Timer(label: "tandem_commit_duration")
    private let eventCounter = Counter(label: "tandem_events_total")
    private let batchRecorder = Recorder(label: "tandem_commit_events")
    private let holdsDropped = Counter(label: "tandem_log_holds_dropped_total")
    private let backPressureWaits = Counter(label: "tandem_backpressure_waits_total")

    struct LogStatusState: Sendable {
        var lastSequence: UInt64
        var checkpointSequence: UInt64
        var firstRetained: UInt64?
        var holds: [String: UInt64]
        var droppedHolds: [String: UInt64]
        var changesInMemory = 0
        var applied: [DeviceID: UInt64] = [:]
        var appliedHistory: [DeviceID: UInt64] = [:]
        var installing: [DeviceID: UInt64] = [:]
        var installs: UInt64 = 0
        var recoveringFrom: UInt64?
        /// The peers this device recovered from, with its sequence then, until the peer has what followed.
        var recoveredFrom: [DeviceID: UInt64] = [:]
    }

    struct Recovered {
        var identity: StoreIdentity
        var lastSequence: UInt64
        var checkpointSequence: UInt64
        var firstRetained: UInt64?
        var holds: [String: UInt64]
        var droppedHolds: [String: UInt64]
        var deadlines: DeadlineHeap
        var applied: [DeviceID: UInt64]
        var appliedHistory: [DeviceID: UInt64]
        var installing: [DeviceID: UInt64]
        var recoveringFrom: UInt64?
        var recoveredFrom: [DeviceID: UInt64]
    }

    init(
        files: StoreFiles,
        overlay: Overlay,
        configuration: SessionStore.Configuration,
        logger: Logger,
        recovered: Recovered,
        automaticLogouts: AsyncStream<[Logout]>.Continuation
    ) {
        self.files = files
        self.overlay = overlay
        self.configuration = configuration
        self.logger = logger
        self.identity = Mutex(recovered.identity)
        self.automaticLogouts = automaticLogouts
        self.lastSequence = recovered.lastSequence
        self.checkpointSequence = recovered.checkpointSequence
        self.firstRetained = recovered.firstRetained
        self.holds = recovered.holds
        self.deadlines = recovered.deadlines
        self.origin = recovered.identity.deviceID
        self.term = recovered.identity.term
        self.takeovers = recovered.identity.takeovers
        self.applied = recovered.applied
        self.appliedHistory = recovered.appliedHistory
        self.installing = recovered.installing
        self.recoveringFrom = recovered.recoveringFrom
        // What came before this open counts as this device's own: comparisons wait until the peer has it all.
        self.ownThrough = recovered.lastSequence
        self.status = Mutex(
            LogStatusState(
                lastSequence: recovered.lastSequence,
                checkpointSequence: recovered.checkpointSequence,
                firstRetained: recovered.firstRetained,
                holds: recovered.holds,
                droppedHolds: recovered.droppedHolds,
                applied: recovered.applied,
                appliedHistory: recovered.appliedHistory,
                installing: recovered.installing,
                recoveringFrom: recovered.recoveringFrom,
                recoveredFrom: recovered.recoveredFrom
            )
        )
        self.checkpointPolicy = CheckpointPolicy(configuration)
        self.retention = RetentionPolicy(quotaBytes: configuration.logQuotaBytes)
        self.expiry = ExpirySchedule(
            interval: configuration.expiryInterval.map { UInt64($0.nanoseconds) },
            now: monotonicNanoseconds()
        )
        buffer.reserveCapacity(1 << 20)
    }

    func start() {
        checkpointer = Checkpointer(files: files, logger: logger) { [weak self] result in
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

    // MARK: - Requests: an operation is its request type (below, with its staging step) and the method that queues it

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
        await alone { writer in writer.initializeDigest() }
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
            while pending.isEmpty && !(closing && !draining) && !truncationPending {
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
            } else if truncationPending {
                beginBatch()
                _ = commit()  // a failure is logged, and the truncation tried again
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
        min(checkpointPolicy.deadline(lastFreeze: lastFreeze), expiry.wake ?? .max)
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
                expired = try stageExpiry(Timestamp.now, limit: 50_000, txn: txn)
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
        if !overlay.active.isEmpty || overlay.active.throughSequence > checkpointSequence {
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
            pendingPosition: active.throughSequence > checkpointSequence,
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

    // MARK: - Batches

    private func beginBatch() {
        staged.removeAll(keepingCapacity: true)
        changes.removeAll(keepingCapacity: true)
        records.removeAll(keepingCapacity: true)
        newDeadlines.removeAll(keepingCapacity: true)
        metaChanges.removeAll(keepingCapacity: true)
        buffer.removeAll(keepingCapacity: true)
        countDelta = 0
        digestDelta = 0
        ownDeltas.removeAll(keepingCapacity: true)
        peerTouched.removeAll(keepingCapacity: true)
        endedThisBatch.removeAll(keepingCapacity: true)
        listedThisBatch.removeAll()
        listingBegun.removeAll()
        listingEnded.removeAll()
        stagedApplied.removeAll()
        stagedInstalling = installing
        stagedEverything = everything
        stagedKeeping = keeping
        stagedRecoveredThrough = recoveredThrough
        stagedOwnThrough = ownThrough
        stagingPeer = false
        peerNotices.removeAll()
        sequence = lastSequence
        (origin, term, takeovers) = identity.withLock { ($0.deviceID, $0.term, $0.takeovers) }
    }

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
            case .checkpoint(let reply): checkpointWaiters.append((sequence, reply))
            case .checkpointDone(let result): checkpointResults.append(result)
            }
            taken += 1
        }
        do {
            try files.usersEnvironment.read { txn in
                for request in batch {
                    if case .staged(let request) = request { request.stage(self, txn) }
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

    /// Writes the staged records and meta changes, then applies them; on failure, changes nothing and returns
    /// the error, for the batch's requests.
    private func commit() -> SessionStoreError? {
        let target = truncationTarget()
        let mayTruncate = truncationPending
        guard !records.isEmpty || !metaChanges.isEmpty || mayTruncate else {
            commitListings()  // a snapshot's sessions that changed nothing were listed all the same
            return nil
        }
        let started = monotonicNanoseconds()
        let truncationBatch = configuration.truncationBatch
        let result: (deleted: Int, first: UInt64?)
        do {
            result = try files.logEnvironment.write { txn in
                if !records.isEmpty {
                    try txn.withCursor(files.log) { cursor in
                        try buffer.withUnsafeBytes { bytes in
                            for (sequence, range) in records {
                                _ = try withUnsafeBytes(of: StoreLayout.sequenceKey(sequence)) { key in
                                    try cursor.put(
                                        key: key,
                                        value: UnsafeRawBufferPointer(rebasing: bytes[range]),
                                        flags: .append
                                    )
                                }
                            }
                        }
                    }
                    try txn.putMeta(StoreLayout.MetaKey.lastSequence, sequence, in: files.logMeta)
                }
                for change in metaChanges {
                    switch change {
                    case .deviceID(let id):
                        try txn.putMeta(StoreLayout.MetaKey.deviceID, UInt64(id.rawValue), in: files.logMeta)
                    case .hold(let name, let position):
                        try txn.putMeta(StoreLayout.MetaKey.holdPrefix + name, position, in: files.logMeta)
                        try txn.deleteMeta(StoreLayout.MetaKey.droppedHoldPrefix + name, in: files.logMeta)
                    case .release(let name):
                        try txn.deleteMeta(StoreLayout.MetaKey.holdPrefix + name, in: files.logMeta)
                    case .droppedHold(let name, let position):
                        try txn.deleteMeta(StoreLayout.MetaKey.holdPrefix + name, in: files.logMeta)
                        try txn.putMeta(StoreLayout.MetaKey.droppedHoldPrefix + name, position, in: files.logMeta)
                    case .term(let newTerm):
                        try txn.putMeta(StoreLayout.MetaKey.term, UInt64(newTerm), in: files.logMeta)
                    case .takeover(let takeover):
                        try txn.putMeta(
                            StoreLayout.MetaKey.adoptedPrefix + "\(takeover.from)",
                            takeover.metaValue,
                            in: files.logMeta
                        )
                    case .applied(let peer, let position):
                        try txn.putMeta(StoreLayout.MetaKey.appliedPrefix + "\(peer)", position, in: files.logMeta)
                    case .appliedHistory(let peer, let history):
                        try txn.putMeta(
                            StoreLayout.MetaKey.appliedHistoryPrefix + "\(peer)",
                            history,
                            in: files.logMeta
                        )
                    case .installing(let peer, let position?):
                        try txn.putMeta(StoreLayout.MetaKey.installingPrefix + "\(peer)", position, in: files.logMeta)
                    case .installing(let peer, nil):
                        try txn.deleteMeta(StoreLayout.MetaKey.installingPrefix + "\(peer)", in: files.logMeta)
                    case .recovered(let peer, let position):
                        try txn.deleteMeta(StoreLayout.MetaKey.recovering, in: files.logMeta)
                        try txn.putMeta(
                            StoreLayout.MetaKey.recoveredFromPrefix + "\(peer)",
                            position,
                            in: files.logMeta
                        )
                    case .forgetRecovery(let peer):
                        try txn.deleteMeta(StoreLayout.MetaKey.recoveredFromPrefix + "\(peer)", in: files.logMeta)
                    }
                }
                guard mayTruncate else { return (0, firstRetained) }
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
                    return (deleted, entry.flatMap { StoreLayout.decodeSequenceKey($0.key) })
                }
            }
        } catch {
            let failure = SessionStoreError.storage(error, doing: "appending to the log")
            logger.error("group commit failed; its callers get the error", metadata: ["tandem.error": "\(failure)"])
            return failure
        }
        commitTimer.recordNanoseconds(Int64(monotonicNanoseconds() - started))
        if !records.isEmpty {
            eventCounter.increment(by: records.count)
            batchRecorder.record(records.count)
            if firstRetained == nil { firstRetained = records.first?.sequence }
        }
        if result.deleted > 0 || mayTruncate { firstRetained = result.first }
        // Apply what committed.
        if !records.isEmpty {
            overlay.apply(changes, countDelta: countDelta, throughSequence: sequence)
            lastSequence = sequence
            ownThrough = stagedOwnThrough
            for item in newDeadlines { deadlines.push(item) }
            digest &+= digestDelta
        }
        for (peer, position) in stagedApplied { applied[peer] = position }
        installing = stagedInstalling
        everything = stagedEverything
        keeping = stagedKeeping
        recoveredThrough = stagedRecoveredThrough
        var holdsChanged = false
        for change in metaChanges {
            switch change {
            case .term, .takeover:
                identity.withLock { [term, takeovers] in
                    $0.term = term
                    $0.takeovers = takeovers
                }
            case .applied:
                break
            case .recovered(let peer, let position):
                recoveringFrom = nil
                status.withLock {
                    $0.recoveringFrom = nil
                    $0.recoveredFrom[peer] = position
                }
                logger.notice("recovered: this device's users are back from the peer")
            case .forgetRecovery(let peer):
                status.withLock { $0.recoveredFrom[peer] = nil }
            case .installing(let peer, let position):
                if position == .max { installs += 1 }
                status.withLock { [installs] in
                    $0.installing[peer] = position
                    $0.installs = installs
                }
            case .appliedHistory(let peer, let history):
                appliedHistory[peer] = history
                status.withLock { $0.appliedHistory[peer] = history }
            case .deviceID(let id):
                identity.withLock { $0.deviceID = id }
            case .hold(let name, let position):
                holds[name] = position
                holdsChanged = true
            case .release(let name), .droppedHold(let name, _):
                holds[name] = nil
                holdsChanged = true
            }
        }
        status.withLock { state in
            state.lastSequence = lastSequence
            state.changesInMemory = overlay.active.count + (overlay.frozen?.count ?? 0)
            state.firstRetained = firstRetained
            if !stagedApplied.isEmpty { state.applied = applied }
            if holdsChanged {
                state.holds = holds
                for case .droppedHold(let name, let position) in metaChanges { state.droppedHolds[name] = position }
                for case .hold(let name, _) in metaChanges { state.droppedHolds[name] = nil }
            }
        }
        for session in endedThisBatch { ended.insert(session) }
        commitListings()
        if digestReady && (!ownDeltas.isEmpty || !peerTouched.isEmpty) {
            digests.withLock { [ownDeltas, peerTouched] in $0.noteChanges(own: ownDeltas, touchedByPeer: peerTouched) }
        }
        if digestReady && (!records.isEmpty || !stagedApplied.isEmpty) { recordDigestPoint() }
        if !records.isEmpty, let observer = commitObserver.withLock({ $0 }) { observer.call(lastSequence) }
        if !peerNotices.isEmpty { automaticLogouts.yield(peerNotices) }
        metaChanges.removeAll(keepingCapacity: true)
        records.removeAll(keepingCapacity: true)
        return nil
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
        while checkpointRunning {
            guard waitForRunningCheckpoint() else { return .failure(SessionStoreError(.closed)) }
        }
        let me = identity.withLock { $0.deviceID }
        let wipe: Wipe
        do {
            wipe = try Wipe.perform(
                files: files,
                me: me,
                term: newTerm,
                keepThrough: keepThrough,
                lastSequence: lastSequence,
                peers: [peer]
            )
        } catch {
            return .failure(error)
        }
        adopt(wipe, term: newTerm)
        logger.warning(
            "demoted: the store was emptied to resynchronize from the peer",
            metadata: [
                "tandem.term": "\(newTerm)", "tandem.discarded_events": "\(wipe.discarded)",
                "tandem.logouts_logged_again": "\(wipe.logoutsLoggedAgain)",
            ]
        )
        return .success(
            Demotion(
                lastDiscarded: wipe.through,
                discardedEvents: wipe.discarded,
                logoutsLoggedAgain: wipe.logoutsLoggedAgain
            )
        )
    }

    /// Repairs a store whose users table or log is damaged: it is emptied like a demoted one (but keeps its
    /// term), and recovers its users from the peer.
    private func repairDamage() -> Result<Wipe, SessionStoreError> {
        while checkpointRunning {
            guard waitForRunningCheckpoint() else { return .failure(SessionStoreError(.closed)) }
        }
        let (me, currentTerm) = identity.withLock { ($0.deviceID, $0.term) }
        let peers = Array(Set(applied.keys).union(Wipe.knownPeers(files)))
        let wipe: Wipe
        do {
            wipe = try Wipe.perform(
                files: files,
                me: me,
                term: currentTerm,
                keepThrough: 0,
                lastSequence: lastSequence,
                peers: peers
            )
        } catch {
            return .failure(error)
        }
        adopt(wipe, term: currentTerm)
        logger.error(
            "the store was damaged: it was emptied, and recovers this device's users from the peer",
            metadata: [
                "tandem.logouts_logged_again": "\(wipe.logoutsLoggedAgain)",
                "tandem.unreadable_records": "\(wipe.unreadable)",
            ]
        )
        return .success(wipe)
    }

    /// Takes the state a wipe left on disk.
    private func adopt(_ wipe: Wipe, term newTerm: UInt32) {
        // The logouts logged again change nothing in the empty table: it stands at the last of them.
        var empty = ChangeSet()
        empty.throughSequence = wipe.last
        overlay.load(empty, count: 0)
        lastSequence = wipe.last
        ownThrough = wipe.last
        checkpointSequence = wipe.through
        firstRetained = wipe.last > wipe.through ? wipe.through + 1 : nil
        holds = wipe.holds
        applied = [:]
        appliedHistory = [:]
        installing = wipe.installing
        installs += 1
        everything = []
        recoveredThrough = [:]
        recoveringFrom = wipe.through
        deadlines = DeadlineHeap()
        // `ended` stays: a session that ended here must not come back with the peer's snapshot either.
        listed = [:]
        digest = 0
        digestReady = true
        // The logouts logged again changed nothing here, but the peer's copy of what they end may still hold it.
        digests.withLock {
            $0.removeAll()
            $0.forgetOwnChanges(through: wipe.last)
        }
        identity.withLock {
            $0.term = newTerm
            $0.takeovers = Takeovers()
            $0.history = wipe.history
        }
        status.withLock { [firstRetained, installs] in
            $0.lastSequence = wipe.last
            $0.checkpointSequence = wipe.through
            $0.firstRetained = firstRetained
            $0.holds = wipe.holds
            $0.droppedHolds = [:]
            $0.applied = [:]
            $0.appliedHistory = [:]
            $0.installing = wipe.installing
            $0.installs = installs
            $0.recoveringFrom = wipe.through
            $0.recoveredFrom = [:]
            $0.changesInMemory = 0
        }
    }

    /// Computes the digest of the whole users table once; each commit keeps it current from then on.
    private func initializeDigest() -> Result<Void, SessionStoreError> {
        guard !digestReady else { return .success(()) }
        beginBatch()
        do {
            let sessions = try files.usersEnvironment.read { txn in try onlineSessions(txn: txn) }
            digest = sessions.reduce(0) { $0 &+ TableDigest.contribution(of: $1) }
        } catch let error as SessionStoreError {
            return .failure(error)
        } catch {
            return .failure(SessionStoreError.storage(error, doing: "reading the users table"))
        }
        digestReady = true
        digests.withLock { [ownThrough] in $0.forgetOwnChanges(through: ownThrough) }
        recordDigestPoint()
        return .success(())
    }

    /// Notes the digest of the table as it stands after a commit, with the positions it stands at.
    private func recordDigestPoint() {
        let point = DigestHistory.Point(
            through: lastSequence,
            applied: applied,
            appliedHistory: appliedHistory,
            value: digest,
            ownThrough: ownThrough,
            installs: installs,
            whole: installing.isEmpty
        )
        digests.withLock { $0.append(point) }
    }

    /// Whether log entries behind the checkpoint wait to be deleted.
    private var truncationPending: Bool { (firstRetained ?? .max) <= truncationTarget() }

    /// The highest sequence the log may delete: behind the checkpoint, and before every hold.
    private func truncationTarget() -> UInt64 {
        retention.truncationTarget(holds: holds, checkpoint: checkpointSequence)
    }

    private func checkpointCompleted(_ result: Result<UInt64, SessionStoreError>) {
        checkpointRunning = false
        switch result {
        case .success(let position):
            checkpointer.discard(overlay.dropFrozen())
            checkpointSequence = position
            status.withLock { $0.checkpointSequence = position }
            deadlines.removeAll { $0.generation.sequence <= position }
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
        guard checkpointWaiters.contains(where: { $0.0 <= checkpointSequence }) else { return }
        let ready = checkpointWaiters.filter { $0.0 <= checkpointSequence }
        checkpointWaiters.removeAll { $0.0 <= checkpointSequence }
        for (_, reply) in ready { reply.resume(.success(checkpointSequence)) }
    }

    /// Drops the holds that keep the log above its quota, loudly.
    private func enforceQuota() {
        var bytes = 0
        let dropped = retention.holdsToDrop(holds: holds, checkpoint: checkpointSequence) {
            bytes = files.retainedLogBytes()
            return bytes
        }
        for (name, position) in dropped {
            holdsDropped.increment()
            logger.error(
                "the log exceeded its quota: dropping the hold of '\(name)', which must now resynchronize in full",
                metadata: [
                    "tandem.log.bytes": "\(bytes)", "tandem.log.quota_bytes": "\(retention.quotaBytes)",
                    "tandem.hold.name": "\(name)", "tandem.hold.sequence": "\(position)",
                ]
            )
            metaChanges.append(.droppedHold(name, position))
        }
    }

    // MARK: - Staging (validation against the current state; nothing is applied until commit)

    func resolve(_ ip: IPAddress, txn: borrowing ReadTransaction) throws(SessionStoreError) -> Session? {
        if let index = staged[ip] { return changes[index].1.session }
        if let entry = overlay.writerEntry(for: ip) { return entry.session }
        do {
            return try files.baseSession(ip, in: txn)
        } catch {
            throw SessionStoreError.storage(error, doing: "reading the users table")
        }
    }

    func emit(_ event: Event, time: Timestamp) {
        appendRecord { buffer in
            RecordCodec.encode(
                LogRecord(sequence: sequence, term: term, origin: origin, time: time, event: event),
                into: &buffer
            )
        }
    }

    /// Encodes the record at the current sequence into the batch buffer and notes where it lies.
    func appendRecord(_ encode: (inout [UInt8]) -> Void) {
        let start = buffer.count
        encode(&buffer)
        records.append((sequence, start..<buffer.count))
        if !stagingPeer { stagedOwnThrough = sequence }
    }

    /// Takes the listings of a batch that committed.
    private func commitListings() {
        for peer in listingBegun { listed[peer] = [] }
        for (peer, addresses) in listedThisBatch { listed[peer, default: []].formUnion(addresses) }
        for peer in listingEnded { listed[peer] = nil }
    }

    /// Notes that the snapshot `peer` sends began: the sessions it replaces stay until its end.
    func beginListing(_ peer: DeviceID) {
        listingBegun.insert(peer)
        listingEnded.remove(peer)
        listedThisBatch[peer] = []
    }

    /// Notes that the snapshot `peer` sends lists `ip`.
    func noteListed(_ ip: IPAddress, by peer: DeviceID) {
        listedThisBatch[peer, default: []].append(ip)
    }

    /// The addresses the snapshot `peer` sends listed so far.
    func listedSoFar(by peer: DeviceID) -> Set<IPAddress> {
        var addresses = listingBegun.contains(peer) ? [] : listed[peer] ?? []
        addresses.formUnion(listedThisBatch[peer] ?? [])
        return addresses
    }

    /// Notes that the snapshot `peer` sends ended: what it listed is forgotten.
    func endListing(_ peer: DeviceID) {
        listingEnded.insert(peer)
    }

    /// Whether `session` ended here recently (see ``EndedSessions``): a copy of it must not come back.
    func hasEnded(_ session: Session) -> Bool {
        let key = EndedSessions.Key(session)
        return endedThisBatch.contains(key) || ended.contains(key)
    }

    /// Stages the new state of `ip`, which `current` held until now. `current` ends unless `resync`: a
    /// snapshot drops the peer's copy of its users only to install them again from what it lists.
    func stage(_ ip: IPAddress, _ entry: TableEntry, replacing current: Session?, resync: Bool = false) {
        if !resync, let current,
            entry.session?.generation != current.generation || entry.session?.owner != current.owner
        {
            endedThisBatch.insert(EndedSessions.Key(current))
        }
        staged[ip] = changes.count
        changes.append((ip, entry))
        countDelta += (entry.session != nil ? 1 : 0) - (current != nil ? 1 : 0)
        if digestReady {
            var delta: UInt64 = 0
            if let current { delta &-= TableDigest.contribution(of: current) }
            if let session = entry.session { delta &+= TableDigest.contribution(of: session) }
            digestDelta &+= delta
            if stagingPeer {
                peerTouched.append(ip)
            } else {
                ownDeltas.append(DigestHistory.OwnDelta(sequence: sequence, ip: ip, delta: delta))
            }
        }
    }

    /// Keeps the log for `name` from `requested` on, or, for `nil`, from after the checkpoint (or from where the
    /// hold already is if that is earlier and still in the log: a reset keeps its logouts there).
    private func stageHold(_ name: String, from requested: UInt64?) throws(SessionStoreError) {
        let available = firstRetained ?? (lastSequence + 1)
        var position = requested ?? checkpointSequence + 1
        if requested == nil, let held = holds[name], held >= available {
            position = min(held, position)
        }
        if position < available {
            throw SessionStoreError(.logTruncated(requested: position, firstRetained: available))
        }
        metaChanges.append(.hold(name, position))
    }

    private func stageLogin(_ session: Session, txn: borrowing ReadTransaction) throws(SessionStoreError) -> Session {
        guard session.owner == origin else {
            throw SessionStoreError(
                .invalidArgument(
                    "owner: the session is owned by device \(session.owner), but this store is device \(origin); "
                        + "log users in on the device that owns them"
                )
            )
        }
        if let current = try resolve(session.ip, txn: txn) {
            throw SessionStoreError(.alreadyOnline(session.ip, userName: current.userName))
        }
        sequence += 1
        var stored = session
        stored.generation = Generation(term: term, sequence: sequence)
        appendRecord { buffer in
            RecordCodec.encodeLogin(stored, sequence: sequence, term: term, origin: origin, time: .now, into: &buffer)
        }
        stage(stored.ip, .online(stored), replacing: nil)
        if let deadline = stored.deadline {
            newDeadlines.append(.init(deadline: deadline, ip: stored.ip, generation: stored.generation))
        }
        return stored
    }

    func stageLogout(_ session: Session, reason: LogoutReason, time: Timestamp) -> Logout {
        sequence += 1
        let logout = Logout(ending: session, reason: reason)
        emit(.logout(logout), time: time)
        stage(session.ip, .offline(session.generation), replacing: session)
        return logout
    }

    private func stageExpiry(
        _ now: Timestamp,
        limit: Int,
        txn: borrowing ReadTransaction
    ) throws(SessionStoreError)
        -> [Logout]
    {
        var expired: [Logout] = []
        while expired.count < limit, let top = deadlines.first, top.deadline <= now {
            _ = deadlines.pop()
            try expire(top.ip, generation: top.generation, now: now, txn: txn, into: &expired)
        }
        var due: [IPAddress] = []
        do {
            try txn.withCursor(files.byDeadline) { cursor in
                var entry = try cursor.move(.first)
                while let (key, value) = entry, due.count < max(limit - expired.count, 0), value.count == 16,
                    let deadline = StoreLayout.decodeDeadlineKey(key), deadline <= now
                {
                    due.append(IPAddress(bytes: value))
                    entry = try cursor.move(.next)
                }
            }
        } catch {
            throw SessionStoreError.storage(error, doing: "scanning session deadlines")
        }
        for ip in due where expired.count < limit {
            try expire(ip, generation: nil, now: now, txn: txn, into: &expired)
        }
        return expired
    }

    private func expire(
        _ ip: IPAddress,
        generation: Generation?,
        now: Timestamp,
        txn: borrowing ReadTransaction,
        into expired: inout [Logout]
    ) throws(SessionStoreError) {
        // Each device expires the sessions it owns in effect; the peer's copies end with the peer's logouts.
        guard let session = try resolve(ip, txn: txn), let deadline = session.deadline, deadline <= now,
            generation == nil || generation == session.generation,
            takeovers.effectiveOwner(of: session) == origin
        else { return }
        expired.append(stageLogout(session, reason: .sessionTimeout, time: now))
    }

    private func stageDeviceIDChange(
        to newID: DeviceID,
        txn: borrowing ReadTransaction
    ) throws(SessionStoreError)
        -> Int
    {
        guard newID != origin else { throw SessionStoreError(.sameDeviceID(newID)) }
        let online = try onlineSessions(txn: txn)
        let now = Timestamp.now
        for session in online { _ = stageLogout(session, reason: .deviceIDChange, time: now) }
        sequence += 1
        emit(.deviceIDChanged(from: origin, to: newID), time: now)
        metaChanges.append(.deviceID(newID))
        origin = newID
        logger.info(
            "device ID changed; every online user was logged off",
            metadata: ["tandem.device_id": "\(newID)", "tandem.logged_off": "\(online.count)"]
        )
        return online.count
    }

    /// Every session online as this batch has staged it so far.
    func onlineSessions(txn: borrowing ReadTransaction) throws(SessionStoreError) -> [Session] {
        var online: [Session] = []
        do {
            try txn.withCursor(files.users) { cursor in
                var entry = try cursor.move(.first)
                while let (key, value) = entry {
                    let ip = IPAddress(bytes: key)
                    if staged[ip] == nil && overlay.writerEntry(for: ip) == nil {
                        online.append(try decodeStoredSession(value, ip: ip))
                    }
                    entry = try cursor.move(.next)
                }
            }
        } catch let error as SessionStoreError {
            throw error
        } catch {
            throw SessionStoreError.storage(error, doing: "reading the users table")
        }
        let active = overlay.active
        let frozen = overlay.frozen
        for (ip, entry) in active.entries where staged[ip] == nil {
            if let session = entry.session { online.append(session) }
        }
        if let frozen {
            for (ip, entry) in frozen.entries where staged[ip] == nil && active[ip] == nil {
                if let session = entry.session { online.append(session) }
            }
        }
        for (_, index) in staged { if let session = changes[index].1.session { online.append(session) } }
        return online
    }
}

// MARK: - The request types: each holds its arguments, its staging step and its outcome

extension LogWriter {
    final class LoginRequest: StagedRequest, @unchecked Sendable {
        private let session: Session
        private var outcome: Outcome<Session>
        init(_ session: Session, _ reply: consuming Reply<Session>) {
            self.session = session
            outcome = Outcome(reply)
        }
        func stage(_ writer: LogWriter, _ txn: borrowing ReadTransaction) {
            outcome.set(Result { () throws(SessionStoreError) in try writer.stageLogin(session, txn: txn) })
        }
        func fail(_ error: SessionStoreError) { outcome.fail(error) }
        func answer() { outcome.answer() }
    }

    final class LoginBatchRequest: StagedRequest, @unchecked Sendable {
        private let sessions: [Session]
        private var outcome: Outcome<[Result<Session, SessionStoreError>]>
        init(_ sessions: [Session], _ reply: consuming Reply<[Result<Session, SessionStoreError>]>) {
            self.sessions = sessions
            outcome = Outcome(reply)
        }
        func stage(_ writer: LogWriter, _ txn: borrowing ReadTransaction) {
            var results: [Result<Session, SessionStoreError>] = []
            results.reserveCapacity(sessions.count)
            for session in sessions {
                results.append(Result { () throws(SessionStoreError) in try writer.stageLogin(session, txn: txn) })
            }
            outcome.set(.success(results))
        }
        func fail(_ error: SessionStoreError) { outcome.fail(error) }
        func answer() { outcome.answer() }
    }

    final class LogoutBatchRequest: StagedRequest, @unchecked Sendable {
        private let logouts: [(IPAddress, LogoutReason)]
        private var outcome: Outcome<[Result<Logout, SessionStoreError>]>
        init(_ logouts: [(IPAddress, LogoutReason)], _ reply: consuming Reply<[Result<Logout, SessionStoreError>]>) {
            self.logouts = logouts
            outcome = Outcome(reply)
        }
        func stage(_ writer: LogWriter, _ txn: borrowing ReadTransaction) {
            var results: [Result<Logout, SessionStoreError>] = []
            results.reserveCapacity(logouts.count)
            let now = Timestamp.now
            for (ip, reason) in logouts {
                results.append(
                    Result { () throws(SessionStoreError) in
                        guard let session = try writer.resolve(ip, txn: txn) else {
                            throw SessionStoreError(.notOnline(ip))
                        }
                        return writer.stageLogout(session, reason: reason, time: now)
                    }
                )
            }
            outcome.set(.success(results))
        }
        func fail(_ error: SessionStoreError) { outcome.fail(error) }
        func answer() { outcome.answer() }
    }

    final class LogoutRequest: StagedRequest, @unchecked Sendable {
        private let ip: IPAddress
        private let reason: LogoutReason
        private var outcome: Outcome<LoggedLogout>
        init(_ ip: IPAddress, _ reason: LogoutReason, _ reply: consuming Reply<LoggedLogout>) {
            self.ip = ip
            self.reason = reason
            outcome = Outcome(reply)
        }
        func stage(_ writer: LogWriter, _ txn: borrowing ReadTransaction) {
            outcome.set(
                Result { () throws(SessionStoreError) in
                    guard let session = try writer.resolve(ip, txn: txn) else {
                        throw SessionStoreError(.notOnline(ip))
                    }
                    let logout = writer.stageLogout(session, reason: reason, time: .now)
                    return LoggedLogout(logout: logout, sequence: writer.sequence)
                }
            )
        }
        func fail(_ error: SessionStoreError) { outcome.fail(error) }
        func answer() { outcome.answer() }
    }

    final class ExpiryRequest: StagedRequest, @unchecked Sendable {
        private let now: Timestamp
        private var outcome: Outcome<[Logout]>
        init(_ now: Timestamp, _ reply: consuming Reply<[Logout]>) {
            self.now = now
            outcome = Outcome(reply)
        }
        func stage(_ writer: LogWriter, _ txn: borrowing ReadTransaction) {
            outcome.set(Result { () throws(SessionStoreError) in try writer.stageExpiry(now, limit: .max, txn: txn) })
        }
        func fail(_ error: SessionStoreError) { outcome.fail(error) }
        func answer() { outcome.answer() }
    }

    final class DeviceIDRequest: StagedRequest, @unchecked Sendable {
        private let newID: DeviceID
        private var outcome: Outcome<Int>
        init(_ newID: DeviceID, _ reply: consuming Reply<Int>) {
            self.newID = newID
            outcome = Outcome(reply)
        }
        func stage(_ writer: LogWriter, _ txn: borrowing ReadTransaction) {
            outcome.set(Result { () throws(SessionStoreError) in try writer.stageDeviceIDChange(to: newID, txn: txn) })
        }
        func fail(_ error: SessionStoreError) { outcome.fail(error) }
        func answer() { outcome.answer() }
    }

    /// A change of the log's metadata alone: a hold, its release, the end of a recovery.
    final class MetaRequest: StagedRequest, @unchecked Sendable {
        enum Change {
            /// Keeps the log from a position on; `nil`: after the checkpoint, or where the hold already is.
            case hold(String, UInt64?)
            case release(String)
            case forgetRecovery(DeviceID)
        }
        private let change: Change
        private var outcome: Outcome<Void>
        init(_ change: Change, _ reply: consuming Reply<Void>) {
            self.change = change
            outcome = Outcome(reply)
        }
        func stage(_ writer: LogWriter, _ txn: borrowing ReadTransaction) {
            outcome.set(
                Result { () throws(SessionStoreError) in
                    switch change {
                    case .hold(let name, let requested): try writer.stageHold(name, from: requested)
                    case .release(let name): writer.metaChanges.append(.release(name))
                    case .forgetRecovery(let peer): writer.metaChanges.append(.forgetRecovery(peer))
                    }
                }
            )
        }
        func fail(_ error: SessionStoreError) { outcome.fail(error) }
        func answer() { outcome.answer() }
    }

    final class PeerRequest: StagedRequest, @unchecked Sendable {
        private let batch: PeerBatch
        private var outcome: Outcome<PeerApplied>
        init(_ batch: PeerBatch, _ reply: consuming Reply<PeerApplied>) {
            self.batch = batch
            outcome = Outcome(reply)
        }
        func stage(_ writer: LogWriter, _ txn: borrowing ReadTransaction) {
            outcome.set(Result { () throws(SessionStoreError) in try writer.stagePeer(batch, txn: txn) })
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
        func stage(_ writer: LogWriter, _ txn: borrowing ReadTransaction) {
            outcome.set(
                Result { () throws(SessionStoreError) in try writer.stagePromotion(over: peer, peerTerm: peerTerm) }
            )
        }
        func fail(_ error: SessionStoreError) { outcome.fail(error) }
        func answer() { outcome.answer() }
    }
}

extension Duration {
    var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}
