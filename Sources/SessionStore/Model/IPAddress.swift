/// An IPv4 or IPv6 address: the key of a portal user session.
///
/// The address is stored as 128 bits, the 16 bytes of the address in network (big-endian) order held in two
/// `UInt64`s. An IPv4 address is stored IPv4-mapped (`::ffff:a.b.c.d`, RFC 4291 section 2.5.5.2), so one type
/// and one 16-byte key cover both families, and the order of keys is the numeric order of the addresses, with
/// every IPv4 address between `::fffe:ffff:ffff` and `::1:0:0:0`.
///
/// ```swift
/// let v4 = IPAddress("10.0.0.1")!         // isIPv4, description "10.0.0.1"
/// let v6 = IPAddress("2001:DB8:0:0:0::1")! // description "2001:db8::1"
/// ```
///
/// Because IPv4 is stored mapped, `IPAddress("::ffff:10.0.0.1")` is the same value as `IPAddress("10.0.0.1")`
/// and prints as `10.0.0.1`.
public struct IPAddress: Hashable, Comparable, Sendable {
    /// The first 8 bytes of the address, big-endian (the first byte is the most significant).
    public let high: UInt64
    /// The last 8 bytes of the address, big-endian (the last byte is the least significant).
    public let low: UInt64

    /// Creates an address from its 128 bits.
    ///
    /// - Parameters:
    ///   - high: The first 8 bytes of the address, big-endian.
    ///   - low: The last 8 bytes of the address, big-endian.
    @inlinable
    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// Creates the IPv4-mapped address of an IPv4 address.
    ///
    /// - Parameter ipv4: The IPv4 address as a number, `0x0A000001` for `10.0.0.1`.
    @inlinable
    public init(ipv4: UInt32) {
        self.init(high: 0, low: 0xFFFF_0000_0000 | UInt64(ipv4))
    }

    /// Creates an address from its 16 bytes in network order, as ``withUnsafeBytes(_:)`` gives them.
    ///
    /// - Parameter bytes: Exactly 16 bytes; anything else is a programming error and traps.
    @inlinable
    public init(bytes: UnsafeRawBufferPointer) {
        precondition(bytes.count == 16, "an IP address is 16 bytes, not \(bytes.count)")
        self.init(
            high: UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: 0, as: UInt64.self)),
            low: UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        )
    }

    /// Whether this is an IPv4 address (stored IPv4-mapped, `::ffff:a.b.c.d`).
    @inlinable
    public var isIPv4: Bool {
        high == 0 && low >> 32 == 0xFFFF
    }

    /// The IPv4 address as a number (`0x0A000001` for `10.0.0.1`), or `nil` for an IPv6 address.
    @inlinable
    public var ipv4: UInt32? {
        isIPv4 ? UInt32(truncatingIfNeeded: low) : nil
    }

    /// Calls `body` with the 16 bytes of the address in network order.
    ///
    /// Comparing these bytes with `memcmp` gives the same order as `<`, so they make a sortable key.
    ///
    /// - Parameter body: A closure that reads the bytes; they are valid only during the call.
    /// - Returns: What `body` returns.
    /// - Throws: What `body` throws.
    @inlinable
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        var bytes = (high.bigEndian, low.bigEndian)
        return try Swift.withUnsafeBytes(of: &bytes) { try body($0) }
    }

    /// Orders addresses numerically, so every IPv4 address sorts as its IPv4-mapped form.
    ///
    /// - Parameters:
    ///   - lhs: An address.
    ///   - rhs: Another address.
    /// - Returns: Whether `lhs` is numerically lower than `rhs`.
    @inlinable
    public static func < (lhs: IPAddress, rhs: IPAddress) -> Bool {
        lhs.high != rhs.high ? lhs.high < rhs.high : lhs.low < rhs.low
    }
}

// MARK: - Parsing

extension IPAddress {
    /// Parses an IPv4 or IPv6 address.
    ///
    /// Accepted forms:
    /// - IPv4 as a strict dotted quad: four decimal parts of 0...255 without leading zeros (`10.0.0.1`; not
    ///   `010.0.0.1`, `10.1`, `256.0.0.1` or `1.2.3.4.5`).
    /// - IPv6 as eight groups of 1...4 hexadecimal digits (either case), with at most one `::` standing for one or
    ///   more zero groups, and optionally an IPv4 dotted quad in place of the last two groups (`::ffff:10.0.0.1`).
    ///
    /// Zone IDs (`fe80::1%eth0`), brackets, prefix lengths and surrounding spaces are refused.
    ///
    /// - Parameter text: The address.
    /// - Returns: `nil` when `text` is not an address in one of those forms.
    public init?(_ text: some StringProtocol) {
        let parsed =
            text.utf8.withContiguousStorageIfAvailable { IPAddress.parse($0) }
            ?? Array(text.utf8).withUnsafeBufferPointer { IPAddress.parse($0) }
        guard let parsed else {
            return nil
        }
        self = parsed
    }

