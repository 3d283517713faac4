import DeviceService
import Foundation
import SessionStore
import TestSupport
import Testing

@testable import FailoverLink

/// Two devices in two network namespaces, each with keepalived on a service veth and `tandem node` on a
/// separate failover veth (R3). Made and removed by the test.
final class VRRPLab: @unchecked Sendable {
    // `@unchecked Sendable`: the processes list is guarded by `lock`; the rest is set in `init`.
    let run = String(UInt32.random(in: 0...0xFFFF_FFFF), radix: 16)
    let directory: TemporaryDirectory
    private let lock = NSLock()
    private var processes: [Process] = []

    static let virtualIP = "198.18.7.100"
    func namespace(_ side: Int) -> String { "tdm\(run)\(side == 1 ? "a" : "b")" }
    func serviceLink(_ side: Int) -> String { "ts\(run.prefix(6))\(side)" }
    func failoverLink(_ side: Int) -> String { "tf\(run.prefix(6))\(side)" }
    func serviceAddress(_ side: Int) -> String { "198.18.7.\(side)" }
    func failoverAddress(_ side: Int) -> String { "198.19.7.\(side)" }
    func socket(_ side: Int) -> String { directory.child("device\(side)/control.sock") }

    /// Why the lab cannot be made here (not root, no `ip netns`, no keepalived); `nil` when it can.
    static let unavailable: String? = {
        guard getuid() == 0 else { return "needs root to make network namespaces" }
        guard FileManager.default.isExecutableFile(atPath: "/usr/sbin/keepalived") else {
            return "keepalived is not installed (apt-get install keepalived; .ci/run installs it)"
        }
        let probe = "tdmprobe\(getpid())"
        guard (try? VRRPLab.shell(["ip", "netns", "add", probe])) == 0 else {
            return "network namespaces cannot be made here (`ip netns add` failed)"
        }
        _ = try? VRRPLab.shell(["ip", "netns", "delete", probe])
        return nil
    }()

    init() throws {
        directory = TemporaryDirectory()
        chmod(directory.path, 0o755)
    }

    /// Runs a command to its end; its exit status.
    @discardableResult
    static func shell(_ arguments: [String]) throws -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        return process.terminationStatus
    }

    /// Runs `arguments` and requires it to succeed.
    func must(_ arguments: [String]) throws {
        let status = try Self.shell(arguments)
        try #require(status == 0, "\(arguments.joined(separator: " ")) exited with \(status)")
    }

    /// The namespaces, both veth pairs and their addresses.
    func up() throws {
        for side in [1, 2] { try must(["ip", "netns", "add", namespace(side)]) }
        for (link, address) in [(serviceLink, serviceAddress), (failoverLink, failoverAddress)] {
            try must(["ip", "link", "add", link(1), "type", "veth", "peer", "name", link(2)])
            for side in [1, 2] {
                try must(["ip", "link", "set", link(side), "netns", namespace(side)])
                try must(["ip", "-n", namespace(side), "addr", "add", address(side) + "/24", "dev", link(side)])
                try must(["ip", "-n", namespace(side), "link", "set", link(side), "up"])
            }
        }
        for side in [1, 2] { try must(["ip", "-n", namespace(side), "link", "set", "lo", "up"]) }
    }

    /// Stops every process and removes the namespaces (their veths go with them).
    func down() {
        for process in lock.withLock({ processes }) where process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        for side in [1, 2] { _ = try? Self.shell(["ip", "netns", "delete", namespace(side)]) }
    }

    /// Starts `arguments` inside the namespace of `side`, its output to `log`.
    func start(_ side: Int, _ arguments: [String], log: String, input: Pipe? = nil) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
        process.arguments = ["netns", "exec", namespace(side)] + arguments
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = input ?? Pipe()
        try process.run()
        lock.withLock { processes.append(process) }
        return process
    }

    /// keepalived's configuration for `side`.
    func keepalivedConfiguration(_ side: Int) -> String {
        """
        global_defs {
            router_id tandem-\(run)-\(side)
            enable_script_security
            script_user root
        }
        vrrp_instance portal {
            state BACKUP
            interface \(serviceLink(side))
            virtual_router_id 77
            priority \(side == 1 ? 150 : 100)
            advert_int 1
            nopreempt
            virtual_ipaddress {
                \(Self.virtualIP)/24 dev \(serviceLink(side))
            }
            notify "\(notifyScript) --tandem \(tandemExecutable().path) --socket \(socket(side)) --log \(directory.child("notify\(side).log"))"
        }
        """
    }

    /// `tools/keepalived/tandem-notify`, from the sources.
    var notifyScript: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("tools/keepalived/tandem-notify").path
    }

    func startKeepalived(_ side: Int) throws -> Process {
        let configuration = directory.child("keepalived\(side).conf")
        _ = FileManager.default.createFile(atPath: configuration, contents: Data(keepalivedConfiguration(side).utf8))
        return try start(
            side,
            [
                "/usr/sbin/keepalived", "-n", "-l", "-D", "-G", "-P", "-f", configuration,
                "-p", directory.child("keepalived\(side).pid"), "-r", directory.child("vrrp\(side).pid"),
            ],
            log: directory.child("keepalived\(side).log")
        )
    }

    /// Whether the virtual IP is on `side`'s service interface.
    func holdsVirtualIP(_ side: Int) -> Bool {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
        process.arguments = ["-n", namespace(side), "-o", "addr", "show", "dev", serviceLink(side)]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        guard (try? process.run()) != nil else { return false }
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(decoding: data, as: UTF8.self).contains(Self.virtualIP + "/")
    }

    func text(_ name: String) -> String {
        (try? String(contentsOfFile: directory.child(name), encoding: .utf8)) ?? ""
    }
}

