import Crypto
import Locking
import Logging
import NIOCore
import NIOPosix
import SessionStore
import TestSupport
import Testing

@testable import FailoverLink

@Suite("Failover link over TCP", .serialized)
struct LinkServiceTests {
    static let secret = LinkSecret(bytes: "the pair's shared secret".utf8)

    static func configuration(
        _ id: UInt8,
        host: String,
        peer: SocketAddress? = nil,
        secret: LinkSecret = secret,
        digest: [UInt8] = NegotiationTests.digest
    ) throws -> FailoverLinkService.Configuration {
        FailoverLinkService.Configuration(
            identity: LinkIdentity(
                deviceID: DeviceID(rawValue: id)!,
                portalGroup: "campus",
                configurationDigest: digest
            ),
            secret: secret,
            listen: try SocketAddress(ipAddress: host, port: 0),
            peer: peer
        )
    }

    /// Device 2 listens on 127.0.0.2; device 1, on 127.0.0.1, connects to it.
    static func pair(
        secretOf1: LinkSecret = secret,
        idOf2: UInt8 = 2,
        digestOf2: [UInt8] = NegotiationTests.digest
    ) async throws -> (FailoverLinkService, FailoverLinkService) {
        let two = FailoverLinkService(configuration: try configuration(idOf2, host: "127.0.0.2", digest: digestOf2))
        try await two.start()
        let address = try #require(two.listeningAddress)
        let one = FailoverLinkService(
            configuration: try configuration(1, host: "127.0.0.1", peer: address, secret: secretOf1)
        )
        try await one.start()
        return (one, two)
    }

    @Test("two devices on loopback negotiate and reach synchronization")
    func synchronization() async throws {
        let (one, two) = try await Self.pair()
        #expect(await eventually { one.state == .synchronization && two.state == .synchronization })
        #expect(one.peer?.deviceID == 2)
        #expect(two.peer?.deviceID == 1)
        await one.shutdown()
        // The peer notices the link went away.
        #expect(await eventually { two.state == .independence(.noPeer) })
        await two.shutdown()
    }

    @Test("both devices configured with each other's address keep one connection, and stay in synchronization")
    func oneConnection() async throws {
        // Device 1's port is reserved first, so that each device can be given the other's address.
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let probe = try await ServerBootstrap(group: group).bind(host: "127.0.0.1", port: 0).get()
        let port = try #require(probe.localAddress?.port)
        try await probe.close()
        try await group.shutdownGracefully()

        let two = FailoverLinkService(
            configuration: try Self.configuration(
                2,
                host: "127.0.0.2",
                peer: try SocketAddress(ipAddress: "127.0.0.1", port: port)
            )
        )
        try await two.start()
        var oneConfiguration = try Self.configuration(1, host: "127.0.0.1", peer: two.listeningAddress)
        oneConfiguration.listen = try SocketAddress(ipAddress: "127.0.0.1", port: port)
        let one = FailoverLinkService(configuration: oneConfiguration)
        try await one.start()

        #expect(await eventually { one.state == .synchronization && two.state == .synchronization })
        // Each side may have negotiated two connections; the one device 1 (the lower ID) initiated stays.
        #expect(await eventually { one.connectionCount == 1 && two.connectionCount == 1 })
        try await Task.sleep(for: .milliseconds(300))
        #expect(one.state == .synchronization && two.state == .synchronization)
        #expect(one.connectionCount == 1 && two.connectionCount == 1)
        await one.shutdown()
        await two.shutdown()
    }

    @Test("different configurations keep the pair in independence, and both say why")
    func configurationMismatch() async throws {
        let (one, two) = try await Self.pair(digestOf2: Array(SHA256.hash(data: [1, 2, 3])))
        #expect(await eventually { "\(one.state)".contains("R8") && "\(two.state)".contains("R8") })
        await one.shutdown()
        await two.shutdown()
    }

