import DeviceService
import Foundation
import SessionStore
import TestSupport
import Testing

@Suite("Device settings: file, environment, options")
struct SettingsTests {
    static let valid = """
        {
          "device": { "id": 2, "portal_group": "campus" },
          "store": { "path": "/var/lib/tandem", "durability": "no-meta-sync", "checkpoint_interval_ms": 500 },
          "failover": {
            "listen": "127.0.0.2:7400", "peer": "127.0.0.1:7400",
            "secret_file": "/etc/tandem/pair.secret", "replication_timeout_ms": 2000
          },
          "control": { "socket": "/run/tandem/device2.sock" },
          "metrics": { "listen": "127.0.0.9:9400" }
        }
        """

    func write(_ text: String, in directory: TemporaryDirectory) -> String {
        let path = directory.child("tandem.json")
        _ = FileManager.default.createFile(atPath: path, contents: Data(text.utf8))
        return path
    }

    @Test("a file holds every setting; the environment overrides it, and the options override both")
    func layers() async throws {
        let directory = TemporaryDirectory()
        let file = write(Self.valid, in: directory)
        let settings = try await NodeSettings.load(file: file, environment: [:])
        #expect(settings.deviceID == 2)
        #expect(settings.portalGroup == "campus")
        #expect(settings.durability == .noMetaSync)
        #expect(settings.checkpointInterval == .milliseconds(500))
        #expect(settings.listen.description == "127.0.0.2:7400")
        #expect(settings.peer?.port == 7400)
        #expect(settings.replicationTimeout == .seconds(2))
        #expect(settings.silenceLimit == .seconds(1))  // the default
        #expect(settings.controlSocket == "/run/tandem/device2.sock")
        #expect(settings.controlMode == 0o600)
        #expect(settings.metricsListen?.description == "127.0.0.9:9400")
        #expect(settings.onDamage == .recoverFromPeer)

        let environment = ["TANDEM_FAILOVER_REPLICATION_TIMEOUT_MS": "3000", "TANDEM_STORE_PATH": "/srv/tandem"]
        let overridden = try await NodeSettings.load(file: file, environment: environment)
        #expect(overridden.replicationTimeout == .seconds(3))
        #expect(overridden.storePath == "/srv/tandem")
        let optioned = try await NodeSettings.load(
            file: file,
            overrides: ["store.path": "/tmp/dev2"],
            environment: environment
        )
        #expect(optioned.storePath == "/tmp/dev2")
    }

    static let refusals: [(String, [String: String], String)] = [
        ("device.id", ["device.id": "300"], "device.id = 300: is not allowed: this device's ID, 1 to 255 (R4)"),
        ("portal group", ["device.portal_group": "campus west"], "device.portal_group = campus west: portalGroup:"),
        ("durability", ["store.durability": "fast"], "store.durability = fast: is not allowed: sync (the default)"),
        (
            "an address not on this machine", ["failover.listen": "8.8.8.8:7999"],
            "failover.listen = 8.8.8.8:7999: 8.8.8.8 is not an address of this machine"
        ),
        (
            "not an address", ["failover.peer": "peer.example:7400"],
            "failover.peer = peer.example:7400: is not host:port"
        ),
        (
            "metrics on the failover interface", ["metrics.listen": "127.0.0.2:9400"],
            "metrics.listen = 127.0.0.2:9400: is on the failover interface (127.0.0.2)"
        ),
        (
            "control mode", ["control.mode": "0400"],
            "control.mode = 0400: is not an octal mode with owner read and write"
        ),
        (
            "digest", ["failover.configuration_digest": "abc"],
            "failover.configuration_digest = abc: is not 64 hex digits"
        ),
        (
            "TLS in part", ["failover.tls.certificate": "/etc/tandem/cert.pem"],
            "failover.tls.private_key: is missing: TLS needs"
        ),
        ("silence limit", ["failover.silence_limit_ms": "10"], "failover.silence_limit_ms = 10: is not allowed"),
    ]

