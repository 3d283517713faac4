import ArgumentParser
import FailoverLink
import Foundation
import Logging
import NIOCore
import SessionStore
import Synchronization

/// The `failover` scenario: two devices in one process, joined by a real TCP link on loopback.
struct FailoverScenario: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "failover",
        abstract: "Full sync, replication lag, replicated logins, promotion and handover of a pair on loopback.",
        discussion: """
            Device 1 listens on 127.0.0.1, device 2 on 127.0.0.2; every commit is synced on both. Phases:
              start       device 1's failover node starts on its N users (node_start_ms), while device 1
                          logs users in and out one at a time (node_start_primary_event_max_ms: the
                          longest wait of a login or logout);
              full sync   device 1 holds N users; a fresh device 2 starts and catches up (full_sync_s:
                          from its start until it holds all N); meanwhile device 1 logs users in and
                          out one at a time, about 1,000 of each a second (full_sync_primary_event_p99_ms
                          and _max_ms: how long those logins and logouts wait; full_sync_link_losses: how
                          often the link went down meanwhile, each loss beginning the snapshot again);
              lag         device 1 runs churn (a logout and a login) at --lag-rate events/s for
                          --lag-seconds; lag is from a commit on device 1 to device 2's acknowledgement
                          that it committed it too;
              replicated  --replicated-logins logins with the replicated write concern from --concurrency
                          callers, one login per call, then again with --batch logins per call;
              updates     an accounting interim update of each of those users with the replicated write
                          concern, one per call, then --batch per call (replicated_updates_per_s,
                          replicated_batched_updates_per_s);
              promotion   device 1 goes away; device 2 is promoted and takes its users over
                          (promote_ready_ms: until the takeover committed and lookups answer for every
                          user; handover_users_per_s: every taken-over session handed to the controller).

            Example:
              swift run -c release --package-path bench tandem-bench failover --users 1000000 --json
            """
    )

    @Option(help: "Users of device 1 before the standby starts.")
    var users = 1_000_000

    @Option(help: "Events per second of the lag phase.")
    var lagRate = 100_000

    @Option(help: "Seconds of the lag phase.")
    var lagSeconds = 3.0

    @Option(help: "Logins of each replicated phase.")
    var replicatedLogins = 200_000

    @Option(help: "Seconds between checkpoints on both devices (the store's default is 1).")
    var checkpointInterval = 1.0

    @Option(help: "Concurrent callers of the replicated phase, one login per call.")
    var concurrency = 512

    @Option(help: "Logins per call in the batched replicated phase.")
    var batch = 64

    @Option(help: "The directory for both stores (default: a new temporary directory).")
    var path: String?

    @Flag(help: "Keep the stores afterwards.")
    var keep = false

    @Flag(help: "Print one JSON object instead of a table.")
    var json = false

    /// Logs users in on `store` one at a time, each logged out again, about a thousand of each a second until
    /// cancelled: how long device 1's own events wait while its node starts or a standby synchronizes from it.
    /// Both the login and the logout are timed, so that a stall of the writer shows whichever it holds up.
    static func eventsMeanwhile(on store: SessionStore) async -> Latencies {
        var latencies = Latencies()
        let clock = ContinuousClock()
        var number = 0
        while !Task.isCancelled {
            // Addresses far above those of the other phases.
            let session = BenchSession.make(100_000_000 + number % 1024)
            var start = clock.now
            guard (try? await store.login(session)) != nil else { break }
            latencies.record(start.duration(to: clock.now))
            start = clock.now
            guard (try? await store.logout(session.ip, reason: .user)) != nil else { break }
            latencies.record(start.duration(to: clock.now))
            number += 1
            try? await Task.sleep(for: .milliseconds(1))
        }
        return latencies
    }

    func run() async throws {
        let directory = path ?? NSTemporaryDirectory() + "tandem-bench-failover-\(getpid())"
        defer { if !keep { try? FileManager.default.removeItem(atPath: directory) } }
        try? FileManager.default.removeItem(atPath: directory)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let port = try freePort()
        var report = Report()
        report.add("scenario", "failover")
        report.add("users", users)

        // Device 1 and its users, before the standby exists.
        progress("building device 1 with \(users) users")
        let one = try Device(id: 1, directory: directory, port: port, checkpointInterval: checkpointInterval)
        try await one.fill(users)
        // The node's start on a store of N users (it computes the users table's digest), while device 1 goes on
        // logging users in and out.
        let starting = Task { [store = one.store] in await Self.eventsMeanwhile(on: store) }
        let startClock = PhaseClock()
        try await one.node.start()
        report.add("node_start_ms", startClock.seconds * 1000)
        starting.cancel()
        report.add("node_start_primary_event_max_ms", await starting.value.milliseconds(atPercentile: 100))

        // Full sync of a fresh standby, while device 1 goes on logging users in and out.
        progress("full sync of a fresh device 2")
        let probe = Task { [store = one.store] in await Self.eventsMeanwhile(on: store) }
        var phase = PhaseClock()
        let two = try Device(id: 2, directory: directory, port: port, checkpointInterval: checkpointInterval)
        // Each time the link goes down during the full sync, the snapshot begins again.
        let losses = Task { [link = two.node.link] in
            var up = false
            var losses = 0
            for await state in link.stateChanges {
                if state == .synchronization {
                    up = true
                } else if up {
                    up = false
                    losses += 1
                }
            }
            return losses
        }
        try await two.node.start()
        while two.store.count < users { try await Task.sleep(for: .milliseconds(2)) }
        report.add("full_sync_s", phase.seconds)
        report.add("full_sync_cpu_s", phase.cpu)
        report.addPhase("full_sync_users", events: users, clock: phase, unit: "user")
        losses.cancel()
        report.add("full_sync_link_losses", await losses.value)
        probe.cancel()
        let meanwhile = await probe.value
        let meanwhileHistogram = meanwhile.histogram
        report.add("full_sync_primary_event_p99_ms", meanwhileHistogram.milliseconds(atPercentile: 99))
        report.add("full_sync_primary_event_max_ms", meanwhileHistogram.milliseconds(atPercentile: 100))
        while two.node.status.appliedFromPeer < one.store.logStatus.lastSequence {
            try await Task.sleep(for: .milliseconds(5))
        }
        // The standby's checkpoint of the synced users finishes before the steady phase.
        _ = try await two.store.checkpoint()
        _ = try await one.store.checkpoint()

        // Lag at a steady rate.
        progress("lag: \(lagRate) events/s for \(lagSeconds) s")
        _ = one.node.takeReplicationLagSamples()
        let tick = 0.001
        let perTick = max(1, Int(Double(lagRate) * tick) / 2)
        var next = users
        var oldest = 0
        let ticks = Int(lagSeconds / tick)
        let clock = ContinuousClock()
        let begin = clock.now
        phase = PhaseClock()
        let store1 = one.store
        // Each tick's writes run as their own task, so that a slow commit does not lower the rate.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<ticks {
                let logins = (next..<next + perTick).map(BenchSession.make)
                let logouts = (oldest..<oldest + perTick).map { (BenchSession.address($0), LogoutReason.user) }
                next += perTick
                oldest += perTick
                group.addTask {
                    async let loggedIn = store1.login(contentsOf: logins)
                    async let loggedOut = store1.logout(contentsOf: logouts)
                    _ = try await (loggedIn, loggedOut)
                }
                let due = begin + .seconds(tick * Double(index + 1))
                if clock.now < due { try await clock.sleep(until: due) }
            }
            try await group.waitForAll()
        }
        let lagElapsed = begin.duration(to: clock.now)
        try await Task.sleep(for: .milliseconds(200))
        var lags = Latencies()
        for sample in one.node.takeReplicationLagSamples() { lags.record(sample) }
        report.add("lag_events_per_s", Double(ticks * perTick * 2) / lagElapsed.inSeconds)
        report.add("lag_cpu_us_per_event", phase.cpuMicroseconds(per: ticks * perTick * 2))
        report.addThreadCPU("lag", events: ticks * perTick * 2, clock: phase)
        let lagHistogram = lags.histogram
        report.add("lag_p50_ms", lagHistogram.milliseconds(atPercentile: 50))
        report.add("lag_p99_ms", lagHistogram.milliseconds(atPercentile: 99))
        report.add("lag_p999_ms", lagHistogram.milliseconds(atPercentile: 99.9))

        // Replicated logins, one per call and batched.
        phase = PhaseClock()
        progress("replicated logins: \(replicatedLogins) from \(concurrency) callers")
        let counter = Atomic<Int>(next)
        let end = next + replicatedLogins
        let node = one.node
        var latencies = try await runCallers(concurrency) { _, latencies in
            while true {
                let number = counter.wrappingAdd(1, ordering: .relaxed).oldValue
                guard number < end else { return }
                let call = nanosecondsNow()
                try await node.login(BenchSession.make(number), writeConcern: .replicated(timeout: .seconds(30)))
                latencies.record(nanosecondsNow() - call)
            }
        }
        report.addPhase("replicated_logins", events: replicatedLogins, clock: phase, unit: "login")
        report.add("replicated_login_p99_ms", latencies.milliseconds(atPercentile: 99))
        let batchFirst = end
        let batchEnd = batchFirst + replicatedLogins
        let batchCounter = Atomic<Int>(batchFirst)
        let perCall = batch
        progress(
            "replicated logins: \(replicatedLogins), \(perCall) per call from \(max(1, concurrency / perCall)) callers"
        )
        phase = PhaseClock()
        latencies = try await runCallers(max(1, concurrency / perCall)) { _, latencies in
            while true {
                let first = batchCounter.wrappingAdd(perCall, ordering: .relaxed).oldValue
                guard first < batchEnd else { return }
                let sessions = (first..<min(first + perCall, batchEnd)).map(BenchSession.make)
                let call = nanosecondsNow()
                _ = try await node.login(contentsOf: sessions, writeConcern: .replicated(timeout: .seconds(30)))
                latencies.record(nanosecondsNow() - call, count: sessions.count)
            }
        }
        report.addPhase("replicated_batched_logins", events: replicatedLogins, clock: phase, unit: "login")
        report.add("replicated_batch", perCall)

        // Replicated updates: an accounting report of each user of the one-per-call phase, one per call, then
        // of each of the batched phase, batched.
        for (name, first, size) in [
            ("replicated_updates", next, 1), ("replicated_batched_updates", batchFirst, perCall),
        ] {
            progress("replicated updates: \(replicatedLogins), \(size) per call")
            let updateCounter = Atomic<Int>(first)
            let updateEnd = first + replicatedLogins
            phase = PhaseClock()
            latencies = try await runCallers(max(1, concurrency / size)) { _, latencies in
                while true {
                    let start = updateCounter.wrappingAdd(size, ordering: .relaxed).oldValue
                    guard start < updateEnd else { return }
                    let reports = (start..<min(start + size, updateEnd)).map { number in
                        SessionUpdate.accountingInterim(
                            BenchSession.address(number),
                            AccountingState(inputOctets: UInt64(number) &* 1_000, reportedAt: .now),
                            lastActivity: .now
                        )
                    }
                    let call = nanosecondsNow()
                    if size == 1 {
                        try await node.update(reports[0], writeConcern: .replicated(timeout: .seconds(30)))
                    } else {
                        let results = try await node.update(
                            contentsOf: reports,
                            writeConcern: .replicated(timeout: .seconds(30))
                        )
                        for result in results { _ = try result.get() }
                    }
                    latencies.record(nanosecondsNow() - call, count: reports.count)
                }
            }
            report.addPhase(name, events: replicatedLogins, clock: phase, unit: "update")
            report.add(name + "_p99_ms", latencies.milliseconds(atPercentile: 99))
        }

        // Promotion.
        let online = one.store.count
        while two.node.status.appliedFromPeer < one.store.logStatus.lastSequence {
            try await Task.sleep(for: .milliseconds(5))
        }
        progress("promotion of device 2 over \(online) users of device 1")
        await one.stop()
        let handover = Task {
            var count = 0
            for await batch in two.node.takenOver {
                count += batch.count
                if count >= online { break }
            }
            return count
        }
        phase = PhaseClock()
        let promotion = try await two.node.promote()
        let handedOver = await handover.value
        report.add("promote_ready_ms", promotion.readyAfter.inSeconds * 1000)
        report.add("taken_over", promotion.takenOver)
        report.add("handover_users_per_s", Double(handedOver) / promotion.handoverAfter.inSeconds)
        report.add("handover_cpu_us_per_user", phase.cpuMicroseconds(per: handedOver))
        report.addThreadCPU("handover", events: handedOver, clock: phase, unit: "user")
        var found = 0
        for number in stride(from: users, to: end, by: 97)
        where try two.store.session(for: BenchSession.address(number)) != nil {
            found += 1
        }
        report.add("sampled_lookups_found", found)
        report.add("peak_rss_mib", peakRSSMiB())
        await two.stop()
        report.print(json: json)
    }
}

