import Configuration
import FailoverLink
import Foundation
import NIOCore
import SessionStore

/// Everything `tandem node` needs to run a device: read from one configuration file, with environment
/// variables (`TANDEM_` and the key in capitals, `TANDEM_FAILOVER_LISTEN`) and command-line options over it.
///
/// Reading checks every value and refuses the first that is wrong, missing or unknown with a ``SettingsError``
/// that names the key, the value and what is allowed. The file is JSON, its keys nested:
///
/// ```json
/// {
///   "device": { "id": 1, "portal_group": "campus" },
///   "store": { "path": "/var/lib/tandem", "durability": "sync" },
///   "failover": {
///     "listen": "192.168.255.1:7400", "peer": "192.168.255.2:7400",
///     "secret_file": "/etc/tandem/pair.secret"
///   },
///   "control": { "socket": "/run/tandem/control.sock" },
///   "metrics": { "listen": "10.0.0.1:9400" }
/// }
/// ```
public struct NodeSettings: Sendable {
    public var deviceID: DeviceID
    public var portalGroup: PortalGroup
    public var storePath: String
    public var durability: SessionStore.Durability
    public var checkpointInterval: Duration
    public var logQuotaBytes: Int
    public var onDamage: SessionStore.DamagePolicy
    public var listen: HostPort
    public var peer: HostPort?
    public var secretFile: String
    public var configurationDigest: [UInt8]?
    public var tls: TLSFiles?
    public var replicationTimeout: Duration
    public var silenceLimit: Duration
    public var controlSocket: String
    public var controlMode: UInt16
    public var metricsListen: HostPort?
    public var logLevel: String

    /// The files of mutual TLS on the failover link: this device's certificate chain and key, and the pair's CA.
    public struct TLSFiles: Sendable, Equatable {
        public var certificate: String
        public var privateKey: String
        public var ca: String
    }

    /// Every key a configuration may hold, with what it takes.
    public static let keys: [(key: String, allowed: String)] = [
        ("device.id", "this device's ID, 1 to 255 (R4)"),
        ("device.portal_group", "the portal group of the portal service backup interface, 1 to 31 of [A-Za-z0-9._-]"),
        ("store.path", "the store's directory"),
        ("store.durability", "sync (the default), no-meta-sync or no-sync"),
        ("store.checkpoint_interval_ms", "milliseconds between checkpoints, 1 to 3600000 (default 1000)"),
        ("store.log_quota_bytes", "the most log kept for a lagging peer, at least 1048576 (default 8 GiB)"),
        ("store.on_damage", "recover (the default) or refuse"),
        ("failover.listen", "this device's failover address, host:port ([v6]:port), on this machine (R3)"),
        ("failover.peer", "the peer's failover address, host:port"),
        ("failover.secret_file", "a file of at least 16 bytes, readable by its owner only (mode 0600 or 0400)"),
        ("failover.configuration_digest", "the SHA-256 of the AAA and portal configuration, 64 hex digits (R8)"),
        ("failover.tls.certificate", "this device's certificate chain, PEM (with private_key and ca)"),
        ("failover.tls.private_key", "this device's private key, PEM, readable by its owner only"),
        ("failover.tls.ca", "the pair's CA certificate, PEM"),
        (
            "failover.replication_timeout_ms",
            "how long a replicated write waits for the peer, 1 to 600000 (default 1000)"
        ),
        ("failover.silence_limit_ms", "how long the peer may stay silent, 100 to 60000 (default 1000)"),
        ("control.socket", "the control socket's path (default: control.sock in the store's directory)"),
        ("control.mode", "the control socket's mode, octal, owner read and write at least (default 0600)"),
        (
            "metrics.listen",
            "the metrics endpoint, host:port (port 0: any free one), not on the failover interface (R3); none by default"
        ),
        ("log.level", "trace, debug, info, notice (the default), warning or error"),
    ]

