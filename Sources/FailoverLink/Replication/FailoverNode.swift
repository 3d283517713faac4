import Logging
import Metrics
import NIOCore
import NIOPosix
import ServiceLifecycle
import SessionStore
import Synchronization

/// One device of a stateful-failover pair: its session store, and the link that backs its users up on the
/// peer and the peer's users up here (R1).
///
/// Each device streams its own log to the peer, batched and pipelined, and applies the peer's stream to its
/// store under the peer's origin, acknowledging what it has committed. A reconnecting peer resumes from its
/// acknowledged position while the log still holds it, and gets a snapshot of the users and then the stream
/// otherwise. ``promote()`` takes the peer's users over; a device that finds a higher term at the peer
/// demotes itself: it discards what the peer never acknowledged and resynchronizes.
///
/// The node is a `Service`: ``run()`` replicates until a graceful shutdown, which ends replication and
/// closes the link (the peer sees it close) and leaves the store open for its owner to close. ``start()``
/// and ``shutdown()`` run it without a `ServiceGroup`.
///
/// ```swift
/// let store = try SessionStore.open(at: "/var/lib/portal/tandem", configuration: .init(deviceID: 1, portalGroup: "campus"))
/// let node = FailoverNode(store: store, configuration: .init(link: linkConfiguration))
/// let services = ServiceGroup(services: [node], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
/// async let running: Void = services.run()
/// try await node.login(session, writeConcern: .replicated())   // returns once the peer has it too
/// // VRRP made this device master and the peer is gone:
/// let report = try await node.promote()
/// ```
public final class FailoverNode: Service {
    /// How the node runs.
    public struct Configuration: Sendable {
        /// The link: identity, secret, addresses, TLS, heartbeats.
        public var link: FailoverLinkService.Configuration
        /// How long a ``WriteConcern/replicated(timeout:)`` write waits when it names no timeout. Default: 1 s.
        public var replicationTimeout: Duration = .seconds(1)
        /// How often the two devices compare their users tables' digests. Default: 1 s.
        public var digestInterval: Duration = .seconds(1)
        /// The most bytes of records in one frame. Default: 256 KiB.
        public var batchBytes = 256 << 10
        /// How many sessions a snapshot frame carries. Default: 4,096.
        public var snapshotBatch = 4096
        /// How many sessions each batch of ``FailoverNode/takenOver`` holds. Default: 16,384.
        public var handoverBatch = 16_384

        /// A configuration with the defaults documented on each property.
        /// - Parameter link: the link's configuration.
        public init(link: FailoverLinkService.Configuration) {
            self.link = link
        }
    }

    /// When a write returns.
    public enum WriteConcern: Sendable, Hashable {
        /// Once it is committed on this device.
        case local
        /// Once the peer has durably committed it too, or with ``LinkError/Kind/notReplicated`` after
        /// `timeout` (``Configuration/replicationTimeout`` when `nil`), or with `CancellationError` at once
        /// when the calling task is cancelled while it waits. The write stays committed here either way.
        case replicated(timeout: Duration? = nil)
    }

    /// Something the controller and the operator should know about replication.
    public enum Event: Sendable, Hashable {
        /// A full resynchronization of this device's users was sent to the peer.
        case snapshotSent(sessions: Int, position: UInt64)
        /// This device's copy of the peer's users was rebuilt from the peer's snapshot.
        case snapshotReceived(sessions: Int, position: UInt64)
        /// The peer holds a higher term (it took this device's users over): this device emptied its store
        /// and resynchronizes from the peer; the controller must remove every user from its data plane.
        ///
        /// This device's events after its sequence `keptThrough` were never acknowledged by the peer:
        /// `discardedEvents` of them are gone (the users whose logins are among them log in again). Of those,
        /// `loggedOffAgain` were logouts, logged again in the new term, so that those users stay logged off
        /// on the pair (R7).
        case demoted(term: UInt32, keptThrough: UInt64, discardedEvents: Int, loggedOffAgain: Int)
        /// The two users tables differed at the same positions; both sides resynchronize.
        case digestMismatch(through: UInt64, peerThrough: UInt64)
        /// The two users tables were compared at matching positions (this device's sequence `through`, the
        /// peer's `peerThrough`) and found equal, for the first time since the connection began or the last
        /// snapshot: the pair is in synchronization.
        case synchronized(through: UInt64, peerThrough: UInt64)
    }

    /// What a promotion did.
    public struct PromotionReport: Sendable, Hashable {
        /// The term the pair is in now.
        public var term: UInt32
        /// The peer's users this device took over.
        public var takenOver: Int
        /// From the call until the takeover committed; lookups answer for every taken-over user from then on.
        public var readyAfter: Duration
        /// From the call until every taken-over session was handed to ``FailoverNode/takenOver``.
        public var handoverAfter: Duration
        /// The failover state when the promotion began. Unless it was synchronization, this device's copy of
        /// the peer's users may have been incomplete (a snapshot half-way, say): users missing here log in
        /// again.
        public var stateBefore: FailoverState
    }

    /// Where replication stands.
    public struct Status: Sendable, Hashable {
        /// Synchronization, or independence and why. Synchronization means that the link is up and the two
        /// users tables were found equal at matching positions since the connection began and since the last
        /// snapshot; until then the reason is ``IndependenceReason/catchingUp(_:)``.
        public var state: FailoverState
        /// The peer's device ID, once known.
        public var peer: DeviceID?
        /// This device's term.
        public var term: UInt32
        /// The highest sequence of this device's log the peer acknowledged.
        public var acknowledgedByPeer: UInt64
        /// How far this device has applied the peer's stream.
        public var appliedFromPeer: UInt64
        /// Digest comparisons made, and how many found a difference.
        public var digestsCompared: Int
        public var digestMismatches: Int
        /// Full resynchronizations sent and received.
        public var snapshotsSent: Int
        public var snapshotsReceived: Int
        /// This device recovers its users from the peer: its store is new, was emptied by a demotion, or was
        /// found damaged and emptied (``SessionStore/Configuration/DamagePolicy/recoverFromPeer``).
        public var recovering: Bool
    }

