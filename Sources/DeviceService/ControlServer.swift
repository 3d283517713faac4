import FailoverLink
import Foundation
import Inspection
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import SessionStore
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The control socket of a running device: a Unix-domain socket (mode 0600 by default) on which `tandem status`,
/// `tandem promote`, `tandem users --socket` and `tandem logout` talk to the device's node. A
/// swift-service-lifecycle `Service`: it binds when it runs and removes the socket file when it ends.
public final class ControlServer: Service, Sendable {
    public let path: String
    public let mode: UInt16
    private let node: FailoverNode
    private let eventLoopGroup: any EventLoopGroup
    private let logger: Logger
    private let bound = AsyncStream<Void>.makeStream()

    public init(
        node: FailoverNode,
        path: String,
        mode: UInt16 = 0o600,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger
    ) {
        self.node = node
        self.path = path
        self.mode = mode
        self.eventLoopGroup = eventLoopGroup
        self.logger = logger
    }

    /// Returns once the socket is bound (or the service ended without binding it).
    public func waitUntilBound() async {
        for await _ in bound.stream { return }
    }

    public func run() async throws {
        try Self.prepare(path)
        // The socket is created with its mode: the file creation mask is narrowed for the bind, so that the
        // socket is never, even for a moment, open to more than the mode allows (the mask is the process's;
        // nothing else of the device creates files while it starts).
        let mask = umask(mode_t(~mode & 0o777))
        let server: NIOAsyncChannel<NIOAsyncChannel<ByteBuffer, ByteBuffer>, Never>
        do {
            server = try await ServerBootstrap(group: eventLoopGroup)
                .bind(unixDomainSocketPath: path) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                    }
                }
            umask(mask)
        } catch {
            umask(mask)
            throw ControlError("cannot open the control socket \(path): \(error)")
        }
        defer { unlink(path) }
        guard chmod(path, mode_t(mode)) == 0 else {
            let reason = String(cString: strerror(errno))
            try? await server.channel.close()
            throw ControlError("cannot set the mode of the control socket \(path): \(reason)")
        }
        logger.notice(
            "control socket open",
            metadata: ["tandem.control.socket": "\(path)", "tandem.control.mode": "\(String(mode, radix: 8))"]
        )
        bound.continuation.yield()
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

    /// Makes way for the socket: a stale socket file (no device answers on it) is removed; a live one, or a
    /// file that is not a socket, is refused.
    static func prepare(_ path: String) throws {
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty, !FileManager.default.fileExists(atPath: directory) {
            try FileManager.default.createDirectory(
                atPath: directory,
                withIntermediateDirectories: true,
                attributes: [.posixPermissions: 0o755]
            )
        }
        var info = stat()
        guard lstat(path, &info) == 0 else { return }
        guard info.st_mode & S_IFMT == S_IFSOCK else {
            throw ControlError("\(path) exists and is not a socket; remove it or choose another control.socket")
        }
        if ControlClient.answers(path) {
            throw ControlError("a device is already running at the control socket \(path)")
        }
        unlink(path)
    }

    private func serve(_ connection: NIOAsyncChannel<ByteBuffer, ByteBuffer>) async {
        do {
            try await connection.executeThenClose { inbound, outbound in
                var lines = ControlLines()
                for try await chunk in inbound {
                    lines.append(chunk)
                    while let line = lines.next() {
                        try await respond(to: line, outbound)
                    }
                }
            }
        } catch {
            logger.debug("control connection ended", metadata: ["tandem.error": "\(error)"])
        }
    }

    private func respond(to line: String, _ outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>) async throws {
        func send(_ lines: String) async throws {
            try await outbound.write(ByteBuffer(string: lines))
        }
        let request: ControlRequest
        do {
            request = try ControlRequest.parse(line)
        } catch {
            try await send(jsonLine(["ok": false, "error": error.description]) + "\n")
            return
        }
        do {
            switch request.command {
            case .status:
                try await send(jsonLine(status()) + "\n")
            case .promote:
                let report = try await node.promote()
                logger.notice("promoted through the control socket", metadata: ["tandem.term": "\(report.term)"])
                try await send(
                    jsonLine([
                        "ok": true, "term": Int(report.term), "taken_over": report.takenOver,
                        "ready_ms": Self.milliseconds(report.readyAfter),
                        "handover_ms": Self.milliseconds(report.handoverAfter),
                        "state_before": "\(report.stateBefore)",
                    ]) + "\n"
                )
            case .users:
                try await listUsers(request, outbound)
            case .logout:
                let logout = try await node.logout(request.ip!, reason: request.reason ?? .deleteUser)
                logger.notice(
                    "user logged out through the control socket",
                    metadata: ["tandem.ip": "\(logout.ip)", "tandem.reason": "\(logout.reason)"]
                )
                try await send(
                    jsonLine([
                        "ok": true, "ip": logout.ip.description, "user": logout.userName,
                        "reason": logout.reason.description, "owner": Int(logout.owner.rawValue),
                    ]) + "\n"
                )
            }
        } catch {
            try await send(jsonLine(["ok": false, "error": "\(error)"]) + "\n")
        }
    }

    /// The device's state, positions, users by owner and counters.
    func status() -> [String: Any] {
        let status = node.status
        let store = node.store
        let log = store.logStatus
        let byOwner = node.usersByOwner()
        var object: [String: Any] = [
            "ok": true,
            "device_id": Int(store.deviceID.rawValue),
            "state": "\(status.state)",
            "synchronized": status.state == .synchronization,
            "term": Int(status.term),
            "users": store.count,
            "users_by_owner": Dictionary(uniqueKeysWithValues: byOwner.map { ("\($0.key)", $0.value) }),
            "last_sequence": Int(log.lastSequence),
            "checkpoint_sequence": Int(log.checkpointSequence),
            "acknowledged_by_peer": Int(status.acknowledgedByPeer),
            "lag_events": Int(node.lagEvents(lastSequence: log.lastSequence)),
            "applied_from_peer": Int(status.appliedFromPeer),
            "digests_compared": status.digestsCompared,
            "digest_mismatches": status.digestMismatches,
            "snapshots_sent": status.snapshotsSent,
            "snapshots_received": status.snapshotsReceived,
            "recovering": status.recovering,
            "holds": log.holds.keys.sorted(),
            "dropped_holds": log.droppedHolds.keys.sorted(),
        ]
        if let peer = status.peer { object["peer"] = Int(peer.rawValue) }
        if let failure = log.checkpointFailure { object["checkpoint_failure"] = failure }
        return object
    }

    private func listUsers(
        _ request: ControlRequest,
        _ outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>
    ) async throws {
        let store = node.store
        let takeovers = store.takeovers
        let device = store.deviceID
        // The lines of the wanted users, in chunks of about 64 KiB.
        let lines = UserLines(request: request, takeovers: takeovers, device: device)
        if request.ip != nil || request.mac != nil || request.user != nil {
            let sessions: [Session]
            if let ip = request.ip {
                sessions = try store.session(for: ip).map { [$0] } ?? []
            } else if let mac = request.mac {
                sessions = try store.sessions(withMAC: mac)
            } else {
                sessions = try store.sessions(withUserName: request.user!)
            }
            var chunks: [[UInt8]] = []
            for session in sessions { lines.add(session) { chunks.append($0) } }
            chunks.append(lines.rest())
            for bytes in chunks where !bytes.isEmpty { try await outbound.write(ByteBuffer(bytes: bytes)) }
        } else {
            try await streamAll(store, lines, outbound)
        }
        try await outbound.write(ByteBuffer(string: jsonLine(["ok": true, "count": lines.count]) + "\n"))
    }

    /// Every session through `lines`, sent as the walk goes: the walk runs on a thread of its own, at most a few
    /// chunks ahead of the connection, so that a listing of a million users never sits whole in memory. A
    /// connection that breaks stops the walk.
    private func streamAll(
        _ store: SessionStore,
        _ lines: UserLines,
        _ outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>
    ) async throws {
        let (chunks, continuation) = AsyncStream<[UInt8]>.makeStream()
        let credits = DispatchSemaphore(value: 8)
        let stopped = Atomic<Bool>(false)
        struct Stopped: Error {}
        let walk = Thread {
            do {
                try store.forEachSession { session in
                    try lines.add(session) { chunk in
                        credits.wait()
                        if stopped.load(ordering: .acquiring) { throw Stopped() }
                        continuation.yield(chunk)
                    }
                }
                continuation.yield(lines.rest())
            } catch {}
            continuation.finish()
        }
        walk.start()
        do {
            for await chunk in chunks {
                credits.signal()
                if !chunk.isEmpty { try await outbound.write(ByteBuffer(bytes: chunk)) }
            }
        } catch {
            stopped.store(true, ordering: .releasing)
            for _ in 0..<9 { credits.signal() }
            for await _ in chunks {}  // until the walk has stopped
            throw error
        }
    }

    private static func milliseconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) * 1000 + Double(duration.components.attoseconds) / 1e15
    }
}

