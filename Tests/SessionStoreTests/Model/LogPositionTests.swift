import SessionStore
import Testing

@Suite("LogPosition")
struct LogPositionTests {
    @Test("a position counts in its own history only; sequence 0 stands in every history")
    func history() {
        let position = LogPosition(history: 0xABC, sequence: 42)
        #expect(position.counts(in: 0xABC))
        #expect(position.sequence(in: 0xABC) == 42)
        // The log was replaced, restored or reset: the position counts for nothing.
        #expect(!position.counts(in: 0xDEF))
        #expect(position.sequence(in: 0xDEF) == 0)
        let start = LogPosition(history: 0xABC, sequence: 0)
        #expect(start.counts(in: 0xDEF))
        #expect(LogPosition.start.counts(in: 0x123))
        #expect(position.description == "42@abc")
    }
}
