import ArgumentParser
import Foundation
import SessionStore
import Synchronization

/// The `store` scenario: a login storm, churn at a steady online count, then everyone logs out.
struct StoreScenario: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "store",
        abstract: "Log N users in from many concurrent callers, churn, then log everyone out.",
        discussion: """
            Phases, each from --concurrency callers, each caller awaiting one write at a time:
              login   N users log in;
              reopen  the store is closed (checkpointed), its compacted size measured, and reopened
                      (reopen_ms: to its first read; reopen_lookup_ms: to its first lookup by MAC address,
                      which waits for the lookups the store builds in memory after it opens);
              churn   --churn-events events: a random online user logs out and a new one logs in;
              accounting  an accounting interim update for every online user, --batch per call
                      (update_events_per_s), then a second round --update-batch per call
                      (update_batched_events_per_s);
              logout  every online user logs out.
            cpu_us_per_event covers the login, churn and logout phases; each phase reports its own too.
            Commit latency is the time from a call to its acknowledgement (the event durable under
            --durability), over the churn phase.

            Example:
              swift run -c release --package-path bench tandem-bench store --users 1000000 --json
            """
    )

    @Option(help: "Users online after the login phase.")
    var users = 1_000_000

    @Option(help: "Concurrent callers.")
    var concurrency = 512

    @Option(help: "Events per call: 1 uses login(_:) and logout(_:reason:); more uses the batched calls.")
    var batch = 1

    @Option(help: "Events in the churn phase (default: as many as users).")
    var churnEvents: Int?

    @Option(help: "Updates per call in the batched accounting round.")
    var updateBatch = 1_024

    @Option(help: "sync (every commit flushed to disk), no-meta-sync, or no-sync.")
    var durability = "sync"

    @OptionGroup var checkpoint: CheckpointOptions

    @Option(help: "The directory to build the store in (default: a new temporary directory).")
    var path: String?

    @Flag(help: "Keep the store afterwards.")
    var keep = false

    @Flag(help: "Print one JSON object instead of a table.")
    var json = false

    func run() async throws {
        let directory = path ?? NSTemporaryDirectory() + "tandem-bench-\(getpid())"
        defer { if !keep { try? FileManager.default.removeItem(atPath: directory) } }
        try? FileManager.default.removeItem(atPath: directory)
        var configuration = SessionStore.Configuration(deviceID: 1, portalGroup: "bench")
        switch durability {
        case "sync": configuration.durability = .syncEveryCommit
        case "no-meta-sync": configuration.durability = .noMetaSync
        case "no-sync": configuration.durability = .noSync
        default: throw ValidationError("--durability must be sync, no-meta-sync or no-sync")
        }
        try checkpoint.apply(to: &configuration)
        let callers = concurrency
        let churnTotal = churnEvents ?? users
        var report = Report()
        report.add("scenario", "store")
        report.add("users", users)
        report.add("concurrency", callers)
        report.add("durability", durability)
        report.add("batch", batch)
        let interval = configuration.checkpointInterval.components
        report.add("checkpoint_interval_s", Double(interval.seconds) + Double(interval.attoseconds) / 1e18)
        report.add("checkpoint_threshold", configuration.checkpointThreshold)
        report.add("max_changes_in_memory", configuration.maxChangesInMemory)
        let perCall = max(batch, 1)

        // Optional so that the store of the login phase is released (its maps unmapped) before it is reopened.
        var store: SessionStore! = try SessionStore.open(at: directory, configuration: configuration)

        // Login: callers take user numbers from a shared counter.
        progress("login: \(users) users from \(callers) callers")
        let next = Atomic<Int>(0)
        let total = users
        var phase = PhaseClock()
        var latencies = try await runCallers(callers) { [store = store!] caller, latencies in
            while true {
                let number = next.wrappingAdd(perCall, ordering: .relaxed).oldValue
                guard number < total else { return }
                if perCall == 1 {
                    let session = BenchSession.make(number)
                    let t0 = nanosecondsNow()
                    try await store.login(session)
                    latencies.record(nanosecondsNow() - t0)
                } else {
                    let sessions = (number..<min(number + perCall, total)).map(BenchSession.make)
                    let t0 = nanosecondsNow()
                    let results = try await store.login(contentsOf: sessions)
                    latencies.record(nanosecondsNow() - t0, count: results.count)
                    for result in results { _ = try result.get() }
                }
            }
        }
        report.addPhase("login_events", events: users, clock: phase)
        var phasesCPU = phase.cpu
        report.add("login_commit_p99_ms", latencies.milliseconds(atPercentile: 99))

        // Size after compaction, then reopen.
        progress("checkpoint, compacted copy, close, reopen")
        try await store.checkpoint()
        let copy = directory + "-compacted"
        try? FileManager.default.removeItem(atPath: copy)
        try await store.copy(to: copy)
        let compacted = directorySize(copy)
        try? FileManager.default.removeItem(atPath: copy)
        report.add("disk_bytes_per_user", Double(compacted) / Double(max(users, 1)))
        report.add("disk_bytes_live", store.diskUsage.totalBytes)
        await store.close()
        // Released before the timing: tearing down the closed store's maps is not part of reopening, and one
        // process must not have the same LMDB environment open twice.
        store = nil
        let started = nanosecondsNow()
        let reopened = try SessionStore.open(at: directory, configuration: configuration)
        _ = try reopened.session(for: BenchSession.address(total / 2))
        report.add("reopen_ms", seconds(since: started) * 1000)
        // The first lookup by MAC address waits for the lookups of the sessions on disk, which the store
        // builds in memory after it opens.
        let middle = BenchSession.make(total / 2)
        guard try reopened.sessions(withMAC: middle.mac).map(\.ip) == [middle.ip] else {
            throw ValidationError("after reopening, the lookup by MAC address did not find user \(total / 2)")
        }
        report.add("reopen_lookup_ms", seconds(since: started) * 1000)
        store = reopened
        guard store.count == users else {
            throw ValidationError("after reopening, \(store.count) users are online, expected \(users)")
        }

        // Churn: caller c owns the users whose number is c modulo the callers, and swaps one of them for
        // a new user at every step: one logout and one login.
        progress("churn: \(churnTotal) events at \(users) online")
        let steps = churnTotal / 2
        phase = PhaseClock()
        latencies = try await runCallers(callers) { caller, latencies in
            var random = SystemRandomNumberGenerator()
            var mine = Array(stride(from: caller, to: total, by: callers))
            var fresh = total + caller
            var remaining = steps / callers + (caller < steps % callers ? 1 : 0)
            while remaining > 0 && !mine.isEmpty {
                if perCall == 1 {
                    let slot = Int.random(in: 0..<mine.count, using: &random)
                    var t0 = nanosecondsNow()
                    try await reopened.logout(BenchSession.address(mine[slot]), reason: .user)
                    latencies.record(nanosecondsNow() - t0)
                    t0 = nanosecondsNow()
                    try await reopened.login(BenchSession.make(fresh))
                    latencies.record(nanosecondsNow() - t0)
                    mine[slot] = fresh
                    fresh += callers
                    remaining -= 1
                } else {
                    let count = min(perCall, remaining, mine.count)
                    let slots = Set((0..<count * 2).map { _ in Int.random(in: 0..<mine.count, using: &random) })
                        .prefix(count)
                    var t0 = nanosecondsNow()
                    let out = try await reopened.logout(
                        contentsOf: slots.map { (BenchSession.address(mine[$0]), LogoutReason.user) }
                    )
                    latencies.record(nanosecondsNow() - t0, count: out.count)
                    var sessions: [Session] = []
                    for slot in slots {
                        mine[slot] = fresh
                        sessions.append(BenchSession.make(fresh))
                        fresh += callers
                    }
                    t0 = nanosecondsNow()
                    let results = try await reopened.login(contentsOf: sessions)
                    latencies.record(nanosecondsNow() - t0, count: results.count)
                    for result in out { _ = try result.get() }
                    for result in results { _ = try result.get() }
                    remaining -= slots.count
                }
            }
            churned.withLock { $0[caller] = mine }
        }
        report.addPhase("churn_events", events: steps * 2, clock: phase)
        phasesCPU += phase.cpu
        let commits = latencies.histogram
        report.add("commit_p50_ms", commits.milliseconds(atPercentile: 50))
        report.add("commit_p99_ms", commits.milliseconds(atPercentile: 99))
        report.add("commit_p999_ms", commits.milliseconds(atPercentile: 99.9))
        report.add("commit_max_ms", Double(commits.max) / 1e6)
        report.add("rss_mib", peakRSSMiB())
        report.add("rss_anon_mib_after_churn", statusMiB("RssAnon:"))
        report.add("rss_file_mib_after_churn", statusMiB("RssFile:"))

        // Walk: every online user read back in address order, as a handover reads the users it takes over, after a
        // checkpoint so that the checkpointer stays idle meanwhile. As `FailoverNode.promote()` does, each stored
        // value's owner and term are read first and tested against the takeovers before and after a promotion
        // (here one of device 2 over this store's device 1, so every session is taken over), then the sessions are
        // decoded in batches of 16,384 on two threads (`forEachSessionBatch`). Five walks; the one of median
        // length is reported, since a single walk is short and varies with the machine's other work.
        try await store.checkpoint()
        progress("walk: \(store.count) users, five times")
        let (peer, me): (DeviceID, DeviceID) = (1, 2)
        let before = Takeovers()
        var promoted = Takeovers()
        promoted.record(Takeover(from: peer, to: me, term: .max))
        let after = promoted
        let takenOver = { (owner: DeviceID, term: UInt32) -> Bool in
            before.effectiveOwner(owner: owner, term: term) == peer
                && after.effectiveOwner(owner: owner, term: term) == me
        }
        var walks: [(seconds: Double, cpu: Double, users: Int)] = []
        for _ in 0..<5 {
            let clock = PhaseClock()
            let counted = Counter()
            try store.forEachSessionBatch(where: takenOver, batchSize: 16_384) { batch in
                counted.value.add(batch.count, ordering: .relaxed)
            }
            let walked = counted.value.load(ordering: .relaxed)
            walks.append((clock.seconds, clock.cpu, walked))
            guard walked == store.count else {
                throw ValidationError("a walk read \(walked) users, but \(store.count) are online")
            }
        }
        let walk = walks.sorted { $0.seconds < $1.seconds }[walks.count / 2]
        report.addPhase("walk_users", events: walk.users, seconds: walk.seconds, cpuSeconds: walk.cpu, unit: "user")

        // Accounting: an interim report for every online user, one round --batch per call, one round batched.
        let online = store.count
        for (name, size) in [("update_events", perCall), ("update_batched_events", max(updateBatch, 1))] {
            // The batched round from fewer callers, as the failover scenario's: a million updates in flight at
            // once would measure memory pressure, not the store.
            let roundCallers = size == perCall ? callers : max(4, callers / size)
            progress("accounting: \(online) updates, \(size) per call from \(roundCallers) callers")
            phase = PhaseClock()
            latencies = try await runCallers(roundCallers) { caller, latencies in
                let mine = churned.withLock({ $0.filter { $0.key % roundCallers == caller }.flatMap(\.value) })
                for start in stride(from: 0, to: mine.count, by: size) {
                    let reports = mine[start..<min(start + size, mine.count)].map { number in
                        SessionUpdate.accountingInterim(
                            BenchSession.address(number),
                            AccountingState(
                                inputOctets: UInt64(number) &* 1_000,
                                outputOctets: UInt64(number) &* 3_000,
                                inputPackets: UInt64(number),
                                outputPackets: UInt64(number) &* 2,
                                reportedAt: .now
                            ),
                            lastActivity: .now
                        )
                    }
                    let t0 = nanosecondsNow()
                    if size == 1 {
                        try await reopened.update(reports[0])
                        latencies.record(nanosecondsNow() - t0)
                    } else {
                        let results = try await reopened.update(contentsOf: reports)
                        latencies.record(nanosecondsNow() - t0, count: results.count)
                        for result in results { _ = try result.get() }
                    }
                }
            }
            report.addPhase(name, events: online, clock: phase)
            report.add(
                name.replacingOccurrences(of: "_events", with: "_commit_p99_ms"),
                latencies.milliseconds(atPercentile: 99)
            )
        }

        // Logout: everyone.
        progress("logout: \(store.count) users")
        phase = PhaseClock()
        latencies = try await runCallers(callers) { caller, latencies in
            let mine = churned.withLock({ $0[caller] ?? [] })
            if perCall == 1 {
                for number in mine {
                    let t0 = nanosecondsNow()
                    try await reopened.logout(BenchSession.address(number), reason: .user)
                    latencies.record(nanosecondsNow() - t0)
                }
            } else {
                for start in stride(from: 0, to: mine.count, by: perCall) {
                    let logouts = mine[start..<min(start + perCall, mine.count)].map {
                        (BenchSession.address($0), LogoutReason.user)
                    }
                    let t0 = nanosecondsNow()
                    let results = try await reopened.logout(contentsOf: logouts)
                    latencies.record(nanosecondsNow() - t0, count: results.count)
                    for result in results { _ = try result.get() }
                }
            }
        }
        report.addPhase("logout_events", events: online, clock: phase)
        phasesCPU += phase.cpu
        report.add("cpu_us_per_event", phasesCPU / Double(max(users + steps * 2 + online, 1)) * 1e6)
        report.add("users_left", store.count)
        await store.close()
        report.add("peak_rss_mib", peakRSSMiB())
        report.print(json: json)
    }
}

