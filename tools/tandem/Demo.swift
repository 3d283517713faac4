import ArgumentParser
import Foundation
import Locking
import Logging
import SessionStore

/// The failover demonstration: two devices as two processes on loopback, users logging in on both, the
/// active one killed with SIGKILL during a login storm, the standby promoted, and every user checked.
struct Demo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a failover pair on loopback, kill the active device, promote the standby, check every user.",
        discussion: """
            Device 1 (active, 127.0.0.1) and device 2 (standby, 127.0.0.2) run as two `tandem node` \
            processes with their own stores. Device 2 logs its own users in; device 1 runs a login storm \
            whose logins are acknowledged once the peer has them (replicated write concern), and is killed \
            with SIGKILL in the middle of it. Device 2 is promoted and must hold every login device 1 \
            acknowledged, and its own users. Every commit is synced to disk.

            Exit status: 0 when every acknowledged user is on the promoted device, 1 otherwise.

            Example:
              tandem demo
              tandem demo --users 400000 --kill-after 250000 --keep
            """
    )

    @Option(help: "How many users device 1 (active) tries to log in.")
    var users: Int = 200_000

    @Option(help: "How many of them are acknowledged before device 1 is killed (default: half).")
    var killAfter: Int?

    @Option(help: "How many users device 2 (standby) logs in itself.")
    var standbyUsers: Int = 20_000

    @Option(help: "How many concurrent callers log users in on each device.")
    var concurrency: Int = 256

    @Option(help: "The failover port both devices listen on (default: a free one).")
    var port: Int?

    @Option(help: "The directory for the two stores (default: a new temporary one, removed afterwards).")
    var path: String?

    @Flag(help: "Keep the stores afterwards.")
    var keep = false

    func run() async throws {
        let directory =
            path ?? FileManager.default.temporaryDirectory.appendingPathComponent("tandem-demo-\(getpid())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { if !keep && path == nil { try? FileManager.default.removeItem(atPath: directory) } }
        let secretFile = directory + "/pair.secret"
        _ = FileManager.default.createFile(
            atPath: secretFile,
            contents: Data((0..<32).map { _ in UInt8.random(in: 0...255) }),
            attributes: [.posixPermissions: 0o600]
        )
        let port = try self.port ?? freeLoopbackPort()
        let killAfter = min(self.killAfter ?? users / 2, users)
        let standbyFirst = 1 << 20  // device 2's users: 10.16.0.0 onwards

        print("Tandem failover demo: two devices on loopback, every commit synced, replicated acknowledgements")
        let active = try NodeProcess(id: 1, port: port, directory: directory, secretFile: secretFile)
        let standby = try NodeProcess(id: 2, port: port, directory: directory, secretFile: secretFile)
        defer {
            active.kill()
            standby.kill()
        }
        print("  device 1 (active)   127.0.0.1:\(port)   \(directory)/device1   pid \(active.pid)")
        print("  device 2 (standby)  127.0.0.2:\(port)   \(directory)/device2   pid \(standby.pid)")

        var clock = ContinuousClock.now
        while true {
            let one = try await active.field("status", "synchronized")
            let two = try await standby.field("status", "synchronized")
            if one == "yes" && two == "yes" { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        print(row("synchronized", clock.duration(to: .now), "the pair negotiated and authenticated its link"))

        clock = .now
        let standbyDone = try await standby.command(
            "storm \(standbyFirst) \(standbyUsers) replicated \(concurrency)",
            until: "storm-done"
        )
        let standbyTime = clock.duration(to: .now)
        print(
            row(
                "device 2 logged in",
                standbyTime,
                "\(standbyUsers - (Int(standbyDone["failed"] ?? "0") ?? 0)) own users, "
                    + "\(rate(standbyUsers, standbyTime)) logins/s, each on both devices before it returned"
            )
        )

        clock = .now
        let acknowledged = Locked<[Int]>([])
        active.onAck = { number in
            let count = acknowledged.withLock {
                $0.append(number)
                return $0.count
            }
            return count >= killAfter
        }
        try active.send("storm 0 \(users) replicated \(concurrency)")
        await active.waitForKillSignal()
        active.kill()
        let stormTime = clock.duration(to: .now)
        let acked = acknowledged.withLock { $0 }
        print(
            row(
                "device 1 login storm",
                stormTime,
                "\(acked.count) logins acknowledged (replicated), \(rate(acked.count, stormTime)) logins/s, "
                    + "then SIGKILL"
            )
        )

        clock = .now
        let promotion = try await standby.command("promote", until: "promoted")
        print(
            row(
                "device 2 promoted",
                clock.duration(to: .now),
                "term \(promotion["term"] ?? "?"), \(promotion["taken_over"] ?? "?") users taken over; lookups "
                    + "ready after \(promotion["ready_ms"] ?? "?") ms, handed over in \(promotion["handover_ms"] ?? "?") ms"
            )
        )

        let status = try await standby.command("status", until: "status")
        _ = try await standby.command("quit", until: "closed")
        clock = .now
        var configuration = SessionStore.Configuration(deviceID: 2, portalGroup: "campus")
        configuration.expiryInterval = nil
        var logger = Logger(label: "tandem.demo")
        logger.logLevel = .warning
        let store = try SessionStore.open(at: directory + "/device2", configuration: configuration, logger: logger)
        var missing = 0
        for number in acked where try store.session(for: StormSession.address(number)) == nil { missing += 1 }
        var missingOwn = 0
        for number in standbyFirst..<standbyFirst + standbyUsers
        where try store.session(for: StormSession.address(number)) == nil {
            missingOwn += 1
        }
        let online = store.count
        await store.close()
        print(
            row(
                "checked device 2",
                clock.duration(to: .now),
                "\(acked.count - missing) of \(acked.count) acknowledged logins of device 1 present, "
                    + "\(standbyUsers - missingOwn) of \(standbyUsers) of its own; \(online) online, term \(status["term"] ?? "?")"
            )
        )
        if missing > 0 || missingOwn > 0 {
            throw ValidationFailure("\(missing + missingOwn) acknowledged users are missing on the promoted device")
        }
        print("every acknowledged user is on the promoted device")
    }

    private func row(_ what: String, _ duration: Duration, _ detail: String) -> String {
        "  " + what.padding(toLength: 22, withPad: " ", startingAt: 0)
            + String(format: "%9.1f ms   ", duration.milliseconds) + detail
    }

    private func rate(_ count: Int, _ duration: Duration) -> String {
        String(format: "%.0f", Double(count) / max(duration.seconds, 1e-9))
    }
}

struct ValidationFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A free TCP port on 127.0.0.2 (and so, almost surely, on 127.0.0.1).
func freeLoopbackPort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.2")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { raw in
            bind(fd, raw, length) == 0 && getsockname(fd, raw, &length) == 0
        }
    }
    guard bound else { throw ValidationFailure("no free port on 127.0.0.2: \(String(cString: strerror(errno)))") }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// A `tandem node` child process, driven through its standard input and output.
