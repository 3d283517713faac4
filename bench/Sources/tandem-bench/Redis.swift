import ArgumentParser
import Foundation
import SessionStore

/// A `redis-server` process of the comparison, on a loopback port of its own, stopped with the benchmark.
final class RedisServer {
    let port: Int
    let directory: String
    private let process: Process

    /// Starts `redis-server` with no persistence, as a replica of `primary` when one is given, and waits until
    /// it answers `PING`.
    init(directory: String, replicaOf primary: Int? = nil) throws {
        self.directory = directory
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        port = try freePort(on: "127.0.0.1")
        process = Process()
        process.executableURL = URL(fileURLWithPath: try RedisServer.executable())
        var arguments = [
            "--port", "\(port)", "--bind", "127.0.0.1", "--dir", directory, "--save", "", "--appendonly", "no",
            "--daemonize", "no", "--protected-mode", "no", "--logfile", directory + "/redis.log",
        ]
        if let primary { arguments += ["--replicaof", "127.0.0.1", "\(primary)"] }
        process.arguments = arguments
        try process.run()
        let deadline = nanosecondsNow() + 10_000_000_000
        while true {
            if let connection = try? RedisConnection(port: port), (try? connection.command(["PING"])) != nil {
                return
            }
            guard process.isRunning, nanosecondsNow() < deadline else {
                throw ValidationError("redis-server on port \(port) did not start; see \(directory)/redis.log")
            }
            usleep(10_000)
        }
    }

