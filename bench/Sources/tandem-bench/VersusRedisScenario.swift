import ArgumentParser
import FailoverLink
import Foundation
import SessionStore
import Synchronization

/// The `versus-redis` scenario: the same sessions written to a Tandem pair and to a Redis primary with a
/// replica, side by side in one run.
struct VersusRedisScenario: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "versus-redis",
        abstract: "Tandem against a Redis primary and replica on the same work, in one run.",
        discussion: """
            Each user is the same session on both sides: a Tandem login, or a Redis hash (HSET user:<ip>) of its
            14 fields. Tandem runs first (two devices in this process on 127.0.0.1 and 127.0.0.2, every commit
            synced on both), then Redis (redis-server from Debian, installed with apt-get if missing; a primary
            and a replica on free loopback ports, stopped at the end; repl-diskless-sync-delay 0). Rows:
              full sync    a fresh standby or replica takes N users (from its start until it holds them);
              logins       N logins with the standby or replica attached: Tandem one per call from
                           --concurrency callers, then --batch per call; Redis pipelined --pipeline deep on
                           --connections connections, with no persistence and with appendfsync always;
              replicated   --replicated-logins logins acknowledged by the peer: Tandem's replicated write
                           concern (one and --batch per call), Redis's WAIT 1 after each pipeline;
              promotion    Tandem's promote() (until lookups answer for every user) against the replica's
                           REPLICAOF NO ONE.
            The ratio is Tandem's rate over Redis's (for durations, Redis's time over Tandem's): above 1,
            Tandem is ahead. CPU time: Tandem's is this process's (both devices and the callers); Redis's is
            its two servers' (from /proc), with this process's client time beside it.

            Example:
              swift run -c release --package-path bench tandem-bench versus-redis --users 1000000
            """
    )

    @Option(help: "Users of the full sync and of each login row.")
    var users = 1_000_000

    @Option(help: "Logins of each replicated row.")
    var replicatedLogins = 200_000

    @Option(help: "Concurrent Tandem callers, one login per call.")
    var concurrency = 512

    @Option(help: "Tandem logins per call in the batched rows.")
    var batch = 64

    @Option(help: "Redis commands per pipeline.")
    var pipeline = 64

    @Option(help: "Redis client connections, each on a thread of its own.")
    var connections = 4

    @Option(help: "The directory for the stores and Redis's files (default: a new temporary directory).")
    var path: String?

    @Flag(help: "Print one JSON object instead of a table.")
    var json = false

    func validate() throws {
        guard users > 0, replicatedLogins > 0, concurrency > 0, batch > 0, pipeline > 0, connections > 0 else {
            throw ValidationError("every count must be positive")
        }
    }

    func run() async throws {
        let directory = path ?? NSTemporaryDirectory() + "tandem-bench-versus-redis-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try? FileManager.default.removeItem(atPath: directory)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var report = Report()
        report.add("scenario", "versus-redis")
        report.add("users", users)
        report.add("redis_version", try redisVersion())
        let tandem = try await runTandem(directory: directory + "/tandem")
        try? FileManager.default.removeItem(atPath: directory + "/tandem")
        let redis = try await runRedis(directory: directory + "/redis")
        var table = Comparison()
        table.row(
            "full_sync",
            "a fresh standby's full sync of \(users.formatted()) users",
            tandem: tandem.fullSync,
            redis: redis.fullSync,
            lowerIsBetter: true
        )
        table.row("logins", "logins, one per call (Redis: no persistence)", tandem: tandem.logins, redis: redis.logins)
        table.row(
            "batched_logins",
            "logins, \(batch) per call (Redis: no persistence)",
            tandem: tandem.batchedLogins,
            redis: redis.logins
        )
        table.row(
            "logins_vs_aof",
            "logins, one per call (Redis: appendfsync always)",
            tandem: tandem.logins,
            redis: redis.aofLogins
        )
        table.row(
            "batched_logins_vs_aof",
            "logins, \(batch) per call (Redis: appendfsync always)",
            tandem: tandem.batchedLogins,
            redis: redis.aofLogins
        )
        table.row(
            "replicated",
            "replicated logins, one per call (Redis: WAIT 1 per \(pipeline))",
            tandem: tandem.replicated,
            redis: redis.replicated
        )
        table.row(
            "batched_replicated",
            "replicated logins, \(batch) per call (Redis: WAIT 1 per \(pipeline))",
            tandem: tandem.batchedReplicated,
            redis: redis.replicated
        )
        table.row(
            "promotion",
            "promotion",
            tandem: tandem.promotion,
            redis: redis.promotion,
            lowerIsBetter: true
        )
        for (name, value) in table.fields { report.fields.append((name, value)) }
        report.add("tandem_peak_rss_mib", tandem.peakRSS)
        if json {
            report.print(json: true)
        } else {
            print("Tandem against Redis \(try redisVersion()), \(users.formatted()) users")
            table.printTable()
        }
    }

    /// Tandem's figures of every row.
    struct TandemFigures {
        var fullSync = Figure()
        var logins = Figure()
        var batchedLogins = Figure()
        var replicated = Figure()
        var batchedReplicated = Figure()
        var promotion = Figure()
        var peakRSS = 0.0
    }

    /// Redis's figures of every row.
    struct RedisFigures {
        var fullSync = Figure()
        var logins = Figure()
        var aofLogins = Figure()
        var replicated = Figure()
        var promotion = Figure()
    }

    private func runTandem(directory: String) async throws -> TandemFigures {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var figures = TandemFigures()
        let port = try freePort()
        progress("Tandem: device 1 with \(users) users")
        let one = try Device(id: 1, directory: directory, port: port, checkpointInterval: 1)
        try await one.fill(users)
        try await one.node.start()

        progress("Tandem: full sync of a fresh device 2")
        var phase = PhaseClock()
        let two = try Device(id: 2, directory: directory, port: port, checkpointInterval: 1)
        try await two.node.start()
        while two.store.count < users { try await Task.sleep(for: .milliseconds(2)) }
        figures.fullSync = Figure(seconds: phase.seconds, events: users, cpu: phase.cpu)
        try await caughtUp(two, with: one)
        _ = try await two.store.checkpoint()
        _ = try await one.store.checkpoint()

        let node = one.node
        progress("Tandem: \(users) logins, one per call from \(concurrency) callers, device 2 attached")
        var first = users
        figures.logins = try await timed(events: users) { [first] in
            try await calls(of: 1, from: first, count: users, callers: concurrency) { sessions in
                _ = try await node.login(sessions[0])
            }
        }
        first += users
        progress("Tandem: \(users) logins, \(batch) per call")
        figures.batchedLogins = try await timed(events: users) { [first] in
            try await calls(of: batch, from: first, count: users, callers: max(1, concurrency / batch)) {
                _ = try await node.login(contentsOf: $0)
            }
        }
        first += users
        progress("Tandem: \(replicatedLogins) replicated logins, one per call")
        figures.replicated = try await timed(events: replicatedLogins) { [first] in
            try await calls(of: 1, from: first, count: replicatedLogins, callers: concurrency) { sessions in
                _ = try await node.login(sessions[0], writeConcern: .replicated(timeout: .seconds(30)))
            }
        }
        first += replicatedLogins
        progress("Tandem: \(replicatedLogins) replicated logins, \(batch) per call")
        figures.batchedReplicated = try await timed(events: replicatedLogins) { [first] in
            try await calls(of: batch, from: first, count: replicatedLogins, callers: max(1, concurrency / batch)) {
                _ = try await node.login(contentsOf: $0, writeConcern: .replicated(timeout: .seconds(30)))
            }
        }
        first += replicatedLogins

        try await caughtUp(two, with: one)
        let online = one.store.count
        progress("Tandem: promotion of device 2 over \(online) users")
        await one.stop()
        phase = PhaseClock()
        let promotion = try await two.node.promote()
        figures.promotion = Figure(seconds: promotion.readyAfter.inSeconds, events: 1, cpu: phase.cpu)
        guard promotion.takenOver == online else {
            throw ValidationError("device 2 took \(promotion.takenOver) users over, device 1 had \(online)")
        }
        figures.peakRSS = peakRSSMiB()
        await two.stop()
        return figures
    }

    private func runRedis(directory: String) async throws -> RedisFigures {
        var figures = RedisFigures()
        progress("Redis: a primary with \(users) users")
        let primary = try RedisServer(directory: directory + "/primary")
        defer { primary.stop() }
        let control = try RedisConnection(port: primary.port)
        try control.command(["CONFIG", "SET", "repl-diskless-sync-delay", "0"])
        try await hset(port: primary.port, from: 0, count: users)

        progress("Redis: full sync of a fresh replica")
        let started = nanosecondsNow()
        let replica = try RedisServer(directory: directory + "/replica", replicaOf: primary.port)
        defer { replica.stop() }
        let replicaControl = try RedisConnection(port: replica.port)
        let primaryCPU = primary.cpuSeconds
        while true {
            let info = try replicaControl.command(["INFO", "replication"]).text
            if info.contains("master_link_status:up"), info.contains("master_sync_in_progress:0"),
                case .integer(let keys) = try replicaControl.command(["DBSIZE"]), keys >= users
            {
                break
            }
            try await Task.sleep(for: .milliseconds(2))
        }
        figures.fullSync = Figure(
            seconds: seconds(since: started),
            events: users,
            cpu: replica.cpuSeconds + primary.cpuSeconds - primaryCPU
        )

        var first = users
        progress("Redis: \(users) logins, pipelined \(pipeline) deep on \(connections) connections, no persistence")
        figures.logins = try await measured(events: users, servers: [primary, replica]) { [first] in
            try await hset(port: primary.port, from: first, count: users)
        }
        first += users

        progress("Redis: appendonly yes, appendfsync always")
        try control.command(["CONFIG", "SET", "appendfsync", "always"])
        try control.command(["CONFIG", "SET", "appendonly", "yes"])
        while true {
            let info = try control.command(["INFO", "persistence"]).text
            if info.contains("aof_enabled:1"), info.contains("aof_rewrite_in_progress:0"),
                info.contains("aof_rewrite_scheduled:0")
            {
                break
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        progress("Redis: \(users) logins, appendfsync always")
        figures.aofLogins = try await measured(events: users, servers: [primary, replica]) { [first] in
            try await hset(port: primary.port, from: first, count: users)
        }
        first += users
        try control.command(["CONFIG", "SET", "appendonly", "no"])

        progress("Redis: \(replicatedLogins) logins, WAIT 1 after each pipeline of \(pipeline)")
        figures.replicated = try await measured(events: replicatedLogins, servers: [primary, replica]) {
            [first] in
            try await hset(port: primary.port, from: first, count: replicatedLogins, waitForReplica: true)
        }

        progress("Redis: REPLICAOF NO ONE on the replica")
        let promoted = nanosecondsNow()
        try replicaControl.command(["REPLICAOF", "NO", "ONE"])
        figures.promotion = Figure(seconds: seconds(since: promoted), events: 1, cpu: .nan)
        return figures
    }

    /// Writes users `from..<from + count` to Redis as hashes, pipelined on `connections` connections; with
    /// `waitForReplica`, each pipeline ends with `WAIT 1 30000`, which must answer that the replica has it.
    private func hset(port: Int, from first: Int, count: Int, waitForReplica: Bool = false) async throws {
        let next = Atomic<Int>(first)
        let end = first + count
        let pipeline = self.pipeline
        try await onThreads(connections) { _ in
            let connection = try RedisConnection(port: port)
            while true {
                let start = next.wrappingAdd(pipeline, ordering: .relaxed).oldValue
                guard start < end else { return }
                let stop = min(start + pipeline, end)
                for number in start..<stop { connection.appendHSET(BenchSession.make(number)) }
                if waitForReplica { connection.append(["WAIT", "1", "30000"]) }
                let replies = try connection.flush(replies: stop - start + (waitForReplica ? 1 : 0))
                if waitForReplica, replies.last != .integer(1) {
                    throw ValidationError("WAIT 1 answered \(replies.last!.text): the replica did not acknowledge")
                }
            }
        }
    }

    /// Tandem's callers: `callers` tasks logging users `first..<first + count` in, `perCall` per call.
    private func calls(
        of perCall: Int,
        from first: Int,
        count: Int,
        callers: Int,
        _ call: @escaping @Sendable ([Session]) async throws -> Void
    ) async throws {
        let next = Atomic<Int>(first)
        let end = first + count
        _ = try await runCallers(callers) { _, _ in
            while true {
                let start = next.wrappingAdd(perCall, ordering: .relaxed).oldValue
                guard start < end else { return }
                try await call((start..<min(start + perCall, end)).map(BenchSession.make))
            }
        }
    }

    private func timed(events: Int, _ body: () async throws -> Void) async throws -> Figure {
        let phase = PhaseClock()
        try await body()
        return Figure(seconds: phase.seconds, events: events, cpu: phase.cpu)
    }

    /// A Redis phase: its servers' CPU time, with this process's (the client's) beside it.
    private func measured(
        events: Int,
        servers: [RedisServer],
        _ body: () async throws -> Void
    ) async throws
        -> Figure
    {
        let before = servers.map(\.cpuSeconds).reduce(0, +)
        let phase = PhaseClock()
        try await body()
        let after = servers.map(\.cpuSeconds).reduce(0, +)
        return Figure(seconds: phase.seconds, events: events, cpu: after - before, clientCPU: phase.cpu)
    }

    private func caughtUp(_ standby: Device, with active: Device) async throws {
        while standby.node.status.appliedFromPeer < active.store.logStatus.lastSequence {
            try await Task.sleep(for: .milliseconds(5))
        }
    }

    private func redisVersion() throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try RedisServer.executable())
        process.arguments = ["--version"]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        // "Redis server v=7.0.15 sha=… malloc=jemalloc-5.3.0 bits=64 build=…"
        return output.split(separator: " ").first { $0.hasPrefix("v=") }.map { String($0.dropFirst(2)) } ?? "?"
    }
}