final class NodeProcess: @unchecked Sendable {
    // `@unchecked Sendable`: `replies` and `killSignal` are guarded by `lock`; `process` and the pipes are
    // set in `init`; `onAck` is set before the storm that uses it starts.
    private let process = Process()
    private let input = Pipe()
    private let output = Pipe()
    private let lock = NSCondition()
    private var replies: [String] = []
    private var killRequested = false
    private var ended = false
    var onAck: (@Sendable (Int) -> Bool)?

    var pid: Int32 { process.processIdentifier }

    init(id: Int, port: Int, directory: String, secretFile: String) throws {
        let executable =
            (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
            ?? CommandLine.arguments[0]
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = [
            "node", "--path", directory + "/device\(id)", "--device-id", "\(id)", "--portal-group", "campus",
            "--listen", "127.0.0.\(id):\(port)", "--peer", "127.0.0.\(id == 1 ? 2 : 1):\(port)",
            "--secret-file", secretFile,
        ]
        process.standardInput = input
        process.standardOutput = output
        try process.run()
        let thread = Thread { [self] in readLines() }
        thread.start()
    }

    private func readLines() {
        let handle = output.fileHandleForReading
        var pending = Data()
        while true {
            let chunk = handle.availableData
            if chunk.isEmpty { break }
            pending.append(chunk)
            while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: pending[pending.startIndex..<newline], as: UTF8.self)
                pending.removeSubrange(pending.startIndex...newline)
                if line.hasPrefix("ack "), let number = Int(line.dropFirst(4)) {
                    if onAck?(number) == true {
                        lock.lock()
                        killRequested = true
                        lock.broadcast()
                        lock.unlock()
                    }
                    continue
                }
                if line.hasPrefix("nack ") || line.hasPrefix("event ") { continue }
                lock.lock()
                replies.append(line)
                lock.broadcast()
                lock.unlock()
            }
        }
        lock.lock()
        ended = true
        lock.broadcast()
        lock.unlock()
    }

    func send(_ line: String) throws {
        try input.fileHandleForWriting.write(contentsOf: Data((line + "\n").utf8))
    }

    /// Sends `line` and waits for the reply that starts with `type`; returns its fields.
    func command(_ line: String, until type: String) async throws -> [String: String] {
        try send(line)
        return try await Task.detached { [self] in try waitForReply(type) }.value
    }

    func field(_ command: String, _ name: String) async throws -> String? {
        try await self.command(command, until: command)[name]
    }

    private func waitForReply(_ type: String) throws -> [String: String] {
        lock.lock()
        defer { lock.unlock() }
        while true {
            if let index = replies.firstIndex(where: { $0.hasPrefix(type + " ") || $0 == type }) {
                let line = replies.remove(at: index)
                var fields: [String: String] = [:]
                for word in line.split(separator: " ").dropFirst() {
                    let parts = word.split(separator: "=", maxSplits: 1)
                    if parts.count == 2 { fields[String(parts[0])] = String(parts[1]) }
                }
                return fields
            }
            if let error = replies.first(where: { $0.hasPrefix("error ") }) {
                throw ValidationFailure("device: \(error)")
            }
            if ended { throw ValidationFailure("the device process ended before answering '\(type)'") }
            lock.wait()
        }
    }

    func waitForKillSignal() async {
        await Task.detached { [self] in waitUntilKillRequested() }.value
    }

    private func waitUntilKillRequested() {
        lock.lock()
        while !killRequested && !ended { lock.wait() }
        lock.unlock()
    }

    func kill() {
        if process.isRunning { Foundation.kill(process.processIdentifier, SIGKILL) }
    }
}