    private static func parse(_ text: UnsafeBufferPointer<UInt8>) -> IPAddress? {
        if text.contains(UInt8(ascii: ":")) {
            return parseIPv6(text)
        }
        return parseIPv4(text, from: 0, to: text.count).map { IPAddress(ipv4: $0) }
    }

    /// Parses a strict dotted quad in `text[from..<to]`.
    static func parseIPv4(_ text: UnsafeBufferPointer<UInt8>, from: Int, to end: Int) -> UInt32? {
        var value: UInt32 = 0
        var parts = 0
        var index = from
        while true {
            let start = index
            var part: UInt32 = 0
            while index < end, let digit = decimalDigit(text[index]) {
                guard index - start < 3 else {
                    return nil
                }
                part = part * 10 + digit
                index += 1
            }
            let length = index - start
            guard length > 0, part <= 255, length == 1 || text[start] != UInt8(ascii: "0") else {
                return nil
            }
            value = value << 8 | part
            parts += 1
            if index == end {
                break
            }
            guard text[index] == UInt8(ascii: "."), parts < 4 else {
                return nil
            }
            index += 1
        }
        return parts == 4 ? value : nil
    }

    private static func parseIPv6(_ text: UnsafeBufferPointer<UInt8>) -> IPAddress? {
        let end = text.count
        guard end >= 2 else {
            return nil
        }
        // Groups before `::` go to `head`, groups after it to `tail`; `::` fills the gap with zeros.
        var head: UInt128 = 0
        var headGroups = 0
        var tail: UInt128 = 0
        var tailGroups = 0
        var compressed = false
        var index = 0
        if text[0] == UInt8(ascii: ":") {
            guard text[1] == UInt8(ascii: ":") else {
                return nil
            }
            compressed = true
            index = 2
            if index == end {
                return IPAddress(high: 0, low: 0)
            }
        }
        while true {
            var tokenEnd = index
            var hasDot = false
            while tokenEnd < end, text[tokenEnd] != UInt8(ascii: ":") {
                if text[tokenEnd] == UInt8(ascii: ".") {
                    hasDot = true
                }
                tokenEnd += 1
            }
            let bits: UInt128
            let groups: Int
            if hasDot {
                // An embedded IPv4 address takes the place of the last two groups.
                guard tokenEnd == end, let ipv4 = parseIPv4(text, from: index, to: end) else {
                    return nil
                }
                bits = UInt128(ipv4)
                groups = 2
            } else {
                guard (1...4).contains(tokenEnd - index) else {
                    return nil
                }
                var group: UInt128 = 0
                for position in index..<tokenEnd {
                    guard let digit = hexDigit(text[position]) else {
                        return nil
                    }
                    group = group << 4 | UInt128(digit)
                }
                bits = group
                groups = 1
            }
            if compressed {
                tail = tail << (16 * groups) | bits
                tailGroups += groups
            } else {
                head = head << (16 * groups) | bits
                headGroups += groups
            }
            guard headGroups + tailGroups <= 8 else {
                return nil
            }
            if tokenEnd == end {
                break
            }
            if tokenEnd + 1 < end, text[tokenEnd + 1] == UInt8(ascii: ":") {
                guard !compressed else {
                    return nil
                }
                compressed = true
                index = tokenEnd + 2
                if index == end {
                    break
                }
            } else {
                index = tokenEnd + 1
                guard index < end else {
                    return nil
                }
            }
        }
        // `::` stands for at least one zero group.
        guard compressed ? headGroups + tailGroups <= 7 : headGroups == 8 else {
            return nil
        }
        let value = head << (16 * (8 - headGroups)) | tail
        return IPAddress(high: UInt64(truncatingIfNeeded: value >> 64), low: UInt64(truncatingIfNeeded: value))
    }

    @inline(__always)
    private static func decimalDigit(_ byte: UInt8) -> UInt32? {
        byte &- UInt8(ascii: "0") < 10 ? UInt32(byte &- UInt8(ascii: "0")) : nil
    }