@Suite("VRRP failover with keepalived in network namespaces", .serialized)
struct VRRPTests {
    @Test(
        "the master's keepalived and tandem are SIGKILLed: the backup's keepalived goes MASTER, its notify script promotes, every acknowledged user is online",
        .enabled(if: VRRPLab.unavailable == nil, "\(VRRPLab.unavailable ?? "")")
    )
    func keepalivedFailover() async throws {
        let lab = try VRRPLab()
        defer {
            lab.down()
            // TANDEM_KEEP_LAB=DIR keeps the logs of the run (keepalived, notify, both nodes) for a look.
            if let keep = ProcessInfo.processInfo.environment["TANDEM_KEEP_LAB"] {
                try? FileManager.default.createDirectory(atPath: keep, withIntermediateDirectories: true)
                for name in (try? FileManager.default.contentsOfDirectory(atPath: lab.directory.path)) ?? []
                where name.hasSuffix(".log") {
                    try? FileManager.default.removeItem(atPath: keep + "/" + name)
                    try? FileManager.default.copyItem(atPath: lab.directory.child(name), toPath: keep + "/" + name)
                }
            }
        }
        try lab.up()
        let secret = lab.directory.child("pair.secret")
        _ = FileManager.default.createFile(
            atPath: secret,
            contents: Data("the pair's secret, 32 bytes long".utf8),
            attributes: [.posixPermissions: 0o600]
        )
        var inputs: [Int: Pipe] = [:]
        var nodes: [Int: Process] = [:]
        for side in [1, 2] {
            let input = Pipe()
            inputs[side] = input
            nodes[side] = try lab.start(
                side,
                [
                    tandemExecutable().path, "node", "--path", lab.directory.child("device\(side)"),
                    "--device-id", "\(side)", "--portal-group", "campus",
                    "--listen", "\(lab.failoverAddress(side)):7400",
                    "--peer", "\(lab.failoverAddress(side == 1 ? 2 : 1)):7400", "--secret-file", secret,
                    "--control-socket", lab.socket(side), "--log-level", "notice",
                ],
                log: lab.directory.child("node\(side).log"),
                input: input
            )
        }
        func status(_ side: Int) async -> [String: Any]? {
            try? await ControlSocketTests.ask(ControlRequest(.status), lab.socket(side)).first
        }
        let synchronized = await eventually(within: .seconds(30)) {
            // `eventually` takes a synchronous check: read the status through the command.
            let (code, text, _) =
                (try? ControlSocketTests.tandem(["status", "--socket", lab.socket(1), "--json"]))
                ?? (1, "", "")
            return code == 0 && text.contains("\"synchronized\":true")
        }
        try #require(synchronized, "the two devices never synchronized: \(lab.text("node1.log").suffix(2000))")

        let keepalived1 = try lab.startKeepalived(1)
        _ = try lab.startKeepalived(2)
        try #require(
            await eventually(within: .seconds(20)) { lab.holdsVirtualIP(1) },
            "device 1 never became VRRP master: \(lab.text("keepalived1.log").suffix(2000))"
        )
        #expect(await eventually(within: .seconds(10)) { lab.text("notify1.log").contains("is MASTER") })

