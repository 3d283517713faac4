import Foundation

/// A fault and what the pair must show for it, run inside a round with the load going on.
enum Scenario: String, CaseIterable, Sendable {
    /// The active device SIGKILLed at a random moment of a storm, the standby promoted, the killed device
    /// restarted at once or after a delay while the new master takes logins and logouts; then the same the
    /// other way (fail-back).
    case kill
    /// The standby stopped (SIGSTOP) past the dead-peer timeout, then resumed.
    case pause
    /// The failover veth taken down on one side, then up again.
    case linkDown = "link-down"
    /// Every packet of the failover link dropped both ways by nftables inside one namespace, the link up.
    case drop
    /// Both devices promoted while the link is cut; the link repaired.
    case splitBrain = "split-brain"
    /// Device 2's disk full while it streams, and while it takes a full resynchronization.
    case diskFull = "disk-full"
    /// One byte of the standby's users table, then of a record of its log, corrupted while it is down.
    case corrupt

    /// Whether the scenario cuts the link, which only namespaces allow.
    var needsNamespaces: Bool { [.linkDown, .drop, .splitBrain, .diskFull].contains(self) }

    func run(in round: Round) async throws {
        switch self {
        case .kill: try await Self.kill(round)
        case .pause: try await Self.pause(round)
        case .linkDown: try await Self.cut(round, drop: false)
        case .drop: try await Self.cut(round, drop: true)
        case .splitBrain: try await Self.splitBrain(round)
        case .diskFull: try await DiskScenarios.run(round)
        case .corrupt: try await CorruptionScenarios.run(round)
        }
    }

    // MARK: kill

    private static func kill(_ round: Round) async throws {
        for leg in ["failover", "fail-back"] {
            let victim = round.active
            let survivor = round.standby
            let storm = StormThread(round.workload, on: victim, count: 20_000, .replicated)
            let moment = round.generator.milliseconds(150...1500)
            try await Task.sleep(for: moment)
            let killed = ContinuousClock.now
            round.kill(victim)
            round.say("\(leg): device \(victim) killed \(moment) into a storm")
            // The survivor notices the silence within the dead-peer timeout, and VRRP promotes it. The report
            // is judged by when the device made it; reading its line may take longer on a loaded machine.
            let noticed = await round[survivor].waitFor(since: killed, within: round.silenceLimit + .seconds(10)) {
                $0.type == "state" && ($0["state"] ?? "").hasPrefix("independence")
            }
            await storm.finished()
            if let noticed, noticed.reportedAt - killed > round.silenceLimit + .seconds(3) {
                round.violated(
                    "the survivor reports independence",
                    "device \(survivor) reported it \(noticed.reportedAt - killed) after the kill (read after "
                        + "\(noticed.at - killed)), past the dead-peer timeout \(round.silenceLimit) and 3 s of slack"
                )
            } else if noticed == nil {
                round.violated(
                    "the survivor reports independence",
                    "device \(survivor) did not within the dead-peer timeout"
                )
            }
            await round.promote(survivor)
            if round.generator.chance(0.5) {
                let delay = round.generator.milliseconds(500...3000)
                round.say("the new master runs alone for \(delay)")
                try await Task.sleep(for: delay)
            }
            let restarted = ContinuousClock.now
            try await round.restart(victim)
            if await round[victim].waitFor(since: restarted, within: .seconds(30), { $0["event"] == "demoted" }) == nil
            {
                round.violated("the returning device steps down", "device \(victim) reported no demotion")
            }
            try await round.waitSynchronized("\(leg): device \(victim) rejoined", since: restarted)
        }
    }

    // MARK: pause

    private static func pause(_ round: Round) async throws {
        let paused = round.standby
        let other = round.active
        let since = ContinuousClock.now
        round.workload.setEnabled(paused, false)
        round[paused].pause()
        round.fault("SIGSTOP", device: paused)
        try await expectIndependence(round, on: [other], since: since, reason: "fell silent")
        try await Task.sleep(for: round.generator.milliseconds(500...1500))
        try await expectWritesDuringCut(round, on: [other], since: since)
        let resumed = ContinuousClock.now
        round[paused].resume()
        round.workload.setEnabled(paused, true)
        round.say("device \(paused) resumed (SIGCONT)")
        try await round.waitSynchronized("device \(paused) resumed", since: resumed)
    }

    // MARK: link cut

    private static func cut(_ round: Round, drop: Bool) async throws {
        let side: UInt8 = round.generator.chance(0.5) ? 1 : 2
        let before = await counters(round)
        if drop {
            try round.lab.drop(side)
            round.fault("nftables drop of the failover link, both ways", device: side)
        } else {
            try round.lab.linkDown(side)
            round.fault("failover veth down", device: side)
        }
        // The cut holds from when the command returned: on a loaded machine `nft` or `ip` can take a second,
        // and the writes acknowledged meanwhile were acknowledged by a peer that still heard them.
        let since = ContinuousClock.now
        try await expectIndependence(round, on: [1, 2], since: since, reason: "fell silent")
        try await Task.sleep(for: round.generator.milliseconds(800...2500))
        try await expectWritesDuringCut(round, on: [1, 2], since: since)
        let repaired = ContinuousClock.now
        if drop { try round.lab.undrop(side) } else { try round.lab.linkUp(side) }
        round.say("the failover link is repaired")
        try await round.waitSynchronized(drop ? "the drop ended" : "the veth is up again", since: repaired)
        // The log held everything for the peer: each side resumed, no snapshot was needed.
        let after = await counters(round)
        for id: UInt8 in [1, 2] where after[id, default: 0] != before[id, default: 0] {
            round.violated(
                "a short cut resumes from the acknowledged position",
                "device \(id) sent \(after[id, default: 0] - before[id, default: 0]) snapshots though its log held everything"
            )
        }
    }

