import Crypto
import NIOCore
import SessionStore

/// Whether the pair backs up its users (R6).
public enum FailoverState: Sendable, Hashable, CustomStringConvertible {
    /// The devices back up each other's online users.
    case synchronization
    /// The devices run on their own; the reason says why.
    case independence(IndependenceReason)

    /// The state as an operator reads it.
    public var description: String {
        switch self {
        case .synchronization: "synchronization"
        case .independence(let reason): "independence (\(reason))"
        }
    }
}

/// Why a pair is in independence.
public enum IndependenceReason: Sendable, Hashable, CustomStringConvertible {
    /// No link to the peer.
    case noPeer
    /// The link negotiated, but the AAA and portal configurations differ (R8).
    case configurationMismatch(local: [UInt8], peer: [UInt8])
    /// Negotiation failed.
    case negotiationFailed(LinkError)
    /// The link was up and then failed: the peer fell silent, or the connection broke.
    case linkLost(LinkError)
    /// The link is up, but the two users tables are not yet known to agree: a snapshot is on its way, or the
    /// digests after it (or after the connection began) have not been compared yet.
    case catchingUp(CatchUp)
    /// The link is up, but this device cannot store the peer's stream (its disk is full, say): its copy of
    /// the peer's users falls behind until it can.
    case storageFailed(String)

    /// The reason as an operator reads it.
    public var description: String {
        switch self {
        case .noPeer:
            "no link to the peer"
        case .configurationMismatch(let local, let peer):
            "the AAA and portal configuration differs from the peer's (digest \(hex(local.prefix(6))) here, "
                + "\(hex(peer.prefix(6))) there): make them consistent on both devices (R8)"
        case .negotiationFailed(let error):
            "negotiation failed: \(error)"
        case .linkLost(let error):
            "link lost: \(error)"
        case .catchingUp(let step):
            "catching up with the peer: \(step)"
        case .storageFailed(let error):
            "cannot store the peer's stream: \(error)"
        }
    }
}

/// What a pair whose link is up still does before it is in synchronization.
public enum CatchUp: Sendable, Hashable, CustomStringConvertible {
    /// This device's copy of the peer's users is being rebuilt from the peer's snapshot.
    case receivingSnapshot
    /// This device sends the peer a snapshot of its users.
    case sendingSnapshot
    /// The two users tables' digests have not yet been compared at matching positions since the connection
    /// began or the last snapshot.
    case comparingDigests

    /// The step as an operator reads it.
    public var description: String {
        switch self {
        case .receivingSnapshot: "receiving the peer's users (snapshot)"
        case .sendingSnapshot: "sending this device's users to the peer (snapshot)"
        case .comparingDigests: "comparing the users tables' digests"
        }
    }
}

func hex(_ bytes: some Sequence<UInt8>) -> String {
    bytes.map { byte in
        let digits = Array("0123456789abcdef")
        return String([digits[Int(byte >> 4)], digits[Int(byte & 0xF)]])
    }.joined()
}

/// What one device brings to a negotiation.
public struct LinkIdentity: Sendable, Hashable {
    /// The device's ID (R4).
    public var deviceID: DeviceID
    /// The portal group it backs up (R5).
    public var portalGroup: PortalGroup
    /// The digest of its AAA and portal configuration (R8), 32 bytes; the controller computes it.
    public var configurationDigest: [UInt8]

    /// An identity.
    /// - Parameters:
    ///   - deviceID: the device's ID.
    ///   - portalGroup: the portal group it backs up.
    ///   - configurationDigest: 32 bytes, such as a SHA-256 of the controller's AAA and portal configuration.
    public init(deviceID: DeviceID, portalGroup: PortalGroup, configurationDigest: [UInt8]) {
        precondition(configurationDigest.count == Hello.digestLength, "the configuration digest is 32 bytes")
        self.deviceID = deviceID
        self.portalGroup = portalGroup
        self.configurationDigest = configurationDigest
    }
}

/// Which end of the connection a device is.
public enum LinkRole: Sendable, Hashable {
    /// The device that connected.
    case initiator
    /// The device that accepted the connection.
    case acceptor
}

/// The keys that authenticate every frame after negotiation, one per direction.
public struct LinkKeys: Sendable {
    /// Seals what this device sends.
    public let sending: LinkSecret
    /// Opens what this device receives.
    public let receiving: LinkSecret
}

/// A negotiation that succeeded.
public struct Negotiated: Sendable {
    /// The peer's hello.
    public let peer: Hello
    /// Synchronization, or independence when the configuration digests differ (R8).
    public let state: FailoverState
    /// The per-direction frame keys.
    public let keys: LinkKeys
}

/// The negotiation at the start of a failover link, as a pure state machine: it takes frames and returns
/// what to do, with no I/O, so that every outcome is tested without sockets.
///
/// Both sides send a ``Hello`` at once. On the peer's hello, each checks the protocol version, that the
/// device IDs differ (R4) and that the portal groups are the same (R5), then proves it knows the shared
/// secret with an HMAC-SHA256 over both hellos (whose fresh nonces make every proof good for one connection
/// only). A peer without the secret gets a proof it cannot reuse, and its own proof fails. Both sides then
/// derive per-direction keys for the frames that follow, and compare configuration digests (R8).
public struct Negotiation: Sendable {
    /// What the caller does next.
    public enum Action: Sendable {
        /// Send this frame to the peer.
        case send(Frame)
        /// The link is up.
        case established(Negotiated)
        /// The negotiation failed; send a refusal if one came before this, then close the connection.
        case fail(LinkError)
    }

    /// The protocol version this build speaks.
    public static let protocolVersion: UInt16 = 2

    private enum State: Sendable {
        case idle
        case helloSent(ByteBuffer)
        case proofSent(mine: ByteBuffer, peer: Hello, transcript: [UInt8])
        case done
    }

