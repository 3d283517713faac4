import Foundation
import Inspection
import SessionStore

/// One round of the suite: a fresh pair on fresh stores, the load running on both devices, the scenarios in
/// turn, and the checks after each fault and at the end.
final class Round: @unchecked Sendable {
    // `@unchecked Sendable`: a round is driven by one task at a time; `violations` and `faults` are guarded
    // by `lock` because the storm threads and the checks report into them too.
    let number: Int
    let directory: String
    let lab: Lab
    let history: History
    let devices: [UInt8: Device]
    let workload: Workload
    let silenceLimit: Duration
    let tandem: String
    var generator: SeededGenerator
    /// The device VRRP made master last: it takes the storms.
    var active: UInt8 = 1
    private let lock = NSLock()
    private var violations: [Checker.Violation] = []
    private(set) var faults = 0
    private(set) var convergenceChecks = 0
    private let verbose: Bool
    /// Users whose stored session a fault damaged on purpose: nothing is promised of them.
    var damagedUsers: Set<Int> = []
    /// Repairs of a damaged store: like a demotion, each discarded the device's own events after the
    /// position the peer had applied.
    var repairs: [UInt8: [(at: ContinuousClock.Instant, keptThrough: UInt64)]] = [:]
    /// Stores replaced by new ones: like a repair, and the logouts are lost too.
    var replacements: [UInt8: [(at: ContinuousClock.Instant, keptThrough: UInt64)]] = [:]
    /// The small disk device 2's store lives on, for the disk-full scenario.
    let disk: SmallDisk?

    init(
        number: Int,
        directory: String,
        lab: Lab,
        tandem: String,
        seed: UInt64,
        rate: Int,
        silenceLimitMs: Int,
        disk: SmallDisk?,
        verbose: Bool
    ) throws {
        self.disk = disk
        self.number = number
        self.directory = directory
        self.lab = lab
        self.tandem = tandem
        self.verbose = verbose
        generator = SeededGenerator(seed: seed)
        silenceLimit = .milliseconds(silenceLimitMs)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let secret = directory + "/secret"
        _ = FileManager.default.createFile(
            atPath: secret,
            contents: Data((0..<32).map { _ in UInt8.random(in: 0...255) }),
            attributes: [.posixPermissions: 0o600]
        )
        history = History(path: directory + "/history.jsonl")
        var devices: [UInt8: Device] = [:]
        for id: UInt8 in [1, 2] {
            devices[id] = Device(
                id: id,
                lab: lab,
                tandem: tandem,
                storePath: id == 2 && disk != nil ? disk!.path + "/store" : directory + "/device\(id)",
                logDirectory: directory,
                secretFile: secret,
                silenceLimitMs: silenceLimitMs
            )
        }
        self.devices = devices
        workload = Workload(history: history, devices: devices, seed: seed ^ 0x5EED, rate: rate)
    }

    var standby: UInt8 { active == 1 ? 2 : 1 }

    subscript(id: UInt8) -> Device { devices[id]! }

    func say(_ text: String) {
        let elapsed = (ContinuousClock.now - history.started).seconds
        let line = String(format: "  [round %d %7.2fs] ", number, elapsed) + text + "\n"
        FileHandle.standardOutput.write(Data(line.utf8))
    }

    func violated(_ rule: String, _ detail: String) {
        lock.withLock { violations.append(Checker.Violation(rule: rule, detail: detail)) }
        say("VIOLATION \(rule): \(detail)")
    }

    var allViolations: [Checker.Violation] { lock.withLock { violations } }

    /// Notes a fault injected.
    func fault(_ what: String, device: UInt8? = nil, _ fields: [String: String] = [:]) {
        lock.withLock { faults += 1 }
        history.note(what, device: device, fields)
        say("fault: \(what)\(device.map { " on device \($0)" } ?? "")")
    }

    // MARK: Devices

    func startBoth() async throws {
        try await self[1].start()
        try await self[2].start()
        workload.start()
        try await waitSynchronized("the pair started", since: history.started)
    }

    /// SIGKILL: the device dies with whatever it was doing.
    func kill(_ id: UInt8) {
        workload.setEnabled(id, false)
        self[id].kill()
        workload.died(id)
        fault("SIGKILL", device: id)
    }

    func restart(_ id: UInt8, extra: [String] = []) async throws {
        try await self[id].start(extra: extra)
        workload.setEnabled(id, true)
        say("device \(id) restarted on its store")
    }

    /// Promotes `id` (as VRRP's notify script would) and waits for its report.
    @discardableResult
    func promote(_ id: UInt8) async -> NodeLine? {
        let since = ContinuousClock.now
        self[id].send("promote")
        guard
            let line = await self[id].waitFor(
                since: since,
                within: .seconds(30),
                { $0.type == "promoted" || $0.type == "error" }
            ),
            line.type == "promoted"
        else {
            violated("a promotion completes", "device \(id) did not report a promotion within 30 s")
            return nil
        }
        history.note("promoted", device: id, line.fields)
        active = id
        say("device \(id) promoted: term \(line["term"] ?? "?"), \(line["taken_over"] ?? "?") users taken over")
        return line
    }

