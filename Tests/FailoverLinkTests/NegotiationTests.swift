import Crypto
import NIOCore
import SessionStore
import Testing

@testable import FailoverLink

/// Runs two negotiations against each other in memory, as two devices on one connection would.
struct NegotiationPair {
    var initiator: Negotiation
    var acceptor: Negotiation
    var initiatorResult: Result<Negotiated, LinkError>?
    var acceptorResult: Result<Negotiated, LinkError>?
    var transcript: [(from: LinkRole, frame: Frame)] = []

    init(_ a: LinkIdentity, _ b: LinkIdentity, secretA: LinkSecret, secretB: LinkSecret) {
        initiator = Negotiation(identity: a, secret: secretA, role: .initiator)
        acceptor = Negotiation(identity: b, secret: secretB, role: .acceptor)
    }

    mutating func run() {
        var toAcceptor: [Frame] = []
        var toInitiator: [Frame] = []
        handle(initiator.start(), from: .initiator, into: &toAcceptor)
        handle(acceptor.start(), from: .acceptor, into: &toInitiator)
        while !toAcceptor.isEmpty || !toInitiator.isEmpty {
            if !toAcceptor.isEmpty, acceptorResult == nil {
                handle(acceptor.receive(toAcceptor.removeFirst()), from: .acceptor, into: &toInitiator)
            } else {
                toAcceptor.removeAll()
            }
            if !toInitiator.isEmpty, initiatorResult == nil {
                handle(initiator.receive(toInitiator.removeFirst()), from: .initiator, into: &toAcceptor)
            } else {
                toInitiator.removeAll()
            }
        }
    }

    private mutating func handle(_ actions: [Negotiation.Action], from role: LinkRole, into queue: inout [Frame]) {
        for action in actions {
            switch action {
            case .send(let frame):
                queue.append(frame)
                transcript.append((role, frame))
            case .established(let negotiated):
                if role == .initiator {
                    initiatorResult = .success(negotiated)
                } else {
                    acceptorResult = .success(negotiated)
                }
            case .fail(let error):
                if role == .initiator { initiatorResult = .failure(error) } else { acceptorResult = .failure(error) }
            }
        }
    }
}

extension Result where Failure == LinkError {
    var failureKind: LinkError.Kind? {
        if case .failure(let error) = self { return error.kind }
        return nil
    }
}

@Suite("Negotiation")
struct NegotiationTests {
    static let secret = LinkSecret(bytes: "a shared secret of the pair".utf8)
    static let digest = Array(SHA256.hash(data: Array("aaa and portal configuration".utf8)))

    static func identity(_ id: UInt8, group: PortalGroup = "campus", digest: [UInt8] = digest) -> LinkIdentity {
        LinkIdentity(deviceID: DeviceID(rawValue: id)!, portalGroup: group, configurationDigest: digest)
    }

    @Test("matching devices reach synchronization with keys that fit each other")
    func success() throws {
        var pair = NegotiationPair(Self.identity(1), Self.identity(2), secretA: Self.secret, secretB: Self.secret)
        pair.run()
        let a = try #require(try pair.initiatorResult?.get())
        let b = try #require(try pair.acceptorResult?.get())
        #expect(a.state == .synchronization)
        #expect(b.state == .synchronization)
        #expect(a.peer.deviceID == 2)
        #expect(b.peer.deviceID == 1)
        var sealer = FrameSealer(key: a.keys.sending)
        var opener = FrameOpener(key: b.keys.receiving)
        let frame = Frame(type: .heartbeat, payload: ByteBuffer(bytes: [1, 2, 3]))
        #expect(try opener.open(sealer.seal(frame)) == frame)
        var back = FrameSealer(key: b.keys.sending)
        var backOpener = FrameOpener(key: a.keys.receiving)
        #expect(try backOpener.open(back.seal(frame)) == frame)
    }

    @Test("different configuration digests keep the pair in independence, saying why (R8)")
    func configurationMismatch() throws {
        let other = Array(SHA256.hash(data: Array("another portal server".utf8)))
        var pair = NegotiationPair(
            Self.identity(1),
            Self.identity(2, digest: other),
            secretA: Self.secret,
            secretB: Self.secret
        )
        pair.run()
        let a = try #require(try pair.initiatorResult?.get())
        guard case .independence(.configurationMismatch) = a.state else {
            Issue.record("expected independence for a configuration mismatch, got \(a.state)")
            return
        }
        #expect(a.state.description.contains("make them consistent on both devices (R8)"))
        #expect(try pair.acceptorResult?.get().state != .synchronization)
    }

    @Test("equal device IDs: both sides refuse, naming the conflict (R4)")
    func sameDeviceID() {
        var pair = NegotiationPair(Self.identity(3), Self.identity(3), secretA: Self.secret, secretB: Self.secret)
        pair.run()
        #expect(pair.initiatorResult?.failureKind == .sameDeviceID)
        #expect(pair.acceptorResult?.failureKind == .sameDeviceID)
        if case .failure(let error) = pair.initiatorResult {
            #expect(error.description.contains("both devices have device ID 3"))
        }
    }

    @Test("different portal groups are refused (R5)")
    func portalGroupMismatch() {
        var pair = NegotiationPair(
            Self.identity(1),
            Self.identity(2, group: "guests"),
            secretA: Self.secret,
            secretB: Self.secret
        )
        pair.run()
        #expect(pair.initiatorResult?.failureKind == .portalGroupMismatch)
        #expect(pair.acceptorResult?.failureKind == .portalGroupMismatch)
    }

