import SessionStore
import Testing

@testable import FailoverLink

@Suite("Replication between two stores over TCP", .serialized)
struct ReplicationTests {
    @Test("mutual backup: each device's users reach the other, and each is primary for its own")
    func mutualBackup() async throws {
        let pair = try await Pair()
        defer { Task { await pair.tearDown() } }
        let one = try await pair.start(1)
        let two = try await pair.start(2)
        #expect(await pair.synchronized())
        for number in 0..<300 {
            try await one.login(pairSession(number, owner: 1))
            try await two.login(pairSession(number, owner: 2))
        }
        #expect(await pair.converged())
        #expect(one.store.count == 600)
        let copy = try #require(try two.store.session(for: pairSession(7, owner: 1).ip))
        #expect(copy.userName == "user1-7")
        #expect(two.store.effectiveOwner(of: copy) == 1)
        #expect(one.store.effectiveOwner(of: copy) == 1)
        await pair.tearDown()
    }
}
