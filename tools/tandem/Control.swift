import ArgumentParser
import DeviceService
import Foundation
import SessionStore

/// Where the running device's control socket is.
struct SocketOption: ParsableArguments {
    @Option(
        help: """
            The device's control socket (control.socket in its configuration; TANDEM_CONTROL_SOCKET; default \
            /run/tandem/control.sock).
            """
    )
    var socket: String?

    var path: String {
        socket ?? ProcessInfo.processInfo.environment["TANDEM_CONTROL_SOCKET"] ?? "/run/tandem/control.sock"
    }
}

/// Sends one request and prints its answer; a refusal goes to standard error with exit status 1.
func control(_ request: ControlRequest, _ socketPath: String, print: (String) -> Void) async throws {
    var refused: String?
    do {
        try await ControlClient.send(request, to: socketPath) { line in
            if line.hasPrefix("{\"error\"") || line.contains("\"ok\":false") {
                let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
                refused = object?["error"] as? String ?? line
            } else {
                print(line)
            }
        }
    } catch let error as ControlError {
        refused = error.description
    }
    if let refused {
        FileHandle.standardError.write(Data("tandem: \(refused)\n".utf8))
        throw ExitCode(1)
    }
}

/// `tandem status`: the running device's failover state, positions, users and counters.
struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show a running device's failover state and why, peer, term, positions and lag, users by owner.",
        discussion: """
            Asks the device through its control socket. --watch refreshes every --interval seconds.

            Examples:
              tandem status --socket /run/tandem/control.sock
              tandem status --json
              tandem status --watch --interval 1
            """
    )

    @OptionGroup var socket: SocketOption
    @Flag(help: "One JSON object.") var json = false
    @Flag(help: "Refresh until interrupted.") var watch = false
    @Option(help: "Seconds between refreshes with --watch.") var interval: Double = 2

    func run() async throws {
        repeat {
            try await control(ControlRequest(.status), socket.path) { line in
                if json {
                    print(line)
                } else {
                    if watch { print("\u{1B}[2J\u{1B}[H", terminator: "") }
                    print(Self.text(line))
                }
            }
            if watch { try await Task.sleep(for: .milliseconds(Int64(interval * 1000))) }
        } while watch
    }

    /// The status for people: one field per line.
    static func text(_ line: String) -> String {
        guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
            return line
        }
        let flags: Set<String> = ["synchronized", "recovering"]
        func value(_ key: String) -> String {
            if flags.contains(key) { return (object[key] as? Bool) == true ? "yes" : "no" }
            switch object[key] {
            case let list as [Any]: return list.isEmpty ? "none" : list.map { "\($0)" }.joined(separator: ", ")
            case let map as [String: Any]:
                return map.isEmpty
                    ? "none" : map.keys.sorted().map { "device \($0): \(map[$0]!)" }.joined(separator: ", ")
            case let other?: return "\(other)"
            case nil: return "none"
            }
        }
        var lines = [
            "device      \(value("device_id")), term \(value("term")), peer \(value("peer"))",
            "state       \(value("state"))",
            "users       \(value("users")) (\(value("users_by_owner")))",
            "log         last \(value("last_sequence")), checkpoint \(value("checkpoint_sequence")), "
                + "acknowledged by the peer \(value("acknowledged_by_peer")) (lag \(value("lag_events")) events)",
            "peer's log  applied through \(value("applied_from_peer"))",
            "digests     \(value("digests_compared")) compared, \(value("digest_mismatches")) mismatches",
            "snapshots   \(value("snapshots_sent")) sent, \(value("snapshots_received")) received; "
                + "recovering \(value("recovering"))",
            "holds       \(value("holds")); dropped \(value("dropped_holds"))",
        ]
        if object["checkpoint_failure"] != nil { lines.append("checkpoint  FAILING: \(value("checkpoint_failure"))") }
        return lines.joined(separator: "\n")
    }
}

/// `tandem promote`: the running device takes its peer's users over.
struct Promote: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make the running device take its peer's users over (what a VRRP notify script calls on MASTER).",
        discussion: """
            Example:
              tandem promote --socket /run/tandem/control.sock
            """
    )

    @OptionGroup var socket: SocketOption
    @Flag(help: "One JSON object.") var json = false

    func run() async throws {
        try await control(ControlRequest(.promote), socket.path) { line in
            guard !json, let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            else { return print(line) }
            print(
                "promoted: term \(object["term"] ?? "?"), \(object["taken_over"] ?? "?") users taken over, "
                    + "ready after \(object["ready_ms"] ?? "?") ms (was \(object["state_before"] ?? "?"))"
            )
        }
    }
}

/// `tandem logout`: an operator's `delete-user` on a running device.
struct Logout: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Log a user off on a running device (both devices delete it, R7).",
        discussion: """
            Example:
              tandem logout 10.1.2.3 --reason delete-user --socket /run/tandem/control.sock
            """
    )

    @Argument(help: "The user's IP address.") var ip: String
    @Option(help: "Why: delete-user (the default), cut-connection, disconnect-message, ...") var reason = "delete-user"
    @OptionGroup var socket: SocketOption
    @Flag(help: "One JSON object.") var json = false

    func run() async throws {
        guard let address = IPAddress(ip) else { throw ValidationError("\(ip) is not an IP address") }
        guard let why = LogoutReason(name: reason) else {
            let names = LogoutReason.allCases.map(\.description).joined(separator: ", ")
            throw ValidationError("--reason \(reason): expected one of \(names)")
        }
        try await control(ControlRequest(.logout, ip: address, reason: why), socket.path) { line in
            guard !json, let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            else { return print(line) }
            print("logged off \(object["ip"] ?? ip) (\(object["user"] ?? "?")), reason \(object["reason"] ?? reason)")
        }
    }
}
