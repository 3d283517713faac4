/// Bytes that ``RecordCodec`` cannot decode: damaged, cut short, or written by a newer Tandem.
///
/// The ``description`` says what is wrong and where; ``code`` tells the kinds of problem apart, and ``offset`` is
/// the byte of the encoded unit where the problem was found, when there is one:
///
/// ```
/// corrupt record at byte 13: userName length 1152921504606846976 is out of bounds (at most 253)
/// ```
public struct CorruptRecordError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The kind of problem, to tell them apart without parsing ``description``.
    ///
    /// More codes may be added; compare with the static members rather than switching exhaustively.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private let name: String

        private init(_ name: String) {
            self.name = name
        }

        /// The bytes end before the unit does.
        public static let truncated = Code("truncated")
        /// The CRC-32C at the end does not match the bytes: they were damaged.
        public static let checksumMismatch = Code("checksumMismatch")
        /// The format version is not one this Tandem reads: the unit was written by a newer Tandem.
        public static let unsupportedVersion = Code("unsupportedVersion")
        /// The kind byte names no unit this decoder reads there.
        public static let unknownKind = Code("unknownKind")
        /// A length prefix is larger than its field allows.
        public static let lengthOutOfBounds = Code("lengthOutOfBounds")
        /// A field holds a value its type does not allow.
        public static let invalidField = Code("invalidField")
        /// Bytes are left between the last field and the checksum.
        public static let trailingBytes = Code("trailingBytes")

        /// The name of the code, such as `checksumMismatch`.
        public var description: String {
            name
        }
    }

    private enum Problem: Hashable, Sendable {
        case truncated(needed: Int)
        case checksumMismatch(stored: UInt32, computed: UInt32)
        case unsupportedVersion(found: UInt8, supported: UInt8)
        case unknownKind(found: UInt8, expected: String)
        case lengthOutOfBounds(field: String, length: UInt64, maximum: Int)
        case invalidField(field: String, detail: String)
        case trailingBytes(count: Int)
    }

    private let problem: Problem

    /// The byte of the encoded unit where the problem was found, or `nil` when it concerns the unit as a whole.
    public let offset: Int?

    private init(_ problem: Problem, offset: Int?) {
        self.problem = problem
        self.offset = offset
    }

    /// The kind of problem.
    public var code: Code {
        switch problem {
        case .truncated: .truncated
        case .checksumMismatch: .checksumMismatch
        case .unsupportedVersion: .unsupportedVersion
        case .unknownKind: .unknownKind
        case .lengthOutOfBounds: .lengthOutOfBounds
        case .invalidField: .invalidField
        case .trailingBytes: .trailingBytes
        }
    }

    /// What is wrong, and where.
    public var description: String {
        let location = offset.map { "corrupt record at byte \($0)" } ?? "corrupt record"
        switch problem {
        case .truncated(let needed):
            return "\(location): truncated, \(needed) more byte\(needed == 1 ? "" : "s") needed"
        case .checksumMismatch(let stored, let computed):
            return "\(location): CRC-32C mismatch, stored \(hex(stored)) but the bytes give \(hex(computed))"
        case .unsupportedVersion(let found, let supported):
            return
                "\(location): format version \(found) is not supported (this Tandem reads versions 1 to \(supported)); "
                + "written by a newer Tandem? upgrade to read it"
        case .unknownKind(let found, let expected):
            return "\(location): unknown kind \(found) (expected \(expected))"
        case .lengthOutOfBounds(let field, let length, let maximum):
            return "\(location): \(field) length \(length) is out of bounds (at most \(maximum))"
        case .invalidField(let field, let detail):
            return "\(location): \(field) \(detail)"
        case .trailingBytes(let count):
            return "\(location): \(count) unexpected byte\(count == 1 ? "" : "s") after the last field"
        }
    }

    private func hex(_ value: UInt32) -> String {
        let digits = String(value, radix: 16, uppercase: true)
        return "0x" + String(repeating: "0", count: 8 - digits.count) + digits
    }

    static func truncated(at offset: Int, needed: Int) -> CorruptRecordError {
        CorruptRecordError(.truncated(needed: needed), offset: offset)
    }

    static func checksumMismatch(at offset: Int, stored: UInt32, computed: UInt32) -> CorruptRecordError {
        CorruptRecordError(.checksumMismatch(stored: stored, computed: computed), offset: offset)
    }

    static func unsupportedVersion(found: UInt8, supported: UInt8) -> CorruptRecordError {
        CorruptRecordError(.unsupportedVersion(found: found, supported: supported), offset: 0)
    }

    static func unknownKind(found: UInt8, expected: String) -> CorruptRecordError {
        CorruptRecordError(.unknownKind(found: found, expected: expected), offset: 1)
    }

    static func lengthOutOfBounds(
        at offset: Int,
        field: StaticString,
        length: UInt64,
        maximum: Int
    ) -> CorruptRecordError {
        CorruptRecordError(
            .lengthOutOfBounds(field: field.description, length: length, maximum: maximum),
            offset: offset
        )
    }

    static func invalidField(at offset: Int, field: String, detail: String) -> CorruptRecordError {
        CorruptRecordError(.invalidField(field: field, detail: detail), offset: offset)
    }

    static func trailingBytes(at offset: Int, count: Int) -> CorruptRecordError {
        CorruptRecordError(.trailingBytes(count: count), offset: offset)
    }
}
