import Foundation
import Synchronization

/// One line a `tandem node --json` printed: its `type` and its other fields, with when it was read.
struct NodeLine: Sendable {
    var type: String
    var fields: [String: String]
    /// When the line was read.
    var at: ContinuousClock.Instant

    subscript(key: String) -> String? { fields[key] }

    /// When the device reported it (its `at_ns`, on the machine's monotonic clock), for `state` and `event`
    /// lines; otherwise when it was read. On a loaded machine a line can be read well after it was written.
    var reportedAt: ContinuousClock.Instant {
        guard let text = fields["at_ns"], let nanoseconds = UInt64(text) else { return at }
        return MonotonicAnchor.shared.instant(nanoseconds)
    }
}

/// Maps the monotonic clock's nanoseconds, in which `tandem node` stamps its reports, to this process's
/// `ContinuousClock` (both run at the same rate on one machine).
struct MonotonicAnchor: Sendable {
    let instant: ContinuousClock.Instant
    let nanoseconds: UInt64

    static let shared = MonotonicAnchor()

    init() {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        instant = .now
        nanoseconds = UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
    }

    func instant(_ stamp: UInt64) -> ContinuousClock.Instant {
        stamp >= nanoseconds
            ? instant + .nanoseconds(Int64(stamp - nanoseconds)) : instant - .nanoseconds(Int64(nanoseconds - stamp))
    }
}

/// One device of the pair: a `tandem node` process on its own store, restarted on the same store after a
/// fault. Its answers are read on a thread of their own and handed to `onLine`; every line is kept.
final class Device: @unchecked Sendable {
    // `@unchecked Sendable`: the mutable state is guarded by `lock`; `id`, `storePath`, `lab` and
    // `arguments` are set in `init`.
    let id: UInt8
    let storePath: String
    let logDirectory: String
    private let lab: Lab
    private let arguments: [String]
    private let tandem: String
    private let lock = NSLock()
    private var process: Process?
    private var input: FileHandle?
    private var lines: [NodeLine] = []
    private var incarnation = 0
    private var lineHandler: (@Sendable (Device, NodeLine) -> Void)?

    init(
        id: UInt8,
        lab: Lab,
        tandem: String,
        storePath: String,
        logDirectory: String,
        secretFile: String,
        silenceLimitMs: Int
    ) {
        self.id = id
        self.lab = lab
        self.tandem = tandem
        self.storePath = storePath
        self.logDirectory = logDirectory
        let peer: UInt8 = id == 1 ? 2 : 1
        arguments = [
            "node", "--json", "--path", storePath, "--device-id", "\(id)", "--portal-group", "campus",
            "--listen", "\(lab.address(id)):\(lab.port)", "--peer", "\(lab.address(peer)):\(lab.port)",
            "--secret-file", secretFile, "--silence-limit", "\(silenceLimitMs)", "--replication-timeout", "1000",
            "--log-level", "info",
        ]
    }

    /// Called for every line the device prints, on the reading thread.
    func onLine(_ handler: @escaping @Sendable (Device, NodeLine) -> Void) { lock.withLock { lineHandler = handler } }

    var name: String { "device \(id)" }

    var isRunning: Bool { lock.withLock { process?.isRunning ?? false } }

    var pid: Int32? { lock.withLock { process?.processIdentifier } }

