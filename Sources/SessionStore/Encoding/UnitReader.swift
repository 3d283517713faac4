#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Reads fields from an encoded unit with a bounds check on every read; every problem is a
/// ``CorruptRecordError`` at the offset where it was found. Lengths are checked against their field's maximum and
/// against the bytes left before anything is read or allocated.
struct UnitReader {
    /// The unit.
    private let base: UnsafeRawPointer
    /// Where the fields end (the checksum after them is not read through the reader).
    let end: Int
    /// The offset of the next byte to read.
    private(set) var offset: Int
    /// The unit's format version (its first byte): which fields it holds.
    let version: UInt8

    /// A reader of the unit at `base`, which starts with its version byte, from `offset` to `end`.
    init(base: UnsafeRawPointer, offset: Int, end: Int) {
        self.base = base
        self.version = base.load(as: UInt8.self)
        self.offset = offset
        self.end = end
    }

    @inline(__always)
    private func require(_ count: Int) throws(CorruptRecordError) {
        guard count <= end - offset else {
            throw .truncated(at: offset, needed: count - (end - offset))
        }
    }

    @inline(__always)
    mutating func readByte() throws(CorruptRecordError) -> UInt8 {
        try require(1)
        let byte = base.load(fromByteOffset: offset, as: UInt8.self)
        offset += 1
        return byte
    }

    /// Reads a canonical (shortest) unsigned LEB128 varint of at most 64 bits.
    @inline(__always)
    mutating func readVarint(_ field: StaticString) throws(CorruptRecordError) -> UInt64 {
        try require(1)
        let first = base.load(fromByteOffset: offset, as: UInt8.self)
        if first < 0x80 {
            offset += 1
            return UInt64(first)
        }
        return try readLongVarint(field)
    }

    private mutating func readLongVarint(_ field: StaticString) throws(CorruptRecordError) -> UInt64 {
        let start = offset
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard offset < end else {
                throw .truncated(at: offset, needed: 1)
            }
            let byte = base.load(fromByteOffset: offset, as: UInt8.self)
            offset += 1
            if shift == 63, byte > 1 {
                throw .invalidField(at: start, field: field.description, detail: "varint overflows 64 bits")
            }
            result |= UInt64(byte & 0x7F) << shift
            if byte < 0x80 {
                if byte == 0 {
                    throw .invalidField(
                        at: start,
                        field: field.description,
                        detail: "varint is not in its shortest form"
                    )
                }
                return result
            }
            shift += 7
        }
    }

    /// Reads a zigzag varint.
    @inline(__always)
    mutating func readSignedVarint(_ field: StaticString) throws(CorruptRecordError) -> Int64 {
        let value = try readVarint(field)
        return Int64(bitPattern: value >> 1) ^ -Int64(bitPattern: value & 1)
    }

    /// Reads a varint that must fit 32 bits.
    @inline(__always)
    mutating func readVarint32(_ field: StaticString) throws(CorruptRecordError) -> UInt32 {
        let start = offset
        let value = try readVarint(field)
        guard let narrow = UInt32(exactly: value) else {
            throw .invalidField(at: start, field: field.description, detail: "\(value) does not fit 32 bits")
        }
        return narrow
    }

    /// Reads a varint that must fit 16 bits.
    @inline(__always)
    mutating func readVarint16(_ field: StaticString) throws(CorruptRecordError) -> UInt16 {
        let start = offset
        let value = try readVarint(field)
        guard let narrow = UInt16(exactly: value) else {
            throw .invalidField(at: start, field: field.description, detail: "\(value) does not fit 16 bits")
        }
        return narrow
    }

    @inline(__always)
    mutating func readIP() throws(CorruptRecordError) -> IPAddress {
        try require(16)
        let address = IPAddress(
            high: UInt64(bigEndian: base.loadUnaligned(fromByteOffset: offset, as: UInt64.self)),
            low: UInt64(bigEndian: base.loadUnaligned(fromByteOffset: offset + 8, as: UInt64.self))
        )
        offset += 16
        return address
    }

    @inline(__always)
    mutating func readMAC() throws(CorruptRecordError) -> MACAddress {
        try require(6)
        let upper = UInt64(UInt32(bigEndian: base.loadUnaligned(fromByteOffset: offset, as: UInt32.self)))
        let lower = UInt64(UInt16(bigEndian: base.loadUnaligned(fromByteOffset: offset + 4, as: UInt16.self)))
        offset += 6
        return MACAddress(rawValue: upper << 16 | lower)
    }

    @inline(__always)
    mutating func readDeviceID(_ field: StaticString) throws(CorruptRecordError) -> DeviceID {
        let start = offset
        let byte = try readByte()
        guard byte != 0 else {
            throw .invalidField(at: start, field: field.description, detail: "0 is not a device ID (1 to 255)")
        }
        return DeviceID(uncheckedRawValue: byte)
    }

    /// Reads a varint length, checks it against `maximum` and the bytes left, and returns the bytes it prefixes.
    /// Nothing is allocated; the result points into the unit.
    @inline(__always)
    mutating func readLengthPrefixed(
        _ field: StaticString,
        maximum: Int
    ) throws(CorruptRecordError) -> UnsafeBufferPointer<UInt8> {
        let start = offset
        let length = try readVarint(field)
        guard length <= UInt64(maximum) else {
            throw .lengthOutOfBounds(at: start, field: field, length: length, maximum: maximum)
        }
        let count = Int(length)
        try require(count)
        let bytes = UnsafeBufferPointer(start: (base + offset).assumingMemoryBound(to: UInt8.self), count: count)
        offset += count
        return bytes
    }

    /// Reads a length-prefixed string that must be valid UTF-8.
    @inline(__always)
    mutating func readString(_ field: StaticString, maximum: Int) throws(CorruptRecordError) -> String {
        let start = offset
        let bytes = try readLengthPrefixed(field, maximum: maximum)
        guard let string = String(validatingUTF8Bytes: bytes) else {
            throw .invalidField(at: start, field: field.description, detail: "is not valid UTF-8")
        }
        return string
    }

    /// Checks that every field was read.
    @inline(__always)
    func finish() throws(CorruptRecordError) {
        guard offset == end else {
            throw .trailingBytes(at: offset, count: end - offset)
        }
    }
}

extension String {
    /// Creates a string from bytes that must be valid UTF-8, or returns `nil`.
    ///
    /// `String(validating:as:)` is generic and not specialized for UTF-8 in the standard library, which costs a
    /// metadata lookup per call; `String(decoding:as:)` is fast but repairs invalid UTF-8 with U+FFFD. So: decode,
    /// and accept the result only when it holds exactly the bytes given, which only valid UTF-8 does.
    @inline(__always)
    init?(validatingUTF8Bytes bytes: UnsafeBufferPointer<UInt8>) {
        let string = String(decoding: bytes, as: UTF8.self)
        let unchanged = string.withUTF8Bytes { decoded in
            decoded.count == bytes.count
                && (bytes.isEmpty || memcmp(decoded.baseAddress!, bytes.baseAddress!, bytes.count) == 0)
        }
        guard unchanged else {
            return nil
        }
        self = string
    }
}