    /// Waits until both devices report synchronization, in a state line printed after `since` (a line from
    /// before a fault says nothing of the pair after it), then holds the history against the stores at that
    /// moment.
    func waitSynchronized(
        _ label: String,
        since: ContinuousClock.Instant,
        within limit: Duration = .seconds(90)
    ) async throws {
        let deadline = ContinuousClock.now + limit
        // A state line from before `since` counts once a status asked well after it (a device that was
        // stopped has noticed by then) still says synchronization.
        let settled = since + silenceLimit + .milliseconds(300)
        while ContinuousClock.now < deadline {
            var synchronized = true
            for device in devices.values {
                guard device.isRunning, let line = device.lastLine(where: { $0.type == "state" }),
                    line["state"] == "synchronization"
                else {
                    synchronized = false
                    break
                }
                if line.at < since {
                    guard ContinuousClock.now >= settled, await device.status()?["state"] == "synchronization" else {
                        synchronized = false
                        break
                    }
                }
            }
            if synchronized {
                let moment = ContinuousClock.now
                say("\(label): both devices report synchronization")
                await checkConverged(label, moment: moment)
                return
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        let states = devices.keys.sorted().map { "device \($0): \(self[$0].state ?? "no state")" }
        violated(
            "the pair returns to synchronization",
            "\(label): not within \(limit): \(states.joined(separator: "; "))"
        )
    }

    /// The online users of each store, read as an operator's tools read them (read-only, on the live store).
    func tables() throws -> [UInt8: Checker.Table] {
        var tables: [UInt8: Checker.Table] = [:]
        for (id, device) in devices {
            let reader = try StoreReader(path: device.storePath)
            tables[id] = Set(try reader.onlineSessions().compactMap { Self.number(of: $0.ip) })
        }
        return tables
    }

    /// The user number of an address the node gives its users (10.0.0.0 plus the number).
    static func number(of ip: IPAddress) -> Int? {
        guard let v4 = ip.ipv4 else { return nil }
        return Int(v4 - 0x0A00_0000)
    }

    var checker: Checker {
        var demotions: [UInt8: [(at: ContinuousClock.Instant, keptThrough: UInt64)]] = [:]
        for (id, device) in devices {
            demotions[id] =
                device.lines(since: history.started) { $0.type == "event" && $0["event"] == "demoted" }
                .map { ($0.at, UInt64($0["kept_through"] ?? "") ?? 0) } + repairs[id, default: []]
        }
        let operations = history.allOperations.filter { !damagedUsers.contains($0.number) }
        var checker = Checker(operations: operations, demotions: demotions)
        checker.replacements = replacements
        for (id, entries) in replacements { checker.demotions[id, default: []] += entries }
        return checker
    }

    /// Waits until each device applied the other's stream through where the other stood at `moment`:
    /// synchronization says the tables matched at a recent pair of positions, not that a device that fell
    /// behind (a full disk, say) has caught up.
    func waitCaughtUp(_ label: String) async -> Bool {
        var stood: [UInt8: UInt64] = [:]
        for id: UInt8 in [1, 2] { stood[id] = UInt64(await self[id].status()?["last_sequence"] ?? "") ?? 0 }
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline {
            var caughtUp = true
            for id: UInt8 in [1, 2] {
                let applied = UInt64(await self[id].status()?["applied_from_peer"] ?? "") ?? 0
                if applied < stood[id == 1 ? 2 : 1]! { caughtUp = false }
            }
            if caughtUp { return true }
            try? await Task.sleep(for: .milliseconds(50))
        }
        violated("the pair catches up", "\(label): a device did not apply its peer's stream through where it stood")
        return false
    }

    func checkConverged(_ label: String, moment: ContinuousClock.Instant) async {
        guard await waitCaughtUp(label) else { return }
        do {
            let tables = try self.tables().mapValues { $0.subtracting(damagedUsers) }
            lock.withLock { convergenceChecks += 1 }
            for violation in checker.checkConverged(tables, quietSince: moment - .seconds(2)) {
                violated(violation.rule, "\(label): \(violation.detail)")
            }
        } catch {
            violated("the stores can be read", "\(label): \(error)")
        }
    }

    // MARK: The end of a round

    /// Stops the load, lets the pair settle in synchronization, and holds the whole history against both
    /// stores; then `tandem diff` and `tandem log verify` must find nothing.
    func finish() async throws {
        await workload.stop()
        try await waitSynchronized("end of round", since: history.started)
        // The tables are compared once both devices have applied everything: wait for equal positions.
        let deadline = ContinuousClock.now + .seconds(30)
        var tables: [UInt8: Checker.Table] = [:]
        repeat {
            tables = try self.tables().mapValues { $0.subtracting(damagedUsers) }
            if tables[1] == tables[2] { break }
            try await Task.sleep(for: .milliseconds(100))
        } while ContinuousClock.now < deadline
        for violation in checker.checkFinal(tables) { violated(violation.rule, violation.detail) }
        let diff = try Shell.run([tandem, "diff", self[1].storePath, self[2].storePath], check: false)
        if diff.status != 0 {
            violated("tandem diff finds no difference after repair", diff.output.prefix(600).description)
        }
        for id: UInt8 in [1, 2] {
            let verify = try Shell.run([tandem, "log", "verify", "--path", self[id].storePath], check: false)
            if verify.status != 0 {
                violated("tandem log verify is clean", "device \(id): \(verify.output.prefix(600))")
            }
        }
        // No divergence was ever found: a digest mismatch is a bug (or a false alarm, as bad: what the pair
        // reports about itself must be true).
        for (id, device) in devices.sorted(by: { $0.key < $1.key }) {
            let mismatches = device.lines(since: history.started) {
                $0.type == "event" && $0["event"] == "digest-mismatch"
            }
            if !mismatches.isEmpty {
                violated(
                    "the two tables never diverge",
                    "device \(id) reported \(mismatches.count) digest mismatches (first at "
                        + "\(mismatches[0]["through"] ?? "?")/\(mismatches[0]["peer_through"] ?? "?"))"
                )
            }
        }
        let online = tables[1]?.count ?? 0
        say("end of round: \(online) users online on each device, \(history.allOperations.count) operations")
    }

    func tearDown() async {
        for device in devices.values { await device.quit(within: .seconds(10)) }
    }
}
