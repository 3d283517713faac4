import Locking
import NIOCore
import NIOEmbedded
import SessionStore
import Testing

@testable import FailoverLink

/// The connection's timing rules: the negotiation's timeout, heartbeats, and a silent peer. First as pure rules
/// with the time passed in, then in `NegotiationHandler` on two `EmbeddedChannel`s whose time the test advances.
@Suite("Liveness")
struct LivenessTests {
    static let start = NIODeadline.uptimeNanoseconds(1_000_000_000)

    @Test("the negotiation fails at its deadline and not before; established in time, it does not")
    func negotiationTimeout() {
        var rules = LivenessStateMachine(negotiationTimeout: .seconds(5), silenceLimit: .seconds(1), now: Self.start)
        #expect(rules.tick(at: Self.start + .milliseconds(4_999)) == .nothing)
        #expect(
            rules.tick(at: Self.start + .seconds(5))
                == .fail(LinkError(.protocolViolation("negotiation did not finish in time")))
        )
        #expect(rules.state == .finished)
        #expect(rules.tick(at: Self.start + .seconds(6)) == .nothing)

        var inTime = LivenessStateMachine(negotiationTimeout: .seconds(5), silenceLimit: .seconds(1), now: Self.start)
        inTime.established(at: Self.start + .seconds(4))
        #expect(inTime.tick(at: Self.start + .milliseconds(4_500)) == .sendHeartbeat)
    }

    @Test("once established, each tick sends a heartbeat until the peer was last heard a silence limit ago")
    func silence() {
        var rules = LivenessStateMachine(negotiationTimeout: .seconds(5), silenceLimit: .seconds(1), now: Self.start)
        rules.established(at: Self.start)
        #expect(rules.tick(at: Self.start + .milliseconds(999)) == .sendHeartbeat)
        rules.heard(at: Self.start + .milliseconds(900))
        // A frame heard out of order never moves the last-heard time back.
        rules.heard(at: Self.start + .milliseconds(100))
        #expect(rules.tick(at: Self.start + .milliseconds(1_899)) == .sendHeartbeat)
        #expect(
            rules.tick(at: Self.start + .milliseconds(1_900)) == .fail(LinkError(.peerSilent(limitMilliseconds: 1_000)))
        )
        #expect(rules.state == .finished)
        // Nothing more once finished, whatever is heard.
        rules.heard(at: Self.start + .seconds(2))
        #expect(rules.tick(at: Self.start + .seconds(2)) == .nothing)
    }

    @Test("time in which this side does not read counts for nothing, unless its writes are held back too")
    func notReading() {
        var rules = LivenessStateMachine(negotiationTimeout: .seconds(5), silenceLimit: .seconds(1), now: Self.start)
        rules.established(at: Self.start)
        // 400 ms of silence count, then this side stops reading (it is behind) for 3 s: they count for nothing.
        rules.readingChanged(false, at: Self.start + .milliseconds(400))
        #expect(rules.tick(at: Self.start + .milliseconds(3_000)) == .sendHeartbeat)
        rules.readingChanged(true, at: Self.start + .milliseconds(3_400))
        // 400 ms counted before the pause: 600 ms remain after it.
        #expect(rules.tick(at: Self.start + .milliseconds(3_999)) == .sendHeartbeat)
        #expect(
            rules.tick(at: Self.start + .milliseconds(4_000)) == .fail(LinkError(.peerSilent(limitMilliseconds: 1_000)))
        )

        // A frame that arrives from a read already asked for, during a pause, counts as heard.
        var heardMeanwhile = LivenessStateMachine(
            negotiationTimeout: .seconds(5),
            silenceLimit: .seconds(1),
            now: Self.start
        )
        heardMeanwhile.established(at: Self.start)
        heardMeanwhile.readingChanged(false, at: Self.start + .milliseconds(900))
        heardMeanwhile.heard(at: Self.start + .milliseconds(1_500))
        heardMeanwhile.readingChanged(true, at: Self.start + .milliseconds(2_000))
        #expect(heardMeanwhile.tick(at: Self.start + .milliseconds(2_999)) == .sendHeartbeat)
        #expect(
            heardMeanwhile.tick(at: Self.start + .milliseconds(3_000))
                == .fail(LinkError(.peerSilent(limitMilliseconds: 1_000)))
        )

        // Not reading, with its own writes held back too: the peer may be gone, and the silence counts.
        var stuck = LivenessStateMachine(negotiationTimeout: .seconds(5), silenceLimit: .seconds(1), now: Self.start)
        stuck.established(at: Self.start)
        stuck.readingChanged(false, at: Self.start)
        #expect(stuck.tick(at: Self.start + .seconds(2)) == .sendHeartbeat)
        stuck.writabilityChanged(false, at: Self.start + .seconds(2))
        #expect(stuck.tick(at: Self.start + .milliseconds(2_999)) == .sendHeartbeat)
        #expect(stuck.tick(at: Self.start + .seconds(3)) == .fail(LinkError(.peerSilent(limitMilliseconds: 1_000))))

        // Held-back writes alone change nothing while this side reads.
        var writesHeld = LivenessStateMachine(
            negotiationTimeout: .seconds(5),
            silenceLimit: .seconds(1),
            now: Self.start
        )
        writesHeld.established(at: Self.start)
        writesHeld.writabilityChanged(false, at: Self.start + .milliseconds(100))
        writesHeld.writabilityChanged(true, at: Self.start + .milliseconds(800))
        #expect(
            writesHeld.tick(at: Self.start + .seconds(1)) == .fail(LinkError(.peerSilent(limitMilliseconds: 1_000)))
        )
    }

    @Test("time in which this side's event loop was held up, its tick firing late, counts for nothing")
    func heldUp() {
        func at(_ milliseconds: Int64) -> NIODeadline { Self.start + .milliseconds(milliseconds) }
        var rules = LivenessStateMachine(negotiationTimeout: .seconds(5), silenceLimit: .seconds(1), now: Self.start)
        rules.established(at: Self.start)
        #expect(rules.tick(at: at(100), due: at(100)) == .sendHeartbeat)
        // The tick due at 200 ms fires at 2.5 s: 200 ms of silence count, the 2.3 s of lateness do not.
        #expect(rules.tick(at: at(2_500), due: at(200)) == .sendHeartbeat)
        #expect(rules.tick(at: at(3_299), due: at(3_299)) == .sendHeartbeat)
        #expect(rules.tick(at: at(3_300), due: at(3_300)) == .fail(LinkError(.peerSilent(limitMilliseconds: 1_000))))

        // A frame read once the loop runs again ends the silence.
        var heard = LivenessStateMachine(negotiationTimeout: .seconds(5), silenceLimit: .seconds(1), now: Self.start)
        heard.established(at: Self.start)
        #expect(heard.tick(at: at(4_000), due: at(900)) == .sendHeartbeat)
        heard.heard(at: at(4_001))
        #expect(heard.tick(at: at(5_000), due: at(5_000)) == .sendHeartbeat)
        #expect(heard.tick(at: at(5_001), due: at(5_001)) == .fail(LinkError(.peerSilent(limitMilliseconds: 1_000))))

        // A silence that had reached the limit before the loop was held up fails at the late tick.
        var silentBefore = LivenessStateMachine(
            negotiationTimeout: .seconds(5),
            silenceLimit: .seconds(1),
            now: Self.start
        )
        silentBefore.established(at: Self.start)
        #expect(
            silentBefore.tick(at: at(5_000), due: at(1_000)) == .fail(LinkError(.peerSilent(limitMilliseconds: 1_000)))
        )

        // Lateness while this side does not read is the same time, not counted twice.
        var paused = LivenessStateMachine(negotiationTimeout: .seconds(5), silenceLimit: .seconds(1), now: Self.start)
        paused.established(at: Self.start)
        paused.readingChanged(false, at: at(100))
        #expect(paused.tick(at: at(2_000), due: at(200)) == .sendHeartbeat)
        paused.readingChanged(true, at: at(3_000))
        #expect(paused.tick(at: at(3_899), due: at(3_899)) == .sendHeartbeat)
        #expect(paused.tick(at: at(3_900), due: at(3_900)) == .fail(LinkError(.peerSilent(limitMilliseconds: 1_000))))
    }

    @Test("frames heard before the negotiation ends do not count; a closed connection does nothing more")
    func beforeAndAfter() {
        var rules = LivenessStateMachine(negotiationTimeout: .seconds(5), silenceLimit: .seconds(1), now: Self.start)
        rules.heard(at: Self.start + .seconds(1))
        #expect(rules.state == .negotiating(deadline: Self.start + .seconds(5)))
        rules.finish()
        rules.established(at: Self.start + .seconds(2))
        #expect(rules.state == .finished)
    }

    /// Two handlers joined by the test, which carries each one's frames to the other when asked to.
    final class Pair {
        let initiator: EmbeddedChannel
        let acceptor: EmbeddedChannel
        let events = Recorded()

        /// What the handlers reported.
        final class Recorded: Sendable {
            let established = Locked<[LinkRole]>([])
            let failures = Locked<[LinkRole: LinkError]>([:])
        }

        init() throws {
            let secret = LinkSecret(bytes: "a shared secret of the pair".utf8)
            let digest = Array(repeating: UInt8(0xAB), count: 32)
            var channels: [EmbeddedChannel] = []
            for (role, id) in [(LinkRole.initiator, UInt8(1)), (.acceptor, 2)] {
                let identity = LinkIdentity(
                    deviceID: DeviceID(rawValue: id)!,
                    portalGroup: "campus",
                    configurationDigest: digest
                )
                let handler = NegotiationHandler(
                    negotiation: Negotiation(identity: identity, secret: secret, role: role),
                    events: .init(
                        established: { [events] _ in events.established.withLock { $0.append(role) } },
                        failed: { [events] error in events.failures.withLock { $0[role] = error } }
                    ),
                    negotiationTimeout: .seconds(5),
                    heartbeatInterval: .milliseconds(100),
                    silenceLimit: .seconds(1)
                )
                channels.append(EmbeddedChannel(handler: handler, loop: EmbeddedEventLoop()))
            }
            (initiator, acceptor) = (channels[0], channels[1])
            for channel in channels {
                try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 9)).wait()
            }
        }

        /// Carries the frames written so far to the other side, or drops those of a direction turned off.
        /// Returns the types of the frames each side wrote.
        @discardableResult
        func carry(
            toAcceptor: Bool = true,
            toInitiator: Bool = true,
            acceptorReadsOn: Bool = true
        ) throws -> (
            fromInitiator: [FrameType], fromAcceptor: [FrameType]
        ) {
            var written: ([FrameType], [FrameType]) = ([], [])
            var moved = true
            while moved {
                moved = false
                while let frame = try initiator.readOutbound(as: Frame.self) {
                    written.0.append(frame.type)
                    if toAcceptor, acceptor.isActive {
                        try acceptor.writeInbound(frame)
                        // The acceptor's consumer asks for more, as a channel's reader does when it keeps up.
                        if acceptorReadsOn { acceptor.read() }
                    }
                    moved = true
                }
                while let frame = try acceptor.readOutbound(as: Frame.self) {
                    written.1.append(frame.type)
                    if toInitiator, initiator.isActive {
                        try initiator.writeInbound(frame)
                        initiator.read()
                    }
                    moved = true
                }
            }
            return written
        }

        func advance(_ channel: EmbeddedChannel, by amount: TimeAmount) {
            channel.embeddedEventLoop.advanceTime(by: amount)
        }
    }

    @Test("on the handler: heartbeats every interval keep a link up; the side that hears none closes at the limit")
    func handlerHeartbeatsAndSilence() throws {
        let pair = try Pair()
        try pair.carry()
        #expect(pair.events.established.withLock { Set($0) } == [.initiator, .acceptor])

        // Both sides send a heartbeat each interval; carried both ways, the link stays up past the limit.
        for _ in 0..<15 {
            pair.advance(pair.initiator, by: .milliseconds(100))
            pair.advance(pair.acceptor, by: .milliseconds(100))
            let written = try pair.carry()
            #expect(written.fromInitiator == [.heartbeat])
            #expect(written.fromAcceptor == [.heartbeat])
        }
        #expect(pair.initiator.isActive && pair.acceptor.isActive)
        #expect(pair.events.failures.withLock { $0.isEmpty })

        // The initiator's frames stop reaching the acceptor: it closes once a silence limit has passed, and
        // not before.
        for _ in 0..<9 {
            pair.advance(pair.initiator, by: .milliseconds(100))
            pair.advance(pair.acceptor, by: .milliseconds(100))
            try pair.carry(toAcceptor: false)
        }
        #expect(pair.acceptor.isActive)
        pair.advance(pair.acceptor, by: .milliseconds(100))
        try pair.carry(toAcceptor: false)
        #expect(!pair.acceptor.isActive)
        #expect(pair.events.failures.withLock { $0[.acceptor] } == LinkError(.peerSilent(limitMilliseconds: 1_000)))
        #expect(pair.events.failures.withLock { $0[.initiator] } == nil)
        _ = try? pair.initiator.finish()
    }

    @Test("on the handler: a side whose reader holds back its reads keeps the link; reading again, it counts silence")
    func handlerReaderBehind() throws {
        let pair = try Pair()
        try pair.carry()
        #expect(pair.events.established.withLock { Set($0) } == [.initiator, .acceptor])

        // The acceptor reads the initiator's heartbeat and asks for nothing more, as a reader behind on what it
        // received does; the initiator's frames then wait (in the socket), 3 s, three silence limits.
        pair.advance(pair.initiator, by: .milliseconds(100))
        pair.advance(pair.acceptor, by: .milliseconds(100))
        try pair.carry(acceptorReadsOn: false)
        for _ in 0..<30 {
            pair.advance(pair.initiator, by: .milliseconds(100))
            pair.advance(pair.acceptor, by: .milliseconds(100))
            let written = try pair.carry(toAcceptor: false)
            // Its own heartbeats still go out.
            #expect(written.fromAcceptor == [.heartbeat])
        }
        #expect(pair.acceptor.isActive)
        #expect(pair.events.failures.withLock { $0.isEmpty })

        // It reads again, and nothing comes: it closes a silence limit later, and not before.
        pair.acceptor.read()
        for _ in 0..<9 {
            pair.advance(pair.acceptor, by: .milliseconds(100))
            try pair.carry(toAcceptor: false)
        }
        #expect(pair.acceptor.isActive)
        pair.advance(pair.acceptor, by: .milliseconds(100))
        #expect(!pair.acceptor.isActive)
        #expect(pair.events.failures.withLock { $0[.acceptor] } == LinkError(.peerSilent(limitMilliseconds: 1_000)))
        _ = try? pair.initiator.finish()
    }

    @Test("on the handler: a side that does not read and whose writes are held back counts silence")
    func handlerReaderBehindWritesHeld() throws {
        let pair = try Pair()
        try pair.carry()
        pair.advance(pair.initiator, by: .milliseconds(100))
        pair.advance(pair.acceptor, by: .milliseconds(100))
        try pair.carry(acceptorReadsOn: false)
        for _ in 0..<20 {
            pair.advance(pair.acceptor, by: .milliseconds(100))
            try pair.carry(toAcceptor: false)
        }
        #expect(pair.acceptor.isActive)
        // The connection stops taking the acceptor's writes (the peer's window is full, or the peer is gone).
        pair.acceptor.isWritable = false
        pair.acceptor.pipeline.fireChannelWritabilityChanged()
        for _ in 0..<9 {
            pair.advance(pair.acceptor, by: .milliseconds(100))
            try pair.carry(toAcceptor: false)
        }
        #expect(pair.acceptor.isActive)
        pair.advance(pair.acceptor, by: .milliseconds(100))
        #expect(!pair.acceptor.isActive)
        #expect(pair.events.failures.withLock { $0[.acceptor] } == LinkError(.peerSilent(limitMilliseconds: 1_000)))
        _ = try? pair.initiator.finish()
    }

    @Test("on the handler: a negotiation the peer never answers fails at the timeout")
    func handlerNegotiationTimeout() throws {
        let pair = try Pair()
        // The acceptor's hello never reaches the initiator.
        try pair.carry(toInitiator: false)
        pair.advance(pair.initiator, by: .milliseconds(4_900))
        #expect(pair.initiator.isActive)
        pair.advance(pair.initiator, by: .milliseconds(100))
        #expect(!pair.initiator.isActive)
        #expect(
            pair.events.failures.withLock { $0[.initiator] }
                == LinkError(.protocolViolation("negotiation did not finish in time"))
        )
        _ = try? pair.acceptor.finish()
    }
}
