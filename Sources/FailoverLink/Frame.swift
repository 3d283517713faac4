import NIOCore

/// The type of a frame on the failover link.
public struct FrameType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    /// The byte on the wire.
    public var rawValue: UInt8
    /// A frame type from its byte.
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// Negotiation: a device introduces itself (version, device ID, portal group, digest, nonce).
    public static let hello = FrameType(rawValue: 1)
    /// Negotiation: proof of the shared secret over both hellos.
    public static let proof = FrameType(rawValue: 2)
    /// Negotiation or later: the sender refuses the link, with a reason; it closes the connection next.
    public static let refuse = FrameType(rawValue: 3)
    /// Keeps an idle link alive and shows the peer is there.
    public static let heartbeat = FrameType(rawValue: 4)
    /// Replication: where the sender stands (term, the receiver's stream applied, takeovers), sent first.
    public static let streamRequest = FrameType(rawValue: 16)
    /// Replication: records of the sender's log, complete through a sequence.
    public static let records = FrameType(rawValue: 17)
    /// Replication: the sender has durably applied the receiver's stream through a sequence.
    public static let ack = FrameType(rawValue: 18)
    /// Replication: a full resynchronization of the sender's users begins.
    public static let snapshotBegin = FrameType(rawValue: 19)
    /// Replication: sessions of the sender's users table.
    public static let snapshotSessions = FrameType(rawValue: 20)
    /// Replication: the snapshot is complete at a sequence.
    public static let snapshotEnd = FrameType(rawValue: 21)
    /// Replication: a digest point of the sender's users table, in its stream after the records through it.
    public static let digest = FrameType(rawValue: 22)
    /// Replication: the sender asks for a full resynchronization of the receiver's users.
    public static let resyncRequest = FrameType(rawValue: 23)
    /// Replication: the sender asks for a digest point in the receiver's stream.
    public static let digestRequest = FrameType(rawValue: 24)
    /// Replication: the sender compared the tables at the receiver's digest point and found them equal.
    public static let digestMatch = FrameType(rawValue: 25)

    /// The frame type's name.
    public var description: String {
        switch self {
        case .hello: "hello"
        case .proof: "proof"
        case .refuse: "refuse"
        case .heartbeat: "heartbeat"
        case .streamRequest: "stream-request"
        case .records: "records"
        case .ack: "ack"
        case .snapshotBegin: "snapshot-begin"
        case .snapshotSessions: "snapshot-sessions"
        case .snapshotEnd: "snapshot-end"
        case .digest: "digest"
        case .resyncRequest: "resync-request"
        case .digestRequest: "digest-request"
        case .digestMatch: "digest-match"
        default: "type \(rawValue)"
        }
    }
}

/// One frame on the failover link: `[length u32 big-endian][type u8][payload]`, where the length counts the
/// type byte and the payload.
public struct Frame: Sendable, Hashable {
    /// What the frame is.
    public var type: FrameType
    /// Its contents.
    public var payload: ByteBuffer

    /// A frame.
    /// - Parameters:
    ///   - type: what the frame is.
    ///   - payload: its contents.
    public init(type: FrameType, payload: ByteBuffer) {
        self.type = type
        self.payload = payload
    }

    /// The default bound on a frame's length: 8 MiB.
    public static let defaultMaximumLength = 8 << 20

    /// Reads one frame from the front of `buffer`.
    ///
    /// Short input returns `nil` and moves nothing. The announced length is checked against
    /// `maximumLength` before anything is allocated.
    ///
    /// - Parameters:
    ///   - buffer: the received bytes.
    ///   - maximumLength: the largest length accepted.
    /// - Returns: the frame, or `nil` when `buffer` does not hold a whole one yet.
    /// - Throws: ``LinkError`` of kind ``LinkError/Kind/frameTooLong`` or ``LinkError/Kind/emptyFrame``.
    public static func read(
        from buffer: inout ByteBuffer,
        maximumLength: Int = defaultMaximumLength
    ) throws(LinkError)
        -> Frame?
    {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) else { return nil }
        guard length > 0 else { throw LinkError(.emptyFrame) }
        guard Int(length) <= maximumLength else {
            throw LinkError(.frameTooLong(length: Int(length), maximum: maximumLength))
        }
        guard buffer.readableBytes >= 4 + Int(length) else { return nil }
        buffer.moveReaderIndex(forwardBy: 4)
        let type = FrameType(rawValue: buffer.readInteger(as: UInt8.self)!)
        let payload = buffer.readSlice(length: Int(length) - 1)!
        return Frame(type: type, payload: payload)
    }

    /// Appends the frame to `buffer`.
    public func write(to buffer: inout ByteBuffer) {
        buffer.writeInteger(UInt32(1 + payload.readableBytes))
        buffer.writeInteger(type.rawValue)
        buffer.writeImmutableBuffer(payload)
    }
}

/// Decodes frames from the bytes of a connection (a `ByteToMessageDecoder` for NIO pipelines).
public struct FrameDecoder: ByteToMessageDecoder {
    public typealias InboundOut = Frame

    /// The largest frame length accepted.
    public let maximumLength: Int

    /// A decoder.
    /// - Parameter maximumLength: the largest frame length accepted; longer announced lengths fail the
    ///   connection before anything is allocated.
    public init(maximumLength: Int = Frame.defaultMaximumLength) {
        self.maximumLength = maximumLength
    }

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let frame = try Frame.read(from: &buffer, maximumLength: maximumLength) else { return .needMoreData }
        context.fireChannelRead(wrapInboundOut(frame))
        return .continue
    }

    public mutating func decodeLast(
        context: ChannelHandlerContext,
        buffer: inout ByteBuffer,
        seenEOF: Bool
    ) throws -> DecodingState {
        while try decode(context: context, buffer: &buffer) == .continue {}
        if buffer.readableBytes > 0 {
            let announced = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self).map { Int($0) + 4 } ?? 4
            throw LinkError(.truncatedFrame(missing: announced - buffer.readableBytes))
        }
        return .needMoreData
    }
}

/// Encodes frames onto a connection (a `MessageToByteEncoder` for NIO pipelines).
public struct FrameEncoder: MessageToByteEncoder {
    public typealias OutboundIn = Frame

    /// An encoder.
    public init() {}

    public func encode(data: Frame, out: inout ByteBuffer) throws {
        data.write(to: &out)
    }
}
