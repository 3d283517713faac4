import FailoverLink
import Foundation
import Logging
import Metrics
import NIOCore
import NIOHTTP1
import NIOPosix
import Prometheus
import ServiceLifecycle
import SessionStore

/// The device's Prometheus endpoint: `GET /metrics` over HTTP on the metrics address, never on the failover
/// interface (R3). A swift-service-lifecycle `Service`.
///
/// It serves what the store and the link record through swift-metrics (commit latency, replication lag,
/// checkpoint duration, events by kind, dropped holds, digest mismatches, snapshots sent) — bootstrap
/// ``bootstrap()`` before opening the store — and, read at each scrape, the device's state: failover state,
/// term, positions, users by owner and copy, holds, digests compared, snapshots received.
public final class MetricsServer: Service, Sendable {
    public let address: HostPort
    private let node: FailoverNode
    private let registry: PrometheusCollectorRegistry
    private let eventLoopGroup: any EventLoopGroup
    private let logger: Logger
    private let bound = AsyncStream<Int>.makeStream()

    /// Makes swift-metrics record into a new Prometheus registry, and returns it. Call it once, before the
    /// store is opened (its metrics are made when it opens).
    public static func bootstrap() -> PrometheusCollectorRegistry {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        let milliseconds: [Duration] = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000]
            .map { .milliseconds($0) }
        factory.defaultDurationHistogramBuckets = milliseconds
        MetricsSystem.bootstrap(factory)
        return registry
    }

    public init(
        node: FailoverNode,
        address: HostPort,
        registry: PrometheusCollectorRegistry,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger
    ) {
        self.node = node
        self.address = address
        self.registry = registry
        self.eventLoopGroup = eventLoopGroup
        self.logger = logger
    }

    /// The port the endpoint listens on once bound (the configured one, or the one the system chose for
    /// port 0); `nil` when the service ended without binding.
    public func waitUntilBound() async -> Int? {
        for await port in bound.stream { return port }
        return nil
    }

    public func run() async throws {
        let server: NIOAsyncChannel<NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>, Never>
        do {
            server = try await ServerBootstrap(group: eventLoopGroup)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .bind(host: address.host, port: address.port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                        return try NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>(
                            wrappingChannelSynchronously: channel
                        )
                    }
                }
        } catch {
            bound.continuation.finish()
            throw ControlError("cannot serve metrics on \(address): \(error)")
        }
        let port = server.channel.localAddress?.port ?? address.port
        logger.notice("metrics endpoint open", metadata: ["tandem.metrics.address": "\(address.host):\(port)"])
        bound.continuation.yield(port)
        bound.continuation.finish()
        try await withGracefulShutdownHandler {
            try await withThrowingDiscardingTaskGroup { connections in
                try await server.executeThenClose { inbound in
                    for try await connection in inbound {
                        connections.addTask { await self.serve(connection) }
                    }
                }
            }
        } onGracefulShutdown: {
            server.channel.close(promise: nil)
        }
    }

    private func serve(
        _ connection: NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>
    ) async {
        do {
            try await connection.executeThenClose { inbound, outbound in
                for try await part in inbound {
                    guard case .head(let head) = part else { continue }
                    let (status, body, type): (HTTPResponseStatus, [UInt8], String)
                    if head.method == .GET, head.uri == "/metrics" || head.uri.hasPrefix("/metrics?") {
                        (status, body, type) = (.ok, scrape(), "text/plain; version=0.0.4; charset=utf-8")
                    } else {
                        (status, body, type) = (
                            .notFound, Array("only GET /metrics is served here\n".utf8), "text/plain"
                        )
                    }
                    var headers = HTTPHeaders()
                    headers.add(name: "Content-Type", value: type)
                    headers.add(name: "Content-Length", value: "\(body.count)")
                    try await outbound.write(
                        .head(HTTPResponseHead(version: head.version, status: status, headers: headers))
                    )
                    try await outbound.write(.body(.byteBuffer(ByteBuffer(bytes: body))))
                    try await outbound.write(.end(nil))
                }
            }
        } catch {
            logger.debug("metrics connection ended", metadata: ["tandem.error": "\(error)"])
        }
    }

    /// The device's state as gauges, then every metric in Prometheus's text format.
    func scrape() -> [UInt8] {
        let status = node.status
        let store = node.store
        let log = store.logStatus
        gauge("tandem_synchronized", "1 while the pair is in synchronization (R6), 0 in independence")
            .set(Int64(status.state == .synchronization ? 1 : 0))
        for state in ["synchronization", "independence"] {
            let current = status.state == .synchronization ? "synchronization" : "independence"
            gauge("tandem_failover_state", "1 for the device's failover state", [("state", state)])
                .set(Int64(state == current ? 1 : 0))
        }
        gauge("tandem_term", "the device's term, raised by promotion").set(Int64(status.term))
        gauge("tandem_log_last_sequence", "the sequence of the device's last logged event")
            .set(Int64(log.lastSequence))
        gauge("tandem_log_checkpoint_sequence", "the log position the users table on disk stands at")
            .set(Int64(log.checkpointSequence))
        gauge("tandem_peer_acknowledged_sequence", "how far the peer has committed this device's log")
            .set(Int64(status.acknowledgedByPeer))
        gauge("tandem_peer_lag_events", "events logged here that the peer has not acknowledged")
            .set(Int64(node.lagEvents(lastSequence: log.lastSequence)))
        gauge("tandem_peer_applied_sequence", "how far this device has applied the peer's log")
            .set(Int64(status.appliedFromPeer))
        gauge("tandem_log_holds", "holds keeping the log for a reader (a peer)").set(Int64(log.holds.count))
        gauge("tandem_log_holds_dropped", "holds dropped past the log quota, still listed")
            .set(Int64(log.droppedHolds.count))
        gauge("tandem_digests_compared", "users-table digest comparisons with the peer").set(
            Int64(status.digestsCompared)
        )
        gauge("tandem_digest_mismatches", "comparisons that found the tables different").set(
            Int64(status.digestMismatches)
        )
        gauge("tandem_snapshots_sent", "snapshots of the users sent to the peer").set(Int64(status.snapshotsSent))
        gauge("tandem_snapshots_received", "snapshots of the peer's users installed").set(
            Int64(status.snapshotsReceived)
        )
        gauge("tandem_recovering", "1 while the device recovers its users from the peer").set(
            Int64(status.recovering ? 1 : 0)
        )
        let device = store.deviceID
        let byOwner = node.usersByOwner()
        for (owner, users) in byOwner {
            gauge(
                "tandem_users",
                "online users by owner in effect and by copy (primary: this device owns them)",
                [("owner", "\(owner)"), ("copy", owner == device ? "primary" : "backup")]
            ).set(Int64(users))
        }
        return registry.emitToBuffer()
    }

    private func gauge(_ name: String, _ help: String, _ labels: [(String, String)] = []) -> Prometheus.Gauge {
        registry.makeGauge(
            descriptor: MetricNameDescriptor(metricName: name, unitName: "", helpText: help),
            labels: labels
        )
    }
}
