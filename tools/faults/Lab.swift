import Foundation

/// Where the two devices of a run live: two network namespaces joined by one veth pair that carries only the
/// failover link (R3), made by the run and removed at its end (also when it fails); or two loopback
/// addresses, when the run may not make namespaces (then the link cannot be cut).
final class Lab: @unchecked Sendable {
    // `@unchecked Sendable`: every property is set in `init`; `removed` is guarded by `lock`.
    enum Topology: String, Sendable { case namespaces, loopback }

    let topology: Topology
    /// Names this run's namespaces and interfaces, so that parallel runs do not collide.
    let tag: String
    let port: Int
    private let lock = NSLock()
    private var removed = false
    private var dropping: Set<UInt8> = []

    init(topology: Topology, tag: String, port: Int) throws {
        self.topology = topology
        self.tag = tag
        self.port = port
        guard topology == .namespaces else { return }
        do {
            for device: UInt8 in [1, 2] { try Shell.run(["ip", "netns", "add", namespace(device)]) }
            try Shell.run(["ip", "link", "add", interface(1), "type", "veth", "peer", "name", interface(2)])
            for device: UInt8 in [1, 2] {
                let ns = namespace(device)
                try Shell.run(["ip", "link", "set", interface(device), "netns", ns])
                try Shell.run(["ip", "-n", ns, "addr", "add", address(device) + "/24", "dev", interface(device)])
                try Shell.run(["ip", "-n", ns, "link", "set", "lo", "up"])
                try Shell.run(["ip", "-n", ns, "link", "set", interface(device), "up"])
            }
        } catch {
            tearDown()
            throw error
        }
    }

    /// Device `device`'s namespace.
    func namespace(_ device: UInt8) -> String { "tdm-\(tag)-\(device)" }

    /// Device `device`'s end of the failover veth.
    func interface(_ device: UInt8) -> String { "tf\(tag)\(device)" }

    /// Device `device`'s failover address.
    func address(_ device: UInt8) -> String {
        topology == .namespaces ? "198.18.0.\(device)" : "127.0.0.\(device)"
    }

    /// `command`, run inside device `device`'s namespace.
    func inside(_ device: UInt8, _ command: [String]) -> [String] {
        topology == .namespaces ? ["ip", "netns", "exec", namespace(device)] + command : command
    }

    /// Takes device `device`'s end of the failover link down: the peer sees NO-CARRIER and silence.
    func linkDown(_ device: UInt8) throws {
        try Shell.run(["ip", "-n", namespace(device), "link", "set", interface(device), "down"])
    }

    func linkUp(_ device: UInt8) throws {
        try Shell.run(["ip", "-n", namespace(device), "link", "set", interface(device), "up"])
    }

    /// Drops every packet in and out of device `device`'s failover interface, silently, the link staying up.
    func drop(_ device: UInt8) throws {
        let nft = inside(device, ["nft"])
        try Shell.run(nft + ["add", "table", "inet", "cut"])
        try Shell.run(nft + ["add", "chain", "inet", "cut", "out", "{ type filter hook output priority 0; }"])
        try Shell.run(nft + ["add", "chain", "inet", "cut", "in", "{ type filter hook input priority 0; }"])
        try Shell.run(nft + ["add", "rule", "inet", "cut", "out", "oifname", interface(device), "drop"])
        try Shell.run(nft + ["add", "rule", "inet", "cut", "in", "iifname", interface(device), "drop"])
        lock.withLock { _ = dropping.insert(device) }
    }

    func undrop(_ device: UInt8) throws {
        try Shell.run(inside(device, ["nft", "delete", "table", "inet", "cut"]))
        lock.withLock { _ = dropping.remove(device) }
    }

    /// Removes what the run made: the nftables tables and the namespaces (their veths go with them).
    func tearDown() {
        let (first, drops) = lock.withLock { () -> (Bool, Set<UInt8>) in
            defer { removed = true }
            return (!removed, dropping)
        }
        guard first, topology == .namespaces else { return }
        for device in drops {
            _ = try? Shell.run(inside(device, ["nft", "delete", "table", "inet", "cut"]), check: false)
        }
        for device: UInt8 in [1, 2] { _ = try? Shell.run(["ip", "netns", "delete", namespace(device)], check: false) }
    }

    deinit { tearDown() }
}

/// A small tmpfs for a device's store, to fill it up on purpose.
final class SmallDisk: @unchecked Sendable {
    // `@unchecked Sendable`: set in `init`; `mounted` guarded by `lock`.
    let path: String
    private let lock = NSLock()
    private var mounted = true

    init(path: String, megabytes: Int) throws {
        self.path = path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        try Shell.run(["mount", "-t", "tmpfs", "-o", "size=\(megabytes)m", "tandem-faults", path])
    }

    /// Fills the disk but for about `leaving` bytes.
    func fill(leaving: Int = 0) throws {
        let free = try freeBytes()
        let size = max(0, free - leaving)
        let filler = path + "/filler"
        guard FileManager.default.createFile(atPath: filler, contents: nil) else { return }
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: filler))
        defer { try? handle.close() }
        let chunk = Data(count: 1 << 20)
        var written = 0
        while written + chunk.count <= size {
            do { try handle.write(contentsOf: chunk) } catch { break }
            written += chunk.count
        }
        if size - written > 0 { try? handle.write(contentsOf: Data(count: size - written)) }
    }

    /// Gives the space back.
    func empty() throws { try? FileManager.default.removeItem(atPath: path + "/filler") }

    func freeBytes() throws -> Int {
        var stats = statvfs()
        guard statvfs(path, &stats) == 0 else {
            throw Shell.Failure(command: ["statvfs", path], status: errno, output: "")
        }
        return Int(stats.f_bavail) * Int(stats.f_frsize)
    }

    func unmount() {
        let first = lock.withLock { () -> Bool in
            defer { mounted = false }
            return mounted
        }
        if first { _ = try? Shell.run(["umount", "-l", path], check: false) }
    }

    deinit { unmount() }
}
