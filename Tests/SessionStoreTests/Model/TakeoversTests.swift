import SessionStore
import Testing

@Suite("Takeovers")
struct TakeoversTests {
    @Test("with no takeover, every session is owned by its owner")
    func none() {
        let takeovers = Takeovers()
        for owner: DeviceID in [1, 2, 255] {
            for term: UInt32 in [0, 1, .max] { #expect(takeovers.effectiveOwner(owner: owner, term: term) == owner) }
        }
        #expect(takeovers.byDevice.isEmpty)
    }

    @Test("a takeover moves the sessions of terms below its own, and only those")
    func one() {
        var takeovers = Takeovers()
        takeovers.record(Takeover(from: 1, to: 2, term: 5))
        #expect(takeovers.effectiveOwner(owner: 1, term: 0) == 2)
        #expect(takeovers.effectiveOwner(owner: 1, term: 4) == 2)
        #expect(takeovers.effectiveOwner(owner: 1, term: 5) == 1)
        #expect(takeovers.effectiveOwner(owner: 1, term: 9) == 1)
        // The device that took over keeps its own sessions, and so does any other device.
        #expect(takeovers.effectiveOwner(owner: 2, term: 1) == 2)
        #expect(takeovers.effectiveOwner(owner: 3, term: 1) == 3)
    }

    @Test("takeovers chain through higher terms, and the lowest and highest device IDs work alike")
    func chain() {
        var takeovers = Takeovers()
        takeovers.record(Takeover(from: 1, to: 255, term: 5))
        takeovers.record(Takeover(from: 255, to: 1, term: 8))
        // 1's session of term 3 went to 255 at term 5, then back to 1 at term 8.
        #expect(takeovers.effectiveOwner(owner: 1, term: 3) == 1)
        // 1's session of term 6 stayed 1's: its term is not below 5.
        #expect(takeovers.effectiveOwner(owner: 1, term: 6) == 1)
        // 255's session of term 6 went to 1 at term 8; its session of term 8 stays its own.
        #expect(takeovers.effectiveOwner(owner: 255, term: 6) == 1)
        #expect(takeovers.effectiveOwner(owner: 255, term: 8) == 255)
        var three = Takeovers()
        three.record(Takeover(from: 1, to: 2, term: 5))
        three.record(Takeover(from: 2, to: 3, term: 8))
        #expect(three.effectiveOwner(owner: 1, term: 3) == 3)
        #expect(three.effectiveOwner(owner: 1, term: 6) == 1)
        #expect(three.effectiveOwner(owner: 2, term: 7) == 3)
    }

    @Test("an older takeover of a device does not replace a newer one")
    func older() {
        var takeovers = Takeovers()
        takeovers.record(Takeover(from: 1, to: 2, term: 5))
        takeovers.record(Takeover(from: 1, to: 3, term: 4))
        takeovers.record(Takeover(from: 1, to: 3, term: 5))
        #expect(takeovers.byDevice == [1: Takeover(from: 1, to: 2, term: 5)])
        #expect(takeovers.effectiveOwner(owner: 1, term: 3) == 2)
        takeovers.record(Takeover(from: 1, to: 3, term: 6))
        #expect(takeovers.byDevice == [1: Takeover(from: 1, to: 3, term: 6)])
        #expect(takeovers.effectiveOwner(owner: 1, term: 5) == 3)
    }

    @Test("tables holding the same takeovers are equal and hash alike, whatever the order they were recorded in")
    func equality() {
        var first = Takeovers()
        first.record(Takeover(from: 1, to: 2, term: 5))
        first.record(Takeover(from: 2, to: 1, term: 7))
        var second = Takeovers()
        second.record(Takeover(from: 2, to: 1, term: 7))
        second.record(Takeover(from: 1, to: 3, term: 4))
        second.record(Takeover(from: 1, to: 2, term: 5))
        #expect(first == second)
        #expect(first.hashValue == second.hashValue)
        #expect(Set([first, second]).count == 1)
        var third = first
        third.record(Takeover(from: 3, to: 1, term: 9))
        #expect(third != first)
        #expect(Takeovers() != first)
    }
}