private let churned = Mutex<[Int: [Int]]>([:])

/// Runs `body` on `count` concurrent callers and merges their latencies.
func runCallers(
    _ count: Int,
    _ body: @escaping @Sendable (Int, inout Latencies) async throws -> Void
) async throws -> Latencies {
    try await withThrowingTaskGroup(of: Latencies.self) { group in
        for caller in 0..<count {
            group.addTask {
                var latencies = Latencies()
                try await body(caller, &latencies)
                return latencies
            }
        }
        var all = Latencies()
        for try await latencies in group { all.add(latencies) }
        return all
    }
}

func directorySize(_ path: String) -> Int {
    let files = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
    return files.reduce(0) { total, file in
        var info = stat()
        return total + (stat(path + "/" + file, &info) == 0 ? Int(info.st_blocks) * 512 : 0)
    }
}

/// The users of the benchmark: realistic field sizes, distinct addresses, MACs and names.
enum BenchSession {
    static func address(_ number: Int) -> IPAddress {
        IPAddress(ipv4: 0x0A00_0000 &+ UInt32(truncatingIfNeeded: number))
    }

    @Sendable static func make(_ number: Int) -> Session {
        Session(
            ip: address(number),
            mac: MACAddress(rawValue: 0x0200_0000_0000 | UInt64(number)),
            userName: "user\(number)@campus",
            vlan: UInt16(100 + number % 64),
            accessInterface: "GigabitEthernet1/0/\(1 + number % 48)",
            portalGroup: "bench",
            owner: 1,
            sessionTimeout: 86_400,
            idleTimeout: 900,
            radius: RADIUSAttributes(
                nasIP: IPAddress(ipv4: 0xC0A8_0001),
                acctSessionID: "0000000000\(100_000 + number % 900_000)",
                classAttribute: Array("campus-class-\(number % 1000)".utf8)
            )
        )
    }
}

/// A count that batches handed over on two threads add to.
private final class Counter: Sendable {
    let value = Atomic<Int>(0)
}