    private struct Shared: Sendable {
        var peer: DeviceID?
        var peerTerm: UInt32 = 0
        var connection: Task<Void, Never>?
        var channel: Channel?
        var connectionID = 0
        /// The current connection's verification.
        var verification: Verification?
        /// Why the last batch of the peer's stream could not be stored, until one is stored again.
        var storeFailure: String?
        var stopped = false
        var digestsCompared = 0
        var digestMismatches = 0
        var snapshotsSent = 0
        var snapshotsReceived = 0
        var lastResyncRequest: ContinuousClock.Instant?
    }

    /// The store this node replicates.
    public let store: SessionStore
    /// The link to the peer.
    public let link: FailoverLinkService
    /// The configuration the node runs with.
    public let configuration: Configuration
    /// Replication events, for the controller and the operator (the newest 1,024 are kept).
    public let events: AsyncStream<Event>
    /// After ``promote()``: every taken-over session, in batches, so that the controller reinstalls the
    /// users in its data plane. Unbounded: read it while promoting.
    public let takenOver: AsyncStream<[Session]>

    private let eventsContinuation: AsyncStream<Event>.Continuation
    private let takenOverContinuation: AsyncStream<[Session]>.Continuation
    private let shared = Mutex(Shared())
    private let commits: CommitSignal
    private let acks = AckTracker()
    private let lag = LagRecorder()
    private let logger: Logger
    private let forceSnapshot = Atomic<Bool>(false)
    private let lifecycle = RunOnce()
    private let lagTimer = Metrics.Timer(label: "tandem_replication_lag")
    private let mismatchCounter = Counter(label: "tandem_digest_mismatches_total")
    private let snapshotCounter = Counter(label: "tandem_snapshots_sent_total")

