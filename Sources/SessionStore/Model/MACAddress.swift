/// A 48-bit IEEE 802 MAC address: the hardware address of a portal user's device.
///
/// Parses the notations network devices print, and always prints the colon form:
///
/// ```swift
/// MACAddress("aa:bb:cc:dd:ee:ff")   // colons
/// MACAddress("AA-BB-CC-DD-EE-FF")   // hyphens (Windows, Huawei)
/// MACAddress("aabb-ccdd-eeff")      // H3C
/// MACAddress("aabb.ccdd.eeff")      // Cisco
/// ```
public struct MACAddress: Hashable, Comparable, Sendable {
    /// The address as a number in the low 48 bits; the first byte of the address is the most significant.
    public let rawValue: UInt64

    /// Creates an address from its 48 bits.
    ///
    /// - Parameter rawValue: The address in the low 48 bits; setting any of the upper 16 bits is a programming error
    ///   and traps.
    @inlinable
    public init(rawValue: UInt64) {
        precondition(rawValue >> 48 == 0, "a MAC address has 48 bits; 0x\(String(rawValue, radix: 16)) has more")
        self.rawValue = rawValue
    }

    /// Orders addresses numerically (the order of their bytes).
    ///
    /// - Parameters:
    ///   - lhs: An address.
    ///   - rhs: Another address.
    /// - Returns: Whether `lhs` is numerically lower than `rhs`.
    @inlinable
    public static func < (lhs: MACAddress, rhs: MACAddress) -> Bool {
        lhs.rawValue < rhs.rawValue
    }
}

// MARK: - Parsing

extension MACAddress {
    /// Parses a MAC address in one of four notations, hexadecimal digits in either case:
    /// `aa:bb:cc:dd:ee:ff`, `aa-bb-cc-dd-ee-ff`, `aabb-ccdd-eeff` (H3C) and `aabb.ccdd.eeff` (Cisco).
    ///
    /// The separators of one address must all be the same.
    ///
    /// - Parameter text: The address.
    /// - Returns: `nil` when `text` is not a MAC address in one of those notations.
    public init?(_ text: some StringProtocol) {
        let parsed =
            text.utf8.withContiguousStorageIfAvailable { MACAddress.parse($0) }
            ?? Array(text.utf8).withUnsafeBufferPointer { MACAddress.parse($0) }
        guard let parsed else {
            return nil
        }
        self = parsed
    }

    private static func parse(_ text: UnsafeBufferPointer<UInt8>) -> MACAddress? {
        // Pairs of digits (every third character a separator) or quads (every fifth character).
        let stride: Int
        switch text.count {
        case 17: stride = 3
        case 14: stride = 5
        default: return nil
        }
        let separator = text[stride - 1]
        switch (stride, separator) {
        case (3, UInt8(ascii: ":")), (3, UInt8(ascii: "-")), (5, UInt8(ascii: "-")), (5, UInt8(ascii: ".")):
            break
        default:
            return nil
        }
        var value: UInt64 = 0
        for index in 0..<text.count {
            let byte = text[index]
            if index % stride == stride - 1 {
                guard byte == separator else {
                    return nil
                }
                continue
            }
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: return nil
            }
            value = value << 4 | UInt64(digit)
        }
        return MACAddress(rawValue: value)
    }
}

// MARK: - Printing

extension MACAddress: CustomStringConvertible {
    /// The address as six lowercase hexadecimal pairs separated by colons, `aa:bb:cc:dd:ee:ff`.
    public var description: String {
        String(unsafeUninitializedCapacity: 17) { writeDescription(into: $0) }
    }

    /// Writes ``description``'s 17 bytes into `buffer`; returns 17.
    package func writeDescription(into buffer: UnsafeMutableBufferPointer<UInt8>) -> Int {
        var index = 0
        for shift in stride(from: 40, through: 0, by: -8) {
            if shift != 40 {
                buffer[index] = UInt8(ascii: ":")
                index += 1
            }
            let byte = UInt8(truncatingIfNeeded: rawValue >> UInt64(shift))
            buffer[index] = asciiLowercaseHexDigit(byte >> 4)
            buffer[index + 1] = asciiLowercaseHexDigit(byte & 0xF)
            index += 2
        }
        return index
    }
}

// MARK: - Codable

extension MACAddress: Codable {
    /// Decodes an address from its text form (any notation ``init(_:)`` accepts).
    ///
    /// - Parameter decoder: The decoder to read from.
    /// - Throws: `DecodingError.dataCorrupted` when the string is not a MAC address.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let text = try container.decode(String.self)
        guard let address = MACAddress(text) else {
            throw DecodingError.dataCorruptedError(
                in: container,
                debugDescription: "'\(text)' is not a MAC address (aa:bb:cc:dd:ee:ff)"
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
