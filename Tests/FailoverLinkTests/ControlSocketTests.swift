import DeviceService
import Foundation
import SessionStore
import TestSupport
import Testing

@testable import FailoverLink

@Suite("The control socket of running devices", .serialized)
struct ControlSocketTests {
    /// Runs `tandem` with `arguments`, as `user` when given; returns the exit status, standard output and
    /// standard error.
    static func tandem(_ arguments: [String], as user: String? = nil) throws -> (Int32, String, String) {
        let process = Process()
        if let user {
            process.executableURL = URL(fileURLWithPath: "/usr/sbin/runuser")
            process.arguments = ["-u", user, "--", tandemExecutable().path] + arguments
        } else {
            process.executableURL = tandemExecutable()
            process.arguments = arguments
        }
        let output = Pipe()
        let errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        let out = output.fileHandleForReading.readDataToEndOfFile()
        let err = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: out, as: UTF8.self), String(decoding: err, as: UTF8.self))
    }

    /// The answer lines of one request.
    static func ask(_ request: ControlRequest, _ socket: String) async throws -> [[String: Any]] {
        var lines: [[String: Any]] = []
        try await ControlClient.send(request, to: socket) { line in
            lines.append(try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]))
        }
        return lines
    }

    @Test("status, users, logout and promote on a running pair, through its sockets and the tandem command")
    func commands() async throws {
        try await TwoProcessTests.withPairAndSecret { pair in
            let one = try NodeChild(id: 1, pair: pair)
            let two = try NodeChild(id: 2, pair: pair)
            defer {
                one.kill()
                two.kill()
            }
            try #require(await TwoProcessTests.synchronized(one, two), "the two processes never synchronized")
            let socket1 = pair.path(1) + "/control.sock"
            let socket2 = pair.path(2) + "/control.sock"
            try one.send("storm 0 300 replicated 16")
            #expect(await eventually(within: .seconds(30)) { one.lastLine(startingWith: "storm-done") != nil })

            let status = try #require(try await Self.ask(ControlRequest(.status), socket2).first)
            #expect(status["ok"] as? Bool == true)
            #expect(status["state"] as? String == "synchronization")
            #expect(status["device_id"] as? Int == 2)
            #expect(status["peer"] as? Int == 1)
            #expect(status["users"] as? Int == 300)
            #expect(status["users_by_owner"] as? [String: Int] == ["1": 300])
            #expect((status["holds"] as? [String]) == ["peer-1"])

            // The live store's users, filtered, from either device.
            let users = try await Self.ask(ControlRequest(.users, owner: 1), socket2)
            #expect(users.count == 301)
            #expect(users.last?["count"] as? Int == 300)
            #expect(users.first?["copy"] as? String == "backup")
            let alone = try await Self.ask(ControlRequest(.users, ip: IPAddress("10.0.0.7")), socket1)
            #expect(alone.map { $0["user"] as? String } == ["user7", nil])

            // An operator's delete-user on the device holding the backup copy: both devices delete the user.
            let logout = try #require(
                try await Self.ask(ControlRequest(.logout, ip: IPAddress("10.0.0.7"), reason: .deleteUser), socket2)
                    .first
            )
            #expect(logout["ok"] as? Bool == true && logout["user"] as? String == "user7")
            var gone = false
            for _ in 0..<100 where !gone {
                gone = try await Self.ask(ControlRequest(.users, ip: IPAddress("10.0.0.7")), socket1).count == 1
                if !gone { try await Task.sleep(for: .milliseconds(50)) }
            }
            #expect(gone, "the owner still holds the user the backup device deleted")
            let again = try #require(
                try await Self.ask(ControlRequest(.logout, ip: IPAddress("10.0.0.7")), socket2).first
            )
            #expect(again["ok"] as? Bool == false)
            #expect((again["error"] as? String)?.contains("no online user holds 10.0.0.7") == true)

            // The tandem command: text and JSON, and a promotion.
            let (code, text, _) = try Self.tandem(["status", "--socket", socket1])
            #expect(code == 0)
            #expect(text.contains("state       synchronization"))
            #expect(text.contains("users       299 (device 1: 299)"))
            let (listed, rows, _) = try Self.tandem(["users", "--socket", socket2, "--user", "user9"])
            #expect(listed == 0 && rows.contains("user9") && rows.hasSuffix("1 users\n"))
            one.kill()
            let (promoted, promotion, _) = try Self.tandem(["promote", "--socket", socket2, "--json"])
            #expect(promoted == 0)
            let report = try #require(try JSONSerialization.jsonObject(with: Data(promotion.utf8)) as? [String: Any])
            #expect(report["term"] as? Int == 2)
            #expect(report["taken_over"] as? Int == 299)
            let after = try #require(try await Self.ask(ControlRequest(.status), socket2).first)
            #expect(after["users_by_owner"] as? [String: Int] == ["2": 299])
        }
    }

    @Test("a missing socket, a socket others may not open, and a bad request are refused with what to do")
    func refusals() async throws {
        let (missing, _, missingError) = try Self.tandem(["status", "--socket", "/tmp/no-such-tandem.sock"])
        #expect(missing == 1)
        #expect(missingError.contains("no device is running at /tmp/no-such-tandem.sock"))
        #expect(missingError.contains("start `tandem node`"))

        try await TwoProcessTests.withPairAndSecret { pair in
            let one = try NodeChild(id: 1, pair: pair)
            defer { one.kill() }
            let socket = pair.path(1) + "/control.sock"
            #expect(await eventually(within: .seconds(20)) { one.lastLine(startingWith: "ready") != nil })
            let mode = try FileManager.default.attributesOfItem(atPath: socket)[.posixPermissions] as? Int
            #expect(mode == 0o600)
            // Another user than the socket's owner (root) may not open it.
            chmod(pair.directory, 0o755)
            chmod(pair.path(1), 0o755)
            let (denied, _, deniedError) = try Self.tandem(["status", "--socket", socket], as: "nobody")
            #expect(denied == 1)
            #expect(deniedError.contains("permission denied on the control socket \(socket) (mode 600)"))
            // A request the device cannot read.
            var lines: [String] = []
            try await ControlClient.send(ControlRequest(.status), to: socket) { lines.append($0) }
            #expect(lines.count == 1)
            let bad = try await Self.raw("{\"command\":\"reboot\"}\n", socket)
            #expect(bad.contains("unknown command reboot; the commands are status, promote, users, logout"))
        }
    }

    @Test("tandem node --config: a device runs from its file, and a wrong setting stops it at start with the key")
    func configurationFile() async throws {
        let directory = TemporaryDirectory()
        let secret = directory.child("pair.secret")
        _ = FileManager.default.createFile(
            atPath: secret,
            contents: Data("a secret of the pair, 32 bytes!!".utf8),
            attributes: [.posixPermissions: 0o600]
        )
        let port = try await freePort()
        func config(listen: String, secret: String) -> String {
            let file = directory.child("tandem.json")
            let text = """
                {"device": {"id": 1, "portal_group": "campus"},
                 "store": {"path": "\(directory.child("store"))"},
                 "failover": {"listen": "\(listen)", "secret_file": "\(secret)"},
                 "control": {"socket": "\(directory.child("control.sock"))"}}
                """
            _ = FileManager.default.createFile(atPath: file, contents: Data(text.utf8))
            return file
        }
        let (wrong, _, wrongError) = try Self.tandem([
            "node", "--config", config(listen: "8.8.8.8:7999", secret: secret),
        ])
        #expect(wrong == 78)
        #expect(wrongError.contains("failover.listen = 8.8.8.8:7999: 8.8.8.8 is not an address of this machine"))
        let open = directory.child("open.secret")
        _ = FileManager.default.createFile(
            atPath: open,
            contents: Data("a secret of the pair, 32 bytes!!".utf8),
            attributes: [.posixPermissions: 0o644]
        )
        let (exposed, _, exposedError) = try Self.tandem([
            "node", "--config", config(listen: "127.0.0.9:\(port)", secret: open),
        ])
        #expect(exposed == 78)
        #expect(exposedError.contains("has mode 0644, readable by others; run `chmod 600"))
        #expect(!FileManager.default.fileExists(atPath: directory.child("store")), "a refused start created the store")

        // A good file: the device starts, answers on its socket, and an option overrides the file.
        let process = Process()
        process.executableURL = tandemExecutable()
        process.arguments = [
            "node", "--config", config(listen: "127.0.0.9:\(port)", secret: secret), "--device-id", "3",
        ]
        let input = Pipe()
        process.standardInput = input
        process.standardOutput = Pipe()
        process.standardError = Pipe()
        try process.run()
        defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
        let socket = directory.child("control.sock")
        #expect(await eventually(within: .seconds(20)) { ControlClientProbe.answers(socket) })
        let status = try #require(try await Self.ask(ControlRequest(.status), socket).first)
        #expect(status["device_id"] as? Int == 3)
        try input.fileHandleForWriting.write(contentsOf: Data("quit\n".utf8))
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        #expect(!FileManager.default.fileExists(atPath: socket), "the socket outlived the device")
    }

    /// The samples of a Prometheus text exposition: `name{labels}` to value.
    static func samples(_ text: String) throws -> [String: Double] {
        var found: [String: Double] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            let parts = line.split(separator: " ")
            let value = try #require(parts.count == 2 ? Double(parts[1]) : nil, "not a sample: \(line)")
            found[String(parts[0])] = value
        }
        return found
    }

    /// `GET url`: the status and the body.
    static func get(_ url: String) throws -> (Int, String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        process.arguments = [
            "-c",
            "import sys,urllib.request,urllib.error\ntry:\n r=urllib.request.urlopen(sys.argv[1]); print(r.status); "
                + "sys.stdout.write(r.read().decode())\nexcept urllib.error.HTTPError as e:\n print(e.code)",
            url,
        ]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        let newline = text.firstIndex(of: "\n") ?? text.endIndex
        return (Int(text[..<newline]) ?? 0, newline < text.endIndex ? String(text[text.index(after: newline)...]) : "")
    }

    @Test("the metrics endpoint of each device of a running pair, scraped and parsed")
    func metrics() async throws {
        try await TwoProcessTests.withPairAndSecret { pair in
            let one = try NodeChild(id: 1, pair: pair, extra: ["--metrics-listen", "127.0.0.3:0"])
            let two = try NodeChild(id: 2, pair: pair, extra: ["--metrics-listen", "127.0.0.4:0"])
            defer {
                one.kill()
                two.kill()
            }
            try #require(await TwoProcessTests.synchronized(one, two), "the two processes never synchronized")
            try one.send("storm 0 100 replicated 16")
            #expect(await eventually(within: .seconds(30)) { one.lastLine(startingWith: "storm-done") != nil })
            try one.send("update-storm 0 40 replicated 8")
            #expect(await eventually(within: .seconds(30)) { one.lastLine(startingWith: "update-storm-done") != nil })
            func endpoint(_ node: NodeChild) throws -> String {
                let ready = try #require(node.lastLine(startingWith: "ready"))
                let field = try #require(ready.split(separator: " ").first { $0.hasPrefix("metrics=") })
                return String(field.dropFirst("metrics=".count))
            }
            let url1 = try endpoint(one)
            #expect(url1.hasPrefix("http://127.0.0.3:"))
            var first: [String: Double] = [:]
            for _ in 0..<50 {
                let (status, body) = try Self.get(url1)
                #expect(status == 200)
                first = try Self.samples(body)
                if first["tandem_peer_lag_events"] == 0 { break }
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(first["tandem_synchronized"] == 1)
            #expect(first["tandem_failover_state{state=\"synchronization\"}"] == 1)
            #expect(first["tandem_term"] == 1)
            #expect(first["tandem_users{owner=\"1\",copy=\"primary\"}"] == 100)
            #expect(first["tandem_events_total{kind=\"login\"}"] == 100)
            #expect(first["tandem_events_total{kind=\"update\"}"] == 40)
            #expect(first["tandem_peer_lag_events"] == 0)
            #expect(first["tandem_peer_acknowledged_sequence"] == first["tandem_log_last_sequence"])
            #expect(first["tandem_log_holds"] == 1)
            #expect((first["tandem_commit_duration_count"] ?? 0) > 0)
            #expect(first["tandem_digest_mismatches"] == 0)

            let (status, body) = try Self.get(try endpoint(two))
            #expect(status == 200)
            let second = try Self.samples(body)
            #expect(second["tandem_users{owner=\"1\",copy=\"backup\"}"] == 100)
            #expect(second["tandem_peer_applied_sequence"] == first["tandem_log_last_sequence"])
            #expect(second["tandem_events_total{kind=\"update\"}"] == 40)
            #expect(second["tandem_snapshots_received"] != nil)
            let (missing, _) = try Self.get(url1.replacingOccurrences(of: "/metrics", with: "/status"))
            #expect(missing == 404)
        }
    }

    @Test("a second SIGTERM during the graceful shutdown exits at once, and the store reopens with every commit")
    func secondSignalForces() async throws {
        try await TwoProcessTests.withPairAndSecret { pair in
            // No peer: a replicated login waits for it, and the graceful shutdown waits for that login.
            let alone = try NodeChild(id: 1, pair: pair, extra: ["--replication-timeout", "60000"])
            defer { alone.kill() }
            #expect(await eventually(within: .seconds(20)) { alone.lastLine(startingWith: "ready") != nil })
            try alone.send("login 5")
            #expect(await eventually(within: .seconds(20)) { alone.acknowledged.contains(5) })
            try alone.send("storm 0 3 replicated 1")
            try await Task.sleep(for: .milliseconds(300))
            kill(alone.process.processIdentifier, SIGTERM)
            try await Task.sleep(for: .milliseconds(300))
            #expect(alone.process.isRunning, "the graceful shutdown did not wait for the write under way")
            kill(alone.process.processIdentifier, SIGTERM)
            alone.process.waitUntilExit()
            #expect(alone.process.terminationReason == .exit)
            #expect(alone.process.terminationStatus == 130)
            let store = try SessionStore.open(
                at: pair.path(1),
                configuration: .init(deviceID: 1, portalGroup: "campus")
            )
            #expect(try store.session(for: IPAddress(ipv4: 0x0A00_0005)) != nil)
            await store.close()
        }
    }

    /// Sends raw bytes on the socket and returns the first answer line.
    static func raw(_ text: String, _ socket: String) async throws -> String { try rawSync(text, socket) }
}

/// Whether a device answers on a control socket.
enum ControlClientProbe {
    static func answers(_ path: String) -> Bool {
        FileManager.default.fileExists(atPath: path)
            && (try? ControlSocketTests.rawSync("{\"command\":\"status\"}\n", path))?.contains("\"ok\":true") == true
    }
}

extension ControlSocketTests {
    static func rawSync(_ text: String, _ socket: String) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        process.arguments = [
            "-c",
            "import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(sys.argv[2].encode()); "
                + "print(s.makefile().readline(), end='')",
            socket, text,
        ]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = Pipe()
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(decoding: data, as: UTF8.self)
    }
}