    @Test("a wrong secret: both devices stay in independence with an authentication failure")
    func wrongSecret() async throws {
        let (one, two) = try await Self.pair(secretOf1: LinkSecret(bytes: "a guess".utf8))
        #expect(
            await eventually {
                "\(one.state)".contains("same shared secret") && "\(two.state)".contains("same shared secret")
            }
        )
        await one.shutdown()
        await two.shutdown()
    }

    @Test("equal device IDs are refused on both sides, naming the conflict")
    func sameDeviceID() async throws {
        let (one, two) = try await Self.pair(idOf2: 1)
        #expect(
            await eventually {
                "\(one.state)".contains("both devices have device ID 1")
                    && "\(two.state)".contains("both devices have device ID 1")
            }
        )
        await one.shutdown()
        await two.shutdown()
    }

    @Test("garbage, an over-long frame and a truncated frame are dropped, and the listener still serves")
    func hostileClients() async throws {
        let two = FailoverLinkService(configuration: try Self.configuration(2, host: "127.0.0.2"))
        try await two.start()
        let address = try #require(two.listeningAddress)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        var overLong = ByteBuffer()
        overLong.writeInteger(UInt32.max)
        overLong.writeBytes([1, 2, 3])
        var truncated = ByteBuffer()
        Frame(type: .hello, payload: ByteBuffer(bytes: Array(repeating: 7, count: 40))).write(to: &truncated)
        truncated.moveWriterIndex(to: truncated.writerIndex - 10)
        let inputs: [ByteBuffer] = [
            ByteBuffer(bytes: (0..<256).map { _ in UInt8.random(in: 0...255) }), overLong, truncated,
            ByteBuffer(string: "GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
        ]
        for input in inputs {
            let channel = try await ClientBootstrap(group: group).connect(to: address).get()
            try await channel.writeAndFlush(input)
            if input == truncated { try await channel.close() }
            // The listener closes every one of these connections (or has them closed by the client).
            try await channel.closeFuture.get()
        }
        #expect(two.state != .synchronization)
        // A real peer still negotiates.
        let one = FailoverLinkService(configuration: try Self.configuration(1, host: "127.0.0.1", peer: address))
        try await one.start()
        #expect(await eventually { one.state == .synchronization && two.state == .synchronization })
        await one.shutdown()
        await two.shutdown()
        try await group.shutdownGracefully()
    }

    @Test(
        "a device whose reader falls behind a peer's burst keeps the link past the dead-peer timeout, and reads it all",
        .timeLimit(.minutes(1))
    )
    func readerBehind() async throws {
        let frames = 200
        let payload = ByteBuffer(bytes: Array(repeating: 0x5A, count: 64 * 1024))
        // Locked, not Mutex: ThreadSanitizer sees its lock (the standard library's Mutex is not instrumented).
        let received = Locked<Int>(0)
        let connections = Locked<[UInt8: Int]>([:])
        let done = AsyncStream<Void>.makeStream()
        // Device 2 reads nothing for three dead-peer timeouts, as a standby still applying what came before
        // does, then reads the rest. Device 1 sends 12.5 MiB at once, more than the sockets hold, and keeps
        // reading device 2's heartbeats meanwhile.
        // Each device has event loops of its own, as each device process does, so that other tests' work does
        // not delay its heartbeats.
        let groups = [MultiThreadedEventLoopGroup(numberOfThreads: 1), MultiThreadedEventLoopGroup(numberOfThreads: 1)]
        // The default dead-peer timeout (1 s): a shorter one is within what a loaded test machine can delay
        // a thread by, which would make the peer silent for real.
        let configuration2 = try Self.configuration(2, host: "127.0.0.2")
        let behind = configuration2.silenceLimit * 3
        let two = FailoverLinkService(
            configuration: configuration2,
            eventLoopGroup: groups[1],
            logger: Logger(label: "test.link2"),
            connectionHandler: { connection in
                connections.withLock { $0[2, default: 0] += 1 }
                try? await connection.channel.executeThenClose { inbound, _ in
                    try await Task.sleep(for: .nanoseconds(behind.nanoseconds))
                    for try await frame in inbound where frame.type == .records {
                        let count = received.withLock { count in
                            count += 1
                            return count
                        }
                        if count == frames { done.continuation.finish() }
                    }
                }
            }
        )
        try await two.start()
        // Device 1 gives device 2 a long dead-peer timeout: only device 2's judgement is under test, and a
        // loaded machine can hold device 2's heartbeats up for longer than the default.
        var configuration1 = try Self.configuration(1, host: "127.0.0.1", peer: two.listeningAddress)
        configuration1.silenceLimit = .seconds(30)
        let one = FailoverLinkService(
            configuration: configuration1,
            eventLoopGroup: groups[0],
            logger: Logger(label: "test.link1"),
            connectionHandler: { connection in
                connections.withLock { $0[1, default: 0] += 1 }
                try? await connection.channel.executeThenClose { inbound, outbound in
                    try await withThrowingTaskGroup(of: Void.self) { group in
                        group.addTask { for try await _ in inbound {} }
                        for _ in 0..<frames { try await outbound.write(Frame(type: .records, payload: payload)) }
                        try await group.next()
                    }
                }
            }
        )
        try await one.start()
        #expect(await eventually { one.state == .synchronization && two.state == .synchronization })
        // Until device 2 has read every frame, the link stays up on both sides.
        let watch = Task {
            var seen: Set<FailoverState> = []
            while !Task.isCancelled {
                seen.insert(one.state)
                seen.insert(two.state)
                try? await Task.sleep(for: .milliseconds(20))
            }
            return seen
        }
        for await _ in done.stream {}
        watch.cancel()
        let states = await watch.value
        #expect(received.withLock { $0 } == frames)
        #expect(states == [.synchronization])
        #expect(connections.withLock { $0 } == [1: 1, 2: 1])
        await one.shutdown()
        await two.shutdown()
        for group in groups { try await group.shutdownGracefully() }
    }

    @Test(
        "a device whose own event loop was held up past the dead-peer timeout reads the peer's heartbeats before judging it",
        .timeLimit(.minutes(1))
    )
    func loopHeldUp() async throws {
        // Each device has one event loop of its own. Device 2 gives device 1 a long dead-peer timeout: device 1,
        // whose loop is held up, is silent for real meanwhile, and only device 1's judgement is under test.
        let groups = [MultiThreadedEventLoopGroup(numberOfThreads: 1), MultiThreadedEventLoopGroup(numberOfThreads: 1)]
        var configuration2 = try Self.configuration(2, host: "127.0.0.2")
        configuration2.silenceLimit = .seconds(30)
        let two = FailoverLinkService(
            configuration: configuration2,
            eventLoopGroup: groups[1],
            logger: Logger(label: "test.link2")
        )
        try await two.start()
        let configuration1 = try Self.configuration(1, host: "127.0.0.1", peer: two.listeningAddress)
        let one = FailoverLinkService(
            configuration: configuration1,
            eventLoopGroup: groups[0],
            logger: Logger(label: "test.link1")
        )
        try await one.start()
        #expect(await eventually { one.state == .synchronization && two.state == .synchronization })
        let changes = one.stateChanges
        // Device 1's loop does work of its own for three dead-peer timeouts; device 2's heartbeats wait in the
        // socket meanwhile, and device 1 reads them once its loop runs again.
        let heldUp = configuration1.silenceLimit * 3
        try await groups[0].next().submit {
            var remaining = timespec(tv_sec: Int(heldUp.nanoseconds / 1_000_000_000), tv_nsec: 0)
            var request = remaining
            while nanosleep(&request, &remaining) != 0 { request = remaining }
        }.get()
        // A few dead-peer timeouts more, with the loop running, for a late judgement to show.
        try await Task.sleep(for: .seconds(2))
        await one.shutdown()
        await two.shutdown()
        var states: [FailoverState] = []
        for await state in changes { states.append(state) }
        // Device 1 kept the link until it shut down: no link lost, whatever the reason.
        #expect(states.contains(.synchronization))
        let losses = states.filter {
            if case .independence(.linkLost) = $0 { true } else { false }
        }
        #expect(losses == [])
        for group in groups { try await group.shutdownGracefully() }
    }
}
