import SessionStore
import Testing

@Suite("CRC-32C")
struct CRC32CTests {
    static let vectors: [([UInt8], UInt32)] = [
        (Array("123456789".utf8), 0xE306_9283 as UInt32),
        ([], 0x0000_0000),
        ([UInt8](repeating: 0, count: 32), 0x8A91_36AA),
        ([UInt8](repeating: 0xFF, count: 32), 0x62A8_AB43),
        (Array(0...31), 0x46DD_794E),
        (Array((0...31).reversed()), 0x113F_DB5C),
        (Array("a".utf8), 0xC1D0_4330),
        (Array("The quick brown fox jumps over the lazy dog".utf8), 0x2262_0404),
    ]

    @Test(
        "matches the known vectors (RFC 3720 B.4 and the check value), with the instruction and the tables",
        arguments: vectors
    )
    func knownVectors(bytes: [UInt8], crc: UInt32) {
        #expect(CRC32C.checksum(bytes) == crc)
        bytes.withUnsafeBytes { #expect(CRC32C.softwareChecksum($0) == crc) }
    }

    @Test("this machine's processor has the CRC-32C instruction, which the checksum uses")
    func hardware() {
        #if arch(x86_64) || arch(arm64)
        #expect(CRC32C.hardware)
        #endif
    }

    @Test("the instruction and the tables agree on every length up to 1,000 bytes and at every alignment")
    func instructionMatchesTables() {
        var generator = SeededGenerator(seed: 11)
        let bytes = (0..<1_016).map { _ in UInt8.random(in: 0...255, using: &generator) }
        bytes.withUnsafeBytes { raw in
            for start in 0..<16 {
                for length in 0...1_000 {
                    let piece = UnsafeRawBufferPointer(rebasing: raw[start..<start + length])
                    #expect(CRC32C.checksum(piece) == CRC32C.softwareChecksum(piece))
                    #expect(
                        CRC32C.checksum(piece, continuing: 0x1234_5678)
                            == CRC32C.softwareChecksum(piece, continuing: 0x1234_5678)
                    )
                }
            }
        }
    }

    @Test("continues across pieces, at every split and alignment")
    func continues() {
        var generator = SeededGenerator(seed: 8)
        let bytes = (0..<300).map { _ in UInt8.random(in: 0...255, using: &generator) }
        let whole = CRC32C.checksum(bytes)
        #expect(whole == bitwiseCRC32C(bytes))
        bytes.withUnsafeBytes { raw in
            for split in 0...raw.count {
                let first = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: raw[..<split]))
                #expect(CRC32C.checksum(UnsafeRawBufferPointer(rebasing: raw[split...]), continuing: first) == whole)
                let softFirst = CRC32C.softwareChecksum(UnsafeRawBufferPointer(rebasing: raw[..<split]))
                #expect(
                    CRC32C.softwareChecksum(UnsafeRawBufferPointer(rebasing: raw[split...]), continuing: softFirst)
                        == whole
                )
            }
            for start in 0..<16 {
                let slice = UnsafeRawBufferPointer(rebasing: raw[start...])
                #expect(CRC32C.checksum(slice) == bitwiseCRC32C(Array(slice)))
            }
        }
    }

    /// The textbook bit-at-a-time CRC-32C, to check the sliced tables against.
    private func bitwiseCRC32C(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes {
            crc ^= UInt32(byte)
            for _ in 0..<8 {
                crc = crc & 1 == 1 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1
            }
        }
        return ~crc
    }
}
