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

    @Test("a login copied from the session's stored value is byte for byte the record encoded from the session")
    func loginFromStoredValue() throws {
        var random = SeededGenerator(seed: 11)
        var withParts = 0
        for _ in 0..<2000 {
            let session = randomSession(using: &random)
            if session.hasParts { withParts += 1 }
            let sequence = UInt64.random(in: 1...UInt64.max >> 1, using: &random)
            let term = UInt32.random(in: 1...UInt32.max, using: &random)
            let origin = DeviceID(rawValue: UInt8.random(in: 1...255, using: &random))!
            let time = Timestamp(microsecondsSinceEpoch: Int64.random(in: 0...Int64.max >> 8, using: &random))
            var fromSession: [UInt8] = []
            RecordCodec.encodeLogin(
                session,
                sequence: sequence,
                term: term,
                origin: origin,
                time: time,
                into: &fromSession
            )
            var value: [UInt8] = []
            RecordCodec.encodeSessionValue(session, into: &value)
            var fromValue: [UInt8] = [9]  // appends after what is there
            value.withUnsafeBytes { value in
                RecordCodec.encodeLogin(
                    storedValue: value,
                    ip: session.ip,
                    sequence: sequence,
                    term: term,
                    origin: origin,
                    time: time,
                    into: &fromValue
                )
            }
            #expect(Array(fromValue.dropFirst()) == fromSession)
            let decoded = try fromValue.dropFirst().withUnsafeBytes { try RecordCodec.decodeRecord($0) }
            #expect(decoded.event == .login(session))
        }
        #expect(withParts > 100, "the sample holds sessions with parts")
    }
}

extension TestCodec {
    /// Reads a session value's fields from an array, as a logout from the stored bytes and a peer's snapshot
    /// check them (every field against the rules), without building a session.
    static func checkSessionValue(_ bytes: [UInt8]) throws {
        _ = try bytes.withUnsafeBytes { try RecordCodec.peekSessionValueFields($0) }
    }
}
