import Testing

@testable import SessionStore

@Suite("The ring of latest elements")
struct RingTests {
    @Test("keeps the newest elements oldest first, returns each one it forgets, and keeps every index it gave")
    func turns() {
        var ring = Ring<Int>(capacity: 5)
        #expect(ring.isEmpty)
        var forgotten: [Int] = []
        for value in 0..<13 {
            if let oldest = ring.append(value * 10) { forgotten.append(oldest) }
            #expect(ring.last == value * 10)
            #expect(ring[ring.endIndex - 1] == value * 10)
        }
        #expect(forgotten == [0, 10, 20, 30, 40, 50, 60, 70])
        #expect(ring.startIndex == 8)
        #expect(ring.endIndex == 13)
        #expect(Array(ring) == [80, 90, 100, 110, 120])
        #expect(Array(ring.reversed()) == [120, 110, 100, 90, 80])
        // An index names the element appended at it, over turns of the storage.
        for index in ring.indices { #expect(ring[index] == index * 10) }
        ring[9] += 1
        #expect(Array(ring) == [80, 91, 100, 110, 120])
        ring.removeAll()
        #expect(ring.isEmpty)
        #expect(ring.append(7) == nil)
        #expect(ring.startIndex == 0)
        #expect(Array(ring) == [7])
    }

    @Test("a ring of one keeps only the latest element")
    func single() {
        var ring = Ring<String>(capacity: 1)
        #expect(ring.append("a") == nil)
        #expect(ring.append("b") == "a")
        #expect(Array(ring) == ["b"])
        #expect(ring.startIndex == 1)
    }
}
