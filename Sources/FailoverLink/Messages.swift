import NIOCore
import SessionStore

/// How a device introduces itself on the link: the first frame each side sends.
public struct Hello: Sendable, Hashable {
    /// The failover protocol version the sender speaks.
    public var protocolVersion: UInt16
    /// The sender's device ID (R4).
    public var deviceID: DeviceID
    /// The portal group the sender backs up (R5).
    public var portalGroup: PortalGroup
    /// The digest of the sender's AAA and portal configuration (R8), 32 bytes.
    public var configurationDigest: [UInt8]
    /// A fresh random value of 32 bytes, so that no proof can be replayed on another connection.
    public var nonce: [UInt8]

    /// The length of a configuration digest.
    public static let digestLength = 32
    /// The length of a nonce.
    public static let nonceLength = 32

    func encoded() -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeInteger(protocolVersion)
        buffer.writeInteger(deviceID.rawValue)
        buffer.writeInteger(UInt8(portalGroup.name.utf8.count))
        buffer.writeString(portalGroup.name)
        buffer.writeBytes(configurationDigest)
        buffer.writeBytes(nonce)
        return buffer
    }

    static func decode(_ payload: ByteBuffer) throws(LinkError) -> Hello {
        var buffer = payload
        guard let version = buffer.readInteger(as: UInt16.self),
            let rawID = buffer.readInteger(as: UInt8.self),
            let groupLength = buffer.readInteger(as: UInt8.self),
            let groupName = buffer.readString(length: Int(groupLength)),
            let digest = buffer.readBytes(length: digestLength),
            let nonce = buffer.readBytes(length: nonceLength)
        else { throw LinkError(.malformed("a hello of \(payload.readableBytes) bytes is incomplete")) }
        guard buffer.readableBytes == 0 else {
            throw LinkError(.malformed("a hello with \(buffer.readableBytes) bytes too many"))
        }
        guard let deviceID = DeviceID(rawValue: rawID) else { throw LinkError(.malformed("device ID 0 in a hello")) }
        guard let group = try? PortalGroup(groupName) else {
            throw LinkError(.malformed("an invalid portal group name in a hello"))
        }
        return Hello(
            protocolVersion: version,
            deviceID: deviceID,
            portalGroup: group,
            configurationDigest: digest,
            nonce: nonce
        )
    }
}

/// A refusal: why the sender will not keep the link.
struct Refusal: Sendable, Hashable {
    var reason: String
    var message: String

    static let maximumLength = 1024

    func encoded() -> ByteBuffer {
        var buffer = ByteBuffer()
        let reason = String(reason.utf8.prefix(64)) ?? ""
        let message = String(message.utf8.prefix(Self.maximumLength)) ?? ""
        buffer.writeInteger(UInt8(reason.utf8.count))
        buffer.writeString(reason)
        buffer.writeInteger(UInt16(message.utf8.count))
        buffer.writeString(message)
        return buffer
    }

    static func decode(_ payload: ByteBuffer) throws(LinkError) -> Refusal {
        var buffer = payload
        guard let reasonLength = buffer.readInteger(as: UInt8.self),
            let reason = buffer.readString(length: Int(reasonLength)),
            let messageLength = buffer.readInteger(as: UInt16.self), Int(messageLength) <= maximumLength,
            let message = buffer.readString(length: Int(messageLength)), buffer.readableBytes == 0
        else { throw LinkError(.malformed("an unreadable refusal")) }
        return Refusal(reason: reason, message: message)
    }
}
