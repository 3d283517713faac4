import Foundation
import Locking
import NIOCore
import NIOPosix
import SessionStore
import TestSupport
import Testing

@testable import FailoverLink

/// A client that negotiates like device 1 with the `Negotiation` state machine, then sends whatever frames
/// a test gives it, sealed (or raw bytes, for a replay). It lives for the body of ``withConnection``, which
/// closes the connection after it.
private final class RawPeer: Sendable {
    private let channel: any Channel
    private let outbound: NIOAsyncChannelOutboundWriter<Frame>
    private let sealer: Locked<FrameSealer>

    static func withConnection<T: Sendable>(
        to address: SocketAddress,
        group: EventLoopGroup,
        secret: LinkSecret,
        _ body: (RawPeer) async throws -> T
    ) async throws -> T {
        let channel = try await ClientBootstrap(group: group).connect(to: address) { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandlers([
                    ByteToMessageHandler(FrameDecoder()), MessageToByteHandler(FrameEncoder()),
                ])
                return try NIOAsyncChannel<Frame, Frame>(wrappingChannelSynchronously: channel)
            }
        }
        return try await channel.executeThenClose { inbound, outbound in
            var negotiation = Negotiation(
                identity: LinkIdentity(
                    deviceID: 1,
                    portalGroup: "campus",
                    configurationDigest: NegotiationTests.digest
                ),
                secret: secret,
                role: .initiator
            )
            let keys = try await negotiate(&negotiation, inbound: inbound, outbound: outbound)
            let peer = RawPeer(channel: channel.channel, outbound: outbound, sealer: FrameSealer(key: keys.sending))
            return try await body(peer)
        }
    }

    private static func negotiate(
        _ negotiation: inout Negotiation,
        inbound: NIOAsyncChannelInboundStream<Frame>,
        outbound: NIOAsyncChannelOutboundWriter<Frame>
    ) async throws -> LinkKeys {
        var iterator = inbound.makeAsyncIterator()
        var actions = negotiation.start()
        while true {
            var keys: LinkKeys?
            for action in actions {
                switch action {
                case .send(let frame): try await outbound.write(frame)
                case .established(let negotiated): keys = negotiated.keys
                case .fail(let error): throw error
                }
            }
            if let keys { return keys }
            guard let frame = try await iterator.next() else { throw LinkError(.connectionClosed) }
            actions = negotiation.receive(frame)
        }
    }

    private init(channel: any Channel, outbound: NIOAsyncChannelOutboundWriter<Frame>, sealer: FrameSealer) {
        self.channel = channel
        self.outbound = outbound
        self.sealer = Locked(sealer)
    }

    /// Seals and sends `frame`; returns the sealed frame, for a replay.
    @discardableResult
    func send(_ frame: Frame) async throws -> Frame {
        let sealed = sealer.withLock { $0.seal(frame) }
        try await outbound.write(sealed)
        return sealed
    }

    /// Sends a frame as it is (already sealed once).
    func sendRaw(_ frame: Frame) async throws { try await outbound.write(frame) }

    /// Whether the other side closed the connection (within a few seconds). The writer is finished after.
    func closedByPeer() async -> Bool {
        defer { outbound.finish() }
        return await eventually(within: .seconds(5)) { !self.channel.isActive }
    }
}

private func recordsFrame(through: UInt64, _ records: [LogRecord]) -> Frame {
    var bytes: [UInt8] = []
    for record in records {
        var unit: [UInt8] = []
        RecordCodec.encode(record, into: &unit)
        withUnsafeBytes(of: UInt32(unit.count).bigEndian) { bytes.append(contentsOf: $0) }
        bytes += unit
    }
    return RecordsMessage.frame(through: through, records: bytes)
}

private func login(_ number: Int, sequence: UInt64, origin: DeviceID = 1) -> LogRecord {
    var session = pairSession(number, owner: origin)
    session.generation = Generation(term: 1, sequence: sequence)
    return LogRecord(sequence: sequence, term: 1, origin: origin, time: .now, event: .login(session))
}

