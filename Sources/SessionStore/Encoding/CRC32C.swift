import CCRC32C

/// CRC-32C (Castagnoli, iSCSI; RFC 3720 appendix B.4): the checksum that ends every unit ``RecordCodec`` encodes.
///
/// Computed with the processor's CRC-32C instruction where it has one (SSE 4.2 on x86-64, the CRC32 extension on
/// AArch64), eight bytes per instruction; elsewhere in software, slicing by 8: eight 256-entry tables, built
/// once, turn eight bytes per step. Both give the same checksums.
///
/// ```swift
/// CRC32C.checksum(Array("123456789".utf8))  // 0xE3069283
/// ```
public enum CRC32C {
    /// The reflected Castagnoli polynomial, 0x1EDC6F41 bit-reversed.
    static let polynomial: UInt32 = 0x82F6_3B78

    /// Eight tables of 256 entries, one after the other: table `k` gives the CRC of a byte followed by `k` zero
    /// bytes.
    static let tables: [UInt32] = {
        var tables = [UInt32](repeating: 0, count: 8 * 256)
        for byte in 0..<256 {
            var crc = UInt32(byte)
            for _ in 0..<8 {
                crc = crc & 1 == 1 ? (crc >> 1) ^ polynomial : crc >> 1
            }
            tables[byte] = crc
        }
        for table in 1..<8 {
            for byte in 0..<256 {
                let previous = tables[(table - 1) * 256 + byte]
                tables[table * 256 + byte] = (previous >> 8) ^ tables[Int(previous & 0xFF)]
            }
        }
        return tables
    }()

    /// Computes the CRC-32C of `bytes`, or continues one.
    ///
    /// - Parameters:
    ///   - bytes: The bytes to checksum.
    ///   - crc: The CRC-32C of the bytes before these, to checksum data given in pieces; 0 to start.
    /// - Returns: The CRC-32C of the bytes (after those `crc` covered).
    public static func checksum(_ bytes: UnsafeRawBufferPointer, continuing crc: UInt32 = 0) -> UInt32 {
        guard let base = bytes.baseAddress, !bytes.isEmpty else {
            return crc
        }
        if hardware {
            return tandem_crc32c_update(crc, base, bytes.count)
        }
        return softwareChecksum(bytes, continuing: crc)
    }

    /// Whether `checksum(_:continuing:)` uses the processor's CRC-32C instruction.
    public static let hardware = tandem_crc32c_hardware() != 0

    /// The CRC-32C of `bytes` computed with the sliced tables, whatever the processor: the fallback, and what
    /// the tests hold the instruction's results against.
    public static func softwareChecksum(_ bytes: UnsafeRawBufferPointer, continuing crc: UInt32 = 0) -> UInt32 {
        guard var pointer = bytes.baseAddress, !bytes.isEmpty else {
            return crc
        }
        var remaining = bytes.count
        var state = ~crc
        return tables.withUnsafeBufferPointer { tables in
            let t = tables.baseAddress!
            while remaining >= 8 {
                let word = UInt64(littleEndian: pointer.loadUnaligned(as: UInt64.self)) ^ UInt64(state)
                state =
                    t[7 * 256 + Int(word & 0xFF)] ^ t[6 * 256 + Int(word >> 8 & 0xFF)]
                    ^ t[5 * 256 + Int(word >> 16 & 0xFF)] ^ t[4 * 256 + Int(word >> 24 & 0xFF)]
                    ^ t[3 * 256 + Int(word >> 32 & 0xFF)] ^ t[2 * 256 + Int(word >> 40 & 0xFF)]
                    ^ t[1 * 256 + Int(word >> 48 & 0xFF)] ^ t[Int(word >> 56)]
                pointer += 8
                remaining -= 8
            }
            while remaining > 0 {
                state = t[Int((state ^ UInt32(pointer.load(as: UInt8.self))) & 0xFF)] ^ (state >> 8)
                pointer += 1
                remaining -= 1
            }
            return ~state
        }
    }

    /// Computes the CRC-32C of `bytes`, or continues one.
    ///
    /// - Parameters:
    ///   - bytes: The bytes to checksum.
    ///   - crc: The CRC-32C of the bytes before these, to checksum data given in pieces; 0 to start.
    /// - Returns: The CRC-32C of the bytes (after those `crc` covered).
    public static func checksum(_ bytes: [UInt8], continuing crc: UInt32 = 0) -> UInt32 {
        bytes.withUnsafeBytes { checksum($0, continuing: crc) }
    }
}
