import Foundation
import Histogram

/// One scenario's figures, printed as a table for people or as one JSON object per line.
struct Report {
    var fields: [(String, Value)] = []

    enum Value {
        case int(Int)
        case double(Double)
        case string(String)

        var json: String {
            switch self {
            case .int(let value): "\(value)"
            case .double(let value): value.isFinite ? String(format: "%.3f", value) : "null"
            case .string(let value): "\"\(value.replacingOccurrences(of: "\"", with: "\\\""))\""
            }
        }

        var text: String {
            switch self {
            case .int(let value): value.formatted()
            case .double(let value): value >= 1000 ? String(format: "%.0f", value) : String(format: "%.3f", value)
            case .string(let value): value
            }
        }
    }

    mutating func add(_ name: String, _ value: Int) { fields.append((name, .int(value))) }
    mutating func add(_ name: String, _ value: Double) { fields.append((name, .double(value))) }
    mutating func add(_ name: String, _ value: String) { fields.append((name, .string(value))) }

    func print(json: Bool) {
        if json {
            Swift.print("{" + fields.map { "\"\($0.0)\":\($0.1.json)" }.joined(separator: ",") + "}")
        } else {
            let width = fields.map(\.0.count).max() ?? 0
            for (name, value) in fields {
                Swift.print(name.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + value.text)
            }
        }
    }
}

/// Latencies of acknowledged writes, in nanoseconds.
///
/// Each caller keeps its calls' latencies as they come, and a histogram of them is built only when a figure is
/// asked, after the phase. A histogram per caller (a quarter of a megabyte of counts each, for hundreds of
/// callers, zeroed and then merged) cost the phase's own CPU and memory figures about 2% and 110 MiB.
struct Latencies: Sendable {
    private struct Sample {
        var nanoseconds: UInt64
        var count: UInt64
    }
    private var samples: [Sample] = []

    mutating func record(_ nanoseconds: UInt64, count: Int = 1) {
        guard count > 0 else { return }
        samples.append(Sample(nanoseconds: max(nanoseconds, 1), count: UInt64(count)))
    }
    mutating func record(_ duration: Duration) {
        record(
            UInt64(duration.components.seconds) * 1_000_000_000
                + UInt64(duration.components.attoseconds / 1_000_000_000)
        )
    }
    mutating func add(_ other: Latencies) { samples.append(contentsOf: other.samples) }

    /// Every latency recorded, each weighted by the events of its call; built on each call, so a caller that
    /// reads several figures takes it once.
    var histogram: Histogram<UInt64> {
        var histogram = Histogram<UInt64>(highestTrackableValue: 60_000_000_000, numberOfSignificantValueDigits: .three)
        for sample in samples { _ = histogram.record(sample.nanoseconds, count: sample.count) }
        return histogram
    }

    func milliseconds(atPercentile percentile: Double) -> Double {
        histogram.milliseconds(atPercentile: percentile)
    }
}

extension Histogram<UInt64> {
    /// The latency in nanoseconds at `percentile`, in milliseconds.
    func milliseconds(atPercentile percentile: Double) -> Double {
        Double(valueAtPercentile(percentile)) / 1_000_000
    }
}

/// Progress lines on standard error, so standard output stays clean for `--json`.
func progress(_ message: String) {
    FileHandle.standardError.write(Data((message + "\n").utf8))
}

/// The peak resident set size of this process, in MiB.
func peakRSSMiB() -> Double { statusMiB("VmHWM:") }

/// A memory figure from /proc/self/status (such as `RssAnon:` or `RssFile:`), in MiB.
func statusMiB(_ field: String) -> Double {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return .nan }
    for line in status.split(separator: "\n") where line.hasPrefix(field) {
        let kilobytes = line.split(separator: " ").compactMap { Double($0) }.first ?? .nan
        return kilobytes / 1024
    }
    return .nan
}

func nanosecondsNow() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

func seconds(since start: UInt64) -> Double { Double(nanosecondsNow() - start) / 1e9 }

/// A phase's start on the wall clock and in this process's CPU time (user and system, every thread), for its
/// rate and for what it cost: CPU time per event says what the code costs even when something else shares the
/// machine, which a rate does not.
struct PhaseClock {
    let startedAt = nanosecondsNow()
    let cpuAtStart = cpuSeconds()
    let threadsAtStart = ThreadCPU.read()

    /// Wall-clock seconds since the phase began.
    var seconds: Double { Double(nanosecondsNow() - startedAt) / 1e9 }

    /// CPU seconds this process used since the phase began.
    var cpu: Double { cpuSeconds() - cpuAtStart }

    /// CPU microseconds per event of the phase.
    func cpuMicroseconds(per events: Int) -> Double { Self.microseconds(cpu, per: events) }

