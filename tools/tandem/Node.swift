import ArgumentParser
import Crypto
import DeviceService
import FailoverLink
import Foundation
import Inspection
import Locking
import Logging
import NIOCore
import ServiceLifecycle
import SessionStore
import Synchronization

/// One device of a failover pair, run from the command line and driven by commands on standard input.
struct Node: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run one device of a stateful-failover pair: its store and its link to the peer.",
        discussion: """
            The device listens on its failover address, connects to its peer's (the lower device ID \
            connects), backs its users up on the peer and the peer's up here. It takes one command per \
            line on standard input and answers each with one line on standard output (a JSON object with \
            --json); replication events are printed as `event ...` lines as they happen. End of input, \
            `quit`, SIGTERM or SIGINT close the link (the peer sees it close) and then the store, cleanly.

            Commands:
              status          failover state and why, term, users, positions, counters
              login NUMBER [local|replicated]
                              log user NUMBER in; answers `login-ok number=N sequence=S`
                              or `login-failed number=N kind=K message=...`
                              (replicated: once the peer has it too, or not-replicated
                              after --replication-timeout)
              logout NUMBER [REASON] [local|replicated]
                              log user NUMBER off, on either device (the peer deletes it
                              too); answers `logout-ok number=N` or
                              `logout-failed number=N kind=K ...`
              storm FIRST COUNT [local|replicated] [CONCURRENCY]
                              log users FIRST..<FIRST+COUNT in, printing `ack N` as each
                              is acknowledged (replicated: once the peer has it), then
                              `storm-done`
              update-storm FIRST COUNT [local|replicated] [CONCURRENCY]
                              an accounting interim report for users
                              FIRST..<FIRST+COUNT, one update per call, printing
                              `uack N` as each is acknowledged, then
                              `update-storm-done`
              check FIRST COUNT
                              how many of users FIRST..<FIRST+COUNT are online here
              promote         take the peer's users over (also on SIGUSR1, for a VRRP
                              notify script)
              quit

            `login` and `logout` run concurrently (up to 1,024 at a time), so their answers may come in \
            another order than the commands; the other commands run one after the other. Every change \
            of the failover state is printed as a `state` line, every replication event as an `event` \
            line (`event=demoted`, `event=synchronized`, ...).

            User NUMBER has address 10.0.0.0 + NUMBER and MAC 02:00:00 + NUMBER.

            Example (two terminals):
              head -c 32 /dev/urandom > /tmp/pair.secret && chmod 600 /tmp/pair.secret
              tandem node --path /tmp/dev1 --device-id 1 --portal-group campus \\
                  --listen 127.0.0.1:7400 --peer 127.0.0.2:7400 \\
                  --secret-file /tmp/pair.secret
              tandem node --path /tmp/dev2 --device-id 2 --portal-group campus \\
                  --listen 127.0.0.2:7400 --peer 127.0.0.1:7400 \\
                  --secret-file /tmp/pair.secret
            """
    )

    @Option(
        help: """
            A JSON configuration file (see `tandem node --help` and the README, "Running a pair"); the \
            environment's TANDEM_… variables and the options below override it.
            """
    )
    var config: String?

    @Option(help: "The store's directory (store.path).")
    var path: String?

    @Option(help: "This device's ID, 1-255 (device.id).")
    var deviceID: Int?

    @Option(help: "The portal group of the portal service backup interface (device.portal_group).")
    var portalGroup: String?

    @Option(help: "sync (every commit flushed, the default), no-meta-sync, or no-sync (store.durability).")
    var durability: String?

    @Option(help: "This device's failover address, host:port, IPv6 as [addr]:port (failover.listen).")
    var listen: String?

    @Option(help: "The peer's failover address, host:port (failover.peer).")
    var peer: String?

    @Option(
        help: "A file of at least 16 bytes both devices share, mode 0600 (failover.secret_file)."
    )
    var secretFile: String?

    @Option(help: "The SHA-256 of the AAA and portal configuration, 64 hex digits (R8; failover.configuration_digest).")
    var configurationDigest: String?

    @Option(help: "How long a replicated write waits for the peer, in ms (failover.replication_timeout_ms; 1000).")
    var replicationTimeout: Int?

    @Option(
        help:
            "How long the peer may stay silent before the link is declared down, in ms (failover.silence_limit_ms; 1000)."
    )
    var silenceLimit: Int?

    @Option(
        help: "The longest time changes stay in memory before a checkpoint, in ms (store.checkpoint_interval_ms; 1000)."
    )
    var checkpointInterval: Int?

    @Option(help: "The most log kept for a lagging peer, in bytes (store.log_quota_bytes; 8 GiB).")
    var logQuota: Int?

    @Option(
        help: """
            What a damaged store does: recover (empty it, keep the logouts that can be read, and recover the \
            users from the peer) or refuse (stop with the error; inspect with `tandem log verify`) (store.on_damage).
            """
    )
    var onDamage: String?

    @Option(help: "The control socket, for `tandem status`, `promote`, `users --socket` and `logout` (control.socket).")
    var controlSocket: String?

    @Option(
        help:
            "Serve Prometheus metrics at http://ADDRESS/metrics, host:port, not on the failover interface (metrics.listen)."
    )
    var metricsListen: String?

    @Flag(help: "Answer commands with JSON objects.")
    var json = false

    @Option(help: "trace, debug, info, notice, warning or error, to standard error (log.level; notice).")
    var logLevel: String?

    /// The options given, by configuration key: they override the file and the environment.
    private var overrides: [String: String] {
        var values: [String: String] = [:]
        let given: [(String, String?)] = [
            ("store.path", path), ("device.id", deviceID.map(String.init)), ("device.portal_group", portalGroup),
            ("store.durability", durability), ("failover.listen", listen), ("failover.peer", peer),
            ("failover.secret_file", secretFile), ("failover.configuration_digest", configurationDigest),
            ("failover.replication_timeout_ms", replicationTimeout.map(String.init)),
            ("failover.silence_limit_ms", silenceLimit.map(String.init)),
            ("store.checkpoint_interval_ms", checkpointInterval.map(String.init)),
            ("store.log_quota_bytes", logQuota.map(String.init)), ("store.on_damage", onDamage),
            ("control.socket", controlSocket), ("metrics.listen", metricsListen), ("log.level", logLevel),
        ]
        for (key, value) in given { if let value { values[key] = value } }
        return values
    }

    /// The settings, or the reason they are refused on standard error and exit status 78 (EX_CONFIG).
    private func settings() async throws -> (NodeSettings, [UInt8]) {
        do {
            let settings = try await NodeSettings.load(file: config, overrides: overrides)
            return (settings, try NodeSettings.readSecret(at: settings.secretFile))
        } catch {
            FileHandle.standardError.write(Data("tandem node: \(error)\n".utf8))
            throw ExitCode(78)
        }
    }

    func run() async throws {
        let (settings, secret) = try await settings()
        var logger = Logger(label: "tandem.node")
        logger.logLevel = Logger.Level(rawValue: settings.logLevel) ?? .notice
        logger[metadataKey: "tandem.device_id"] = "\(settings.deviceID)"
        var link = FailoverLinkService.Configuration(
            identity: LinkIdentity(
                deviceID: settings.deviceID,
                portalGroup: settings.portalGroup,
                configurationDigest: settings.configurationDigest ?? Array(SHA256.hash(data: [UInt8]()))
            ),
            secret: LinkSecret(bytes: secret),
            listen: try settings.listen.socketAddress(),
            peer: try settings.peer?.socketAddress()
        )
        link.maximumBackoff = .milliseconds(500)
        link.silenceLimit = .milliseconds(Int64(settings.silenceLimit / .milliseconds(1)))
        if let tls = settings.tls {
            link.tls = try LinkTLS(
                certificateChainFile: tls.certificate,
                privateKeyFile: tls.privateKey,
                trustRootsFile: tls.ca
            )
        }
        var configuration = FailoverNode.Configuration(link: link)
        configuration.replicationTimeout = settings.replicationTimeout
        var tuned = SessionStore.Configuration(deviceID: settings.deviceID, portalGroup: settings.portalGroup)
        tuned.durability = settings.durability
        tuned.checkpointInterval = settings.checkpointInterval
        tuned.logQuotaBytes = settings.logQuotaBytes
        tuned.onDamage = settings.onDamage
        let listen = settings.listen.description
        // Metrics are made when the store opens: the registry comes first.
        let registry = settings.metricsListen.map { _ in MetricsServer.bootstrap() }
        let opened = try SessionStore.open(at: settings.storePath, configuration: tuned, logger: logger)
        let node = FailoverNode(store: opened, configuration: configuration, logger: logger)
        let console = Console(json: json)
        let followers = Followers()
        let control = ControlServer(
            node: node,
            path: settings.controlSocket,
            mode: settings.controlMode,
            logger: logger
        )
        let metrics: MetricsServer? = settings.metricsListen.flatMap { address in
            registry.map { MetricsServer(node: node, address: address, registry: $0, logger: logger) }
        }
        let commands = ClosureService { [listen] in
            // `ready` once the listener, the control socket and the metrics endpoint are bound; a node that
            // cannot bind them ends the group with the error.
            _ = try await node.link.waitUntilListening()
            await control.waitUntilBound()
            var fields = [
                "device_id": "\(opened.deviceID)", "listen": listen, "users": "\(opened.count)",
                "control_socket": control.path,
            ]
            if let metrics, let port = await metrics.waitUntilBound() {
                fields["metrics"] = "http://\(HostPort.text(host: metrics.address.host, port: port))/metrics"
            }
            console.reply("ready", fields)
            await Self.serveCommands(node: node, console: console, followers: followers)
        }
        // The node first, the control socket and the commands after it: a graceful shutdown (SIGTERM, SIGINT,
        // or the end of the commands) stops reading commands, closes the control socket, then ends
        // replication and closes the link.
        // The first SIGTERM or SIGINT shuts down gracefully; a second forces the exit at once (the store needs
        // no checkpoint: the next open replays its log).
        let forcing = SecondSignal(logger: logger)
        defer { forcing.cancel() }
        let services = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                // Shut down in the reverse order: the commands, the metrics endpoint, the control socket, the
                // node (replication ends, the link closes), and last the store (checkpointed and closed).
                services: [
                    .init(service: StoreService(opened)),
                    .init(service: node),
                    .init(service: control),
                ] + (metrics.map { [.init(service: $0)] } ?? []) + [
                    .init(service: commands, successTerminationBehavior: .gracefullyShutdownGroup)
                ],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            )
        )
        do {
            try await services.run()
        } catch {
            await opened.close()
            throw error
        }
        await followers.waitUntilDone()
        await opened.close()  // closed by its service already; a second close returns at once
        console.reply("closed", [:])
    }

    /// Prints the node's state, events and promotions, and runs the commands on standard input until its end,
    /// `quit`, or a graceful shutdown; writes still running are waited for.
    private static func serveCommands(node: FailoverNode, console: Console, followers: Followers) async {
        // Replication events and taken-over users, until the node's streams end.
        followers.add(
            Task {
                for await event in node.events { console.reply("event", Self.fields(of: event)) }
            }
        )
        followers.add(
            Task {
                for await _ in node.takenOver {}  // a controller reinstalls these in its data plane
            }
        )
        let states = Task {
            var last = ""
            while !Task.isCancelled {
                let state = "\(node.status.state)"
                if state != last {
                    console.reply("state", ["state": state, "synchronized": state == "synchronization" ? "yes" : "no"])
                    last = state
                }
                try? await Task.sleep(for: .milliseconds(20))
            }
        }
        let promotions = PromotionTrigger()
        let signals = Task {
            for await _ in promotions.signals { await Self.promote(node, console) }
        }
        let input = StandardInput.lines()
        await withTaskGroup(of: Void.self) { writes in
            var inFlight = 0
            // A graceful shutdown ends the loop: at once while it waits for a line, after the command under way
            // otherwise (lines read but not run yet are dropped).
            await withGracefulShutdownHandler {
                for await line in input.lines {
                    if Task.isShuttingDownGracefully { break }
                    let words = line.split(separator: " ").map(String.init)
                    guard let command = words.first else { continue }
                    if command == "quit" { break }
                    if command == "login" || command == "logout" {
                        if inFlight >= 1024, await writes.next() != nil { inFlight -= 1 }
                        inFlight += 1
                        writes.addTask { await Self.write(command, Array(words.dropFirst()), node: node, console) }
                        continue
                    }
                    do {
                        try await execute(command, Array(words.dropFirst()), node: node, console: console)
                    } catch {
                        console.reply("error", ["message": "\(error)"])
                    }
                }
            } onGracefulShutdown: {
                input.end()
            }
            await writes.waitForAll()
        }
        states.cancel()
        promotions.stop()
        signals.cancel()
    }

    private static func execute(
        _ command: String,
        _ arguments: [String],
        node: FailoverNode,
        console: Console
    ) async throws {
        switch command {
        case "status":
            let status = node.status
            let log = node.store.logStatus
            console.reply(
                "status",
                [
                    "state": "\(status.state)", "term": "\(status.term)", "users": "\(node.store.count)",
                    "peer": status.peer.map { "\($0)" } ?? "",
                    "last_sequence": "\(log.lastSequence)", "checkpoint_sequence": "\(log.checkpointSequence)",
                    "acknowledged_by_peer": "\(status.acknowledgedByPeer)",
                    "applied_from_peer": "\(status.appliedFromPeer)",
                    "synchronized": status.state == .synchronization ? "yes" : "no",
                    "digests_compared": "\(status.digestsCompared)",
                    "digest_mismatches": "\(status.digestMismatches)",
                    "snapshots_sent": "\(status.snapshotsSent)", "snapshots_received": "\(status.snapshotsReceived)",
                    "recovering": status.recovering ? "yes" : "no",
                    "checkpoint_failure": log.checkpointFailure ?? "",
                    "holds": log.holds.keys.sorted().joined(separator: ","),
                    "dropped_holds": log.droppedHolds.keys.sorted().joined(separator: ","),
                ]
            )
        case "storm", "update-storm":
            guard arguments.count >= 2, let first = Int(arguments[0]), let count = Int(arguments[1]) else {
                throw ValidationError("usage: \(command) FIRST COUNT [local|replicated] [CONCURRENCY]")
            }
            let writeConcern: FailoverNode.WriteConcern =
                arguments.count > 2 && arguments[2] == "replicated"
                ? .replicated() : .local
            let concurrency = arguments.count > 3 ? Int(arguments[3]) ?? 64 : 64
            let run = command == "storm" ? storm : updateStorm
            try await run(node, first, count, writeConcern, concurrency, console)
        case "check":
            guard arguments.count == 2, let first = Int(arguments[0]), let count = Int(arguments[1]) else {
                throw ValidationError("usage: check FIRST COUNT")
            }
            var present = 0
            for number in first..<first + count where try node.store.session(for: StormSession.address(number)) != nil {
                present += 1
            }
            console.reply("check", ["present": "\(present)", "missing": "\(count - present)"])
        case "promote":
            await Self.promote(node, console)
        default:
            throw ValidationError(
                "unknown command '\(command)': status, login, logout, storm, update-storm, check, promote or quit"
            )
        }
    }

    /// A `login` or `logout` command, answered with its user's number.
    private static func write(_ command: String, _ arguments: [String], node: FailoverNode, _ console: Console) async {
        guard let number = arguments.first.flatMap({ Int($0) }), number >= 0 else {
            console.reply("error", ["message": "usage: \(command) NUMBER ..."])
            return
        }
        let writeConcern: FailoverNode.WriteConcern = arguments.contains("replicated") ? .replicated() : .local
        do {
            if command == "login" {
                let session = StormSession.make(
                    number: number,
                    portalGroup: node.store.portalGroup,
                    owner: node.store.deviceID
                )
                let stored = try await node.login(session, writeConcern: writeConcern)
                console.reply("login-ok", ["number": "\(number)", "sequence": "\(stored.generation.sequence)"])
            } else {
                let reason =
                    arguments.dropFirst().first { $0 != "local" && $0 != "replicated" }
                    .flatMap { LogoutReason(name: $0) } ?? .deleteUser
                let logged = try await node.loggedLogout(
                    StormSession.address(number),
                    reason: reason,
                    writeConcern: writeConcern
                )
                console.reply("logout-ok", ["number": "\(number)", "sequence": "\(logged.sequence)"])
            }
        } catch {
            var fields = ["number": "\(number)", "kind": Self.kind(of: error), "message": "\(error)"]
            if let sequence = (error as? LinkError)?.sequence { fields["sequence"] = "\(sequence)" }
            console.reply("\(command)-failed", fields)
        }
    }

    /// The short name of an error's kind, such as `not-replicated` or `already-online`.
    private static func kind(of error: any Error) -> String {
        if let error = error as? SessionStoreError { return "\(error.kind)" }
        if let error = error as? LinkError { return "\(error.kind)" }
        return "other"
    }

    /// A replication event as fields of an `event` line.
    private static func fields(of event: FailoverNode.Event) -> [String: String] {
        switch event {
        case .snapshotSent(let sessions, let position):
            ["event": "snapshot-sent", "sessions": "\(sessions)", "position": "\(position)"]
        case .snapshotReceived(let sessions, let position):
            ["event": "snapshot-received", "sessions": "\(sessions)", "position": "\(position)"]
        case .demoted(let term, let keptThrough, let discarded, let loggedOffAgain):
            [
                "event": "demoted", "term": "\(term)", "kept_through": "\(keptThrough)",
                "discarded_events": "\(discarded)", "logged_off_again": "\(loggedOffAgain)",
            ]
        case .digestMismatch(let through, let peerThrough):
            ["event": "digest-mismatch", "through": "\(through)", "peer_through": "\(peerThrough)"]
        case .synchronized(let through, let peerThrough):
            ["event": "synchronized", "through": "\(through)", "peer_through": "\(peerThrough)"]
        }
    }

    private static func promote(_ node: FailoverNode, _ console: Console) async {
        do {
            let report = try await node.promote()
            console.reply(
                "promoted",
                [
                    "term": "\(report.term)", "taken_over": "\(report.takenOver)",
                    "ready_ms": String(format: "%.3f", report.readyAfter.milliseconds),
                    "handover_ms": String(format: "%.3f", report.handoverAfter.milliseconds),
                    "state_before": "\(report.stateBefore)",
                ]
            )
        } catch {
            console.reply("error", ["message": "promotion failed: \(error)"])
        }
    }

    /// Logs users in until the range ends or a graceful shutdown begins (the logins under way finish).
    private static func storm(
        _ node: FailoverNode,
        first: Int,
        count: Int,
        writeConcern: FailoverNode.WriteConcern,
        concurrency: Int,
        _ console: Console
    ) async throws {
        let owner = node.store.deviceID
        let group = node.store.portalGroup
        await run(first: first, count: count, concurrency: concurrency, console, done: "storm-done", ack: "ack") {
            try await node.login(
                StormSession.make(number: $0, portalGroup: group, owner: owner),
                writeConcern: writeConcern
            )
        }
    }

    /// An accounting round over users FIRST..<FIRST+COUNT, one update per call: user N's report holds
    /// ``StormSession/reportedOctets(number:)`` input octets.
    private static func updateStorm(
        _ node: FailoverNode,
        first: Int,
        count: Int,
        writeConcern: FailoverNode.WriteConcern,
        concurrency: Int,
        _ console: Console
    ) async throws {
        await run(first: first, count: count, concurrency: concurrency, console, done: "update-storm-done", ack: "uack")
        {
            number in
            try await node.update(
                .accountingInterim(
                    StormSession.address(number),
                    AccountingState(
                        inputOctets: StormSession.reportedOctets(number: number),
                        outputOctets: 1,
                        reportedAt: .now
                    ),
                    lastActivity: .now
                ),
                writeConcern: writeConcern
            )
        }
    }

    /// Runs `write` for user numbers FIRST..<FIRST+COUNT from `concurrency` callers, printing `ACK N` (or
    /// `nACK N error`) for each, and `DONE count=… failed=… seconds=…` at the end; a graceful shutdown stops
    /// it starting writes (those under way finish).
    private static func run(
        first: Int,
        count: Int,
        concurrency: Int,
        _ console: Console,
        done: String,
        ack: String,
        _ write: @escaping @Sendable (Int) async throws -> Void
    ) async {
        let started = ContinuousClock.now
        let next = ManagedCounter(first)
        let end = first + count
        let failures = Tally()
        await withTaskGroup(of: Void.self) { tasks in
            for _ in 0..<max(1, concurrency) {
                tasks.addTask {
                    while true {
                        let number = next.next()
                        guard number < end, !Task.isShuttingDownGracefully else { return }
                        do {
                            try await write(number)
                            console.write("\(ack) \(number)\n")
                        } catch {
                            failures.add()
                            console.write("n\(ack) \(number) \(error)\n")
                        }
                    }
                }
            }
        }
        let seconds = started.duration(to: .now).seconds
        console.reply(
            done,
            ["count": "\(count)", "failed": "\(failures.count)", "seconds": String(format: "%.3f", seconds)]
        )
    }
}