    @Test("a wrong value is refused with its key, the value and what is allowed", arguments: refusals)
    func refused(_ name: String, _ overrides: [String: String], _ message: String) async throws {
        let directory = TemporaryDirectory()
        let file = write(Self.valid, in: directory)
        let error = await #expect(throws: SettingsError.self) {
            try await NodeSettings.load(file: file, overrides: overrides, environment: [:])
        }
        #expect(error?.description.hasPrefix(message) == true, "\(error?.description ?? "no error")")
    }

    @Test("a missing setting, an unknown key and a file that is not JSON are refused by name")
    func missingAndUnknown() async throws {
        let directory = TemporaryDirectory()
        let missing = await #expect(throws: SettingsError.self) {
            try await NodeSettings.load(file: nil, overrides: ["device.id": "1"], environment: [:])
        }
        #expect(
            missing?.description
                == "device.portal_group: is missing: the portal group of the portal service backup interface, 1 to 31 of [A-Za-z0-9._-]"
        )
        let typo = write(Self.valid.replacingOccurrences(of: "\"peer\"", with: "\"pear\""), in: directory)
        let unknown = await #expect(throws: SettingsError.self) {
            try await NodeSettings.load(file: typo, environment: [:])
        }
        #expect(unknown?.key == "failover.pear")
        #expect(unknown?.description.contains("is not a setting of tandem node") == true)
        let broken = write("{ \"device\": ", in: directory)
        let notJSON = await #expect(throws: SettingsError.self) {
            try await NodeSettings.load(file: broken, environment: [:])
        }
        #expect(notJSON?.description.contains("is not JSON") == true)
        let absent = await #expect(throws: SettingsError.self) {
            try await NodeSettings.load(file: directory.child("nowhere.json"), environment: [:])
        }
        #expect(absent?.description.contains("cannot be read: No such file or directory") == true)
    }

    @Test("the example configuration in tools/ reads, with this machine's addresses put in by options")
    func example() async throws {
        let example = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("tools/tandem.json.example").path
        let settings = try await NodeSettings.load(
            file: example,
            overrides: ["failover.listen": "127.0.0.1:7400", "metrics.listen": "127.0.0.3:9400"],
            environment: [:]
        )
        #expect(settings.controlSocket == "/run/tandem/control.sock")
        #expect(settings.peer?.description == "192.168.255.2:7400")
        #expect(settings.configurationDigest == [UInt8](repeating: 0, count: 32))
    }

    @Test("a secret file others may read is refused, as ssh refuses such a key; a short one too")
    func secretFile() throws {
        let directory = TemporaryDirectory()
        let path = directory.child("pair.secret")
        _ = FileManager.default.createFile(atPath: path, contents: Data(repeating: 7, count: 32))
        chmod(path, 0o644)
        let open = #expect(throws: SettingsError.self) { try NodeSettings.readSecret(at: path) }
        #expect(open?.description.contains("has mode 0644, readable by others; run `chmod 600") == true)
        chmod(path, 0o600)
        #expect(try NodeSettings.readSecret(at: path).count == 32)
        _ = FileManager.default.createFile(atPath: path, contents: Data(repeating: 7, count: 8))
        chmod(path, 0o400)
        let short = #expect(throws: SettingsError.self) { try NodeSettings.readSecret(at: path) }
        #expect(short?.description.contains("holds 8 bytes; use at least 16") == true)
        let none = #expect(throws: SettingsError.self) { try NodeSettings.readSecret(at: directory.child("none")) }
        #expect(none?.description.contains("No such file or directory") == true)
    }

    @Test("this machine's addresses include loopback, and a host:port parses IPv4 and bracketed IPv6")
    func addresses() {
        let local = NodeSettings.localAddresses()
        #expect(local.contains("127.0.0.1"))
        #expect(!local.contains("8.8.8.8"))
        #expect(HostPort("[::1]:7400")?.description == "[::1]:7400")
        #expect(HostPort("10.0.0.1:0")?.port == 0)
        #expect(HostPort("10.0.0.1:65536") == nil)
        #expect(HostPort("::1:7400") == nil)
    }
}
