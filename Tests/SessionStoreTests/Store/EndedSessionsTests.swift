import Testing

@testable import SessionStore

@Suite("The ends remembered")
struct EndedSessionsTests {
    static func key(_ number: Int) -> EndedSessions.Key {
        var session = testSession(number % 1_000_000)
        session.generation = Generation(term: 1, sequence: UInt64(number))
        return EndedSessions.Key(session)
    }

    @Test("over several turns of the ring, the newest ends are remembered and older ones forgotten, once each")
    func ring() {
        let capacity = EndedSessions.capacity
        var ended = EndedSessions()
        let total = 2 * capacity + 1_000
        for number in 0..<total {
            ended.insert(Self.key(number))
            if number % 3 == 0 { ended.insert(Self.key(number)) }  // a second insert changes nothing
        }
        for number in [0, 1, total - capacity - 1] { #expect(!ended.contains(Self.key(number)), "\(number)") }
        for number in [total - capacity, total - capacity + 1, total - 2, total - 1] {
            #expect(ended.contains(Self.key(number)), "\(number)")
        }
        // A forgotten end inserted again is the newest: it pushes out the oldest remembered one.
        ended.insert(Self.key(0))
        #expect(ended.contains(Self.key(0)))
        #expect(!ended.contains(Self.key(total - capacity)))
        #expect(ended.contains(Self.key(total - capacity + 1)))
    }
}