    /// Snapshots sent, per device (the `status` counter).
    private static func counters(_ round: Round) async -> [UInt8: Int] {
        var counts: [UInt8: Int] = [:]
        for id: UInt8 in [1, 2] { counts[id] = Int(await round[id].status()?["snapshots_sent"] ?? "") ?? 0 }
        return counts
    }

    // MARK: split brain

    private static func splitBrain(_ round: Round) async throws {
        let since = ContinuousClock.now
        try round.lab.linkDown(1)
        round.fault("failover veth down, then both devices promoted", device: 1)
        try await expectIndependence(round, on: [1, 2], since: since, reason: "fell silent")
        let one = await round.promote(1)
        let two = await round.promote(2)
        try await Task.sleep(for: round.generator.milliseconds(1000...2500))
        // The moment is taken before the repair: the loser may step down within microseconds of it.
        let repaired = ContinuousClock.now
        try round.lab.linkUp(1)
        // Both promoted once from the same term: equal terms, and the lower device ID (1) wins.
        let terms = [one?["term"], two?["term"]].compactMap { $0.flatMap { UInt32($0) } }
        let loser: UInt8 = terms.count == 2 && terms[0] < terms[1] ? 1 : 2
        let winner: UInt8 = loser == 1 ? 2 : 1
        guard
            let demotion = await round[loser].waitFor(
                since: repaired,
                within: .seconds(30),
                { $0["event"] == "demoted" }
            )
        else {
            round.violated("split brain: the documented rule decides", "device \(loser) never stepped down")
            return
        }
        if round[winner].lines(since: repaired, where: { $0["event"] == "demoted" }).first != nil {
            round.violated("split brain: only one device steps down", "device \(winner) stepped down too")
        }
        // What the loser did alone is counted: every local write it acknowledged during the split.
        let during = round.history.allOperations.filter { operation in
            guard operation.device == loser, operation.invoked >= since, operation.invoked < repaired,
                case .ok = operation.outcome
            else { return false }
            return true
        }
        let discarded = Int(demotion["discarded_events"] ?? "") ?? -1
        if discarded < during.count {
            round.violated(
                "split brain: the loser's discarded events are counted",
                "device \(loser) reported \(discarded) discarded events, but acknowledged \(during.count) writes alone"
            )
        }
        round.active = winner
        round.say("split brain: device \(loser) stepped down, discarding \(discarded) events")
        try await round.waitSynchronized("split brain repaired", since: repaired)
    }

    // MARK: Shared expectations

    /// Every device in `ids` reports independence with `reason` within the dead-peer timeout.
    static func expectIndependence(
        _ round: Round,
        on ids: [UInt8],
        since: ContinuousClock.Instant,
        reason: String
    ) async throws {
        for id in ids {
            let line = await round[id].waitFor(since: since, within: round.silenceLimit + .seconds(10)) {
                $0.type == "state" && ($0["state"] ?? "").contains(reason)
            }
            if let line, line.reportedAt - since > round.silenceLimit + .seconds(2) {
                round.violated(
                    "a cut is reported within the dead-peer timeout",
                    "device \(id) reported independence (\(reason)) \(line.reportedAt - since) after the cut (read "
                        + "after \(line.at - since)), past \(round.silenceLimit + .seconds(2))"
                )
            } else if line == nil {
                round.violated(
                    "a cut is reported within the dead-peer timeout",
                    "device \(id) did not report independence (\(reason)) within \(round.silenceLimit + .seconds(2)); "
                        + "its state: \(round[id].state ?? "none")"
                )
            }
        }
    }

    /// While the peer cannot be reached, `local` writes go on and `replicated` ones fail with `not-replicated`.
    static func expectWritesDuringCut(_ round: Round, on ids: [UInt8], since: ContinuousClock.Instant) async throws {
        // Writes sent after the cut was noticed, and answered.
        let noticed = since + round.silenceLimit + .milliseconds(200)
        try await Task.sleep(until: noticed + .milliseconds(1500), clock: .continuous)
        for id in ids {
            let ops = round.history.allOperations.filter {
                $0.device == id && $0.invoked >= noticed && $0.completed != nil
            }
            let local = ops.filter { $0.durability == .local && $0.kind == .login }
            let replicated = ops.filter { $0.durability == .replicated }
            if !local.isEmpty && !local.contains(where: { if case .ok = $0.outcome { true } else { false } }) {
                round.violated(
                    "local writes go on during a cut",
                    "device \(id): none of \(local.count) local logins succeeded"
                )
            }
            for op in replicated {
                if case .ok = op.outcome {
                    round.violated(
                        "replicated writes fail during a cut",
                        "device \(id): \(op.kind) of user \(op.number) was acknowledged as replicated with no peer"
                    )
                }
            }
            if !replicated.contains(where: { $0.outcome == .failed(kind: "not-replicated") }) && !replicated.isEmpty {
                round.violated(
                    "replicated writes fail with not-replicated during a cut",
                    "device \(id): \(replicated.count) replicated writes, none failed with not-replicated"
                )
            }
        }
    }
}

/// A storm of logins sent from a thread of its own: writing thousands of commands blocks while the node reads.
final class StormThread: @unchecked Sendable {
    // `@unchecked Sendable`: `done` is a semaphore; the rest is set in `init`.
    private let done = DispatchSemaphore(value: 0)

    init(_ workload: Workload, on device: UInt8, count: Int, _ durability: History.Durability) {
        Thread { [done] in
            workload.storm(on: device, count: count, durability)
            done.signal()
        }.start()
    }

    /// Waits for the storm to be sent, without holding a thread of the task pool.
    func finished() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            DispatchQueue.global().async { [done] in
                done.wait()
                continuation.resume()
            }
        }
    }
}
