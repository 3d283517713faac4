import ArgumentParser
import Foundation

@main
struct TandemFaults: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tandem-faults",
        abstract: "Drive a pair of real `tandem node` processes through faults and check the promise.",
        discussion: """
            Each round starts a fresh pair, runs logins and logouts on both devices (some acknowledged \
            locally, some only once the peer has them), and injects the faults of the chosen scenarios at \
            random moments. Every operation and its answer is kept in a history (history.jsonl in the \
            round's directory). A checker holds the history against both stores after each fault the pair \
            recovers from and at the end of the round: every write acknowledged as replicated is on the \
            surviving devices, every local write on its own device (unless a demotion reported it \
            discarded), no user logged out on either device is online anywhere, the two tables agree, and \
            `tandem diff` and `tandem log verify` find nothing.

            The devices run in two network namespaces joined by a veth pair the run creates and removes \
            (needs root, iproute2 and nftables); with --loopback they run on 127.0.0.1 and 127.0.0.2 and the \
            scenarios that cut the link are skipped.

            The seed is printed first; the same seed replays the same faults at the same moments.

            Example:
              swift build && .build/debug/tandem-faults --rounds 3
              .build/debug/tandem-faults --rounds 1 --scenarios kill,split-brain --seed 42
            """
    )

    @Option(help: "How many rounds to run.")
    var rounds: Int = 1

    @Option(help: "The seed of the random timing (printed when not given).")
    var seed: UInt64?

    @Option(
        help: "The scenarios, comma-separated, in order: \(Scenario.allCases.map(\.rawValue).joined(separator: ", ")).",
        transform: { text in
            try text.split(separator: ",").map { name in
                guard let scenario = Scenario(rawValue: String(name)) else {
                    throw ValidationError(
                        "unknown scenario '\(name)': \(Scenario.allCases.map(\.rawValue).joined(separator: ", "))"
                    )
                }
                return scenario
            }
        }
    )
    var scenarios: [Scenario] = Scenario.allCases

    @Option(help: "Operations per second on each device, besides the storms.")
    var rate: Int = 200

    @Option(help: "The dead-peer timeout of the nodes, in milliseconds.")
    var silenceLimit: Int = 600

    @Option(help: "Where the rounds keep their stores, histories and logs (default: a new directory in /tmp).")
    var directory: String?

    @Flag(help: "Keep each round's directory, also when it passed.")
    var keep = false

    @Flag(help: "Run on loopback addresses instead of network namespaces (no link cuts).")
    var loopback = false

    @Flag(help: "Print the summary as one JSON object.")
    var json = false

    func run() async throws {
        signal(SIGPIPE, SIG_IGN)
        let seed = self.seed ?? UInt64.random(in: 0...UInt64(UInt32.max))
        let tandem = try Self.tandemExecutable()
        let topology: Lab.Topology = loopback || getuid() != 0 ? .loopback : .namespaces
        let chosen = scenarios.filter { topology == .namespaces || !$0.needsNamespaces }
        let skipped = scenarios.filter { !chosen.contains($0) }
        let base = directory ?? NSTemporaryDirectory() + "tandem-faults-\(getpid())"
        try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
        emit(
            "tandem-faults: seed \(seed), \(rounds) rounds, scenarios \(chosen.map(\.rawValue).joined(separator: ",")), \(topology)"
        )
        if !skipped.isEmpty {
            emit("  skipped (they need network namespaces and root): \(skipped.map(\.rawValue).joined(separator: ","))")
        }
        emit(
            "  replay with: tandem-faults --seed \(seed) --rounds \(rounds) --scenarios \(chosen.map(\.rawValue).joined(separator: ","))\(topology == .loopback ? " --loopback" : "")"
        )

        var summary = Summary(seed: seed)
        let started = ContinuousClock.now
        for number in 1...max(rounds, 1) {
            let roundSeed = seed &+ UInt64(number) &* 0x9E37_79B9
            let directory = base + "/round-\(number)"
            let lab = try Lab(
                topology: topology,
                tag: String(format: "%04x", (getpid() + Int32(number)) & 0xFFFF),
                port: 7400 + number % 200
            )
            defer { lab.tearDown() }
            let disk =
                chosen.contains(.diskFull) ? try SmallDisk(path: directory + "/disk2", megabytes: 256) : nil
            defer { disk?.unmount() }
            let round = try Round(
                number: number,
                directory: directory,
                lab: lab,
                tandem: tandem,
                seed: roundSeed,
                rate: rate,
                silenceLimitMs: silenceLimit,
                disk: disk,
                verbose: false
            )
            emit("round \(number): \(directory)")
            do {
                try await round.startBoth()
                var order = chosen
                var generator = SeededGenerator(seed: roundSeed)
                order.shuffle(using: &generator)
                for scenario in order {
                    round.say("scenario \(scenario.rawValue)")
                    try await scenario.run(in: round)
                }
                try await round.finish()
            } catch {
                round.violated("the round runs to its end", "\(error)")
            }
            await round.tearDown()
            summary.add(round)
            let violations = round.allViolations
            emit("round \(number): \(violations.isEmpty ? "passed" : "FAILED with \(violations.count) violations")")
            disk?.unmount()
            if violations.isEmpty && !keep { try? FileManager.default.removeItem(atPath: directory) }
        }
        summary.seconds = (ContinuousClock.now - started).seconds
        summary.print(json: json)
        if summary.violations > 0 { throw ExitCode(1) }
    }

    /// The `tandem` executable built beside this one.
    static func tandemExecutable() throws -> String {
        let me = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        let path = me.deletingLastPathComponent().appendingPathComponent("tandem").path
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw ValidationError("no tandem executable at \(path): build it first (`swift build`)")
        }
        return path
    }
}

/// What the rounds came to.
struct Summary {
    var seed: UInt64
    var rounds = 0
    var operations = 0
    var acknowledged = 0
    var faults = 0
    var convergenceChecks = 0
    var violations = 0
    var seconds = 0.0
    var failures: [String] = []

    mutating func add(_ round: Round) {
        rounds += 1
        let operations = round.history.allOperations
        self.operations += operations.count
        acknowledged += operations.filter { if case .ok = $0.outcome { true } else { false } }.count
        faults += round.faults
        convergenceChecks += round.convergenceChecks
        violations += round.allViolations.count
        failures += round.allViolations.prefix(20).map { "round \(round.number): \($0)" }
    }

    func print(json: Bool) {
        if json {
            let object: [String: Any] = [
                "seed": seed, "rounds": rounds, "operations": operations, "acknowledged": acknowledged,
                "faults": faults, "convergence_checks": convergenceChecks, "violations": violations,
                "seconds": seconds, "failures": failures,
            ]
            if let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) {
                emit(String(decoding: data, as: UTF8.self))
            }
            return
        }
        emit(
            "tandem-faults: \(rounds) rounds, \(operations) operations (\(acknowledged) acknowledged), \(faults) faults, "
                + "\(convergenceChecks) convergence checks, \(violations) violations, "
                + String(format: "%.0f s", seconds)
        )
        for failure in failures { emit("  \(failure)") }
        emit(violations == 0 ? "every acknowledged write survived; no logged-out user came back" : "FAILED")
    }
}

/// Writes a line to standard output at once (the round's progress lines are written the same way).
func emit(_ line: String) { FileHandle.standardOutput.write(Data((line + "\n").utf8)) }
