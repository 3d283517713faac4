import Locking
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import SessionStore
import TestSupport
import Testing

@testable import FailoverLink

/// Every value a stream yields, collected by a task of its own.
private final class Recorder<Element: Sendable>: Sendable {
    private let values = Locked<[Element]>([])
    private let task = Locked<Task<Void, Never>?>(nil)

    init(_ stream: AsyncStream<Element>) {
        let task = Task { [self] in
            for await value in stream { values.withLock { $0.append(value) } }
        }
        self.task.withLock { $0 = task }
    }

    var recorded: [Element] { values.withLock { $0 } }

    /// Waits until the stream ends.
    func waitUntilEnded() async { await task.withLock { $0 }?.value }
}

@Suite("The link and the node as services", .serialized)
struct ServiceTests {
    @Test(
        "a node's ServiceGroup shut down gracefully: its run() returns, the store stays open, and the peer goes to independence because the connection closed",
        .timeLimit(.minutes(1))
    )
    func gracefulShutdownClosesTheLink() async throws {
        try await Pair.run { pair in
            // A peer that only fell silent would not be noticed within this test: a change of state can only come
            // from the connection closing.
            pair.silenceLimit = .seconds(60)
            let one = try pair.makeNode(1)
            let two = try pair.makeNode(2)
            let changes = Recorder(one.link.stateChanges)
            let logger = Logger(label: "test.services")
            let groupOne = ServiceGroup(services: [one], logger: logger)
            let groupTwo = ServiceGroup(services: [two], logger: logger)
            let runningOne = Task { try await groupOne.run() }
            let runningTwo = Task { try await groupTwo.run() }

            #expect(
                await eventually(within: .seconds(20)) {
                    one.status.state == .synchronization && two.status.state == .synchronization
                }
            )
            try await one.login(pairSession(1, owner: 1), writeConcern: .replicated(timeout: .seconds(5)))
            #expect(try two.store.session(for: pairSession(1, owner: 1).ip) != nil)
            let recordedBefore = changes.recorded.count

            await groupTwo.triggerGracefulShutdown()
            try await runningTwo.value
            // The node ended its streams, and left its store open for its owner.
            for await _ in two.events {}
            try await two.store.login(pairSession(2, owner: 2))
            #expect(try two.store.session(for: pairSession(2, owner: 2).ip) != nil)

            #expect(await eventually(within: .seconds(5)) { one.link.state == .independence(.noPeer) })
            #expect(one.status.state == .independence(.noPeer))
            let after = changes.recorded.dropFirst(recordedBefore)
            #expect(after.contains(.independence(.noPeer)))
            for state in after {
                if case .independence(let reason) = state {
                    #expect(reason == .noPeer, "the peer's close was seen as \(reason)")
                }
            }

            await groupOne.triggerGracefulShutdown()
            try await runningOne.value
            await changes.waitUntilEnded()
            await one.store.close()
            await two.store.close()
        }
    }

    @Test("a link given an event loop group leaves it running when it shuts down", .timeLimit(.minutes(1)))
    func injectedEventLoopGroup() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let two = FailoverLinkService(
            configuration: try LinkServiceTests.configuration(2, host: "127.0.0.2"),
            eventLoopGroup: group
        )
        let services = ServiceGroup(services: [two], logger: Logger(label: "test.services"))
        let running = Task { try await services.run() }
        let address = try await two.waitUntilListening()
        let one = FailoverLinkService(
            configuration: try LinkServiceTests.configuration(1, host: "127.0.0.1", peer: address),
            eventLoopGroup: group
        )
        try await one.start()
        #expect(await eventually { one.state == .synchronization && two.state == .synchronization })

        await services.triggerGracefulShutdown()
        try await running.value
        #expect(await eventually { one.state == .independence(.noPeer) })
        await one.shutdown()

        // Both links ran on the group and are gone; the group still runs tasks.
        let answer = try await group.next().submit { 6 * 7 }.get()
        #expect(answer == 42)
        try await group.shutdownGracefully()
    }

    @Test("start() and run() throw when the listener cannot be bound, and shutdown() still returns")
    func unboundListener() async throws {
        var configuration = try LinkServiceTests.configuration(1, host: "127.0.0.1")
        // TEST-NET-1: an address on no host.
        configuration.listen = try SocketAddress(ipAddress: "192.0.2.1", port: 7400)
        let link = FailoverLinkService(configuration: configuration)
        await #expect(throws: (any Error).self) { try await link.start() }
        await link.shutdown()
        #expect(link.listeningAddress == nil)
        let again = FailoverLinkService(configuration: configuration)
        await #expect(throws: (any Error).self) { try await again.run() }

        let directory = TemporaryDirectory()
        let store = try SessionStore.open(
            at: directory.child("store"),
            configuration: .init(deviceID: 1, portalGroup: "campus")
        )
        let node = FailoverNode(store: store, configuration: .init(link: configuration))
        await #expect(throws: (any Error).self) { try await node.start() }
        await node.shutdown()
        for await _ in node.events {}
        try await store.login(pairSession(1, owner: 1))
        await store.close()
    }
}
