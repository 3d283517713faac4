import NIOCore
import SessionStore

/// Work from the peer's stream, decoded by the connection's reader and applied by its applier.
package enum PeerWork: Sendable {
    case records(through: UInt64, [LogRecord])
    case snapshotBegin(takeovers: [Takeover], everything: Bool, keep: Bool = false)
    case snapshotSessions(SnapshotSessions)
    case snapshotEnd(SnapshotEndMessage)
    /// A digest point of the peer, compared once everything before it is applied.
    case digest(DigestMessage)
    /// The connection closed: the applier ends once everything before it is applied.
    case finish

    /// Decodes a frame of the peer's stream: records, a snapshot's parts or a digest point; `nil` for the
    /// other frame types, which the reader handles itself.
    ///
    /// - Throws: ``LinkError`` or ``SessionStoreError`` when the payload is malformed; nothing is decoded then.
    package static func decode(_ frame: Frame) throws -> PeerWork? {
        switch frame.type {
        case .records:
            let (through, records) = try RecordsMessage.decode(frame.payload)
            return .records(through: through, records)
        case .snapshotBegin:
            let (takeovers, everything, keep) = try SnapshotBeginMessage.decode(frame.payload)
            return .snapshotBegin(takeovers: takeovers, everything: everything, keep: keep)
        case .snapshotSessions:
            let sessions = try frame.payload.withUnsafeReadableBytes { bytes throws(SessionStoreError) in
                try SnapshotSessions(checking: bytes)
            }
            return .snapshotSessions(sessions)
        case .snapshotEnd:
            return .snapshotEnd(try SnapshotEndMessage.decode(frame.payload))
        case .digest:
            return .digest(try DigestMessage.decode(frame.payload))
        default:
            return nil
        }
    }

    /// The batch of the store that applies this work, for a peer `origin` whose log has history `history`;
    /// `nil` for a digest point and the end of the connection.
    package func batch(origin: DeviceID, history: UInt64) -> PeerBatch? {
        switch self {
        case .records(let through, let records):
            .records(origin: origin, through: through, history: history, records)
        case .snapshotBegin(let takeovers, let everything, let keep):
            .snapshotBegin(origin: origin, takeovers: takeovers, everything: everything, keep: keep)
        case .snapshotSessions(let sessions):
            .snapshotSessions(origin: origin, sessions)
        case .snapshotEnd(let end):
            .snapshotEnd(
                origin: origin,
                position: end.position,
                wholeFrom: end.wholeFrom,
                everythingThrough: end.everythingThrough,
                history: history
            )
        case .digest, .finish:
            nil
        }
    }
}