    /// Reads the settings from `reader`, checking every value.
    ///
    /// - Parameters:
    ///   - reader: the configuration: command-line overrides, the environment and the file, in that order.
    ///   - localAddresses: the addresses of this machine, which `failover.listen` and `metrics.listen` must be
    ///     among (any address, `0.0.0.0` or `::`, is always allowed for the metrics).
    /// - Throws: ``SettingsError`` naming the first wrong or missing key.
    public init(reading reader: ConfigReader, localAddresses: Set<String>) throws(SettingsError) {
        let values = Values(reader: reader)
        let id = try values.integer("device.id", in: 1...255, default: nil)!
        deviceID = DeviceID(rawValue: UInt8(id))!
        let group = try values.text("device.portal_group")!
        do {
            portalGroup = try PortalGroup(group)
        } catch {
            throw SettingsError(key: "device.portal_group", value: group, problem: "\(error)")
        }
        storePath = try values.text("store.path")!
        durability = try values.choice(
            "store.durability",
            ["sync": .syncEveryCommit, "no-meta-sync": .noMetaSync, "no-sync": .noSync],
            default: .syncEveryCommit
        )
        checkpointInterval = .milliseconds(
            try values.integer("store.checkpoint_interval_ms", in: 1...3_600_000, default: 1_000)!
        )
        logQuotaBytes = try values.integer("store.log_quota_bytes", in: 1 << 20...Int.max, default: 8 << 30)!
        onDamage = try values.choice(
            "store.on_damage",
            ["recover": .recoverFromPeer, "refuse": .refuse],
            default: .recoverFromPeer
        )
        listen = try values.address("failover.listen")!
        guard listen.port > 0 else {
            throw SettingsError(key: "failover.listen", value: listen.description, problem: "needs a port, 1 to 65535")
        }
        guard Self.isLocal(listen.host, localAddresses) else {
            throw SettingsError(
                key: "failover.listen",
                value: listen.description,
                problem:
                    "\(listen.host) is not an address of this machine (it has \(localAddresses.sorted().joined(separator: ", ")))"
            )
        }
        peer = try values.address("failover.peer", required: false)
        secretFile = try values.text("failover.secret_file")!
        if let digest = try values.text("failover.configuration_digest", required: false) {
            guard digest.count == 64, let bytes = Self.hexBytes(digest) else {
                throw SettingsError(
                    key: "failover.configuration_digest",
                    value: digest,
                    problem: "is not 64 hex digits (a SHA-256)"
                )
            }
            configurationDigest = bytes
        } else {
            configurationDigest = nil
        }
        let certificate = try values.text("failover.tls.certificate", required: false)
        let privateKey = try values.text("failover.tls.private_key", required: false)
        let ca = try values.text("failover.tls.ca", required: false)
        switch (certificate, privateKey, ca) {
        case (nil, nil, nil):
            tls = nil
        case (let certificate?, let privateKey?, let ca?):
            tls = TLSFiles(certificate: certificate, privateKey: privateKey, ca: ca)
        default:
            let missing = [("certificate", certificate), ("private_key", privateKey), ("ca", ca)]
                .filter { $0.1 == nil }.map { "failover.tls.\($0.0)" }
            throw SettingsError(
                key: missing[0],
                value: nil,
                problem: "is missing: TLS needs failover.tls.certificate, failover.tls.private_key and failover.tls.ca"
            )
        }
        replicationTimeout = .milliseconds(
            try values.integer("failover.replication_timeout_ms", in: 1...600_000, default: 1_000)!
        )
        silenceLimit = .milliseconds(try values.integer("failover.silence_limit_ms", in: 100...60_000, default: 1_000)!)
        controlSocket = try values.text("control.socket", required: false) ?? storePath + "/control.sock"
        guard controlSocket.utf8.count < 108 else {
            throw SettingsError(
                key: "control.socket",
                value: controlSocket,
                problem: "is \(controlSocket.utf8.count) bytes long; a Unix socket's path takes at most 107"
            )
        }
        let modeText = try values.text("control.mode", required: false) ?? "0600"
        guard let mode = UInt16(modeText, radix: 8), mode <= 0o777, mode & 0o600 == 0o600 else {
            throw SettingsError(
                key: "control.mode",
                value: modeText,
                problem: "is not an octal mode with owner read and write, such as 0600 or 0660"
            )
        }
        controlMode = mode
        metricsListen = try values.address("metrics.listen", required: false)
        if let metricsListen {
            guard metricsListen.host != listen.host else {
                throw SettingsError(
                    key: "metrics.listen",
                    value: metricsListen.description,
                    problem:
                        "is on the failover interface (\(listen.host)), which carries only negotiation and backup data (R3)"
                )
            }
            let any = ["0.0.0.0", "::"]
            guard any.contains(metricsListen.host) || Self.isLocal(metricsListen.host, localAddresses) else {
                throw SettingsError(
                    key: "metrics.listen",
                    value: metricsListen.description,
                    problem: "\(metricsListen.host) is not an address of this machine"
                )
            }
        }
        logLevel = try values.choice(
            "log.level",
            [
                "trace": "trace", "debug": "debug", "info": "info", "notice": "notice", "warning": "warning",
                "error": "error",
            ],
            default: "notice"
        )
    }

