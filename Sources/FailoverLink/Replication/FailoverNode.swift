import Locking
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import SessionStore

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
        /// How many sessions each batch of ``FailoverNode/takenOver`` holds at most (a value below 1 counts as
        /// 1). Default: 16,384.
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

    /// The current connection.
    private struct Shared: Sendable {
        var connection: Task<Void, Never>?
        var channel: Channel?
        var connectionID = 0
        var stopped = false
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
    /// users in its data plane. The sessions of a batch are in address order; the batches come in no set
    /// order, since two threads decode them (``SessionStore/forEachSessionBatch(where:batchSize:_:)``).
    /// Unbounded: read it while promoting.
    public let takenOver: AsyncStream<[Session]>

    private let eventsContinuation: AsyncStream<Event>.Continuation
    private let takenOverContinuation: AsyncStream<[Session]>.Continuation
    private let shared = Locked(Shared())
    /// What the replication connections share: the rules, the acknowledgements, the commit signal, the lag.
    private let context: ReplicationContext
    private var acks: AckTracker { context.acks }
    private let logger: Logger
    private let lifecycle = RunOnce()

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
        context = ReplicationContext(
            store: store,
            configuration: configuration,
            logger: logger,
            events: eventsContinuation
        )
        let connections = Locked<(@Sendable (LinkConnection) async -> Void)?>(nil)
        link = FailoverLinkService(
            configuration: configuration.link,
            eventLoopGroup: eventLoopGroup,
            logger: logger
        ) { connection in
            await connections.withLock { $0 }?(connection)
        }
        connections.withLock { $0 = { [weak self] connection in await self?.accept(connection) } }
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
        store.setCommitObserver { [commits = context.commits, lag = context.lag] sequence in
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
        let peer = context.peer.withLock { $0.id }
        let machine = context.machine.withLock { $0 }
        return Status(
            state: context.state(linkState: link.state),
            peer: peer,
            term: store.term,
            acknowledgedByPeer: acks.acked,
            appliedFromPeer: peer.flatMap { store.logStatus.peerApplied[$0] } ?? 0,
            digestsCompared: machine.digestsCompared,
            digestMismatches: machine.digestMismatches,
            snapshotsSent: machine.snapshotsSent,
            snapshotsReceived: machine.snapshotsReceived,
            recovering: store.isRecovering
        )
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

    /// Changes an online session on this device, whichever device owns it (see ``SessionStore/update(_:)``):
    /// a RADIUS CoA or an accounting report that reached the device holding the backup copy reaches the owner,
    /// whose controller hears of it on ``SessionStore/peerUpdates``.
    /// - Parameters:
    ///   - change: what changes, and for which session.
    ///   - writeConcern: when to return: once committed here, or once the peer has it too.
    /// - Returns: the session after the change.
    @discardableResult
    public func update(_ change: SessionUpdate, writeConcern: WriteConcern = .local) async throws -> Session {
        let logged = try await store.loggedUpdate(change)
        try await replicate(through: logged.sequence, writeConcern)
        return logged.session
    }

    /// Changes many online sessions with one call (see ``SessionStore/update(contentsOf:)``); with the
    /// `replicated` write concern it returns once the peer has all that were made.
    public func update(
        contentsOf changes: [SessionUpdate],
        writeConcern: WriteConcern = .local
    ) async throws -> [Result<Session, SessionStoreError>] {
        let results = try await store.update(contentsOf: changes)
        if case .replicated = writeConcern, results.contains(where: { (try? $0.get()) != nil }) {
            try await replicate(through: store.logStatus.lastSequence, writeConcern)
        }
        return results
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
        let (peer, peerTerm) = context.peer.withLock { ($0.id, $0.term) }
        let (connection, channel) = shared.withLock { shared in
            defer {
                shared.connection = nil
                shared.channel = nil
            }
            return (shared.connection, shared.channel)
        }
        guard let peer else { throw LinkError(.noPeerKnown) }
        // Closing the connection ends its reader; its applier commits what was received before it ends.
        try? await channel?.close()
        await connection?.value
        let promotion = try await store.promote(over: peer, peerTerm: peerTerm)
        let ready = started.duration(to: .now)
        let me = store.deviceID
        // Filtered on owner and term before a session is decoded: only the taken-over ones are, on two threads.
        let (before, after) = (promotion.before, promotion.after)
        let takenOver = { (owner: DeviceID, term: UInt32) -> Bool in
            before.effectiveOwner(owner: owner, term: term) == peer
                && after.effectiveOwner(owner: owner, term: term) == me
        }
        let handedOver = Locked(0)
        let continuation = takenOverContinuation
        try store.forEachSessionBatch(where: takenOver, batchSize: max(1, configuration.handoverBatch)) { batch in
            handedOver.withLock { $0 += batch.count }
            continuation.yield(batch)
        }
        let count = handedOver.withLock { $0 }
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
    public func takeReplicationLagSamples() -> [Duration] { context.lag.drain() }

    // MARK: - A connection

    /// Replicates over a connection the link handed over, until it ends; a new connection ends the previous
    /// one first.
    private func accept(_ connection: LinkConnection) async {
        context.peer.withLock { $0.id = connection.peer.deviceID }
        let (previous, id) = shared.withLock { shared -> (Task<Void, Never>?, Int) in
            shared.connectionID += 1
            shared.channel = connection.channel.channel
            return (shared.connection, shared.connectionID)
        }
        previous?.cancel()
        let task = Task { [self] in
            await previous?.value
            let replication = ReplicationConnection(context: context, link: connection)
            await withTaskCancellationHandler {
                await replication.run()
            } onCancel: {
                connection.channel.channel.close(promise: nil)
            }
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
}