/// One system's figure of one row: how long, for how many events, at what CPU time.
struct Figure {
    var seconds = Double.nan
    var events = 0
    /// The system's CPU seconds (Tandem: this process; Redis: its servers).
    var cpu = Double.nan
    /// Redis rows: this process's CPU seconds as the client.
    var clientCPU = Double.nan

    var rate: Double { Double(events) / seconds }
    var cpuMicrosecondsPerEvent: Double { cpu / Double(max(events, 1)) * 1e6 }
    var clientMicrosecondsPerEvent: Double { clientCPU / Double(max(events, 1)) * 1e6 }
}

/// The side-by-side rows, as JSON fields and as a table for people.
struct Comparison {
    var fields: [(String, Report.Value)] = []
    private var lines: [[String]] = [["row", "Tandem", "Redis", "ratio", "CPU µs/event T | R (client)"]]

    mutating func row(_ key: String, _ title: String, tandem: Figure, redis: Figure, lowerIsBetter: Bool = false) {
        let ratio = lowerIsBetter ? redis.seconds / tandem.seconds : tandem.rate / redis.rate
        if lowerIsBetter {
            let unit = key == "promotion" ? "ms" : "s"
            let scale = key == "promotion" ? 1000.0 : 1
            fields.append(("tandem_\(key)_\(unit)", .double(tandem.seconds * scale)))
            fields.append(("redis_\(key)_\(unit)", .double(redis.seconds * scale)))
            lines.append([
                title, String(format: "%.3f", tandem.seconds * scale) + " " + unit,
                String(format: "%.3f", redis.seconds * scale) + " " + unit, String(format: "%.2f", ratio),
                key == "promotion" ? "" : cpuColumn(tandem, redis),
            ])
        } else {
            fields.append(("tandem_\(key)_per_s", .double(tandem.rate)))
            fields.append(("redis_\(key)_per_s", .double(redis.rate)))
            lines.append([
                title, Int(tandem.rate.rounded()).formatted() + "/s", Int(redis.rate.rounded()).formatted() + "/s",
                String(format: "%.2f", ratio), cpuColumn(tandem, redis),
            ])
        }
        fields.append(("\(key)_ratio", .double(ratio)))
        if key != "promotion" {
            fields.append(("tandem_\(key)_cpu_us_per_event", .double(tandem.cpuMicrosecondsPerEvent)))
            fields.append(("redis_\(key)_cpu_us_per_event", .double(redis.cpuMicrosecondsPerEvent)))
            if redis.clientCPU.isFinite {
                fields.append(("redis_\(key)_client_cpu_us_per_event", .double(redis.clientMicrosecondsPerEvent)))
            }
        }
    }

    private func cpuColumn(_ tandem: Figure, _ redis: Figure) -> String {
        var text = String(format: "%.1f | %.1f", tandem.cpuMicrosecondsPerEvent, redis.cpuMicrosecondsPerEvent)
        if redis.clientCPU.isFinite { text += String(format: " (%.1f)", redis.clientMicrosecondsPerEvent) }
        return text
    }

    func printTable() {
        let widths = (0..<lines[0].count).map { column in lines.map { $0[column].count }.max() ?? 0 }
        for line in lines {
            print(
                zip(line, widths).enumerated().map { index, pair in
                    index == 0
                        ? pair.0.padding(toLength: pair.1, withPad: " ", startingAt: 0)
                        : String(repeating: " ", count: pair.1 - pair.0.count) + pair.0
                }.joined(separator: "  ")
            )
        }
    }
}