@Suite("Hostile input after negotiation", .serialized)
struct HostilePeerTests {
    @Test(
        "malformed, foreign, unknown and replayed frames close the connection, store nothing, and the listener still serves"
    )
    func hostileFramesAfterNegotiation() async throws {
        try await Pair.run { pair in
            pair.silenceLimit = .seconds(10)  // the raw peer sends no heartbeats
            let two = try await pair.start(2)
            let address = try SocketAddress(ipAddress: "127.0.0.2", port: pair.port)
            let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
            let request = StreamRequest(term: 1, history: 77, applied: .start, adoptedYouAt: 0).frame()

            var garbage = ByteBuffer()
            garbage.writeInteger(UInt64(5))
            garbage.writeBytes([0, 0, 0, 20] + (0..<20).map { _ in UInt8.random(in: 0...255) })
            var truncatedBatch = recordsFrame(through: 1, [login(1, sequence: 1)])
            truncatedBatch.payload.moveWriterIndex(to: truncatedBatch.payload.writerIndex - 7)
            let hostile: [(String, Frame)] = [
                ("garbage records", Frame(type: .records, payload: garbage)),
                ("a batch cut short", truncatedBatch),
                ("a record of a third device", recordsFrame(through: 1, [login(1, sequence: 1, origin: 3)])),
                ("records out of order", recordsFrame(through: 9, [login(1, sequence: 5), login(2, sequence: 3)])),
                (
                    "a login owned by another device",
                    {
                        var record = login(1, sequence: 1)
                        if case .login(var session) = record.event {
                            session.owner = 3
                            record.event = .login(session)
                        }
                        return recordsFrame(through: 1, [record])
                    }()
                ),
                ("an unknown frame type", Frame(type: FrameType(rawValue: 99), payload: ByteBuffer(bytes: [1, 2, 3]))),
                ("a stream request of the wrong size", Frame(type: .streamRequest, payload: ByteBuffer(bytes: [1]))),
            ]
            for (name, frame) in hostile {
                try await RawPeer.withConnection(to: address, group: group, secret: pair.secret) { peer in
                    try await peer.send(request)
                    _ = try? await peer.send(frame)
                    #expect(await peer.closedByPeer(), "\(name): the connection stays open")
                }
                #expect(two.store.count == 0, "\(name): something was stored")
                #expect(two.store.logStatus.lastSequence == 0, "\(name): something was logged")
            }

            // A valid batch is applied; the same sealed frame sent again is refused. A record of the listener's own
            // about one of its own users (as if sent back) changes nothing.
            try await RawPeer.withConnection(to: address, group: group, secret: pair.secret) { peer in
                try await peer.send(request)
                let sealed = try await peer.send(
                    recordsFrame(through: 2, [login(1, sequence: 1), login(2, sequence: 2, origin: 2)])
                )
                #expect(await eventually { two.store.count == 1 })
                #expect(try two.store.session(for: pairSession(2, owner: 2).ip) == nil)
                try await peer.sendRaw(sealed)
                #expect(await peer.closedByPeer(), "a replayed frame was accepted")
            }
            #expect(two.store.count == 1)

            // A peer without the secret never gets as far as a data frame.
            await #expect(throws: (any Error).self) {
                try await RawPeer.withConnection(
                    to: address,
                    group: group,
                    secret: LinkSecret(bytes: "not the pair's secret at all".utf8)
                ) { _ in }
            }

            // The listener still serves the real device 1, which replicates with it. Device 2's position in device
            // 1's stream belongs to another history of its log (the impostor's), so its copy of device 1's users
            // is rebuilt from a snapshot.
            let one = try await pair.start(1)
            // The replicated login waits for the pair to be verified: until then, on a loaded machine, the
            // rebuild of device 2's copy may take longer than the replication timeout.
            #expect(await pair.verified())
            try await one.login(pairSession(7, owner: 1), writeConcern: .replicated())
            #expect(try two.store.session(for: pairSession(7, owner: 1).ip) != nil)
            #expect(await pair.converged())
            try await group.shutdownGracefully()
        }
    }
}