    /// `seconds` of CPU time per event of `events`, in microseconds.
    static func microseconds(_ seconds: Double, per events: Int) -> Double { seconds / Double(max(events, 1)) * 1e6 }
}

extension Report {
    /// Adds the rate of a phase of `events` events, `<name>_per_s`, and its CPU time per event: for
    /// `login_events` they are `login_events_per_s` and `login_cpu_us_per_event`, for `replicated_logins` of
    /// unit `login` they are `replicated_logins_per_s` and `replicated_cpu_us_per_login`.
    ///
    /// It also adds the store threads' share (``addThreadCPU(_:events:clock:unit:)``).
    mutating func addPhase(_ name: String, events: Int, clock: PhaseClock, unit: String = "event") {
        addPhase(name, events: events, seconds: clock.seconds, cpuSeconds: clock.cpu, unit: unit)
        addThreadCPU(Self.stem(name, unit: unit), events: events, clock: clock, unit: unit)
    }

    /// Adds the CPU time per event of the store's writer and checkpointer threads (of every store in the
    /// process) since `clock` began: `churn_writer_cpu_us_per_event` and `churn_checkpointer_cpu_us_per_event`
    /// for the stem `churn`. Nothing when no store thread ran.
    mutating func addThreadCPU(_ stem: String, events: Int, clock: PhaseClock, unit: String = "event") {
        let threads = ThreadCPU.read().since(clock.threadsAtStart)
        let writer = threads.seconds(of: ThreadCPU.writer)
        let checkpointer = threads.seconds(of: ThreadCPU.checkpointer)
        guard writer > 0 || checkpointer > 0 else { return }
        add("\(stem)_writer_cpu_us_per_\(unit)", PhaseClock.microseconds(writer, per: events))
        add("\(stem)_checkpointer_cpu_us_per_\(unit)", PhaseClock.microseconds(checkpointer, per: events))
    }

    /// Adds the rate and CPU time per event of a phase measured already: `seconds` of wall clock and
    /// `cpuSeconds` of CPU time for `events` events, named as ``addPhase(_:events:clock:unit:)`` names them.
    mutating func addPhase(_ name: String, events: Int, seconds: Double, cpuSeconds: Double, unit: String = "event") {
        add("\(name)_per_s", Double(events) / seconds)
        add("\(Self.stem(name, unit: unit))_cpu_us_per_\(unit)", PhaseClock.microseconds(cpuSeconds, per: events))
    }

    /// `name` without its plural unit: `login` for `login_events`.
    private static func stem(_ name: String, unit: String) -> String {
        let plural = "_\(unit)s"
        return name.hasSuffix(plural) ? String(name.dropLast(plural.count)) : name
    }
}

/// The CPU time this process has used, user and system, in seconds.
func cpuSeconds() -> Double {
    var usage = rusage()
    getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
    return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec)
        + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
}

/// The CPU time of each of this process's threads, from `/proc/self/task/*/schedstat` (nanoseconds on a CPU, not
/// rounded to the clock tick as `stat`'s are), with the thread's name, so that a phase's cost can be split by the
/// store's named threads.
struct ThreadCPU {
    /// The name of the store's writer thread.
    static let writer = "tandem-writer"
    /// The name of the store's checkpointer thread.
    static let checkpointer = "tandem-checkpt"

    /// Nanoseconds on a CPU and name, by thread ID.
    var threads: [Int: (name: String, nanoseconds: UInt64)] = [:]

    static func read() -> ThreadCPU {
        var cpu = ThreadCPU()
        guard let ids = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task") else { return cpu }
        for id in ids {
            guard let tid = Int(id),
                let schedstat = try? String(contentsOfFile: "/proc/self/task/\(id)/schedstat", encoding: .utf8),
                let nanoseconds = schedstat.split(separator: " ").first.flatMap({ UInt64($0) }),
                let name = try? String(contentsOfFile: "/proc/self/task/\(id)/comm", encoding: .utf8)
            else { continue }
            cpu.threads[tid] = (name.trimmingCharacters(in: .newlines), nanoseconds)
        }
        return cpu
    }

    /// The CPU time each thread used after `start`: a thread started since counts whole, one that ended since
    /// counts for nothing.
    func since(_ start: ThreadCPU) -> ThreadCPU {
        var delta = ThreadCPU()
        for (tid, thread) in threads {
            let before = start.threads[tid].map { $0.name == thread.name ? $0.nanoseconds : 0 } ?? 0
            delta.threads[tid] = (thread.name, thread.nanoseconds - min(before, thread.nanoseconds))
        }
        return delta
    }

    /// The CPU seconds of the threads named `name`.
    func seconds(of name: String) -> Double {
        Double(threads.values.reduce(UInt64(0)) { $0 + ($1.name == name ? $1.nanoseconds : 0) }) / 1e9
    }
}
