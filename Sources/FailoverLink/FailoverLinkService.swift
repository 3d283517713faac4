import Locking
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import ServiceLifecycle

/// The stateful-failover link of one device: a listener bound to the failover interface's address, and a
/// connection to the peer's (R3). Only negotiation and authenticated backup frames travel on it.
///
/// The device with the lower device ID connects, the other accepts, so that a pair keeps one connection;
/// a lost connection is retried with back-off. ``state`` says whether the pair is in synchronization and,
/// when it is not, why (R6).
///
/// The link is a `Service`: ``run()`` serves it until a graceful shutdown closes it, so it runs in a
/// `ServiceGroup` beside the controller's other services; ``start()`` and ``shutdown()`` run it without one.
/// Its connections run on the event loop group it is given, which it never shuts down.
///
/// ```swift
/// let link = FailoverLinkService(configuration: .init(
///     identity: LinkIdentity(deviceID: 1, portalGroup: "campus", configurationDigest: digest),
///     secret: LinkSecret(bytes: secretFileContents),
///     listen: try SocketAddress(ipAddress: "127.0.0.1", port: 7400),
///     peer: try SocketAddress(ipAddress: "127.0.0.2", port: 7400)))
/// let services = ServiceGroup(services: [link], gracefulShutdownSignals: [.sigterm], logger: logger)
/// try await services.run()   // until SIGTERM: then the link closes, and the peer sees it close
/// ```
public final class FailoverLinkService: Service {
    /// How the link runs.
    public struct Configuration: Sendable {
        /// This device's identity.
        public var identity: LinkIdentity
        /// The secret both devices share.
        public var secret: LinkSecret
        /// The failover interface's address to listen on (port 0 picks a free port).
        public var listen: SocketAddress
        /// The peer's failover address.
        public var peer: SocketAddress?
        /// Mutual TLS around the link, or `nil` (the default) for plain TCP on a dedicated failover link.
        public var tls: LinkTLS?
        /// How long a negotiation may take. Default: 5 seconds.
        public var negotiationTimeout: TimeAmount = .seconds(5)
        /// How often an idle link sends a heartbeat. Default: 100 ms.
        public var heartbeatInterval: TimeAmount = .milliseconds(100)
        /// How long a silent peer is given before the link is declared down. Default: 1 second.
        public var silenceLimit: TimeAmount = .seconds(1)
        /// The first wait before reconnecting; it doubles up to ``maximumBackoff``. Default: 50 ms.
        public var initialBackoff: TimeAmount = .milliseconds(50)
        /// The longest wait before reconnecting. Default: 2 seconds.
        public var maximumBackoff: TimeAmount = .seconds(2)

        /// A configuration with the defaults documented on each property.
        /// - Parameters:
        ///   - identity: this device's identity.
        ///   - secret: the shared secret.
        ///   - listen: the failover interface's address.
        ///   - peer: the peer's failover address.
        public init(identity: LinkIdentity, secret: LinkSecret, listen: SocketAddress, peer: SocketAddress?) {
            self.identity = identity
            self.secret = secret
            self.listen = listen
            self.peer = peer
        }
    }

    private struct Status: Sendable {
        var state: FailoverState = .independence(.noPeer)
        var listening: SocketAddress?
        /// Set when the link stops: nothing is accepted or connected after it.
        var stopping = false
        var server: Channel?
        /// Every connection open, accepted or made, negotiated or not: the link closes them when it stops.
        var channels: [ObjectIdentifier: Channel] = [:]
        var peer: Hello?
        /// The negotiated connection the state describes.
        var current: (id: ObjectIdentifier, channel: Channel)?
        /// Every negotiated connection still open, redundant ones included until they close.
        var open: Set<ObjectIdentifier> = []
    }

    /// The configuration the link runs with.
    public let configuration: Configuration
    /// Takes each negotiated connection the pair keeps, for the data that travels on it, until it closes.
    private let connectionHandler: (@Sendable (LinkConnection) async -> Void)?
    /// The caller's event loops; the link never shuts them down.
    private let eventLoopGroup: any EventLoopGroup
    private let logger: Logger
    private let status = Locked(Status())
    private let lifecycle = RunOnce()
    /// The listener's address once bound, or what kept ``run()`` from binding it.
    private let listener = OneShot<SocketAddress>()
    private let (updates, updatesContinuation) = AsyncStream.makeStream(
        of: FailoverState.self,
        bufferingPolicy: .bufferingNewest(64)
    )

