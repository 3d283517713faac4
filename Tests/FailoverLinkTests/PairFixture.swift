import Foundation
import Locking
import Logging
import NIOCore
import NIOPosix
import SessionStore
import TestSupport
import Testing

@testable import FailoverLink

/// A session of device `owner`, numbered: device 1's users are 10.1.x.x, device 2's 10.2.x.x.
func pairSession(_ number: Int, owner: DeviceID, sessionTimeout: UInt32 = 0) -> Session {
    Session(
        ip: IPAddress(ipv4: 0x0A00_0000 | UInt32(owner.rawValue) << 16 | UInt32(number)),
        mac: MACAddress(rawValue: 0x0200_0000_0000 | UInt64(owner.rawValue) << 24 | UInt64(number)),
        userName: "user\(owner)-\(number)",
        vlan: 100,
        accessInterface: "GigabitEthernet1/0/1",
        portalGroup: "campus",
        owner: owner,
        sessionTimeout: sessionTimeout
    )
}

/// The ports ``freePort()`` handed out in this test process, so that tests running in parallel never share one.
private let handedOutPorts = Locked<Set<Int>>([])

/// A TCP port free on both 127.0.0.1 and 127.0.0.2 when probed, and not handed out before in this process. (A
/// process outside the tests could still take it between the probe and the device's bind.)
func freePort() async throws -> Int {
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    var port: Int?
    while port == nil {
        let probe = try await ServerBootstrap(group: group).bind(host: "127.0.0.2", port: 0).get()
        let candidate = probe.localAddress!.port!
        let other = try? await ServerBootstrap(group: group).bind(host: "127.0.0.1", port: candidate).get()
        try await probe.close()
        if let other {
            try await other.close()
            if handedOutPorts.withLock({ $0.insert(candidate).inserted }) { port = candidate }
        }
    }
    try await group.shutdownGracefully()
    return port!
}

/// Two devices on loopback: device 1 on 127.0.0.1, device 2 on 127.0.0.2, each with its own store in a
/// temporary directory, each knowing the other's address. Devices can be stopped and started again on
/// the same store and port.
final class Pair: @unchecked Sendable {
    let directory: String
    let port: Int
    private(set) var nodes: [UInt8: FailoverNode] = [:]
    /// Each started device's event loops, as each device process has its own.
    private var eventLoopGroups: [UInt8: MultiThreadedEventLoopGroup] = [:]
    var secret = LinkSecret(bytes: "the pair's shared secret".utf8)
    /// How long a silent peer is given.
    var silenceLimit: TimeAmount = .milliseconds(600)
    /// The test makes the two users tables differ on purpose; otherwise a digest mismatch fails it.
    var plantsDivergence = false
    /// The digest mismatches each device reported, from the nodes stopped so far.
    private(set) var mismatches: [UInt8: Int] = [:]

    init() async throws {
        directory = NSTemporaryDirectory() + "tandem-pair-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        port = try await freePort()
    }

    func path(_ id: UInt8) -> String { directory + "/device\(id)" }

    func host(_ id: UInt8) -> String { "127.0.0.\(id)" }

    func linkConfiguration(_ id: UInt8) throws -> FailoverLinkService.Configuration {
        var link = FailoverLinkService.Configuration(
            identity: LinkIdentity(
                deviceID: DeviceID(rawValue: id)!,
                portalGroup: "campus",
                configurationDigest: NegotiationTests.digest
            ),
            secret: secret,
            listen: try SocketAddress(ipAddress: host(id), port: port),
            peer: try SocketAddress(ipAddress: host(id == 1 ? 2 : 1), port: port)
        )
        link.initialBackoff = .milliseconds(20)
        link.maximumBackoff = .milliseconds(200)
        link.silenceLimit = silenceLimit
        return link
    }

    /// Opens device `id`'s store and makes its node, not running (the caller runs it and closes the store).
    func makeNode(
        _ id: UInt8,
        digestInterval: Duration = .milliseconds(200),
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        tune: (inout SessionStore.Configuration) -> Void = { _ in }
    ) throws -> FailoverNode {
        var storeConfiguration = SessionStore.Configuration(deviceID: DeviceID(rawValue: id)!, portalGroup: "campus")
        storeConfiguration.checkpointInterval = .milliseconds(100)
        tune(&storeConfiguration)
        let store = try SessionStore.open(
            at: path(id),
            configuration: storeConfiguration,
            logger: Logger(label: "test.store\(id)")
        )
        var configuration = FailoverNode.Configuration(link: try linkConfiguration(id))
        configuration.digestInterval = digestInterval
        configuration.snapshotBatch = 500
        // Handovers of a few hundred users come in several batches, decoded on both of the walk's threads.
        configuration.handoverBatch = 64
        return FailoverNode(
            store: store,
            configuration: configuration,
            eventLoopGroup: eventLoopGroup,
            logger: Logger(label: "test.node\(id)")
        )
    }

    /// Opens device `id`'s store and starts its node.
    @discardableResult
    func start(
        _ id: UInt8,
        digestInterval: Duration = .milliseconds(200),
        tune: (inout SessionStore.Configuration) -> Void = { _ in }
    ) async throws -> FailoverNode {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        eventLoopGroups[id] = group
        let node = try makeNode(id, digestInterval: digestInterval, eventLoopGroup: group, tune: tune)
        do {
            try await node.start()
        } catch {
            eventLoopGroups[id] = nil
            try? await group.shutdownGracefully()
            throw error
        }
        nodes[id] = node
        return node
    }

    /// Stops device `id`'s node and closes its store.
    func stop(_ id: UInt8) async {
        guard let node = nodes.removeValue(forKey: id) else { return }
        mismatches[id, default: 0] += node.status.digestMismatches
        await node.shutdown()
        await node.store.close()
        try? await eventLoopGroups.removeValue(forKey: id)?.shutdownGracefully()
    }

    subscript(id: UInt8) -> FailoverNode { nodes[id]! }

    func synchronized() async -> Bool {
        await eventually { nodes.values.allSatisfy { $0.link.state == .synchronization } }
    }

    /// Whether both devices report synchronization: the link is up and their tables were found equal.
    func verified(within limit: Duration = .seconds(10)) async -> Bool {
        await eventually(within: limit) {
            nodes.count == 2 && nodes.values.allSatisfy { $0.status.state == .synchronization }
        }
    }

    /// Whether both stores hold exactly the same sessions.
    func converged(within limit: Duration = .seconds(10)) async -> Bool {
        await eventually(within: limit) {
            guard let one = nodes[1], let two = nodes[2] else { return false }
            return (try? one.store.allSessions()) == (try? two.store.allSessions())
        }
    }

    func tearDown() async {
        for id in Array(nodes.keys) { await stop(id) }
        try? FileManager.default.removeItem(atPath: directory)
    }
}

extension Pair {
    /// Runs `body` with a new pair, and tears the pair down after it (its nodes stopped, its stores closed, its
    /// directory removed), also when `body` throws, as a failed `#require` does.
    static func run<T>(_ body: (Pair) async throws -> T) async throws -> T {
        let pair = try await Pair()
        do {
            let result = try await body(pair)
            await pair.tearDown()
            // What the pair reports about itself must be true: with tables that never differed, a digest
            // mismatch is a false alarm.
            if !pair.plantsDivergence {
                for (id, count) in pair.mismatches.sorted(by: { $0.key < $1.key }) where count > 0 {
                    Issue.record("device \(id) reported \(count) digest mismatches, but the tables never differed")
                }
            }
            return result
        } catch {
            await pair.tearDown()
            throw error
        }
    }
}
