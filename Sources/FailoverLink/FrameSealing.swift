import Crypto
import NIOCore

/// Seals the frames a device sends after negotiation: each carries a 16-byte tag, an HMAC-SHA256 of its
/// position in the stream, its type and its payload, under the sending direction's key. A frame injected,
/// altered, replayed, dropped or reordered fails at the receiver.
public struct FrameSealer: Sendable {
    private let key: LinkSecret
    private var counter: UInt64 = 0

    /// The length of a tag.
    public static let tagLength = 16

    /// A sealer for one direction of one connection.
    /// - Parameter key: ``LinkKeys/sending``.
    public init(key: LinkSecret) { self.key = key }

    /// Seals `frame`: its payload gains the tag.
    public mutating func seal(_ frame: Frame) -> Frame {
        var sealed = frame
        let tag = Self.tag(key: key, counter: counter, frame: frame)
        sealed.payload.writeBytes(tag)
        counter += 1
        return sealed
    }

    static func tag(key: LinkSecret, counter: UInt64, frame: Frame) -> [UInt8] {
        var mac = HMAC<SHA256>(key: key.symmetricKey)
        withUnsafeBytes(of: counter.bigEndian) { mac.update(data: $0) }
        mac.update(data: [frame.type.rawValue])
        frame.payload.withUnsafeReadableBytes { mac.update(data: $0) }
        return Array(mac.finalize().prefix(tagLength))
    }
}

/// Opens the frames a device receives after negotiation; see ``FrameSealer``.
public struct FrameOpener: Sendable {
    private let key: LinkSecret
    private var counter: UInt64 = 0

    /// An opener for one direction of one connection.
    /// - Parameter key: ``LinkKeys/receiving``.
    public init(key: LinkSecret) { self.key = key }

    /// Checks `frame`'s tag and returns the frame without it.
    /// - Throws: ``LinkError`` of kind ``LinkError/Kind/authenticationFailed`` when the tag does not match,
    ///   and then every later frame fails too: close the connection.
    public mutating func open(_ frame: Frame) throws(LinkError) -> Frame {
        guard frame.payload.readableBytes >= FrameSealer.tagLength else { throw LinkError(.authenticationFailed) }
        var opened = frame
        let tag = opened.payload.getBytes(
            at: opened.payload.writerIndex - FrameSealer.tagLength,
            length: FrameSealer.tagLength
        )!
        opened.payload.moveWriterIndex(to: opened.payload.writerIndex - FrameSealer.tagLength)
        let expected = FrameSealer.tag(key: key, counter: counter, frame: opened)
        // Constant time: every byte is compared.
        var difference: UInt8 = 0
        for (a, b) in zip(tag, expected) { difference |= a ^ b }
        guard difference == 0 else {
            counter = .max
            throw LinkError(.authenticationFailed)
        }
        guard counter != .max else { throw LinkError(.authenticationFailed) }
        counter += 1
        return opened
    }
}