/// The JSON lines of the users a `users` request wants, gathered in chunks of about 64 KiB.
private final class UserLines: @unchecked Sendable {
    // `@unchecked Sendable`: used by one thread at a time (the walk, then the caller after it ended).
    private let request: ControlRequest
    private let takeovers: Takeovers
    private let device: DeviceID
    private var chunk: [UInt8] = []
    private(set) var count = 0

    init(request: ControlRequest, takeovers: Takeovers, device: DeviceID) {
        self.request = request
        self.takeovers = takeovers
        self.device = device
    }

    /// Adds `session` when the request wants it; hands a full chunk to `full`.
    func add(_ session: Session, full: ([UInt8]) throws -> Void) rethrows {
        let owner = takeovers.effectiveOwner(of: session)
        if let wanted = request.owner, owner != wanted { return }
        if let nasIP = request.nasIP, session.radius.nasIP != nasIP { return }
        if let mac = request.mac, session.mac != mac { return }
        if let user = request.user, session.userName != user { return }
        UserRow.appendJSON(session, owner: owner, device: device, to: &chunk)
        chunk.append(UInt8(ascii: "\n"))
        count += 1
        if chunk.count >= 1 << 16 {
            try full(chunk)
            chunk.removeAll(keepingCapacity: true)
        }
    }

    /// The last, partly filled chunk.
    func rest() -> [UInt8] { chunk }
}