    /// Whether `host` is an address of this machine: one of its interfaces', or any of 127.0.0.0/8 when it has
    /// loopback (which answers for all of them: a pair on one machine uses 127.0.0.1 and 127.0.0.2).
    static func isLocal(_ host: String, _ localAddresses: Set<String>) -> Bool {
        if localAddresses.contains(host) { return true }
        guard localAddresses.contains("127.0.0.1"), let address = IPAddress(host), address.isIPv4 else { return false }
        return address.description.hasPrefix("127.")
    }

    private static func hexBytes(_ text: String) -> [UInt8]? {
        var bytes: [UInt8] = []
        var high: UInt8?
        for character in text {
            guard let digit = character.hexDigitValue else { return nil }
            if let first = high {
                bytes.append(first << 4 | UInt8(digit))
                high = nil
            } else {
                high = UInt8(digit)
            }
        }
        return bytes
    }
}

/// A `host:port` address: an IPv4 address, or an IPv6 one in brackets.
public struct HostPort: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: Int

    /// Parses `host:port` or `[v6]:port`; `nil` when it is not one.
    public init?(_ text: String) {
        let host: Substring
        let port: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else {
                return nil
            }
            host = text[text.index(after: text.startIndex)..<close]
            port = text[text.index(close, offsetBy: 2)...]
        } else {
            guard let colon = text.lastIndex(of: ":"), !text[..<colon].contains(":") else { return nil }
            host = text[..<colon]
            port = text[text.index(after: colon)...]
        }
        guard let number = Int(port), (0...65_535).contains(number), IPAddress(String(host)) != nil else {
            return nil
        }
        self.host = String(host)
        self.port = number
    }

    public var description: String { Self.text(host: host, port: port) }

    /// `host:port`, or `[host]:port` for IPv6.
    public static func text(host: String, port: Int) -> String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    /// The socket address.
    public func socketAddress() throws -> SocketAddress { try SocketAddress(ipAddress: host, port: port) }
}

/// A configuration value that is wrong or missing: the key, the value, and what is allowed.
public struct SettingsError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The key, such as `failover.listen`.
    public var key: String
    /// The value found; `nil` when none was.
    public var value: String?
    /// What is wrong and what is allowed.
    public var problem: String

    public init(key: String, value: String?, problem: String) {
        self.key = key
        self.value = value
        self.problem = problem
    }

    public var description: String {
        if let value { return "\(key) = \(value): \(problem)" }
        return "\(key): \(problem)"
    }
}

/// Typed reads of the configuration, each refusing a value it cannot take with the key and what is allowed.
private struct Values {
    let reader: ConfigReader

    func allowed(_ key: String) -> String { NodeSettings.keys.first { $0.key == key }?.allowed ?? "" }

    /// The value of `key` as text, whether the source holds it as a string or a number.
    func raw(_ key: String) -> String? {
        if let text = reader.string(forKey: ConfigKey(key)) { return text }
        if let number = reader.int(forKey: ConfigKey(key)) { return String(number) }
        if let flag = reader.bool(forKey: ConfigKey(key)) { return String(flag) }
        return nil
    }

    func text(_ key: String, required: Bool = true) throws(SettingsError) -> String? {
        guard let value = raw(key) else {
            if required { throw SettingsError(key: key, value: nil, problem: "is missing: \(allowed(key))") }
            return nil
        }
        guard !value.isEmpty else { throw SettingsError(key: key, value: value, problem: "is empty: \(allowed(key))") }
        return value
    }

    func integer(_ key: String, in range: ClosedRange<Int>, default fallback: Int?) throws(SettingsError) -> Int? {
        guard let value = try text(key, required: fallback == nil) else { return fallback }
        guard let number = Int(value), range.contains(number) else {
            throw SettingsError(key: key, value: value, problem: "is not allowed: \(allowed(key))")
        }
        return number
    }

    func choice<T>(_ key: String, _ choices: [String: T], default fallback: T) throws(SettingsError) -> T {
        guard let value = try text(key, required: false) else { return fallback }
        guard let chosen = choices[value] else {
            throw SettingsError(key: key, value: value, problem: "is not allowed: \(allowed(key))")
        }
        return chosen
    }

    func address(_ key: String, required: Bool = true) throws(SettingsError) -> HostPort? {
        guard let value = try text(key, required: required) else { return nil }
        guard let address = HostPort(value) else {
            throw SettingsError(key: key, value: value, problem: "is not host:port with an IP address: \(allowed(key))")
        }
        return address
    }
}
