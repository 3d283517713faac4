import Foundation
import LMDB
import Locking
import TestSupport
import Testing

@testable import SessionStore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `forEachSessionBatch(where:batchSize:_:)`: the handover's walk, decoded on two threads.
@Suite("Sessions handed over in batches")
struct SessionBatchTests {
    /// What one batched walk handed over, and on which threads. `Locked`, not `Mutex`: the batches come from two
    /// threads, and ThreadSanitizer sees `Locked`'s lock (the standard library's `Mutex` is not instrumented, so
    /// every access it guards is reported as a race).
    final class Handed: Sendable {
        let batches = Locked<[[Session]]>([])
        let otherThread = Locked(false)
        let caller = pthread_self()

        func take(_ batch: [Session]) {
            batches.withLock { $0.append(batch) }
            if pthread_equal(pthread_self(), caller) == 0 { otherThread.withLock { $0 = true } }
        }
    }

    @Test(
        "every accepted session once, from the table and from memory, in batches of at most the size, in address order within each, on two threads"
    )
    func everyAcceptedSessionOnce() async throws {
        let directory = TemporaryDirectory()
        let store = try SessionStore.open(at: directory.path, configuration: .test())
        // On disk: 3,000 users, a third of them device 2's, copied here; in memory: 500 more, 200 logouts and
        // 80 accounting updates.
        var peerSequence: UInt64 = 0
        func add(_ numbers: Range<Int>) async throws {
            let results = try await store.login(contentsOf: numbers.filter { $0 % 3 != 0 }.map { testSession($0) })
            for case .failure(let error) in results { Issue.record(error) }
            let copies = numbers.filter { $0 % 3 == 0 }.map { number in
                peerSequence += 1
                var user = testSession(number, owner: 2)
                user.generation = Generation(term: 1, sequence: peerSequence)
                return LogRecord(sequence: peerSequence, term: 1, origin: 2, time: .now, event: .login(user))
            }
            _ = try await store.applyPeer(.records(origin: 2, through: peerSequence, history: 9, copies))
        }
        try await add(0..<3_000)
        try await store.checkpoint()
        try await add(3_000..<3_500)
        let stored = (0..<3_000).map { testSession($0) }
        for number in stride(from: 0, to: 1_000, by: 5) { try await store.logout(stored[number].ip, reason: .user) }
        for number in stride(from: 1, to: 300, by: 3) where number % 5 != 0 {
            let accounting = AccountingState(inputOctets: UInt64(number) * 1_000, reportedAt: .now)
            _ = try await store.update(.accountingInterim(stored[number].ip, accounting))
        }

        var expected: [Session] = []
        let ownOnly: (DeviceID, UInt32) -> Bool = { owner, _ in owner == 1 }
        try store.forEachSession(where: ownOnly) { expected.append($0) }
        let loggedOutOfOwnerOne = (0..<1_000).filter { $0 % 5 == 0 && $0 % 3 != 0 }.count
        #expect(expected.count == 3_500 - 1_167 - loggedOutOfOwnerOne)
        #expect(expected.contains { $0.accounting.inputOctets > 0 })

        let handed = Handed()
        try store.forEachSessionBatch(where: ownOnly, batchSize: 97, handed.take)
        let batches = handed.batches.withLock { $0 }
        #expect(batches.allSatisfy { !$0.isEmpty && $0.count <= 97 })
        #expect(batches.count == (expected.count + 96) / 97)
        #expect(batches.allSatisfy { batch in zip(batch, batch.dropFirst()).allSatisfy { $0.ip < $1.ip } })
        #expect(batches.joined().sorted { $0.ip < $1.ip } == expected)
        #expect(handed.otherThread.withLock { $0 }, "no batch was decoded on the store's second thread")

        // A walk that accepts nothing hands over nothing; one of a single batch decodes it on the calling thread.
        let none = Handed()
        try store.forEachSessionBatch(where: { owner, _ in owner == 9 }, batchSize: 97, none.take)
        #expect(none.batches.withLock { $0.isEmpty })
        let one = Handed()
        try store.forEachSessionBatch(where: ownOnly, batchSize: 10_000, one.take)
        #expect(one.batches.withLock { $0 } == [expected])
        #expect(!one.otherThread.withLock { $0 })
        await store.close()
    }

    @Test(
        "a damaged stored session stops the walk with its address, whichever thread decodes it",
        arguments: [1, 299]
    )
    func damagedSession(damaged: Int) async throws {
        let directory = TemporaryDirectory()
        let users = (0..<300).map { testSession($0) }
        do {
            let store = try SessionStore.open(at: directory.path, configuration: .test())
            _ = try await store.login(contentsOf: users)
            await store.close()
        }
        // User 1 is in the first batch of 64, which the second thread decodes; user 299 (the highest IPv6 address)
        // in the last, partial one, which the calling thread decodes.
        let environment = try Environment(path: directory.path + "/" + StoreLayout.usersFile)
        let table = try environment.openDatabase("users")
        let key = users[damaged].ip.withUnsafeBytes { Array($0) }
        var value = try #require(try environment.read { txn in try txn.value(forKey: key, in: table) })
        value[value.count / 2] ^= 0x40
        try environment.write { txn in try txn.put(key, value, in: table) }

        let store = try SessionStore.open(at: directory.path, configuration: .test())
        let handed = Handed()
        let error = #expect(throws: SessionStoreError.self) {
            try store.forEachSessionBatch(where: { _, _ in true }, batchSize: 64, handed.take)
        }
        #expect(error?.kind == .corruptRecord)
        #expect(error?.description.contains(users[damaged].ip.description) == true)
        #expect(!handed.batches.withLock { $0 }.joined().contains { $0.ip == users[damaged].ip })
        await store.close()
    }
}