        // Users log in on the master, acknowledged once the backup has them.
        let users = 2_000
        try inputs[1]!.fileHandleForWriting.write(contentsOf: Data("storm 0 \(users) replicated 32\n".utf8))
        try #require(
            await eventually(within: .seconds(60)) { lab.text("node1.log").contains("storm-done") },
            "the storm did not finish: \(lab.text("node1.log").suffix(2000))"
        )
        let acknowledged = Set(
            lab.text("node1.log").split(separator: "\n").filter { $0.hasPrefix("ack ") }.compactMap {
                Int($0.dropFirst(4))
            }
        )
        #expect(acknowledged.count == users)

        // Device 1 took the pair's (empty) peer side over when it became master: its term is device 2's too.
        let termBefore = try #require(await status(2)?["term"] as? Int)

        // The master dies: its keepalived and its tandem, SIGKILLed.
        // keepalived runs its VRRP work in a child process: both are killed, as a device that dies takes both
        // (killing the parent alone lets the child leave gracefully, with a priority-0 advertisement).
        let vrrpChild = try #require(Int32(lab.text("vrrp1.pid").trimmingCharacters(in: .whitespacesAndNewlines)))
        let killed = ContinuousClock.now
        kill(vrrpChild, SIGKILL)
        kill(keepalived1.processIdentifier, SIGKILL)
        kill(nodes[1]!.processIdentifier, SIGKILL)
        try #require(
            await eventually(within: .seconds(20)) { lab.text("notify2.log").contains("is MASTER") },
            "device 2's keepalived never went MASTER: \(lab.text("keepalived2.log").suffix(2000))"
        )
        var answerable: Duration?
        for _ in 0..<400 where answerable == nil {
            if let status = await status(2), (status["term"] as? Int ?? 0) > termBefore,
                (status["users_by_owner"] as? [String: Int])?["2"] == users
            {
                answerable = ContinuousClock.now - killed
            } else {
                try await Task.sleep(for: .milliseconds(50))
            }
        }
        let elapsed = try #require(answerable, "device 2 was not promoted: \(lab.text("notify2.log"))")
        print("VRRP failover: from the SIGKILL to all \(users) users answerable on device 2: \(elapsed)")
        // The notify script logs the promotion once `tandem promote` returns, which can be after the users
        // answer.
        #expect(
            await eventually(within: .seconds(10)) {
                lab.text("notify2.log").contains("promoted: term \(termBefore + 1), \(users) users taken over")
            },
            "\(lab.text("notify2.log"))"
        )

        let listed = try await ControlSocketTests.ask(ControlRequest(.users), lab.socket(2))
        let online = Set(listed.compactMap { $0["ip"] as? String })
        let missing = acknowledged.filter { !online.contains(IPAddress(ipv4: 0x0A00_0000 | UInt32($0)).description) }
        #expect(missing.isEmpty, "acknowledged users missing on the new master: \(missing.sorted().prefix(10))")
        #expect(listed.last?["count"] as? Int == users)
        #expect(listed.dropLast().allSatisfy { $0["copy"] as? String == "primary" })
    }
}
