import SessionStore

// Builds encoded units field by field, independently of `RecordCodec`, so that tests can check its layout and feed
// it well-sealed bytes with one field broken.

/// Builders of raw unit bytes.
enum RawUnit {
    /// The LEB128 varint of `value`, or a longer one padded with continuation bytes (not canonical) when `padding > 0`.
    static func varint(_ value: UInt64, padding: Int = 0) -> [UInt8] {
        var bytes: [UInt8] = []
        var value = value
        while value >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: value) | 0x80)
            value >>= 7
        }
        bytes.append(UInt8(value))
        if padding > 0 {
            bytes[bytes.count - 1] |= 0x80
            bytes += [UInt8](repeating: 0x80, count: padding - 1) + [0x00]
        }
        return bytes
    }

    /// The zigzag varint of `value`.
    static func zigzag(_ value: Int64) -> [UInt8] {
        varint(UInt64(bitPattern: (value << 1) ^ (value >> 63)))
    }

    /// A length-prefixed string.
    static func prefixed(_ string: String) -> [UInt8] {
        prefixed(Array(string.utf8))
    }

    /// Length-prefixed bytes.
    static func prefixed(_ bytes: [UInt8]) -> [UInt8] {
        varint(UInt64(bytes.count)) + bytes
    }

    /// `version`, `kind`, the fields, and the CRC-32C of all that, little-endian.
    static func sealed(version: UInt8 = 2, kind: UInt8, _ fields: [UInt8]) -> [UInt8] {
        let unit = [version, kind] + fields
        let crc = CRC32C.checksum(unit)
        return unit + [UInt8(crc & 0xFF), UInt8(crc >> 8 & 0xFF), UInt8(crc >> 16 & 0xFF), UInt8(crc >> 24)]
    }

    /// Recomputes the CRC-32C at the end of a unit after its bytes were changed.
    static func resealed(_ unit: [UInt8]) -> [UInt8] {
        guard unit.count >= 6 else {
            return unit
        }
        return sealed(version: unit[0], kind: unit[1], Array(unit[2..<(unit.count - 4)]))
    }
}

/// The session body, field by field as raw bytes; the defaults are `RawSessionBody.session` below.
struct RawSessionBody: Sendable {
    var mac: [UInt8] = [0x00, 0x11, 0x22, 0xAA, 0xBB, 0xCC]
    var generation: [UInt8] = RawUnit.varint(3) + RawUnit.varint(1_000_000)
    var loginTime: [UInt8] = RawUnit.zigzag(1_795_246_460_123_456)
    var sessionTimeout: [UInt8] = RawUnit.varint(3600)
    var userName: [UInt8] = RawUnit.prefixed("alice")
    var idleTimeout: [UInt8] = RawUnit.varint(600)
    var vlan: [UInt8] = RawUnit.varint(100)
    var accessInterface: [UInt8] = RawUnit.prefixed("GigabitEthernet1/0/1")
    var portalGroup: [UInt8] = RawUnit.prefixed("campus")
    var authenticationMode: [UInt8] = [1]
    var owner: [UInt8] = [2]
    var radiusFlags: [UInt8] = [1]
    var nasIP: [UInt8] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 192, 0, 2, 1]
    var acctSessionID: [UInt8] = RawUnit.prefixed("0000001a2b3c4d5e")
    var classAttribute: [UInt8] = RawUnit.prefixed([0xC1, 0xA5, 0x5E])
    /// The parts byte and the parts after it (version 2); none of a version 1 body.
    var parts: [UInt8] = [0]

    /// The session these defaults describe, with `ip` as its address.
    static func session(ip: IPAddress) -> Session {
        Session(
            ip: ip,
            mac: MACAddress(rawValue: 0x0011_22AA_BBCC),
            userName: "alice",
            vlan: 100,
            accessInterface: "GigabitEthernet1/0/1",
            portalGroup: "campus",
            authenticationMode: .direct,
            owner: 2,
            loginTime: Timestamp(microsecondsSinceEpoch: 1_795_246_460_123_456),
            sessionTimeout: 3600,
            idleTimeout: 600,
            radius: RADIUSAttributes(
                nasIP: IPAddress("192.0.2.1"),
                acctSessionID: "0000001a2b3c4d5e",
                classAttribute: [0xC1, 0xA5, 0x5E]
            ),
            generation: Generation(term: 3, sequence: 1_000_000)
        )
    }

    /// The fields, in order.
    var bytes: [UInt8] {
        mac + generation + loginTime + sessionTimeout + userName + idleTimeout + vlan + accessInterface
            + portalGroup + authenticationMode + owner + radiusFlags + nasIP + acctSessionID + classAttribute + parts
    }

    /// A sealed session value (kind 16).
    func sessionValue(version: UInt8 = 2, kind: UInt8 = 16) -> [UInt8] {
        RawUnit.sealed(version: version, kind: kind, bytes)
    }

    /// A sealed login record (kind 1) for this body, with `ip` 10.0.0.1.
    func loginRecord(origin: UInt8 = 2) -> [UInt8] {
        RawUnit.sealed(kind: 1, RawRecordHeader(origin: [origin]).bytes + RawSessionBody.ip10001 + bytes)
    }

    /// `10.0.0.1`, IPv4-mapped.
    static let ip10001: [UInt8] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 10, 0, 0, 1]
}

/// The fields every log record starts with; the defaults are sequence 7, term 3, origin 2 and the time of
/// `RawSessionBody`.
struct RawRecordHeader: Sendable {
    var sequence: [UInt8] = RawUnit.varint(7)
    var term: [UInt8] = RawUnit.varint(3)
    var origin: [UInt8] = [2]
    var time: [UInt8] = RawUnit.zigzag(1_795_246_460_123_456)

    var bytes: [UInt8] {
        sequence + term + origin + time
    }
}