/// The node's answers: one line each, `word key=value ...` or a JSON object.
final class Console: Sendable {
    let json: Bool
    private let output = AcknowledgementLog()

    init(json: Bool) { self.json = json }

    func reply(_ type: String, _ fields: [String: String]) {
        var fields = fields
        // When the device saw the change, on the machine's monotonic clock: a reader that takes the line late
        // (a loaded machine) can still tell when the device reported it.
        if type == "state" || type == "event" { fields["at_ns"] = "\(Self.monotonicNanoseconds())" }
        if json {
            var object = fields
            object["type"] = type
            write(jsonLine(object) + "\n")
        } else {
            let words = fields.keys.sorted().map { key in
                "\(key)=\(fields[key]!.replacingOccurrences(of: " ", with: "_"))"
            }
            write(([type] + words).joined(separator: " ") + "\n")
        }
    }

    func write(_ line: String) { output.write(line) }

    /// `CLOCK_MONOTONIC` in nanoseconds.
    static func monotonicNanoseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
    }
}

/// Tasks that end by themselves and must end before the store closes.
final class Followers: Sendable {
    private let tasks = Locked<[Task<Void, Never>]>([])

    func add(_ task: Task<Void, Never>) { tasks.withLock { $0.append(task) } }

    func waitUntilDone() async {
        for task in tasks.withLock({ $0 }) { await task.value }
    }
}