    /// The process's CPU time so far (user and system), in seconds.
    var cpuSeconds: Double {
        guard let stat = try? String(contentsOfFile: "/proc/\(process.processIdentifier)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return .nan }
        // Fields after the command name: state is the 3rd field of the line, utime the 14th, stime the 15th.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return .nan }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// Stops the server with SIGKILL: its files are thrown away with the benchmark's directory.
    func stop() {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    deinit { stop() }

    /// The path of `redis-server`, installed with apt-get when it is missing.
    static func executable() throws -> String {
        let candidates = ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
        if let found = candidates.first(where: FileManager.default.isExecutableFile(atPath:)) { return found }
        progress("redis-server is missing: apt-get install -y redis-server")
        let install = Process()
        install.executableURL = URL(fileURLWithPath: "/usr/bin/apt-get")
        install.arguments = ["install", "-y", "redis-server"]
        install.environment = ["DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"]
        try install.run()
        install.waitUntilExit()
        guard let found = candidates.first(where: FileManager.default.isExecutableFile(atPath:)) else {
            throw ValidationError("redis-server is not installed and apt-get could not install it")
        }
        return found
    }
}

/// One blocking connection to Redis speaking RESP, for pipelines: commands are appended to a buffer, written
/// together, and their replies read in order.
final class RedisConnection {
    private let fd: Int32
    private var output: [UInt8] = []
    private var input: [UInt8] = []
    private var readIndex = 0
    private var chunk = [UInt8](repeating: 0, count: 64 * 1024)

    /// A reply of Redis.
    enum Reply: Equatable {
        case simple(String)
        case integer(Int)
        case bulk([UInt8]?)
        case array([Reply]?)

        var text: String {
            switch self {
            case .simple(let value): value
            case .integer(let value): "\(value)"
            case .bulk(let bytes): bytes.map { String(decoding: $0, as: UTF8.self) } ?? ""
            case .array(let replies): (replies ?? []).map(\.text).joined(separator: "\n")
            }
        }
    }

    init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw ValidationError("socket: \(String(cString: strerror(errno)))") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
        guard connected else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw ValidationError("connecting to Redis on 127.0.0.1:\(port): \(reason)")
        }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        output.reserveCapacity(64 * 1024)
        input.reserveCapacity(64 * 1024)
    }

    deinit { close(fd) }

    /// Appends one command to the pipeline.
    func append(_ arguments: [String]) {
        appendHeader(arguments.count)
        for argument in arguments { appendBulk(argument.utf8) }
    }

    /// Appends `HSET key field value …` for one session, its fields as Tandem stores them.
    func appendHSET(_ session: Session) {
        let ip = session.ip.description
        let fields: [(String, String)] = [
            ("ip", ip), ("mac", session.mac.description), ("user", session.userName),
            ("vlan", "\(session.vlan)"), ("interface", session.accessInterface),
            ("group", session.portalGroup.name), ("mode", "\(session.authenticationMode.rawValue)"),
            ("owner", "\(session.owner.rawValue)"), ("login_time", "\(session.loginTime.microsecondsSinceEpoch)"),
            ("session_timeout", "\(session.sessionTimeout)"),
            ("idle_timeout", "\(session.idleTimeout)"), ("nas_ip", session.radius.nasIP?.description ?? ""),
            ("acct_session_id", session.radius.acctSessionID),
            ("class", String(decoding: session.radius.classAttribute, as: UTF8.self)),
        ]
        appendHeader(2 + 2 * fields.count)
        appendBulk("HSET".utf8)
        appendBulk(("user:" + ip).utf8)
        for (field, value) in fields {
            appendBulk(field.utf8)
            appendBulk(value.utf8)
        }
    }

    /// Writes the pipeline and reads `count` replies; an error reply throws.
    @discardableResult
    func flush(replies count: Int) throws -> [Reply] {
        var written = 0
        while written < output.count {
            let result = output.withUnsafeBytes { write(fd, $0.baseAddress! + written, $0.count - written) }
            guard result > 0 else { throw ValidationError("writing to Redis: \(String(cString: strerror(errno)))") }
            written += result
        }
        output.removeAll(keepingCapacity: true)
        var replies: [Reply] = []
        replies.reserveCapacity(count)
        for _ in 0..<count { replies.append(try reply()) }
        return replies
    }

    /// One command and its reply.
    @discardableResult
    func command(_ arguments: [String]) throws -> Reply {
        append(arguments)
        return try flush(replies: 1)[0]
    }

    private func appendHeader(_ count: Int) {
        output.append(UInt8(ascii: "*"))
        output.append(contentsOf: "\(count)".utf8)
        output.append(contentsOf: [13, 10])
    }

    private func appendBulk(_ bytes: String.UTF8View) {
        output.append(UInt8(ascii: "$"))
        output.append(contentsOf: "\(bytes.count)".utf8)
        output.append(contentsOf: [13, 10])
        output.append(contentsOf: bytes)
        output.append(contentsOf: [13, 10])
    }

    private func reply() throws -> Reply {
        let line = try readLine()
        guard let kind = line.first else { throw ValidationError("an empty reply line from Redis") }
        let rest = String(decoding: line.dropFirst(), as: UTF8.self)
        switch kind {
        case UInt8(ascii: "+"): return .simple(rest)
        case UInt8(ascii: "-"): throw ValidationError("Redis answered: \(rest)")
        case UInt8(ascii: ":"): return .integer(Int(rest) ?? 0)
        case UInt8(ascii: "$"):
            guard let length = Int(rest), length >= 0 else { return .bulk(nil) }
            let bytes = try readBytes(length + 2)
            return .bulk(Array(bytes.dropLast(2)))
        case UInt8(ascii: "*"):
            guard let count = Int(rest), count >= 0 else { return .array(nil) }
            return .array(try (0..<count).map { _ in try reply() })
        default: throw ValidationError("an unknown reply from Redis: \(String(decoding: line, as: UTF8.self))")
        }
    }

    private func readLine() throws -> ArraySlice<UInt8> {
        while true {
            if let end = input[readIndex...].firstIndex(of: 10), end > readIndex, input[end - 1] == 13 {
                let line = input[readIndex..<end - 1]
                readIndex = end + 1
                return line
            }
            try fill()
        }
    }

    private func readBytes(_ count: Int) throws -> ArraySlice<UInt8> {
        while input.count - readIndex < count { try fill() }
        defer { readIndex += count }
        return input[readIndex..<readIndex + count]
    }

    private func fill() throws {
        if readIndex == input.count {
            input.removeAll(keepingCapacity: true)
            readIndex = 0
        }
        let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
        guard count > 0 else { throw ValidationError("Redis closed the connection") }
        input.append(contentsOf: chunk[0..<count])
    }
}

/// Runs `body` on `count` threads of their own (blocking Redis clients must not hold the concurrency pool's
/// threads) and waits for all of them; the first error is rethrown.
func onThreads(_ count: Int, _ body: @escaping @Sendable (Int) throws -> Void) async throws {
    try await withThrowingTaskGroup(of: Void.self) { group in
        for index in 0..<count {
            group.addTask {
                try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, Error>) in
                    let thread = Thread {
                        do {
                            try body(index)
                            continuation.resume()
                        } catch {
                            continuation.resume(throwing: error)
                        }
                    }
                    thread.start()
                }
            }
        }
        try await group.waitForAll()
    }
}
