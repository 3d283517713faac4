import NIOCore
import Testing

@testable import DeviceService

@Suite("Control socket lines")
struct ControlLinesTests {
    @Test("lines split across chunks, several in one chunk, and an empty line come out whole and in order")
    func splitting() {
        var lines = ControlLines()
        var read: [String] = []
        for chunk in ["{\"a\":1}\n{\"b\"", ":2}\n\n{\"c\":3}\n{\"d\"", "", ":4}", "\n"] {
            lines.append(ByteBuffer(string: chunk))
            while let line = lines.next() { read.append(line) }
        }
        #expect(read == ["{\"a\":1}", "{\"b\":2}", "", "{\"c\":3}", "{\"d\":4}"])
        #expect(lines.next() == nil)
    }

    @Test("a listing of many lines in large chunks reads back line for line")
    func manyLines() {
        let sent = (0..<20_000).map { "{\"ip\":\"10.0.\($0 / 256).\($0 % 256)\",\"user\":\"user\($0)\"}" }
        let bytes = Array(sent.joined(separator: "\n").utf8) + [UInt8(ascii: "\n")]
        var lines = ControlLines()
        var read: [String] = []
        var offset = 0
        while offset < bytes.count {
            let end = min(offset + 65_536, bytes.count)
            lines.append(ByteBuffer(bytes: bytes[offset..<end]))
            while let line = lines.next() { read.append(line) }
            offset = end
        }
        #expect(read == sent)
    }
}