    private let identity: LinkIdentity
    private let secret: LinkSecret
    private let role: LinkRole
    private let nonce: [UInt8]
    private var state = State.idle

    /// A negotiation.
    /// - Parameters:
    ///   - identity: this device's identity.
    ///   - secret: the secret both devices share.
    ///   - role: which end of the connection this device is.
    ///   - nonce: 32 fresh random bytes (the default); tests pass fixed ones.
    public init(
        identity: LinkIdentity,
        secret: LinkSecret,
        role: LinkRole,
        nonce: [UInt8] = (0..<Hello.nonceLength).map { _ in UInt8.random(in: 0...255) }
    ) {
        precondition(nonce.count == Hello.nonceLength, "a nonce is 32 bytes")
        self.identity = identity
        self.secret = secret
        self.role = role
        self.nonce = nonce
    }

    /// Starts the negotiation: the hello to send.
    public mutating func start() -> [Action] {
        guard case .idle = state else { return [] }
        let hello = Hello(
            protocolVersion: Self.protocolVersion,
            deviceID: identity.deviceID,
            portalGroup: identity.portalGroup,
            configurationDigest: identity.configurationDigest,
            nonce: nonce
        ).encoded()
        state = .helloSent(hello)
        return [.send(Frame(type: .hello, payload: hello))]
    }

    /// Takes a frame from the peer.
    /// - Parameter frame: the frame received.
    /// - Returns: what to do.
    public mutating func receive(_ frame: Frame) -> [Action] {
        if frame.type == .refuse {
            state = .done
            let refusal = try? Refusal.decode(frame.payload)
            return [
                .fail(
                    LinkError(
                        .peerRefused(
                            reason: refusal?.reason ?? "unknown",
                            message: refusal?.message ?? "an unreadable refusal"
                        )
                    )
                )
            ]
        }
        switch (state, frame.type) {
        case (.helloSent(let mine), .hello):
            return receiveHello(frame.payload, mine: mine)
        case (.proofSent(_, let peer, let transcript), .proof):
            return receiveProof(frame.payload, peer: peer, transcript: transcript)
        case (.done, _):
            return []
        default:
            return refuse(LinkError(.protocolViolation("a \(frame.type) frame during negotiation")))
        }
    }

    private mutating func receiveHello(_ payload: ByteBuffer, mine: ByteBuffer) -> [Action] {
        let peer: Hello
        do {
            peer = try Hello.decode(payload)
        } catch {
            return refuse(error)
        }
        guard peer.protocolVersion == Self.protocolVersion else {
            return refuse(LinkError(.versionMismatch(local: Self.protocolVersion, peer: peer.protocolVersion)))
        }
        guard peer.deviceID != identity.deviceID else { return refuse(LinkError(.sameDeviceID(peer.deviceID))) }
        guard peer.portalGroup == identity.portalGroup else {
            return refuse(LinkError(.portalGroupMismatch(local: identity.portalGroup, peer: peer.portalGroup)))
        }
        var hash = SHA256()
        let (first, second) = role == .initiator ? (mine, payload) : (payload, mine)
        hash.update(data: Array(first.readableBytesView))
        hash.update(data: Array(second.readableBytesView))
        let transcript = Array(hash.finalize())
        state = .proofSent(mine: mine, peer: peer, transcript: transcript)
        let proof = Self.proof(secret: secret, role: role, transcript: transcript)
        return [.send(Frame(type: .proof, payload: ByteBuffer(bytes: proof)))]
    }

    private mutating func receiveProof(_ payload: ByteBuffer, peer: Hello, transcript: [UInt8]) -> [Action] {
        let peerRole: LinkRole = role == .initiator ? .acceptor : .initiator
        let label = Self.label(peerRole)
        guard
            HMAC<SHA256>.isValidAuthenticationCode(
                Array(payload.readableBytesView),
                authenticating: label + transcript,
                using: secret.symmetricKey
            )
        else { return refuse(LinkError(.authenticationFailed)) }
        state = .done
        let outbound = Self.frameKey(secret: secret, transcript: transcript, from: role)
        let inbound = Self.frameKey(secret: secret, transcript: transcript, from: peerRole)
        let failover: FailoverState =
            peer.configurationDigest == identity.configurationDigest
            ? .synchronization
            : .independence(
                .configurationMismatch(local: identity.configurationDigest, peer: peer.configurationDigest)
            )
        return [
            .established(
                Negotiated(peer: peer, state: failover, keys: LinkKeys(sending: outbound, receiving: inbound))
            )
        ]
    }

    private mutating func refuse(_ error: LinkError) -> [Action] {
        state = .done
        let refusal = Refusal(reason: error.refusalReason, message: error.description)
        return [.send(Frame(type: .refuse, payload: refusal.encoded())), .fail(error)]
    }

    private static func label(_ role: LinkRole) -> [UInt8] {
        Array((role == .initiator ? "tandem/1 proof initiator" : "tandem/1 proof acceptor").utf8)
    }

    static func proof(secret: LinkSecret, role: LinkRole, transcript: [UInt8]) -> [UInt8] {
        Array(HMAC<SHA256>.authenticationCode(for: label(role) + transcript, using: secret.symmetricKey))
    }

    private static func frameKey(secret: LinkSecret, transcript: [UInt8], from role: LinkRole) -> LinkSecret {
        LinkSecret(
            HKDF<SHA256>.deriveKey(
                inputKeyMaterial: secret.symmetricKey,
                salt: transcript,
                info: Array(
                    (role == .initiator ? "tandem/1 frames from initiator" : "tandem/1 frames from acceptor").utf8
                ),
                outputByteCount: 32
            )
        )
    }
}