    @Test("a wrong secret fails on both sides, and nothing but hellos and proofs crossed")
    func wrongSecret() {
        var pair = NegotiationPair(
            Self.identity(1),
            Self.identity(2),
            secretA: Self.secret,
            secretB: LinkSecret(bytes: "not the secret".utf8)
        )
        pair.run()
        #expect(pair.initiatorResult?.failureKind == .authenticationFailed)
        #expect(pair.acceptorResult?.failureKind == .authenticationFailed)
        #expect(pair.transcript.allSatisfy { [.hello, .proof, .refuse].contains($0.frame.type) })
    }

    @Test("a proof recorded on one connection fails on the next (fresh nonces)")
    func replayedProof() throws {
        var first = NegotiationPair(Self.identity(1), Self.identity(2), secretA: Self.secret, secretB: Self.secret)
        first.run()
        let recordedHello = try #require(first.transcript.first { $0.from == .initiator && $0.frame.type == .hello })
        let recordedProof = try #require(first.transcript.first { $0.from == .initiator && $0.frame.type == .proof })
        // An attacker without the secret replays the initiator's frames to a new acceptor.
        var acceptor = Negotiation(identity: Self.identity(2), secret: Self.secret, role: .acceptor)
        _ = acceptor.start()
        _ = acceptor.receive(recordedHello.frame)
        let actions = acceptor.receive(recordedProof.frame)
        let failed = actions.contains {
            if case .fail(let error) = $0 { error.kind == .authenticationFailed } else { false }
        }
        #expect(failed)
    }

    @Test("a version the device does not speak is refused")
    func versionMismatch() {
        var acceptor = Negotiation(identity: Self.identity(2), secret: Self.secret, role: .acceptor)
        _ = acceptor.start()
        var hello = Hello(
            protocolVersion: 99,
            deviceID: 1,
            portalGroup: "campus",
            configurationDigest: Self.digest,
            nonce: Array(repeating: 1, count: 32)
        ).encoded()
        let actions = acceptor.receive(Frame(type: .hello, payload: hello))
        hello.clear()
        #expect(actions.contains { if case .send(let frame) = $0 { frame.type == .refuse } else { false } })
        #expect(actions.contains { if case .fail(let error) = $0 { error.kind == .versionMismatch } else { false } })
    }

    @Test(
        "frames out of order, garbage hellos and unknown types are refused",
        arguments: [
            Frame(type: .proof, payload: ByteBuffer(bytes: Array(repeating: 0, count: 32))),
            Frame(type: .hello, payload: ByteBuffer(bytes: [0, 1, 2])),
            Frame(type: .heartbeat, payload: ByteBuffer()),
            Frame(type: FrameType(rawValue: 250), payload: ByteBuffer(bytes: [1])),
        ]
    )
    func hostileFirstFrames(frame: Frame) {
        var acceptor = Negotiation(identity: Self.identity(2), secret: Self.secret, role: .acceptor)
        _ = acceptor.start()
        let actions = acceptor.receive(frame)
        #expect(actions.contains { if case .fail = $0 { true } else { false } })
        #expect(!actions.contains { if case .established = $0 { true } else { false } })
    }

    @Test("a peer's refusal is reported with its reason")
    func peerRefusal() {
        var initiator = Negotiation(identity: Self.identity(1), secret: Self.secret, role: .initiator)
        _ = initiator.start()
        let refusal = Refusal(reason: "same-device-id", message: "both devices have device ID 1").encoded()
        let actions = initiator.receive(Frame(type: .refuse, payload: refusal))
        guard case .fail(let error) = actions.first else {
            Issue.record("expected a failure")
            return
        }
        #expect(error.kind == .peerRefused)
        #expect(error.description.contains("both devices have device ID 1"))
    }
}

@Suite("Frame sealing")
struct FrameSealingTests {
    static let key = LinkSecret(bytes: (0..<32).map { UInt8($0) })

    static func frames() -> [Frame] {
        (0..<5).map { Frame(type: .heartbeat, payload: ByteBuffer(bytes: [UInt8($0), 42])) }
    }

    @Test("sealed frames open in order")
    func roundTrip() throws {
        var sealer = FrameSealer(key: Self.key)
        var opener = FrameOpener(key: Self.key)
        for frame in Self.frames() { #expect(try opener.open(sealer.seal(frame)) == frame) }
    }

    @Test("an altered, replayed, reordered or foreign frame fails, and so does everything after it")
    func tampering() throws {
        var sealer = FrameSealer(key: Self.key)
        let sealed = Self.frames().map { sealer.seal($0) }

        var altered = sealed[0]
        altered.payload.setInteger(UInt8(99), at: altered.payload.readerIndex)
        var opener = FrameOpener(key: Self.key)
        #expect(throws: LinkError.self) { try opener.open(altered) }
        #expect(throws: LinkError.self) { try opener.open(sealed[0]) }  // the stream is dead after a failure

        var replay = FrameOpener(key: Self.key)
        _ = try replay.open(sealed[0])
        #expect(throws: LinkError.self) { try replay.open(sealed[0]) }

        var reorder = FrameOpener(key: Self.key)
        #expect(throws: LinkError.self) { try reorder.open(sealed[1]) }

        var foreign = FrameOpener(key: LinkSecret(bytes: (0..<32).map { UInt8(255 - $0) }))
        #expect(throws: LinkError.self) { try foreign.open(sealed[0]) }

        var short = FrameOpener(key: Self.key)
        #expect(throws: LinkError.self) { try short.open(Frame(type: .heartbeat, payload: ByteBuffer(bytes: [1]))) }
    }
}
