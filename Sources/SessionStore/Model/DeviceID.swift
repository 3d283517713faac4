/// The ID of one device of a stateful-failover pair, 1...255.
///
/// Each device of the pair has its own ID, different from the peer's (R4). Every session records the ID of the
/// device that owns it, and every log record the ID of the device that wrote it.
///
/// ```swift
/// let id = try DeviceID(2)
/// let literal: DeviceID = 1
/// ```
public struct DeviceID: Hashable, Comparable, Sendable, ExpressibleByIntegerLiteral {
    /// The ID, 1...255 (0 is not a valid device ID).
    public let rawValue: UInt8

    /// Creates a device ID, checking its range.
    ///
    /// - Parameter value: The ID, 1...255.
    /// - Throws: ``InvalidFieldError`` for `deviceID` when `value` is outside 1...255.
    public init(_ value: Int) throws(InvalidFieldError) {
        guard (1...255).contains(value) else {
            throw .outOfRange("deviceID", value: String(value), allowed: "1 to 255")
        }
        self.rawValue = UInt8(value)
    }

    /// Creates a device ID from its byte, or `nil` for 0.
    ///
    /// - Parameter rawValue: The ID, 1...255.
    @inlinable
    public init?(rawValue: UInt8) {
        guard rawValue != 0 else {
            return nil
        }
        self.rawValue = rawValue
    }

    /// Creates a device ID from a literal; a literal 0 is a programming error and traps.
    ///
    /// - Parameter value: The ID, 1...255.
    @inlinable
    public init(integerLiteral value: UInt8) {
        precondition(value != 0, "0 is not a valid device ID (1...255)")
        self.rawValue = value
    }

    /// Creates a device ID from a byte already known to be non-zero.
    @inlinable
    init(uncheckedRawValue: UInt8) {
        assert(uncheckedRawValue != 0)
        self.rawValue = uncheckedRawValue
    }

    /// Orders IDs numerically.
    ///
    /// - Parameters:
    ///   - lhs: An ID.
    ///   - rhs: Another ID.
    /// - Returns: Whether `lhs` is lower than `rhs`.
    @inlinable
    public static func < (lhs: DeviceID, rhs: DeviceID) -> Bool {
        lhs.rawValue < rhs.rawValue
    }
}

extension DeviceID: CustomStringConvertible {
    /// The ID in decimal, `2`.
    public var description: String {
        String(rawValue)
    }
}

extension DeviceID: Codable {
    /// Decodes an ID from an integer, checking its range.
    ///
    /// - Parameter decoder: The decoder to read from.
    /// - Throws: `DecodingError.dataCorrupted` when the integer is outside 1...255.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let value = try container.decode(Int.self)
        do {
            try self.init(value)
        } catch {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: error.description)
        }
    }

    /// Encodes the ID as an integer.
    ///
    /// - Parameter encoder: The encoder to write to.
    /// - Throws: What the encoder throws.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
}
