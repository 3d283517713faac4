import ArgumentParser
import Foundation
import Inspection
import SessionStore
import Synchronization

/// The `inspect` scenario: `tandem log dump --json` and `tandem log verify` on a store of N users.
struct InspectScenario: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Dump (as JSON lines, to /dev/null) and verify a store of N online users and the log that made them.",
        discussion: """
            The store is built with N logins, 1,000 per call, its whole log kept (a hold at sequence 1), and
            closed. Then the code of `tandem log dump --json` writes every record to /dev/null
            (dump_events_per_s), and the code of `tandem log verify` checks the store (verify_s).
            --keep DIR leaves the store in DIR, to run the commands on it by hand.

            Example:
              swift run -c release --package-path bench tandem-bench inspect --users 1000000 --json
            """
    )

    @Option(help: "Online users, and records in the log.")
    var users = 1_000_000

    @Option(help: "Build the store in DIR and keep it (default: a temporary directory, removed).")
    var keep: String?

    @Flag(help: "Print one JSON object instead of a table.")
    var json = false

    func run() async throws {
        let directory = keep ?? NSTemporaryDirectory() + "tandem-bench-inspect-\(getpid())"
        defer { if keep == nil { try? FileManager.default.removeItem(atPath: directory) } }
        try? FileManager.default.removeItem(atPath: directory)
        var report = Report()
        report.add("scenario", "inspect")
        report.add("users", users)

        progress("building a store of \(users) users, keeping its whole log")
        var configuration = SessionStore.Configuration(deviceID: 1, portalGroup: "bench")
        configuration.expiryInterval = nil
        let store = try SessionStore.open(at: directory, configuration: configuration)
        try await store.holdLog("inspect", from: 1)
        let next = Atomic<Int>(0)
        let total = users
        _ = try await runCallers(16) { _, _ in
            while true {
                let first = next.wrappingAdd(1000, ordering: .relaxed).oldValue
                guard first < total else { return }
                _ = try await store.login(contentsOf: (first..<min(first + 1000, total)).map(BenchSession.make))
            }
        }
        await store.close()

        let reader = try StoreReader(path: directory)
        progress("dump --json to /dev/null")
        let sink = FileHandle(forWritingAtPath: "/dev/null")!
        var phase = PhaseClock()
        let dumped = try dumpLog(reader, filter: LogFilter(), json: true) { sink.write(Data($0)) }
        report.add("dump_events", dumped)
        report.addPhase("dump_events", events: dumped, clock: phase)

        progress("verify")
        phase = PhaseClock()
        let verification = try verifyStore(reader)
        report.add("verify_s", phase.seconds)
        report.add("verify_records", verification.records)
        report.add("verify_cpu_us_per_record", phase.cpuMicroseconds(per: verification.records))
        report.add("verify_problems", verification.problems.count)
        report.add("verify_full_replay", verification.fullReplay ? "yes" : "no")
        report.add("peak_rss_mib", peakRSSMiB())
        report.print(json: json)
        if !verification.problems.isEmpty { throw ExitCode(1) }
    }
}
