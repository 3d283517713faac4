import Logging
import NIOCore
import NIOPosix
import NIOSSL
import Synchronization

/// The stateful-failover link of one device: a listener bound to the failover interface's address, and a
/// connection to the peer's (R3). Only negotiation and authenticated backup frames travel on it.
///
/// The device with the lower device ID connects, the other accepts, so that a pair keeps one connection;
/// a lost connection is retried with back-off. ``state`` says whether the pair is in synchronization and,
/// when it is not, why (R6).
///
/// ```swift
/// let link = FailoverLinkService(configuration: .init(
///     identity: LinkIdentity(deviceID: 1, portalGroup: "campus", configurationDigest: digest),
///     secret: LinkSecret(bytes: secretFileContents),
///     listen: try SocketAddress(ipAddress: "127.0.0.1", port: 7400),
///     peer: try SocketAddress(ipAddress: "127.0.0.2", port: 7400)))
/// try await link.start()
/// print(link.state)   // independence (no link to the peer), then synchronization
/// ```
public final class FailoverLinkService: Sendable {
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
        var stopped = false
        var connector: Task<Void, Never>?
        var server: Channel?
        var peer: Hello?
        /// The negotiated connection the state describes.
        var current: (id: ObjectIdentifier, channel: Channel)?
        /// Every negotiated connection still open, redundant ones included until they close.
        var open: Set<ObjectIdentifier> = []
    }

    /// The configuration the link runs with.
    public let configuration: Configuration
    /// Takes each negotiated connection the pair keeps, for the data that travels on it.
    private let connectionHandler: (@Sendable (LinkConnection) -> Void)?
    private let group: MultiThreadedEventLoopGroup
    private let logger: Logger
    private let status = Mutex(Status())
    private let (updates, updatesContinuation) = AsyncStream.makeStream(
        of: FailoverState.self,
        bufferingPolicy: .bufferingNewest(64)
    )

    /// A link, not yet started.
    /// - Parameters:
    ///   - configuration: how it runs.
    ///   - logger: where it logs.
    public convenience init(configuration: Configuration, logger: Logger = Logger(label: "tandem.link")) {
        self.init(configuration: configuration, logger: logger, connectionHandler: nil)
    }

    init(
        configuration: Configuration,
        logger: Logger,
        connectionHandler: (@Sendable (LinkConnection) -> Void)?
    ) {
        self.configuration = configuration
        self.logger = logger
        self.connectionHandler = connectionHandler
        self.group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    }

    /// Whether the pair is in synchronization, and why not when it is not (R6).
    public var state: FailoverState { status.withLock { $0.state } }

    /// Every change of ``state``, for the controller and the operator.
    public var stateChanges: AsyncStream<FailoverState> { updates }

    /// The address the listener is bound to, once started.
    public var listeningAddress: SocketAddress? { status.withLock { $0.listening } }

    /// The peer's hello, while a link is up.
    public var peer: Hello? { status.withLock { $0.peer } }

    /// Binds the listener and starts connecting to the peer (when this device has the lower ID).
    /// - Throws: when the listener cannot be bound (the address is not this host's, or is taken).
    public func start() async throws {
        let server = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture { try self.install(on: channel, role: .acceptor) }
            }
            .bind(to: configuration.listen).get()
        status.withLock {
            $0.server = server
            $0.listening = server.localAddress
        }
        logger.info(
            "failover link listening",
            metadata: ["tandem.link.listen": "\(server.localAddress.map { "\($0)" } ?? "?")"]
        )
        if let peer = configuration.peer {
            let connector = Task { [self] in await connect(to: peer) }
            status.withLock { $0.connector = connector }
        }
    }

    /// Closes the link and stops reconnecting.
    public func shutdown() async {
        let (server, connector) = status.withLock { status -> (Channel?, Task<Void, Never>?) in
            status.stopped = true
            return (status.server, status.connector)
        }
        connector?.cancel()
        try? await server?.close()
        try? await group.shutdownGracefully()
        updatesContinuation.finish()
    }

    private func connect(to peer: SocketAddress) async {
        var backoff = configuration.initialBackoff
        while !Task.isCancelled && !status.withLock({ $0.stopped }) {
            if !shouldInitiate() {
                try? await Task.sleep(for: .milliseconds(200))
                continue
            }
            do {
                var local = configuration.listen
                local.port = 0
                let channel = try await ClientBootstrap(group: group)
                    .connectTimeout(.seconds(1))
                    .channelInitializer { [self] channel in
                        channel.eventLoop.makeCompletedFuture { try self.install(on: channel, role: .initiator) }
                    }
                    .bind(to: local)
                    .connect(to: peer).get()
                try? await channel.closeFuture.get()
                backoff = configuration.initialBackoff
            } catch {
                logger.debug("connecting to the peer failed", metadata: ["tandem.error": "\(error)"])
            }
            try? await Task.sleep(nanoseconds: UInt64(backoff.nanoseconds))
            backoff = min(backoff * 2, configuration.maximumBackoff)
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

    private func install(on channel: Channel, role: LinkRole) throws {
        let negotiation = Negotiation(identity: configuration.identity, secret: configuration.secret, role: role)
        let connection = ObjectIdentifier(channel)
        let events = NegotiationHandler.Events(
            established: { [self] negotiated in
                established(connection, channel: channel, role: role, negotiated: negotiated)
            },
            failed: { [self] error in
                ended(connection, error: error)
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
        ])
    }

    /// A connection negotiated. A pair keeps one: when another is already up, the one that the lower device
    /// ID initiated stays and the other closes.
    private func established(_ connection: ObjectIdentifier, channel: Channel, role: LinkRole, negotiated: Negotiated) {
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
            if redundant === channel { return }
        }
        transition(to: negotiated.state, peer: negotiated.peer)
        guard let connectionHandler, negotiated.state == .synchronization else { return }
        // On the channel's event loop, before the next frame is read: nothing that follows is missed.
        do {
            let wrapped = try NIOAsyncChannel<Frame, Frame>(
                wrappingChannelSynchronously: channel,
                configuration: .init(backPressureStrategy: .init(lowWatermark: 4, highWatermark: 16))
            )
            connectionHandler(LinkConnection(peer: negotiated.peer, channel: wrapped))
        } catch {
            logger.error("the link connection could not be set up", metadata: ["tandem.error": "\(error)"])
            channel.close(promise: nil)
        }
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

/// A negotiated, authenticated connection to the peer, for the frames that follow negotiation.
struct LinkConnection: Sendable {
    /// The peer's hello.
    var peer: Hello
    /// The connection: frames in, frames out (sealed and opened by the link).
    var channel: NIOAsyncChannel<Frame, Frame>
}