    /// A link, not yet running.
    /// - Parameters:
    ///   - configuration: how it runs.
    ///   - eventLoopGroup: the event loops its connections run on (default: the process's shared
    ///     `MultiThreadedEventLoopGroup.singleton`). The link never shuts down the group it is given.
    ///   - logger: where it logs.
    public convenience init(
        configuration: Configuration,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "tandem.link")
    ) {
        self.init(configuration: configuration, eventLoopGroup: eventLoopGroup, logger: logger, connectionHandler: nil)
    }

    init(
        configuration: Configuration,
        eventLoopGroup: any EventLoopGroup,
        logger: Logger,
        connectionHandler: (@Sendable (LinkConnection) async -> Void)?
    ) {
        self.configuration = configuration
        self.eventLoopGroup = eventLoopGroup
        self.logger = logger
        self.connectionHandler = connectionHandler
    }

    /// Whether the pair is in synchronization, and why not when it is not (R6).
    public var state: FailoverState { status.withLock { $0.state } }

    /// Every change of ``state``, for the controller and the operator. It ends when ``run()`` returns.
    public var stateChanges: AsyncStream<FailoverState> { updates }

    /// The address the listener is bound to, once running.
    public var listeningAddress: SocketAddress? { status.withLock { $0.listening } }

    /// The peer's hello, while a link is up.
    public var peer: Hello? { status.withLock { $0.peer } }

    // MARK: - Running

    /// Runs the link: binds the listener, accepts the peer's connections, and connects to the peer when this
    /// device has the lower ID, again with back-off whenever the connection is lost.
    ///
    /// On graceful shutdown (`ServiceGroup`), cancellation or ``shutdown()``, it stops accepting and
    /// connecting and closes the listener and every connection, so that the peer sees the link close rather
    /// than fall silent; it returns once each connection has closed, and ``stateChanges`` ends. The event
    /// loop group stays up. A link runs once: `run()` on a link that ran or was shut down returns at once.
    /// - Throws: when the listener cannot be bound (the address is not this host's, or is taken), or fails.
    public func run() async throws {
        guard lifecycle.begin("FailoverLinkService") else { return }
        defer { finished() }
        let server: NIOAsyncChannel<LinkChannel, Never>
        do {
            server = try await ServerBootstrap(group: eventLoopGroup)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .bind(to: configuration.listen) { [self] channel in
                    channel.eventLoop.makeCompletedFuture { try self.install(on: channel, role: .acceptor) }
                }
        } catch {
            listener.resolve(.failure(error))
            throw error
        }
        let address = server.channel.localAddress ?? configuration.listen
        let stopping = status.withLock { status -> Bool in
            status.server = server.channel
            status.listening = address
            return status.stopping
        }
        if stopping { server.channel.close(promise: nil) }
        listener.resolve(.success(address))
        logger.info("failover link listening", metadata: ["tandem.link.listen": "\(address)"])
        try await withGracefulShutdownHandler {
            try await server.executeThenClose { connections in
                // Each connection, accepted or made, runs in a task of this group until it closes.
                try await withThrowingDiscardingTaskGroup { group in
                    defer {
                        stop()
                        group.cancelAll()
                    }
                    if let peer = configuration.peer {
                        group.addTask { await self.connect(to: peer) }
                    }
                    for try await connection in connections {
                        group.addTask { await self.serve(connection) }
                    }
                }
            }
        } onGracefulShutdown: { [self] in
            stop()
        }
    }

    /// Runs the link (see ``run()``) in a task of its own, and returns once the listener is bound;
    /// ``shutdown()`` ends it.
    /// - Throws: when the listener cannot be bound (the address is not this host's, or is taken).
    public func start() async throws {
        Task { [self] in
            do {
                try await run()
            } catch {
                // A listener that could not be bound is `start()`'s to throw; a failure after it is told here.
                if case .success = listener.result {
                    logger.error("the failover link stopped", metadata: ["tandem.error": "\(error)"])
                }
            }
        }
        _ = try await waitUntilListening()
    }

    /// Closes the link and stops reconnecting, and returns once ``run()`` has returned.
    public func shutdown() async {
        if lifecycle.finishIfIdle() {
            finished()
            return
        }
        stop()
        await lifecycle.waitUntilFinished()
    }

    /// Waits until ``run()`` has bound the listener, and returns the listener's address.
    /// - Returns: the address the listener is bound to.
    /// - Throws: what kept ``run()`` from binding it (the address is not this host's, or is taken);
    ///   `CancellationError` when the link was shut down before it listened.
    public func waitUntilListening() async throws -> SocketAddress {
        try await listener.value()
    }

    /// Stops accepting and connecting, closes the listener, and closes every connection gracefully (see
    /// ``GracefulCloseHandler``): the peer reads the end of the stream. ``run()`` returns once they have closed.
    func stop() {
        let (server, channels) = status.withLock { status -> (Channel?, [Channel]) in
            status.stopping = true
            return (status.server, Array(status.channels.values))
        }
        server?.close(promise: nil)
        for channel in channels {
            channel.triggerUserOutboundEvent(GracefulCloseHandler.CloseGracefully()).whenFailure { _ in
                channel.close(promise: nil)
            }
        }
    }

    /// Ends a link that will not run (its node could not start): whoever waits for the listener gets `error`.
    func abandon(_ error: any Error) {
        listener.resolve(.failure(error))
        if lifecycle.finishIfIdle() { finished() }
    }

    private func finished() {
        listener.resolve(.failure(CancellationError()))
        updatesContinuation.finish()
        lifecycle.finish()
    }

    private var stopping: Bool { status.withLock { $0.stopping } }

    /// Connects to the peer whenever this device is the one to, one connection at a time, with back-off.
    private func connect(to peer: SocketAddress) async {
        var backoff = configuration.initialBackoff
        while !Task.isCancelled && !stopping {
            if !shouldInitiate() {
                try? await Task.sleep(for: .milliseconds(200))
                continue
            }
            do {
                var local = configuration.listen
                local.port = 0
                let connection = try await ClientBootstrap(group: eventLoopGroup)
                    .connectTimeout(.seconds(1))
                    .bind(to: local)
                    .connect(to: peer) { [self] channel in
                        channel.eventLoop.makeCompletedFuture { try self.install(on: channel, role: .initiator) }
                    }
                await serve(connection)
                backoff = configuration.initialBackoff
            } catch {
                logger.debug("connecting to the peer failed", metadata: ["tandem.error": "\(error)"])
            }
            try? await Task.sleep(nanoseconds: UInt64(backoff.nanoseconds))
            backoff = min(backoff * 2, configuration.maximumBackoff)
        }
    }

    /// Serves one connection until it closes: hands it to the node once it negotiated into synchronization,
    /// or reads it (heartbeats only reach the negotiation handler) while it is kept otherwise.
    private func serve(_ connection: LinkChannel) async {
        do {
            try await connection.channel.executeThenClose { inbound, _ in
                switch try await connection.outcome.get() {
                case .handOver(let peer):
                    await connectionHandler?(LinkConnection(peer: peer, channel: connection.channel))
                case .keep:
                    for try await _ in inbound {}
                case .closed:
                    return
                }
            }
        } catch {
            logger.debug("a link connection ended", metadata: ["tandem.error": "\(error)"])
        }
    }

    /// The lower device ID connects. Until the peer's ID is known, the device with the lower failover
    /// address does (both know both addresses), so that two devices starting together open one connection.
    private func shouldInitiate() -> Bool {
        guard let peer = status.withLock({ $0.peer }) else {
            guard let peerAddress = configuration.peer else { return false }
            let mine = configuration.listen
            return (mine.ipAddress ?? "", mine.port ?? 0) < (peerAddress.ipAddress ?? "", peerAddress.port ?? 0)
        }
        return configuration.identity.deviceID < peer.deviceID
    }

    /// Sets a new connection up, on its event loop before it is active: optional TLS, framing, negotiation
    /// (sealing and liveness), the graceful close, and the `NIOAsyncChannel` that carries the frames after
    /// negotiation, installed before any byte is read, so that none is missed.
    private func install(on channel: Channel, role: LinkRole) throws -> LinkChannel {
        let outcome = channel.eventLoop.makePromise(of: LinkChannel.Outcome.self)
        let connection = ObjectIdentifier(channel)
        let admitted = status.withLock { status -> Bool in
            guard !status.stopping else { return false }
            status.channels[connection] = channel
            return true
        }
        guard admitted else {
            outcome.succeed(.closed)
            channel.close(promise: nil)
            throw LinkError(.connectionClosed)
        }
        channel.closeFuture.whenComplete { [self] _ in
            status.withLock { _ = $0.channels.removeValue(forKey: connection) }
            outcome.succeed(.closed)
        }
        do {
            let negotiation = Negotiation(identity: configuration.identity, secret: configuration.secret, role: role)
            let events = NegotiationHandler.Events(
                established: { [self] negotiated in
                    outcome.succeed(established(connection, channel: channel, role: role, negotiated: negotiated))
                },
                failed: { [self] error in
                    ended(connection, error: error)
                    outcome.succeed(.closed)
                }
            )
            if let tls = configuration.tls {
                switch role {
                case .acceptor:
                    try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls.server))
                case .initiator:
                    try channel.pipeline.syncOperations.addHandler(
                        try NIOSSLClientHandler(context: tls.client, serverHostname: nil)
                    )
                }
            }
            try channel.pipeline.syncOperations.addHandlers([
                ByteToMessageHandler(FrameDecoder()),
                MessageToByteHandler(FrameEncoder()),
                NegotiationHandler(
                    negotiation: negotiation,
                    events: events,
                    negotiationTimeout: configuration.negotiationTimeout,
                    heartbeatInterval: configuration.heartbeatInterval,
                    silenceLimit: configuration.silenceLimit
                ),
                GracefulCloseHandler(timeout: configuration.silenceLimit),
            ])
            let frames = try NIOAsyncChannel<Frame, Frame>(
                wrappingChannelSynchronously: channel,
                configuration: .init(backPressureStrategy: .init(lowWatermark: 4, highWatermark: 16))
            )
            return LinkChannel(channel: frames, outcome: outcome.futureResult)
        } catch {
            channel.close(promise: nil)
            throw error
        }
    }

    /// A connection negotiated. A pair keeps one: when another is already up, the one that the lower device
    /// ID initiated stays and the other closes.
    private func established(
        _ connection: ObjectIdentifier,
        channel: Channel,
        role: LinkRole,
        negotiated: Negotiated
    ) -> LinkChannel.Outcome {
        let initiator = role == .initiator ? configuration.identity.deviceID : negotiated.peer.deviceID
        let keepsNew = initiator == min(configuration.identity.deviceID, negotiated.peer.deviceID)
        let redundant = status.withLock { status -> Channel? in
            status.open.insert(connection)
            guard let current = status.current, current.id != connection else {
                status.current = (connection, channel)
                return nil
            }
            if keepsNew {
                status.current = (connection, channel)
                return current.channel
            }
            return channel
        }
        if let redundant {
            logger.debug("closing a redundant connection to the peer")
            redundant.close(promise: nil)
            if redundant === channel { return .closed }
        }
        transition(to: negotiated.state, peer: negotiated.peer)
        guard connectionHandler != nil, negotiated.state == .synchronization else { return .keep }
        return .handOver(negotiated.peer)
    }

    /// A connection ended or failed; only the current one (or a negotiation while none is up) changes the
    /// state.
    private func ended(_ connection: ObjectIdentifier, error: LinkError) {
        let (matters, wasUp) = status.withLock { status -> (Bool, Bool) in
            status.open.remove(connection)
            if let current = status.current {
                guard current.id == connection else { return (false, false) }
                status.current = nil
                return (true, true)
            }
            return (true, false)
        }
        guard matters else { return }
        let reason: FailoverState =
            if error.kind == .connectionClosed {
                .independence(.noPeer)
            } else if wasUp || error.kind == .peerSilent || error.kind == .connectionBroken {
                .independence(.linkLost(error))
            } else {
                .independence(.negotiationFailed(error))
            }
        logger.info("failover link down", metadata: ["tandem.link.reason": "\(error)"])
        transition(to: reason, peer: nil)
    }

    /// The number of negotiated connections to the peer that are open.
    var connectionCount: Int { status.withLock { $0.open.count } }

    private func transition(to state: FailoverState, peer: Hello?) {
        let changed = status.withLock { status -> Bool in
            if peer != nil { status.peer = peer }
            guard status.state != state else { return false }
            status.state = state
            return true
        }
        if changed {
            logger.info("failover state", metadata: ["tandem.link.state": "\(state)"])
            updatesContinuation.yield(state)
        }
    }
}

/// A connection of the link from the moment it is accepted or made: the frames that follow its negotiation,
/// and how the negotiation ends.
struct LinkChannel: Sendable {
    /// How a connection's negotiation ends.
    enum Outcome: Sendable {
        /// Negotiated into synchronization: the node replicates over it.
        case handOver(Hello)
        /// Negotiated and kept with nothing to carry (a link without a node, or configurations that differ).
        case keep
        /// Negotiation failed, the connection was redundant, or it closed.
        case closed
    }

    /// The connection, wrapped before it was active: only frames after negotiation reach it.
    var channel: NIOAsyncChannel<Frame, Frame>
    /// Set on the connection's event loop when negotiation ends or the connection closes.
    var outcome: EventLoopFuture<Outcome>
}

/// A negotiated, authenticated connection to the peer, for the frames that follow negotiation.
struct LinkConnection: Sendable {
    /// The peer's hello.
    var peer: Hello
    /// The connection: frames in, frames out (sealed and opened by the link).
    var channel: NIOAsyncChannel<Frame, Frame>
}