/// Standard input as lines, read on a thread of its own.
enum StandardInput {
    /// The lines, and a way to end them early (the thread reading them goes on, unheard).
    static func lines() -> (lines: AsyncStream<String>, end: @Sendable () -> Void) {
        let (lines, continuation) = AsyncStream.makeStream(of: String.self)
        let thread = Thread {
            while let line = readLine() { continuation.yield(line) }
            continuation.finish()
        }
        thread.start()
        return (lines, { continuation.finish() })
    }
}

/// SIGUSR1 as a stream: a VRRP daemon's notify script promotes the device with `kill -USR1`.
///
/// `@unchecked Sendable`: `source` is set once in `init`; dispatch sources are safe to cancel from any thread.
final class PromotionTrigger: @unchecked Sendable {
    let signals: AsyncStream<Void>
    private let source: any DispatchSourceSignal

    init() {
        signal(SIGUSR1, SIG_IGN)
        let (stream, continuation) = AsyncStream.makeStream(of: Void.self)
        signals = stream
        source = DispatchSource.makeSignalSource(signal: SIGUSR1)
        source.setEventHandler { continuation.yield() }
        source.setCancelHandler { continuation.finish() }
        source.resume()
    }

    func stop() { source.cancel() }
}

extension Duration {
    var seconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }

    var milliseconds: Double { seconds * 1000 }
}

