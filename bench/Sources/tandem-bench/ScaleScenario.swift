import ArgumentParser
import Foundation
import Synchronization

/// The `scale` scenario: the `store` scenario at several sizes, each in a process of its own, as a table and a
/// chart of how its cost grows with the number of users.
struct ScaleScenario: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scale",
        abstract: "Run the store scenario at several sizes, each in its own process, and chart how its cost grows.",
        discussion: """
            For each --users N, runs this executable's `store --users N --json` as a child
            process, so that each size's peak RSS is its own, and prints one row per size:
            each phase's rate and CPU time per event, the compacted disk per user and the
            peak RSS. The children's progress lines pass through on standard error. A size
            that fails is reported with its error, and the other sizes still run.
            --chart FILE writes an SVG of the rates and CPU time per event against users.

            Example:
              swift run -c release --package-path bench tandem-bench scale \\
                --chart docs/scale.svg
            """
    )

    @Option(name: .customLong("users"), help: "A size, in users online after the login phase; repeat for several.")
    var sizes: [Int] = [100_000, 1_000_000, 10_000_000]

    @Option(help: "Concurrent callers of the store scenario (default: its own).")
    var concurrency: Int?

    @Option(help: "Events per call of the store scenario (default: its own).")
    var batch: Int?

    @Option(help: "sync, no-meta-sync or no-sync (default: the store scenario's, sync).")
    var durability: String?

    @Option(help: "Write an SVG chart of the rates and CPU time per event to FILE.")
    var chart: String?

    @Flag(help: "Print one JSON object, with the store scenario's object of each size, instead of a table.")
    var json = false

    func run() throws {
        let executable = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
        var options: [String] = []
        if let concurrency { options += ["--concurrency", "\(concurrency)"] }
        if let batch { options += ["--batch", "\(batch)"] }
        if let durability { options += ["--durability", durability] }
        let command = (["tandem-bench"] + CommandLine.arguments.dropFirst()).joined(separator: " ")
        let date = ISO8601DateFormatter().string(from: Date())

        var runs: [ScaleRun] = []
        for (index, users) in sizes.enumerated() {
            progress("scale: \(users) users (\(index + 1) of \(sizes.count)): store --users \(users) --json")
            runs.append(try ScaleRun(users: users, executable: executable, options: options))
        }

        if json {
            let error = { (run: ScaleRun) in "{\"users\":\(run.users),\"error\":\(jsonString(run.error ?? ""))}" }
            let objects = runs.map { $0.line ?? error($0) }
            print(
                "{\"scenario\":\"scale\",\"command\":\(jsonString(command)),\"date\":\"\(date)\","
                    + "\"runs\":[\(objects.joined(separator: ","))]}"
            )
        } else {
            printTable(runs)
        }
        if let chart {
            try chartOf(runs, command: command, date: date).svg()
                .write(toFile: chart, atomically: true, encoding: .utf8)
            progress("scale: chart written to \(chart)")
        }
        if runs.contains(where: { $0.figures == nil }) { throw ExitCode.failure }
    }

    private func printTable(_ runs: [ScaleRun]) {
        let header = [
            "users", "login/s", "µs/event", "churn/s", "µs/event", "logout/s", "µs/event", "disk B/user",
            "peak RSS MiB", "anon MiB", "file MiB",
        ]
        var rows = [header]
        for run in runs {
            guard let f = run.figures else { continue }
            let whole = { (value: Double?) in value.map { Int($0.rounded()).formatted() } ?? "-" }
            let small = { (value: Double?) in value.map { String(format: "%.1f", $0) } ?? "-" }
            rows.append([
                f.users.formatted(), whole(f.loginEventsPerS), small(f.loginCpuUsPerEvent), whole(f.churnEventsPerS),
                small(f.churnCpuUsPerEvent), whole(f.logoutEventsPerS), small(f.logoutCpuUsPerEvent),
                small(f.diskBytesPerUser), whole(f.peakRssMib), whole(f.rssAnonMibAfterChurn),
                whole(f.rssFileMibAfterChurn),
            ])
        }
        let widths = header.indices.map { column in rows.map { $0[column].count }.max() ?? 0 }
        for row in rows {
            print(
                zip(row, widths).map { String(repeating: " ", count: $1 - $0.count) + $0 }.joined(separator: "  ")
            )
        }
        print("(anon and file: resident memory after the churn phase, the process's own and mapped LMDB pages)")
        for run in runs where run.figures == nil {
            print("\(run.users.formatted()) users failed: \(run.error ?? "")")
        }
    }

    private func chartOf(_ runs: [ScaleRun], command: String, date: String) -> SVGChart {
        let done = runs.compactMap(\.figures)
        func series(_ name: String, _ color: String, _ value: (StoreFigures) -> Double?) -> SVGChart.Series {
            SVGChart.Series(
                name: name,
                color: color,
                points: done.compactMap { figures in value(figures).map { (Double(figures.users), $0) } }
            )
        }
        let cores = ProcessInfo.processInfo.activeProcessorCount
        let memory = Double(ProcessInfo.processInfo.physicalMemory) / Double(1 << 30)
        return SVGChart(
            title: "Tandem store scenario: cost against users",
            xLabel: "users online (log scale)",
            panels: [
                SVGChart.Panel(
                    title: "events per second",
                    series: [
                        series("login", "#1f77b4", \.loginEventsPerS), series("churn", "#d62728", \.churnEventsPerS),
                        series("logout", "#2ca02c", \.logoutEventsPerS),
                    ]
                ),
                SVGChart.Panel(
                    title: "CPU µs per event",
                    series: [
                        series("login", "#1f77b4", \.loginCpuUsPerEvent),
                        series("churn", "#d62728", \.churnCpuUsPerEvent),
                        series("logout", "#2ca02c", \.logoutCpuUsPerEvent),
                    ]
                ),
            ],
            caption: [
                command,
                "\(date), one run per size, each in its own process, on \(cores) cores and "
                    + String(format: "%.0f GiB of memory", memory),
            ]
        )
    }
}

