import Testing

@testable import SessionStore

@Suite("The writer's encoding")
struct WriterEncodingTests {
    @Test("a login encoded from its session is byte for byte the record the general encoder writes")
    func loginFastPath() {
        var random = SeededGenerator(seed: 7)
        for _ in 0..<2000 {
            let session = randomSession(using: &random)
            let sequence = UInt64.random(in: 1...UInt64.max >> 1, using: &random)
            let term = UInt32.random(in: 1...UInt32.max, using: &random)
            let time = Timestamp(microsecondsSinceEpoch: Int64.random(in: 0...Int64.max >> 8, using: &random))
            var general: [UInt8] = []
            RecordCodec.encode(
                LogRecord(sequence: sequence, term: term, origin: session.owner, time: time, event: .login(session)),
                into: &general
            )
            var fast: [UInt8] = [1, 2, 3]  // appends after what is there
            RecordCodec.encodeLogin(
                session,
                sequence: sequence,
                term: term,
                origin: session.owner,
                time: time,
                into: &fast
            )
            #expect(Array(fast.dropFirst(3)) == general)
        }
    }
}