    /// A node, not yet running.
    /// - Parameters:
    ///   - store: the device's open store; its device ID and portal group must be the link identity's.
    ///   - configuration: how the node runs.
    ///   - eventLoopGroup: the event loops of the link's connections (default: the process's shared
    ///     `MultiThreadedEventLoopGroup.singleton`). The node never shuts down the group it is given.
    ///   - logger: where it logs.
    public init(
        store: SessionStore,
        configuration: Configuration,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "tandem.node")
    ) {
        precondition(
            store.deviceID == configuration.link.identity.deviceID,
            "the store is device \(store.deviceID), the link identity device \(configuration.link.identity.deviceID)"
        )
        self.store = store
        self.configuration = configuration
        self.logger = logger
        (events, eventsContinuation) = AsyncStream.makeStream(of: Event.self, bufferingPolicy: .bufferingNewest(1024))
        (takenOver, takenOverContinuation) = AsyncStream.makeStream(of: [Session].self)
        commits = CommitSignal(last: store.logStatus.lastSequence)
        let connections = Mutex<(@Sendable (LinkConnection) async -> Void)?>(nil)
        link = FailoverLinkService(
            configuration: configuration.link,
            eventLoopGroup: eventLoopGroup,
            logger: logger
        ) { connection in
            await connections.withLock { $0 }?(connection)
        }
        connections.withLock { $0 = { [weak self] connection in await self?.accept(connection) } }
        shared.withLock { $0.peer = store.logStatus.peerApplied.keys.first }
    }

    // MARK: - Running

    /// Runs the node: the link (listening, connecting), and replication whenever the pair is in
    /// synchronization.
    ///
    /// On graceful shutdown (`ServiceGroup`), or ``shutdown()``, it ends replication, closes the link so that
    /// the peer sees it close, and returns once every connection has closed; writes still waiting for the
    /// peer end with ``LinkError/Kind/stopped``, and ``events`` and ``takenOver`` end. The store stays open:
    /// its owner closes it. A node runs once: `run()` on a node that ran or was shut down returns at once.
    /// - Throws: when the listener cannot be bound (the address is not this host's, or is taken), or the
    ///   store cannot be prepared for replication.
    public func run() async throws {
        guard lifecycle.begin("FailoverNode") else { return }
        defer { finished() }
        do {
            try await prepare()
        } catch {
            link.abandon(error)
            throw error
        }
        try await withGracefulShutdownHandler {
            try await withThrowingDiscardingTaskGroup { group in
                defer { group.cancelAll() }
                group.addTask { [acks] in await acks.expireWhenDue() }
                // It returns once every connection, and the replication over it, has ended.
                try await link.run()
            }
        } onGracefulShutdown: { [self] in
            stop()
        }
    }

    /// Runs the node (see ``run()``) in a task of its own, and returns once the link's listener is bound;
    /// ``shutdown()`` ends it.
    /// - Throws: when the listener cannot be bound (the address is not this host's, or is taken), or the
    ///   store cannot be prepared for replication.
    public func start() async throws {
        Task { [self] in
            do {
                try await run()
            } catch {
                // A node that could not start is `start()`'s to throw; a failure after it is told here.
                if link.listeningAddress != nil {
                    logger.error("the failover node stopped", metadata: ["tandem.error": "\(error)"])
                }
            }
        }
        _ = try await link.waitUntilListening()
    }

    /// Stops replicating and closes the link, and returns once ``run()`` has returned. The store stays open.
    public func shutdown() async {
        if lifecycle.finishIfIdle() {
            link.abandon(CancellationError())
            finished()
            return
        }
        stop()
        await lifecycle.waitUntilFinished()
    }

    /// Sets the store up for replication: the commit observer, the digest, and the recovery hold.
    private func prepare() async throws {
        store.setCommitObserver { [commits, lag] sequence in
            lag.committed(sequence, at: .now)
            commits.committed(sequence)
        }
        try await store.initializeDigest()
        // A recovering device keeps its own events from now on for the peer (see `SessionStore.recoveryHold`).
        if store.isRecovering, store.holdPosition(SessionStore.recoveryHold) == nil {
            try await store.holdLog(SessionStore.recoveryHold, from: store.lastLoggedSequence + 1)
        }
    }

    /// Ends replication and closes the link; ``run()`` returns once the connections have closed.
    private func stop() {
        let connection = shared.withLock { shared -> Task<Void, Never>? in
            shared.stopped = true
            return shared.connection
        }
        // The link first: the connection's close, asked for when replication ends, then waits for the
        // graceful one instead of cutting it.
        link.stop()
        connection?.cancel()
    }

    /// What ``run()`` leaves behind: no commit observer, no write waiting for the peer, the streams ended.
    private func finished() {
        store.setCommitObserver(nil)
        acks.stop()
        eventsContinuation.finish()
        takenOverContinuation.finish()
        lifecycle.finish()
    }

    /// Where replication stands.
    public var status: Status {
        let shared = shared.withLock { $0 }
        return Status(
            state: state(linkState: link.state, verification: shared.verification, storeFailure: shared.storeFailure),
            peer: shared.peer,
            term: store.term,
            acknowledgedByPeer: acks.acked,
            appliedFromPeer: shared.peer.flatMap { store.logStatus.peerApplied[$0] } ?? 0,
            digestsCompared: shared.digestsCompared,
            digestMismatches: shared.digestMismatches,
            snapshotsSent: shared.snapshotsSent,
            snapshotsReceived: shared.snapshotsReceived,
            recovering: store.isRecovering
        )
    }

    /// The link's state, unless the link is up and the peer's stream cannot be stored, or the tables are not
    /// yet known to agree.
    private func state(linkState: FailoverState, verification: Verification?, storeFailure: String?) -> FailoverState {
        guard linkState == .synchronization else { return linkState }
        if let storeFailure { return .independence(.storageFailed(storeFailure)) }
        guard let verification else { return .independence(.catchingUp(.comparingDigests)) }
        return verification.current.catchUp(installing: store.isInstallingSnapshot).map {
            .independence(.catchingUp($0))
        } ?? .synchronization
    }

    // MARK: - Writes

    /// Logs a user in on this device (see ``SessionStore/login(_:)``).
    /// - Parameters:
    ///   - session: the new session, owned by this device.
    ///   - writeConcern: when to return: once committed here, or once the peer has it too.
    /// - Returns: the session as stored.
    /// - Throws: what ``SessionStore/login(_:)`` throws; ``LinkError`` of kind ``LinkError/Kind/notReplicated``
    ///   when the peer did not acknowledge it in time (it is committed here).
    @discardableResult
    public func login(_ session: Session, writeConcern: WriteConcern = .local) async throws -> Session {
        let stored = try await store.login(session)
        try await replicate(through: stored.generation.sequence, writeConcern)
        return stored
    }

    /// Logs many users in with one call (see ``SessionStore/login(contentsOf:)``); with the `replicated`
    /// write concern it returns once the peer has all that were accepted.
    public func login(
        contentsOf sessions: [Session],
        writeConcern: WriteConcern = .local
    ) async throws -> [Result<Session, SessionStoreError>] {
        let results = try await store.login(contentsOf: sessions)
        let last = results.compactMap { try? $0.get().generation.sequence }.max()
        if let last { try await replicate(through: last, writeConcern) }
        return results
    }

    /// Logs a user off on this device, whichever device owns the user (R7): the peer deletes the user too.
    /// - Parameters:
    ///   - ip: the user's address.
    ///   - reason: why.
    ///   - writeConcern: when to return: once committed here, or once the peer has it too.
    /// - Returns: the logout as logged.
    @discardableResult
    public func logout(
        _ ip: IPAddress,
        reason: LogoutReason,
        writeConcern: WriteConcern = .local
    ) async throws -> Logout {
        try await loggedLogout(ip, reason: reason, writeConcern: writeConcern).logout
    }

    /// Logs a user off (see ``logout(_:reason:writeConcern:)``), and returns the sequence of the logout's record.
    package func loggedLogout(
        _ ip: IPAddress,
        reason: LogoutReason,
        writeConcern: WriteConcern = .local
    ) async throws -> LoggedLogout {
        let logged = try await store.loggedLogout(ip, reason: reason)
        try await replicate(through: logged.sequence, writeConcern)
        return logged
    }

    private func replicate(through sequence: UInt64, _ writeConcern: WriteConcern) async throws {
        guard case .replicated(let timeout) = writeConcern else { return }
        let limit = timeout ?? configuration.replicationTimeout
        switch await acks.wait(for: sequence, timeout: limit) {
        case .acknowledged:
            return
        case .timedOut:
            throw LinkError(.notReplicated(sequence: sequence, timeout: limit, state: "\(status.state)"))
        case .discarded(let term):
            throw LinkError(.discarded(sequence: sequence, term: term))
        case .stopped:
            throw LinkError(.stopped(sequence: sequence))
        case .cancelled:
            throw CancellationError()
        }
    }

    // MARK: - Promotion

    /// Takes over the peer's users (R2: the controller, or a VRRP notify script, calls it when this device
    /// becomes master).
    ///
    /// It ends the current connection, so that no batch of the peer's stream is half-way; everything the
    /// peer's stream brought is already committed here. It raises the term above both devices', logs the
    /// takeover, and then hands every taken-over session to ``takenOver``. When the peer comes back, it learns
    /// the higher term, discards what this device never acknowledged, and resynchronizes from it.
    ///
    /// - Returns: the new term, the users taken over and the timings.
    /// - Throws: ``LinkError`` of kind ``LinkError/Kind/noPeerKnown`` when this device never met its peer;
    ///   ``SessionStoreError`` when the takeover cannot be logged.
    @discardableResult
    public func promote() async throws -> PromotionReport {
        let started = ContinuousClock.now
        let stateBefore = status.state
        let (peer, peerTerm, connection, channel) = shared.withLock { shared in
            defer {
                shared.connection = nil
                shared.channel = nil
            }
            return (shared.peer, shared.peerTerm, shared.connection, shared.channel)
        }
        guard let peer else { throw LinkError(.noPeerKnown) }
        // Closing the connection ends its reader; its applier commits what was received before it ends.
        try? await channel?.close()
        await connection?.value
        let promotion = try await store.promote(over: peer, peerTerm: peerTerm)
        let ready = started.duration(to: .now)
        let me = store.deviceID
        var batch: [Session] = []
        batch.reserveCapacity(configuration.handoverBatch)
        var count = 0
        try store.forEachSession { session in
            guard promotion.before.effectiveOwner(of: session) == peer,
                promotion.after.effectiveOwner(of: session) == me
            else { return }
            batch.append(session)
            count += 1
            if batch.count == configuration.handoverBatch {
                takenOverContinuation.yield(batch)
                batch.removeAll(keepingCapacity: true)
            }
        }
        if !batch.isEmpty { takenOverContinuation.yield(batch) }
        let report = PromotionReport(
            term: promotion.term,
            takenOver: count,
            readyAfter: ready,
            handoverAfter: started.duration(to: .now),
            stateBefore: stateBefore
        )
        logger.notice(
            "promotion complete",
            metadata: [
                "tandem.term": "\(report.term)", "tandem.taken_over": "\(count)",
                "tandem.ready_ms": "\(report.readyAfter)", "tandem.state_before": "\(stateBefore)",
            ]
        )
        if stateBefore != .synchronization {
            logger.warning(
                "promoted while not in synchronization: users of the peer missing here must log in again",
                metadata: ["tandem.state_before": "\(stateBefore)"]
            )
        }
        return report
    }

    /// The replication lag measured since the last call: for each commit of this device, the time from the
    /// commit until the peer acknowledged having committed it too. At most the last 1,000,000 are kept; the
    /// `tandem_replication_lag` timer of swift-metrics records every one.
    public func takeReplicationLagSamples() -> [Duration] { lag.drain() }

    // MARK: - A connection

    /// Replicates over a connection the link handed over, until it ends; a new connection ends the previous
    /// one first.
    private func accept(_ connection: LinkConnection) async {
        let (previous, id) = shared.withLock { shared -> (Task<Void, Never>?, Int) in
            shared.connectionID += 1
            shared.peer = connection.peer.deviceID
            shared.channel = connection.channel.channel
            return (shared.connection, shared.connectionID)
        }
        previous?.cancel()
        let task = Task { [self] in
            await previous?.value
            await replicateUntilCancelled(connection)
            shared.withLock { if $0.connectionID == id { $0.connection = nil } }
        }
        let stopped = shared.withLock { shared -> Bool in
            if shared.connectionID == id { shared.connection = task }
            return shared.stopped
        }
        if stopped { task.cancel() }
        await withTaskCancellationHandler {
            await task.value
        } onCancel: {
            task.cancel()
        }
    }

    private func replicateUntilCancelled(_ connection: LinkConnection) async {
        await withTaskCancellationHandler {
            await replicate(over: connection)
        } onCancel: {
            connection.channel.channel.close(promise: nil)
        }
    }

    private func replicate(over connection: LinkConnection) async {
        let peer = connection.peer.deviceID
        do {
            try await connection.channel.executeThenClose { inbound, outbound in
                let start = StartSignal()
                let request = StreamRequest(
                    term: store.term,
                    history: store.historyID,
                    applied: store.peerPosition(peer),
                    adoptedYouAt: store.takeovers.byDevice[peer].flatMap { $0.to == store.deviceID ? $0.term : nil }
                        ?? 0,
                    recovering: store.isRecovering
                )
                try await outbound.write(request.frame())
                let queue = ApplyQueue()
                let peerApplied = PeerPosition()
                let verification = Verification(installsBase: store.snapshotInstalls)
                shared.withLock { $0.verification = verification }
                defer { shared.withLock { if $0.verification === verification { $0.verification = nil } } }
                try await withThrowingTaskGroup(of: Role.self) { group in
                    group.addTask {
                        try await self.receive(
                            inbound,
                            outbound,
                            peer: peer,
                            start: start,
                            queue: queue,
                            peerApplied: peerApplied,
                            verification: verification
                        )
                        return .reader
                    }
                    group.addTask {
                        try await self.apply(
                            outbound,
                            peer: peer,
                            queue: queue,
                            peerApplied: peerApplied,
                            verification: verification
                        )
                        return .applier
                    }
                    group.addTask {
                        try await self.send(
                            outbound,
                            peer: peer,
                            start: start,
                            peerRequest: peerApplied,
                            verification: verification
                        )
                        return .sender
                    }
                    group.addTask {
                        try await self.requestDigests(outbound, verification: verification)
                        return .digests
                    }
                    // The connection ends when the applier has committed everything the reader received
                    // before the peer went away, or at the first failure.
                    while let finished = try await group.next(), finished == .reader {}
                    group.cancelAll()
                }
            }
        } catch is CancellationError {
        } catch {
            logger.info("replication connection ended", metadata: ["tandem.error": "\(error)"])
        }
    }

    /// Why a connection ends on purpose.
    private struct Demoted: Error {}

    /// The tasks of a connection.
    private enum Role: Sendable { case reader, applier, sender, digests }

    /// Reads the peer's frames. Stream and snapshot frames are decoded here and queued for ``apply``; the
    /// others are handled at once.
    private func receive(
        _ inbound: NIOAsyncChannelInboundStream<Frame>,
        _ outbound: NIOAsyncChannelOutboundWriter<Frame>,
        peer: DeviceID,
        start: StartSignal,
        queue: ApplyQueue,
        peerApplied: PeerPosition,
        verification: Verification
    ) async throws {
        for try await frame in inbound {
            try Task.checkCancellation()
            switch frame.type {
            case .streamRequest:
                let request = try StreamRequest.decode(frame.payload)
                // A position in another history of this log (a store replaced, restored or reset) counts
                // for nothing: the peer gets a snapshot, and nothing is acknowledged until then.
                let current = request.applied.counts(in: store.historyID)
                peerApplied.sequence = request.applied.sequence(in: store.historyID)
                peerApplied.history = request.history
                shared.withLock { $0.peerTerm = request.term }
                if mustDemote(for: request, peer: peer) {
                    try await demote(term: request.term, keepThrough: peerApplied.sequence, peer: peer)
                }
                acks.reset(to: peerApplied.sequence)
                lag.clearPending()
                // A recovering peer gets a snapshot of everything, whatever its position.
                peerApplied.recovering = request.recovering
                start.start(at: current && !request.recovering ? request.applied.sequence : nil)
            case .records, .snapshotBegin, .snapshotSessions, .snapshotEnd, .digest:
                if let work = try PeerWork.decode(frame) { await queue.push(work) }
            case .ack:
                let sequence = try SequenceMessage.decode(frame.payload, .ack)
                acks.acknowledge(sequence)
                for sample in lag.acknowledged(sequence, at: .now) { lagTimer.record(duration: sample) }
            case .digestRequest:
                guard frame.payload.readableBytes == 0 else {
                    throw LinkError(.malformed("a digest request with a payload"))
                }
                verification.withState { $0.peerRequested = true }
                commits.poke()
            case .digestMatch:
                peerMatched(try DigestMatchMessage.decode(frame.payload), verification: verification)
            case .resyncRequest:
                guard frame.payload.readableBytes == 0 else {
                    throw LinkError(.malformed("a resync request with a payload"))
                }
                requestSnapshot()
            default:
                throw LinkError(.protocolViolation("a \(frame.type) frame after negotiation"))
            }
        }
        // The connection closed: what was received is still committed before the connection ends.
        await queue.push(.finish)
    }

    /// Applies what the reader queued: all the stream frames waiting at once in one commit, then one ack.
    private func apply(
        _ outbound: NIOAsyncChannelOutboundWriter<Frame>,
        peer: DeviceID,
        queue: ApplyQueue,
        peerApplied: PeerPosition,
        verification: Verification
    ) async throws {
        var snapshotSessions = 0
        while !Task.isCancelled {
            var work = await queue.takeAll()[...]
            while let first = work.popFirst() {
                switch first {
                case .finish:
                    return
                case .records(var through, var records):
                    while case .records(let nextThrough, let more) = work.first {
                        records += more
                        through = nextThrough
                        work.removeFirst()
                    }
                    let result = try await store(
                        PeerWork.records(through: through, records).batch(origin: peer, history: peerApplied.history)!
                    )
                    if let takeover = result.takeover {
                        // What the peer acknowledged on this connection, it has.
                        let kept = max(peerApplied.sequence, acks.acked)
                        try await demote(term: takeover.term, keepThrough: kept, peer: peer)
                    }
                    try await outbound.write(SequenceMessage(sequence: result.through).frame(.ack))
                case .snapshotBegin:
                    verification.withState { $0.unverify() }
                    _ = try await store(first.batch(origin: peer, history: peerApplied.history)!)
                    snapshotSessions = 0
                case .snapshotSessions(var sessions):
                    while case .snapshotSessions(let more) = work.first {
                        sessions += more
                        work.removeFirst()
                    }
                    _ = try await store(
                        PeerWork.snapshotSessions(sessions).batch(origin: peer, history: peerApplied.history)!
                    )
                    snapshotSessions += sessions.count
                case .snapshotEnd(let end):
                    let position = end.position
                    let result = try await store(first.batch(origin: peer, history: peerApplied.history)!)
                    try await outbound.write(SequenceMessage(sequence: result.through).frame(.ack))
                    // The copy is compared with the peer's table as soon as it is whole: ask for a point now.
                    verification.withState { $0.requested(at: .now) }
                    try await outbound.write(Frame(type: .digestRequest, payload: ByteBuffer()))
                    shared.withLock { $0.snapshotsReceived += 1 }
                    logger.info(
                        "copy of the peer's users rebuilt from its snapshot",
                        metadata: ["tandem.sessions": "\(snapshotSessions)", "tandem.position": "\(position)"]
                    )
                    eventsContinuation.yield(.snapshotReceived(sessions: snapshotSessions, position: position))
                case .digest(let point):
                    try await compare(point, outbound, peer: peer, verification: verification)
                }
            }
        }
        throw CancellationError()
    }

    /// Applies a batch of the peer's stream to the store. A failure to store it (a full disk, say) is shown in
    /// the failover state until a batch is stored again: the copy of the peer's users falls behind meanwhile.
    private func store(_ batch: PeerBatch) async throws(SessionStoreError) -> PeerApplied {
        do {
            let applied = try await store.applyPeer(batch)
            let recovered = shared.withLock { shared -> Bool in
                defer { shared.storeFailure = nil }
                return shared.storeFailure != nil
            }
            if recovered {
                logger.notice("the peer's stream is stored again")
            }
            return applied
        } catch {
            if error.kind == .storage {
                shared.withLock { $0.storeFailure = "\(error)" }
                logger.error(
                    "cannot store the peer's stream; the link retries, and the peer keeps its log meanwhile",
                    metadata: ["tandem.error": "\(error)"]
                )
            }
            throw error
        }
    }

    /// Whether the peer's term says this device must step down: the peer promoted past this device's term,
    /// or both promoted to the same term while apart (split brain) and the peer has the lower device ID.
    private func mustDemote(for request: StreamRequest, peer: DeviceID) -> Bool {
        let term = store.term
        if request.term > term { return true }
        guard request.term == term, request.adoptedYouAt == term else { return false }
        let mine = store.takeovers.byDevice[peer]
        return mine?.term == term && mine?.to == store.deviceID && peer < store.deviceID
    }

    private func demote(term: UInt32, keepThrough: UInt64, peer: DeviceID) async throws {
        let demotion = try await store.resetForResync(
            term: term,
            keepThrough: keepThrough,
            from: peer,
            holdName: Self.holdName(peer)
        )
        // Every write still waiting for the peer was discarded; acknowledgements from now on count in the new
        // history of the log, never for them.
        acks.demoted(kept: keepThrough, last: demotion.lastDiscarded, term: term)
        logger.warning(
            "the peer's term \(term) prevails: this device steps down and resynchronizes from the peer",
            metadata: [
                "tandem.kept_through": "\(keepThrough)", "tandem.discarded_events": "\(demotion.discardedEvents)",
                "tandem.logged_off_again": "\(demotion.logoutsLoggedAgain)",
            ]
        )
        eventsContinuation.yield(
            .demoted(
                term: term,
                keptThrough: keepThrough,
                discardedEvents: demotion.discardedEvents,
                loggedOffAgain: demotion.logoutsLoggedAgain
            )
        )
        throw Demoted()
    }

    /// The name of the log hold kept for `peer`.
    private static func holdName(_ peer: DeviceID) -> String { SessionStore.holdName(forPeer: peer) }

    private func requestSnapshot() {
        forceSnapshot.store(true, ordering: .sequentiallyConsistent)
        commits.poke()
    }

    private func send(
        _ outbound: NIOAsyncChannelOutboundWriter<Frame>,
        peer: DeviceID,
        start: StartSignal,
        peerRequest: PeerPosition,
        verification: Verification
    ) async throws {
        let requested = await start.wait()
        // A peer that recovers its users gets everything in its first snapshot, and the stream after it in
        // full through where that snapshot ended.
        var everything = peerRequest.recovering
        var everythingThrough: UInt64 = 0
        // Records of the peer's up to this position (of this device's log) are not sent back: see `readStream`.
        var sentBackAfter: UInt64 = 0
        try Task.checkCancellation()
        let holdName = Self.holdName(peer)
        // No position (another history of this log), none yet, or one past its end: only a snapshot makes the
        // copy right. A peer that has nothing of this device's gets one too, rather than the whole log: the
        // snapshot brings this device's takeovers first, so the peer knows who owns what before the stream.
        var position = requested ?? 0
        var needSnapshot = requested == nil || position == 0 || position > store.lastLoggedSequence
        // The first snapshot of a device that recovered from this peer keeps the peer's copy of its users: the
        // peer holds them as it sent them.
        var mayKeep = needSnapshot
        do {
            if !needSnapshot { try await store.holdLog(holdName, from: position + 1) }
        } catch {
            guard error.kind == .logTruncated else { throw error }
            needSnapshot = true
        }
        var heldFrom = position + 1
        var damagedThrough: UInt64 = 0
        var lastHoldMove = ContinuousClock.now
        let holdMoving = InFlight()
        var buffer: [UInt8] = []
        buffer.reserveCapacity(configuration.batchBytes + 4096)
        while !Task.isCancelled {
            if forceSnapshot.exchange(false, ordering: .sequentiallyConsistent) {
                needSnapshot = true
                mayKeep = false
            }
            if needSnapshot {
                // A hold still moving forward must land before the snapshot places its own. A device never sends
                // its users while it installs the peer's, or while it recovers its own from the peer (what it has
                // would wipe the peer's copy of them), unless the peer recovers too: both send what they have.
                while holdMoving.busy
                    || ((store.isInstallingSnapshot || store.isRecovering) && !peerRequest.recovering)
                {
                    try await Task.sleep(for: .milliseconds(5))
                }
                verification.withState { $0.beginSnapshot() }
                let recovered = mayKeep && !everything ? store.recoveredPosition(from: peer) : nil
                (position, everythingThrough) = try await sendSnapshot(
                    outbound,
                    holdName: holdName,
                    everything: everything,
                    keep: recovered != nil,
                    after: damagedThrough
                )
                sentBackAfter = recovered ?? 0
                everything = false
                mayKeep = false
                verification.withState { $0.endSnapshot() }
                heldFrom = position + 1
                needSnapshot = false
            }
            // The hold follows the acknowledgements (never past what the stream still has to send), at most
            // every 100 ms and off the stream's path: moving it is a commit of its own, which the next batch
            // must not wait for.
            let keepFrom = min(acks.acked, position) + 1
            let now = ContinuousClock.now
            // Once the peer has everything this device did since it recovered from it, that is forgotten.
            if let recovered = store.recoveredPosition(from: peer), acks.acked >= recovered, holdMoving.begin() {
                let store = self.store
                Task {
                    try? await store.forgetRecovery(from: peer)
                    holdMoving.end()
                }
            }
            // The recovery hold goes once this device has recovered and the peer has what it kept.
            if let recovery = store.holdPosition(SessionStore.recoveryHold), !store.isRecovering, keepFrom > recovery,
                holdMoving.begin()
            {
                let store = self.store
                Task {
                    try? await store.releaseLog(SessionStore.recoveryHold)
                    holdMoving.end()
                }
            }
            if keepFrom > heldFrom, now - lastHoldMove >= .milliseconds(100), holdMoving.begin() {
                let store = self.store
                Task {
                    try? await store.holdLog(holdName, from: keepFrom)
                    holdMoving.end()
                }
                heldFrom = keepFrom
                lastHoldMove = now
            }
            let pokes = commits.pokes
            buffer.removeAll(keepingCapacity: true)
            switch try store.readStream(
                after: position,
                for: peer,
                everythingThrough: everythingThrough,
                sentBackAfter: sentBackAfter,
                maxBytes: configuration.batchBytes,
                into: &buffer
            ) {
            case .truncated:
                mayKeep = false
                logger.warning(
                    "the log no longer holds what the peer needs (past its quota, or emptied): full resync",
                    metadata: ["tandem.peer.applied": "\(position)"]
                )
                needSnapshot = true
            case .damaged(let sequence):
                logger.error(
                    """
                    record \(sequence) of this device's log is damaged and cannot be sent: the peer gets a snapshot \
                    taken after it (run `tandem log verify` on this store)
                    """,
                    metadata: ["tandem.sequence": "\(sequence)"]
                )
                damagedThrough = max(damagedThrough, sequence)
                mayKeep = false
                // The snapshot must come from a table that holds the damaged record's change.
                if store.logStatus.checkpointSequence < sequence { _ = try await store.checkpoint() }
                needSnapshot = true
            case .records(let through, _):
                let caughtUp = through == position
                if !caughtUp {
                    try await outbound.write(RecordsMessage.frame(through: through, records: buffer))
                    position = through
                }
                let answered = try await answerDigestRequest(outbound, at: position, peer: peer, verification)
                if caughtUp && !answered {
                    // Caught up. A digest request waits for a point at a commit's end; the point is noted just
                    // after the commit, so look again shortly rather than at the next commit.
                    if verification.current.peerRequested {
                        try await Task.sleep(for: .milliseconds(2))
                    } else {
                        await commits.wait(beyond: position, pokesSeen: pokes)
                    }
                }
            }
        }
        throw CancellationError()
    }

    /// Sends a snapshot of this device's users (of every session it holds, for `everything`), and returns the
    /// position the stream goes on after, never before `damaged` (a damaged record of the log the snapshot's
    /// table already holds), and the sequence through which that stream must carry every record.
    private func sendSnapshot(
        _ outbound: NIOAsyncChannelOutboundWriter<Frame>,
        holdName: String,
        everything: Bool,
        keep: Bool,
        after damaged: UInt64
    ) async throws -> (position: UInt64, everythingThrough: UInt64) {
        let heldFrom = try await store.holdAfterCheckpoint(holdName)
        try await outbound.write(
            SnapshotBeginMessage.frame(
                takeovers: Array(store.takeovers.byDevice.values),
                everything: everything,
                keep: keep
            )
        )
        var after: IPAddress?
        var checkpoint: UInt64?
        var wholeFrom: UInt64 = 0
        var sessions = 0
        var buffer: [UInt8] = []
        if keep { checkpoint = store.logStatus.checkpointSequence }
        while !keep {
            try Task.checkCancellation()
            buffer.removeAll(keepingCapacity: true)
            let read = try store.readSnapshot(
                after: after,
                maxSessions: configuration.snapshotBatch,
                everything: everything,
                into: &buffer
            )
            if checkpoint == nil { checkpoint = read.checkpoint }
            wholeFrom = max(wholeFrom, read.checkpoint)
            if read.count > 0 {
                var payload = ByteBuffer()
                payload.writeBytes(buffer)
                try await outbound.write(Frame(type: .snapshotSessions, payload: payload))
            }
            sessions += read.count
            after = read.last
            if after == nil { break }
        }
        // The stream goes on from the checkpoint of the first read, or from an earlier hold: a demotion holds
        // the logouts it logged again there, and a device that recovered its own events since it began to.
        let recovery = store.holdPosition(SessionStore.recoveryHold) ?? .max
        let position = max(min(checkpoint ?? 0, heldFrom - 1, recovery - 1), damaged)
        let everythingThrough = everything ? max(store.lastLoggedSequence, position) : 0
        try await outbound.write(
            SnapshotEndMessage(
                position: position,
                wholeFrom: max(wholeFrom, position),
                everythingThrough: everythingThrough
            ).frame()
        )
        shared.withLock { $0.snapshotsSent += 1 }
        snapshotCounter.increment()
        logger.info(
            "snapshot of this device's users sent to the peer",
            metadata: ["tandem.sessions": "\(sessions)", "tandem.position": "\(position)"]
        )
        eventsContinuation.yield(.snapshotSent(sessions: sessions, position: position))
        return (position, everythingThrough)
    }

    // MARK: - Digests

    /// Asks the peer for a digest point in its stream: at once on a new connection, soon again after each
    /// answer while the tables are not known to agree, then every ``Configuration/digestInterval``.
    private func requestDigests(
        _ outbound: NIOAsyncChannelOutboundWriter<Frame>,
        verification: Verification
    ) async throws {
        while !Task.isCancelled {
            let now = ContinuousClock.now
            if let delay = verification.current.requestDelay(now: now, interval: configuration.digestInterval) {
                try await Task.sleep(for: delay)
                continue
            }
            verification.withState { $0.requested(at: now) }
            try await outbound.write(Frame(type: .digestRequest, payload: ByteBuffer()))
        }
    }

    /// Sends the digest point at `position` when the peer asked for one and this device's table stood there
    /// whole; returns whether it did.
    private func answerDigestRequest(
        _ outbound: NIOAsyncChannelOutboundWriter<Frame>,
        at position: UInt64,
        peer: DeviceID,
        _ verification: Verification
    ) async throws -> Bool {
        guard verification.current.peerRequested, !store.isInstallingSnapshot,
            let point = store.digestHistory.latest(through: position), point.whole
        else { return false }
        let message = DigestMessage(
            through: position,
            appliedOfYou: point.applied[peer] ?? 0,
            appliedHistoryOfYou: point.appliedHistory[peer] ?? 0,
            value: point.value,
            installedOfYou: UInt32(truncatingIfNeeded: point.installs - verification.installsBase)
        )
        verification.withState { $0.sentPoint(through: position, installs: point.installs) }
        try await outbound.write(message.frame())
        return true
    }

    /// Compares this device's table with the peer's digest point, which arrived after every record through
    /// it was applied here.
    private func compare(
        _ peerPoint: DigestMessage,
        _ outbound: NIOAsyncChannelOutboundWriter<Frame>,
        peer: DeviceID,
        verification: Verification
    ) async throws {
        let outcome =
            store.isInstallingSnapshot
            ? .inconclusive
            : DigestComparison.compare(
                peerPoint,
                with: store.digestHistory,
                peer: peer,
                history: store.historyID,
                snapshotsSent: verification.current.snapshotsSent
            )
        let now = ContinuousClock.now
        verification.withState { $0.answered(at: now) }
        switch outcome {
        case .inconclusive:
            return
        case .equal(let mine):
            shared.withLock { $0.digestsCompared += 1 }
            try await outbound.write(
                DigestMatchMessage(
                    atYour: peerPoint.through,
                    through: mine.through,
                    installedOfYou: UInt32(truncatingIfNeeded: mine.installs - verification.installsBase)
                ).frame()
            )
            if verification.withState({ $0.matched() }) {
                announceSynchronized(through: mine.through, peerThrough: peerPoint.through)
            }
        case .differ(let mine):
            verification.withState { $0.unverify() }
            let act = shared.withLock { shared -> Bool in
                shared.digestsCompared += 1
                shared.digestMismatches += 1
                if let last = shared.lastResyncRequest, last.duration(to: now) < .seconds(5) { return false }
                shared.lastResyncRequest = now
                return true
            }
            mismatchCounter.increment()
            logger.error(
                "the users table differs from the peer's at the same positions: both resynchronize",
                metadata: [
                    "tandem.sequence": "\(mine.through)", "tandem.peer.sequence": "\(peerPoint.through)",
                    "tandem.digest": "\(mine.value)", "tandem.peer.digest": "\(peerPoint.value)",
                    "tandem.own_through": "\(mine.ownThrough)", "tandem.peer.applied": "\(peerPoint.appliedOfYou)",
                    "tandem.installs": "\(mine.installs)",
                ]
            )
            guard act else { return }
            eventsContinuation.yield(.digestMismatch(through: mine.through, peerThrough: peerPoint.through))
            try await outbound.write(Frame(type: .resyncRequest, payload: ByteBuffer()))
            requestSnapshot()
        }
    }

    /// The peer found the tables equal at this device's digest point.
    private func peerMatched(_ message: DigestMatchMessage, verification: Verification) {
        let installs = store.snapshotInstalls
        let installing = store.isInstallingSnapshot
        let newly = verification.withState { state -> Bool in
            guard !installing,
                state.acceptsPeerMatch(
                    atYour: message.atYour,
                    installedOfYou: message.installedOfYou,
                    installs: installs
                )
            else { return false }
            return state.matched()
        }
        if newly { announceSynchronized(through: message.atYour, peerThrough: message.through) }
    }

    private func announceSynchronized(through: UInt64, peerThrough: UInt64) {
        logger.info(
            "the users tables match the peer's: in synchronization",
            metadata: ["tandem.sequence": "\(through)", "tandem.peer.sequence": "\(peerThrough)"]
        )
        eventsContinuation.yield(.synchronized(through: through, peerThrough: peerThrough))
    }
}

/// Hands the stream sender its starting position once the peer's stream request arrives (`nil`: the peer
/// needs a snapshot).
private final class StartSignal: Sendable {
    private let state = Mutex<(position: UInt64??, waiter: CheckedContinuation<UInt64?, Never>?)>((nil, nil))

    func start(at position: UInt64?) {
        let waiter = state.withLock { state -> CheckedContinuation<UInt64?, Never>? in
            guard state.position == nil else { return nil }
            state.position = .some(position)
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(returning: position)
    }

    func wait() async -> UInt64? {
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let ready = state.withLock { state -> UInt64?? in
                    if let position = state.position { return .some(position) }
                    if Task.isCancelled { return .some(nil) }
                    state.waiter = continuation
                    return nil
                }
                if let ready { continuation.resume(returning: ready) }
            }
        } onCancel: {
            let waiter = state.withLock { state -> CheckedContinuation<UInt64?, Never>? in
                defer { state.waiter = nil }
                return state.waiter
            }
            waiter?.resume(returning: nil)
        }
    }
}
