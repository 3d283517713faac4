import Locking
import Testing

@Suite("A value guarded by a lock")
struct LockedTests {
    @Test("increments from many tasks at once all count")
    func concurrentIncrements() async {
        let counter = Locked(0)
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<8 {
                group.addTask {
                    for _ in 0..<10_000 { counter.withLock { $0 += 1 } }
                }
            }
        }
        #expect(counter.withLock { $0 } == 80_000)
    }

    struct Refused: Error {}

    @Test("a body that throws leaves the value as it changed it, and the lock free")
    func throwingBody() {
        let value = Locked([1, 2])
        #expect(throws: Refused.self) {
            try value.withLock { (array: inout [Int]) throws(Refused) in
                array.append(3)
                throw Refused()
            }
        }
        #expect(value.withLock { $0 } == [1, 2, 3])
    }
}