/// A count shared by concurrent tasks.
final class Tally: Sendable {
    private let value = Atomic<Int>(0)
    func add() { value.add(1, ordering: .relaxed) }
    var count: Int { value.load(ordering: .relaxed) }
}

/// What `tandem node` does with a damaged store.
enum DamageOption: String, ExpressibleByArgument, CaseIterable {
    case recover
    case refuse
}

/// Exits the process at the second SIGTERM or SIGINT, while the first one's graceful shutdown is under way.
final class SecondSignal {
    private let sources: [any DispatchSourceSignal]

    /// The exit status of a forced exit: 128 + SIGINT, as a shell reports an interrupted command.
    static let forcedStatus: Int32 = 130

    init(logger: Logger) {
        let seen = Locked(0)
        sources = [SIGTERM, SIGINT].map { number in
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler {
                let count = seen.withLock { count in
                    count += 1
                    return count
                }
                guard count >= 2 else { return }
                logger.warning(
                    "second signal during the graceful shutdown: exiting now; the store replays its log at the next open"
                )
                FileHandle.standardError.write(
                    Data("tandem node: second signal, exiting without waiting for the shutdown\n".utf8)
                )
                _exit(SecondSignal.forcedStatus)
            }
            source.resume()
            return source
        }
    }

    func cancel() { for source in sources { source.cancel() } }
}