    /// Starts `tandem node` on the store; returns once it printed `ready` (or fails with what it printed).
    func start(extra: [String] = []) async throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = lab.inside(id, [tandem] + arguments + extra)
        let stdin = Pipe()
        let stdout = Pipe()
        let number = lock.withLock { () -> Int in
            incarnation += 1
            return incarnation
        }
        let errorLog = logDirectory + "/device\(id)-\(number).log"
        _ = FileManager.default.createFile(atPath: errorLog, contents: nil)
        process.standardInput = stdin
        process.standardOutput = stdout
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: errorLog))
        let startedAt = ContinuousClock.now
        try process.run()
        lock.withLock {
            self.process = process
            self.input = stdin.fileHandleForWriting
        }
        let thread = Thread { [self] in read(stdout.fileHandleForReading) }
        thread.start()
        while ContinuousClock.now - startedAt < .seconds(30) {
            if let ready = lastLine(where: { $0.type == "ready" }), ready.at >= startedAt { return }
            if !process.isRunning {
                let log = (try? String(contentsOfFile: errorLog, encoding: .utf8)) ?? ""
                throw Shell.Failure(command: process.arguments ?? [], status: process.terminationStatus, output: log)
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw Shell.Failure(command: process.arguments ?? [], status: -1, output: "no `ready` within 30 s")
    }

    private func read(_ handle: FileHandle) {
        var pending = Data()
        while true {
            let chunk = handle.availableData
            if chunk.isEmpty { return }
            pending.append(chunk)
            while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                let bytes = pending[pending.startIndex..<newline]
                pending.removeSubrange(pending.startIndex...newline)
                guard let object = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any],
                    let type = object["type"] as? String
                else { continue }
                var fields: [String: String] = [:]
                for (key, value) in object where key != "type" { fields[key] = "\(value)" }
                let line = NodeLine(type: type, fields: fields, at: .now)
                let handler = lock.withLock { () -> (@Sendable (Device, NodeLine) -> Void)? in
                    lines.append(line)
                    return lineHandler
                }
                handler?(self, line)
            }
        }
    }

    /// Sends one command line; `false` when the device is not running.
    @discardableResult
    func send(_ command: String) -> Bool {
        guard let input = lock.withLock({ process?.isRunning == true ? self.input : nil }) else { return false }
        do {
            try input.write(contentsOf: Data((command + "\n").utf8))
            return true
        } catch {
            return false
        }
    }

    func lastLine(where predicate: (NodeLine) -> Bool) -> NodeLine? { lock.withLock { lines.last(where: predicate) } }

    func lines(since instant: ContinuousClock.Instant, where predicate: (NodeLine) -> Bool) -> [NodeLine] {
        lock.withLock { lines.filter { $0.at >= instant && predicate($0) } }
    }

    /// What the device's current process wrote to standard error so far.
    func lastLogText() -> String {
        let number = lock.withLock { incarnation }
        return (try? String(contentsOfFile: logDirectory + "/device\(id)-\(number).log", encoding: .utf8)) ?? ""
    }

    /// The state the device last printed.
    var state: String? { lastLine { $0.type == "state" }?["state"] }

    /// Asks for the status and waits for the answer.
    func status() async -> NodeLine? {
        let asked = ContinuousClock.now
        guard send("status") else { return nil }
        while ContinuousClock.now - asked < .seconds(10) {
            if let line = lastLine(where: { $0.type == "status" }), line.at >= asked { return line }
            try? await Task.sleep(for: .milliseconds(5))
        }
        return nil
    }

    /// Waits until a line that `predicate` accepts was printed at or after `since` (when the device reported it,
    /// for `state` and `event` lines; see ``NodeLine/reportedAt``).
    func waitFor(
        since: ContinuousClock.Instant,
        within limit: Duration,
        _ predicate: @escaping (NodeLine) -> Bool
    ) async -> NodeLine? {
        let deadline = ContinuousClock.now + limit
        while ContinuousClock.now < deadline {
            if let line = lastLine(where: { $0.reportedAt >= since && predicate($0) }) { return line }
            try? await Task.sleep(for: .milliseconds(5))
        }
        return nil
    }

    /// SIGKILL, and waits for the process to be gone.
    func kill() {
        guard let process = lock.withLock({ self.process }) else { return }
        if process.isRunning { Foundation.kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    func pause() { if let pid { Foundation.kill(pid, SIGSTOP) } }

    func resume() { if let pid { Foundation.kill(pid, SIGCONT) } }

    /// Ends the node with `quit` (the store closes cleanly), or SIGKILL after `limit`.
    func quit(within limit: Duration = .seconds(20)) async {
        guard let process = lock.withLock({ self.process }), process.isRunning else { return }
        send("quit")
        let deadline = ContinuousClock.now + limit
        while process.isRunning && ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(10)) }
        kill()
    }
}