/// One device of the benchmark: a store and its node.
final class Device: Sendable {
    let store: SessionStore
    let node: FailoverNode

    init(id: UInt8, directory: String, port: Int, checkpointInterval: Double) throws {
        var logger = Logger(label: "bench.device\(id)")
        logger.logLevel = .warning
        let deviceID = DeviceID(rawValue: id)!
        var configuration = SessionStore.Configuration(deviceID: deviceID, portalGroup: "bench")
        configuration.checkpointInterval = .milliseconds(Int64(checkpointInterval * 1000))
        store = try SessionStore.open(at: directory + "/device\(id)", configuration: configuration, logger: logger)
        var link = FailoverLinkService.Configuration(
            identity: LinkIdentity(
                deviceID: deviceID,
                portalGroup: "bench",
                configurationDigest: Array(repeating: 7, count: 32)
            ),
            secret: LinkSecret(bytes: Array("the benchmark pair's shared secret".utf8)),
            listen: try SocketAddress(ipAddress: "127.0.0.\(id)", port: port),
            peer: try SocketAddress(ipAddress: "127.0.0.\(id == 1 ? 2 : 1)", port: port)
        )
        link.initialBackoff = .milliseconds(10)
        link.maximumBackoff = .milliseconds(100)
        node = FailoverNode(store: store, configuration: .init(link: link), logger: logger)
    }

    /// Logs users 0..<count in, 1,000 per call from 16 callers.
    func fill(_ count: Int) async throws {
        let next = Atomic<Int>(0)
        let store = self.store
        _ = try await runCallers(16) { _, _ in
            while true {
                let first = next.wrappingAdd(1000, ordering: .relaxed).oldValue
                guard first < count else { return }
                _ = try await store.login(contentsOf: (first..<min(first + 1000, count)).map(BenchSession.make))
            }
        }
        _ = try await store.checkpoint()
    }

    func stop() async {
        await node.shutdown()
        await store.close()
    }
}

/// A free TCP port on `host`.
func freePort(on host: String = "127.0.0.2") throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr(host)
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { raw in
            bind(fd, raw, length) == 0 && getsockname(fd, raw, &length) == 0
        }
    }
    guard bound else { throw ValidationError("no free port on \(host)") }
    return Int(UInt16(bigEndian: address.sin_port))
}

extension Duration {
    var inSeconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}
