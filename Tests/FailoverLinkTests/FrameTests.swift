import NIOCore
import NIOEmbedded
import NIOTestUtils
import Testing

@testable import FailoverLink

@Suite("Frames")
struct FrameTests {
    static func frame(_ type: UInt8, _ bytes: [UInt8]) -> Frame {
        Frame(type: FrameType(rawValue: type), payload: ByteBuffer(bytes: bytes))
    }

    static func wire(_ frames: [Frame]) -> ByteBuffer {
        var buffer = ByteBuffer()
        for frame in frames { frame.write(to: &buffer) }
        return buffer
    }

    @Test("frames decode whole, byte by byte and in bulk")
    func decoderVerifier() throws {
        let frames = [Self.frame(1, [1, 2, 3]), Self.frame(4, []), Self.frame(200, Array(repeating: 7, count: 1000))]
        try ByteToMessageDecoderVerifier.verifyDecoder(
            inputOutputPairs: frames.map { (Self.wire([$0]), [$0]) },
            decoderFactory: { FrameDecoder() }
        )
    }

    @Test("short input returns nothing and moves nothing")
    func shortInput() throws {
        let whole = Self.wire([Self.frame(1, [9, 9, 9, 9])])
        for cut in 0..<whole.readableBytes {
            var partial = whole.getSlice(at: 0, length: cut)!
            #expect(try Frame.read(from: &partial) == nil)
            #expect(partial.readableBytes == cut)
        }
    }

    @Test("an absurd length fails before anything is allocated; a zero length fails")
    func lengths() {
        var huge = ByteBuffer()
        huge.writeInteger(UInt32.max)
        huge.writeInteger(UInt8(1))
        let tooLong = #expect(throws: LinkError.self) { try Frame.read(from: &huge) }
        #expect(tooLong?.kind == .frameTooLong)
        var zero = ByteBuffer(bytes: [0, 0, 0, 0])
        let empty = #expect(throws: LinkError.self) { try Frame.read(from: &zero) }
        #expect(empty?.kind == .emptyFrame)
    }

    @Test("a connection that ends inside a frame is an error")
    func truncatedAtEOF() throws {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(FrameDecoder()))
        var bytes = Self.wire([Self.frame(1, [1, 2, 3, 4, 5])])
        bytes.moveWriterIndex(to: bytes.writerIndex - 2)
        try channel.writeInbound(bytes)
        let error = #expect(throws: LinkError.self) { try channel.finish() }
        #expect(error?.kind == .truncatedFrame)
    }

    @Test("random garbage never crashes the decoder", arguments: 0..<4)
    func garbage(seed: Int) {
        var random = SplitMix(seed: UInt64(seed))
        for _ in 0..<20_000 {
            var buffer = ByteBuffer(
                bytes: (0..<Int.random(in: 0..<64, using: &random)).map { _ in
                    UInt8.random(in: 0...255, using: &random)
                }
            )
            while true {
                guard let frame = try? Frame.read(from: &buffer, maximumLength: 1 << 16) else { break }
                _ = frame
            }
        }
    }
}

struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