/// The figures of one `store --json` run that the table and the chart show.
private struct StoreFigures: Decodable {
    var users: Int
    var loginEventsPerS: Double?
    var loginCpuUsPerEvent: Double?
    var churnEventsPerS: Double?
    var churnCpuUsPerEvent: Double?
    var logoutEventsPerS: Double?
    var logoutCpuUsPerEvent: Double?
    var diskBytesPerUser: Double?
    var peakRssMib: Double?
    var rssAnonMibAfterChurn: Double?
    var rssFileMibAfterChurn: Double?
}

/// One child process of the store scenario: its JSON line and figures, or why it has none.
private struct ScaleRun {
    let users: Int
    var line: String?
    var figures: StoreFigures?
    var error: String?

    /// Runs `executable store --users <users> --json <options>` to its end, passing its standard error through.
    init(users: Int, executable: String, options: [String]) throws {
        self.users = users
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = ["store", "--users", "\(users)", "--json"] + options
        let output = Pipe()
        let errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        try process.run()

        let lastError = ErrorLine()
        let reader = errors.fileHandleForReading
        let forwarded = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            while true {
                let data = reader.availableData
                if data.isEmpty { break }
                FileHandle.standardError.write(data)
                lastError.take(String(decoding: data, as: UTF8.self))
            }
            forwarded.signal()
        }
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        forwarded.wait()

        line = text.split(separator: "\n").last.map(String.init)
        if process.terminationReason == .uncaughtSignal {
            // A killed child leaves its store (and perhaps its compacted copy) where the store scenario puts them.
            let store = NSTemporaryDirectory() + "tandem-bench-\(process.processIdentifier)"
            try? FileManager.default.removeItem(atPath: store)
            try? FileManager.default.removeItem(atPath: store + "-compacted")
            error = "killed by signal \(process.terminationStatus); its last line: \(lastError.line)"
        } else if process.terminationStatus != 0 {
            error = "exit status \(process.terminationStatus): \(lastError.line)"
        } else if let line {
            let decoder = JSONDecoder()
            decoder.keyDecodingStrategy = .convertFromSnakeCase
            do {
                figures = try decoder.decode(StoreFigures.self, from: Data(line.utf8))
            } catch {
                self.error = "unreadable output \(line): \(error)"
            }
        } else {
            error = "no output"
        }
        if error != nil { line = nil }
    }
}

/// The last line of a child's standard error that reads as an error ("Error: …", "Fatal error: …"), else its
/// last line.
private final class ErrorLine: Sendable {
    private let lines = Mutex<(error: String?, last: String)>((nil, ""))

    var line: String { lines.withLock { $0.error ?? $0.last } }

    func take(_ text: String) {
        for line in text.split(separator: "\n") where !line.allSatisfy(\.isWhitespace) {
            lines.withLock {
                $0.last = String(line)
                if line.lowercased().contains("error") { $0.error = String(line) }
            }
        }
    }
}

private func jsonString(_ text: String) -> String {
    (try? JSONEncoder().encode(text)).map { String(decoding: $0, as: UTF8.self) } ?? "\"\""
}
