import ArgumentParser
import Foundation
import SessionStore

/// The `crash` scenario: how long a store takes to open after a SIGKILL, under the checkpoint settings given.
///
/// An open after a crash replays the log after the last checkpoint, at most `maxChangesInMemory` changes: the
/// larger the checkpoints (cheaper per event, see the store scenario's checkpoint options), the longer that
/// replay. This scenario measures it.
struct CrashScenario: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "crash",
        abstract: "Kill the store scenario with SIGKILL during its churn, then time the open that replays its log.",
        discussion: """
            Runs this executable's `store --users N --path DIR --keep`, with the checkpoint options
            given, as a child process; sends it SIGKILL --kill-after seconds into its churn phase;
            then opens the store in DIR with the same settings and times the open and a first
            lookup (reopen_ms, reopen_cpu_ms). The open replays the log after the last checkpoint:
            replayed_records says how many records, replayed_records_per_s how fast, and users how
            many users are online after it. The store's files are in the page cache, as after a
            crash of the process alone.

            Example:
              swift run -c release --package-path bench tandem-bench crash --users 1000000 \\
                --checkpoint-interval 4 --checkpoint-threshold 800000 --max-changes-in-memory 1600000
            """
    )

    @Option(help: "Users online after the store scenario's login phase.")
    var users = 1_000_000

    @Option(help: "Seconds into the churn phase at which the store scenario is killed.")
    var killAfter = 3.0

    @OptionGroup var checkpoint: CheckpointOptions

    @Option(help: "The directory to build the store in (default: a new temporary directory, removed at the end).")
    var path: String?

    @Flag(help: "Print one JSON object instead of a table.")
    var json = false

    func run() async throws {
        guard killAfter > 0 else { throw ValidationError("--kill-after must be above 0") }
        let directory = path ?? NSTemporaryDirectory() + "tandem-bench-crash-\(getpid())"
        defer {
            if path == nil {
                try? FileManager.default.removeItem(atPath: directory)
                try? FileManager.default.removeItem(atPath: directory + "-compacted")
            }
        }
        try? FileManager.default.removeItem(atPath: directory)
        var configuration = SessionStore.Configuration(deviceID: 1, portalGroup: "bench")
        try checkpoint.apply(to: &configuration)
        let settings = checkpoint.arguments

        progress("crash: store --users \(users) \(settings.joined(separator: " ")), killed \(killAfter) s into churn")
        try killDuringChurn(
            arguments: ["store", "--users", "\(users)", "--path", directory, "--keep", "--json"] + settings
        )

        progress("crash: opening the killed store")
        let clock = PhaseClock()
        let store = try SessionStore.open(at: directory, configuration: configuration)
        _ = try store.session(for: BenchSession.address(users / 2))
        let seconds = clock.seconds
        let cpu = clock.cpu
        let status = store.logStatus
        let replayed = Int(status.lastSequence - status.checkpointSequence)
        var report = Report()
        report.add("scenario", "crash")
        report.add("users_before", users)
        let interval = configuration.checkpointInterval.components
        report.add("checkpoint_interval_s", Double(interval.seconds) + Double(interval.attoseconds) / 1e18)
        report.add("checkpoint_threshold", configuration.checkpointThreshold)
        report.add("max_changes_in_memory", configuration.maxChangesInMemory)
        report.add("replayed_records", replayed)
        report.add("reopen_ms", seconds * 1000)
        report.add("reopen_cpu_ms", cpu * 1000)
        report.add("replayed_records_per_s", Double(replayed) / seconds)
        report.add("users", store.count)
        await store.close()
        report.print(json: json)
    }

    /// Runs this executable with `arguments`, passing its standard error through, and sends it SIGKILL
    /// `killAfter` seconds after it reports its churn phase.
    private func killDuringChurn(arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(
            fileURLWithPath: try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
        )
        process.arguments = arguments
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let churning = DispatchSemaphore(value: 0)
        let forwarded = DispatchSemaphore(value: 0)
        let reader = errors.fileHandleForReading
        Thread.detachNewThread {
            var signalled = false
            while true {
                let data = reader.availableData
                if data.isEmpty { break }
                FileHandle.standardError.write(data)
                if !signalled, String(decoding: data, as: UTF8.self).contains("churn:") {
                    signalled = true
                    churning.signal()
                }
            }
            if !signalled { churning.signal() }
            forwarded.signal()
        }
        churning.wait()
        Thread.sleep(forTimeInterval: killAfter)
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        forwarded.wait()
        guard process.terminationReason == .uncaughtSignal, process.terminationStatus == SIGKILL else {
            throw ValidationError(
                "the store scenario ended (status \(process.terminationStatus)) before it was killed; "
                    + "raise --users or lower --kill-after"
            )
        }
    }
}
