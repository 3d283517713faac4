/// Where ``RecordCodec`` writes fields: a ``UnitSizeCounter`` that measures a unit, then an ``UnitWriter`` that
/// writes it into room made for exactly that size. One layout function, generic over the sink, serves both, so
/// the two passes cannot disagree.
protocol UnitSink {
    /// Writes one byte.
    mutating func writeByte(_ byte: UInt8)
    /// Writes an unsigned LEB128 varint.
    mutating func writeVarint(_ value: UInt64)
    /// Writes the 16 bytes of an IP address, network order.
    mutating func writeIP(_ ip: IPAddress)
    /// Writes the 6 bytes of a MAC address, network order.
    mutating func writeMAC(_ mac: MACAddress)
    /// Writes a varint length and the UTF-8 bytes of a string.
    mutating func writeString(_ string: String)
    /// Writes a varint length and the bytes.
    mutating func writeBytes(_ bytes: [UInt8])
}

extension UnitSink {
    /// Writes a signed integer as a zigzag varint (0, -1, 1, -2 ... as 0, 1, 2, 3 ...).
    @inline(__always)
    mutating func writeSignedVarint(_ value: Int64) {
        writeVarint(UInt64(bitPattern: (value << 1) ^ (value >> 63)))
    }
}

/// The number of bytes of the LEB128 varint of `value`, 1...10.
@inline(__always)
func leb128Size(_ value: UInt64) -> Int {
    (64 - (value | 1).leadingZeroBitCount + 6) / 7
}

/// Counts the bytes a unit will take.
struct UnitSizeCounter: UnitSink {
    /// The bytes counted so far.
    var count = 0

    @inline(__always)
    mutating func writeByte(_ byte: UInt8) {
        count += 1
    }

    @inline(__always)
    mutating func writeVarint(_ value: UInt64) {
        count += leb128Size(value)
    }

    @inline(__always)
    mutating func writeIP(_ ip: IPAddress) {
        count += 16
    }

    @inline(__always)
    mutating func writeMAC(_ mac: MACAddress) {
        count += 6
    }

    @inline(__always)
    mutating func writeString(_ string: String) {
        let length = string.utf8.count
        count += leb128Size(UInt64(length)) + length
    }

    @inline(__always)
    mutating func writeBytes(_ bytes: [UInt8]) {
        count += leb128Size(UInt64(bytes.count)) + bytes.count
    }
}

/// Writes fields into memory already allocated for them, without bounds checks in release builds: the caller made
/// room for the size a ``UnitSizeCounter`` measured with the same layout.
struct UnitWriter: UnitSink {
    /// Where the next byte goes.
    private(set) var pointer: UnsafeMutableRawPointer
    /// One past the room made for the unit, checked in debug builds.
    private let end: UnsafeMutableRawPointer

    init(start: UnsafeMutableRawPointer, count: Int) {
        self.pointer = start
        self.end = start + count
    }

    @inline(__always)
    mutating func writeByte(_ byte: UInt8) {
        assert(pointer < end)
        pointer.storeBytes(of: byte, as: UInt8.self)
        pointer += 1
    }

    @inline(__always)
    mutating func writeVarint(_ value: UInt64) {
        assert(pointer + leb128Size(value) <= end)
        var value = value
        while value >= 0x80 {
            pointer.storeBytes(of: UInt8(truncatingIfNeeded: value) | 0x80, as: UInt8.self)
            pointer += 1
            value >>= 7
        }
        pointer.storeBytes(of: UInt8(value), as: UInt8.self)
        pointer += 1
    }

    @inline(__always)
    mutating func writeIP(_ ip: IPAddress) {
        assert(pointer + 16 <= end)
        pointer.storeBytes(of: ip.high.bigEndian, as: UInt64.self)
        pointer.storeBytes(of: ip.low.bigEndian, toByteOffset: 8, as: UInt64.self)
        pointer += 16
    }

    @inline(__always)
    mutating func writeMAC(_ mac: MACAddress) {
        assert(pointer + 6 <= end)
        let value = mac.rawValue
        pointer.storeBytes(of: UInt32(truncatingIfNeeded: value >> 16).bigEndian, as: UInt32.self)
        pointer.storeBytes(of: UInt16(truncatingIfNeeded: value).bigEndian, toByteOffset: 4, as: UInt16.self)
        pointer += 6
    }

    @inline(__always)
    mutating func writeString(_ string: String) {
        let length = string.utf8.count
        writeVarint(UInt64(length))
        assert(pointer + length <= end)
        let destination = pointer
        string.withUTF8Bytes { bytes in
            if let source = bytes.baseAddress {
                destination.copyMemory(from: source, byteCount: bytes.count)
            }
        }
        pointer += length
    }

    @inline(__always)
    mutating func writeBytes(_ bytes: [UInt8]) {
        writeVarint(UInt64(bytes.count))
        assert(pointer + bytes.count <= end)
        let destination = pointer
        bytes.withUnsafeBytes { source in
            if let base = source.baseAddress {
                destination.copyMemory(from: base, byteCount: source.count)
            }
        }
        pointer += bytes.count
    }

    /// Copies bytes already encoded (the fields of another unit), with no length before them.
    @inline(__always)
    mutating func writeEncoded(_ bytes: UnsafeRawBufferPointer) {
        assert(pointer + bytes.count <= end)
        if let base = bytes.baseAddress { pointer.copyMemory(from: base, byteCount: bytes.count) }
        pointer += bytes.count
    }
}