    @inline(__always)
    private static func hexDigit(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}

// MARK: - Printing

extension IPAddress: CustomStringConvertible {
    /// The address in its canonical text form.
    ///
    /// IPv4 (IPv4-mapped) addresses as a dotted quad, `10.0.0.1`. Other addresses per RFC 5952: lowercase
    /// hexadecimal without leading zeros, and the longest run of two or more zero groups (the leftmost one on a tie)
    /// compressed to `::`, as in `2001:db8::1`.
    public var description: String {
        if let ipv4 {
            return String(unsafeUninitializedCapacity: 15) { buffer in
                var index = 0
                for shift in stride(from: 24, through: 0, by: -8) {
                    if shift != 24 {
                        buffer[index] = UInt8(ascii: ".")
                        index += 1
                    }
                    index = writeDecimal(UInt8(truncatingIfNeeded: ipv4 >> UInt32(shift)), into: buffer, at: index)
                }
                return index
            }
        }
        // The longest run of zero groups; a strict `>` keeps the leftmost run on a tie.
        var bestStart = -1
        var bestLength = 0
        var runStart = -1
        for position in 0..<8 {
            if group(position) == 0 {
                if runStart < 0 {
                    runStart = position
                }
                if position - runStart + 1 > bestLength {
                    bestStart = runStart
                    bestLength = position - runStart + 1
                }
            } else {
                runStart = -1
            }
        }
        if bestLength < 2 {
            bestStart = -1
        }
        return String(unsafeUninitializedCapacity: 39) { buffer in
            var index = 0
            var position = 0
            while position < 8 {
                if position == bestStart {
                    buffer[index] = UInt8(ascii: ":")
                    buffer[index + 1] = UInt8(ascii: ":")
                    index += 2
                    position += bestLength
                    continue
                }
                if position > 0, bestStart < 0 || position != bestStart + bestLength {
                    buffer[index] = UInt8(ascii: ":")
                    index += 1
                }
                index = writeHex(group(position), into: buffer, at: index)
                position += 1
            }
            return index
        }
    }

    /// The 16-bit group at `position` (0...7, most significant first).
    @inline(__always)
    private func group(_ position: Int) -> UInt16 {
        let word = position < 4 ? high : low
        return UInt16(truncatingIfNeeded: word >> UInt64(48 - 16 * (position & 3)))
    }
}

@inline(__always)
private func writeDecimal(_ value: UInt8, into buffer: UnsafeMutableBufferPointer<UInt8>, at start: Int) -> Int {
    var index = start
    if value >= 100 {
        buffer[index] = UInt8(ascii: "0") + value / 100
        index += 1
    }
    if value >= 10 {
        buffer[index] = UInt8(ascii: "0") + value / 10 % 10
        index += 1
    }
    buffer[index] = UInt8(ascii: "0") + value % 10
    return index + 1
}

@inline(__always)
private func writeHex(_ value: UInt16, into buffer: UnsafeMutableBufferPointer<UInt8>, at start: Int) -> Int {
    var index = start
    var shift = 12
    // No leading zeros (RFC 5952 section 4.1), but at least one digit.
    while shift > 0, value >> UInt16(shift) == 0 {
        shift -= 4
    }
    while shift >= 0 {
        buffer[index] = asciiLowercaseHexDigit(UInt8(truncatingIfNeeded: value >> UInt16(shift)) & 0xF)
        index += 1
        shift -= 4
    }
    return index
}

/// The ASCII lowercase hexadecimal digit of `nibble` (0...15), shared by the address printers.
@inline(__always)
func asciiLowercaseHexDigit(_ nibble: UInt8) -> UInt8 {
    nibble < 10 ? UInt8(ascii: "0") + nibble : UInt8(ascii: "a") - 10 + nibble
}

// MARK: - Codable

extension IPAddress: Codable {
    /// Decodes an address from its text form (see ``init(_:)``).
    ///
    /// - Parameter decoder: The decoder to read from.
    /// - Throws: `DecodingError.dataCorrupted` when the string is not an address.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let text = try container.decode(String.self)
        guard let address = IPAddress(text) else {
            throw DecodingError.dataCorruptedError(
                in: container,
                debugDescription: "'\(text)' is not an IPv4 or IPv6 address"
            )
        }
        self = address
    }

    /// Encodes the address as its text form (``description``).
    ///
    /// - Parameter encoder: The encoder to write to.
    /// - Throws: What the encoder throws.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

extension IPAddress {
    /// Hashes the address for `Set` and `Dictionary`, the same way as ``hash(into:)`` would but without
    /// SipHash's set-up, which dominated the store's hot path: two rounds of a 64-bit finalizer, keyed with
    /// the table's per-process seed, so that which addresses collide depends on the seed.
    public func _rawHashValue(seed: Int) -> Int {
        Int(bitPattern: UInt(truncatingIfNeeded: Self.mix(Self.mix(high ^ UInt64(bitPattern: Int64(seed))) ^ low)))
    }

    /// Feeds the address to `hasher`.
    public func hash(into hasher: inout Hasher) {
        hasher.combine(high)
        hasher.combine(low)
    }

    @inline(__always)
    private static func mix(_ value: UInt64) -> UInt64 {
        var x = value
        x = (x ^ (x >> 30)) &* 0xbf58_476d_1ce4_e5b9
        x = (x ^ (x >> 27)) &* 0x94d0_49bb_1331_11eb
        return x ^ (x >> 31)
    }
}
