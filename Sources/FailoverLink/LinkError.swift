import SessionStore

/// The error the failover link reports: a failed negotiation, a peer's refusal, or bytes that break the
/// protocol.
///
/// A struct around a private code, so that cases can be added; compare ``kind`` with the static kinds and
/// show ``description`` to the operator.
public struct LinkError: Error, Sendable, Hashable, CustomStringConvertible {
    enum Code: Sendable, Hashable {
        case versionMismatch(local: UInt16, peer: UInt16)
        case sameDeviceID(DeviceID)
        case portalGroupMismatch(local: PortalGroup, peer: PortalGroup)
        case authenticationFailed
        case peerRefused(reason: String, message: String)
        case protocolViolation(String)
        case malformed(String)
        case frameTooLong(length: Int, maximum: Int)
        case emptyFrame
        case truncatedFrame(missing: Int)
        case connectionClosed
        case connectionBroken(String)
        case peerSilent(limitMilliseconds: Int64)
        case tlsFailed(String)
        case notReplicated(sequence: UInt64, timeout: Duration, state: String)
        case discarded(sequence: UInt64, term: UInt32)
        case stopped(sequence: UInt64)
        case noPeerKnown
    }

    let code: Code

    init(_ code: Code) { self.code = code }

    /// What kind of failure this is.
    public struct Kind: Hashable, Sendable, CustomStringConvertible {
        private let name: String
        private init(_ name: String) { self.name = name }
        /// The kind's name, as in `version-mismatch`.
        public var description: String { name }

        /// The peer speaks a protocol version this device does not.
        public static let versionMismatch = Kind("version-mismatch")
        /// Both devices have the same device ID (R4): change one of them.
        public static let sameDeviceID = Kind("same-device-id")
        /// The devices back up different portal groups (R5).
        public static let portalGroupMismatch = Kind("portal-group-mismatch")
        /// The peer does not know the shared secret, or a frame failed its authentication.
        public static let authenticationFailed = Kind("authentication-failed")
        /// The peer refused the link; the description carries its reason.
        public static let peerRefused = Kind("peer-refused")
        /// A frame came that the protocol does not allow at this point.
        public static let protocolViolation = Kind("protocol-violation")
        /// A frame's contents could not be decoded.
        public static let malformed = Kind("malformed")
        /// A frame announced a length over the limit.
        public static let frameTooLong = Kind("frame-too-long")
        /// A frame announced a length of zero.
        public static let emptyFrame = Kind("empty-frame")
        /// The connection ended in the middle of a frame.
        public static let truncatedFrame = Kind("truncated-frame")
        /// The connection closed.
        public static let connectionClosed = Kind("connection-closed")
        /// The connection failed under the link (reset by the peer, say).
        public static let connectionBroken = Kind("connection-broken")
        /// Nothing came from the peer, not even a heartbeat, for longer than the dead-peer timeout.
        public static let peerSilent = Kind("peer-silent")
        /// The TLS handshake or a TLS record failed.
        public static let tlsFailed = Kind("tls-failed")
        /// A write committed on this device, but the peer did not acknowledge it in time.
        public static let notReplicated = Kind("not-replicated")
        /// A write waited for the peer, but this device stepped down first and discarded it: it is gone.
        public static let discarded = Kind("discarded")
        /// A write waited for the peer, but the node stopped first; it is committed on this device.
        public static let stopped = Kind("stopped")
        /// Promotion needs the peer's device ID, and this device has never met its peer.
        public static let noPeerKnown = Kind("no-peer-known")
    }

    /// What kind of failure this is.
    public var kind: Kind {
        switch code {
        case .versionMismatch: .versionMismatch
        case .sameDeviceID: .sameDeviceID
        case .portalGroupMismatch: .portalGroupMismatch
        case .authenticationFailed: .authenticationFailed
        case .peerRefused: .peerRefused
        case .protocolViolation: .protocolViolation
        case .malformed: .malformed
        case .frameTooLong: .frameTooLong
        case .emptyFrame: .emptyFrame
        case .truncatedFrame: .truncatedFrame
        case .connectionClosed: .connectionClosed
        case .connectionBroken: .connectionBroken
        case .peerSilent: .peerSilent
        case .tlsFailed: .tlsFailed
        case .notReplicated: .notReplicated
        case .discarded: .discarded
        case .stopped: .stopped
        case .noPeerKnown: .noPeerKnown
        }
    }

    /// The sequence of the event a ``Kind/notReplicated``, ``Kind/discarded`` or ``Kind/stopped`` error is
    /// about; `nil` for the other kinds.
    public var sequence: UInt64? {
        switch code {
        case .notReplicated(let sequence, _, _), .discarded(let sequence, _), .stopped(let sequence): sequence
        default: nil
        }
    }

    /// What went wrong and what to do, for the operator.
    public var description: String {
        switch code {
        case .versionMismatch(let local, let peer):
            "the peer speaks failover protocol version \(peer), this device version \(local): run the same Tandem "
                + "release on both devices"
        case .sameDeviceID(let id):
            "both devices have device ID \(id): give the peer another device ID (R4); changing it logs its users off"
        case .portalGroupMismatch(let local, let peer):
            "this device backs up portal group '\(local)' but the peer '\(peer)': the portal service backup "
                + "interfaces of both devices must be in the same portal group (R5)"
        case .authenticationFailed:
            "the peer failed authentication: check that both devices use the same shared secret"
        case .peerRefused(let reason, let message):
            "the peer refused the link (\(reason)): \(message)"
        case .protocolViolation(let detail):
            "protocol violation: \(detail)"
        case .malformed(let detail):
            "malformed frame: \(detail)"
        case .frameTooLong(let length, let maximum):
            "a frame of \(length) bytes is over the limit of \(maximum)"
        case .emptyFrame:
            "a frame of length 0"
        case .truncatedFrame(let missing):
            "the connection ended \(missing) bytes before the end of a frame"
        case .connectionClosed:
            "the connection to the peer closed"
        case .connectionBroken(let detail):
            "the connection to the peer broke (\(detail))"
        case .peerSilent(let limit):
            "the peer fell silent for longer than the dead-peer timeout (\(limit) ms): it is "
                + "down, stopped, or the failover link is cut"
        case .tlsFailed(let detail):
            "TLS failed (\(detail)): check that both devices have TLS on, and certificates from the pair's CA"
        case .notReplicated(let sequence, let timeout, let state):
            "event \(sequence) is committed on this device, but the peer did not acknowledge it within \(timeout) "
                + "(failover state: \(state)); it reaches the peer when the link is back, unless this device fails first"
        case .discarded(let sequence, let term):
            "event \(sequence) was discarded: the peer took over at term \(term) before it acknowledged the event, "
                + "and this device stepped down; a login must be made again (a logout is logged again by itself)"
        case .stopped(let sequence):
            "event \(sequence) is committed on this device, but the node stopped before the peer acknowledged it"
        case .noPeerKnown:
            "this device has never synchronized with a peer, so there are no users to take over"
        }
    }

    /// The reason code sent to the peer in a refusal.
    var refusalReason: String { kind.description }
}
