import TestSupport
import Testing

@testable import SessionStore

/// The writer's replies: each caller is answered exactly once, whatever becomes of its request.
@Suite("Writer requests")
struct WriterRequestTests {
    @Test("a reply dropped unanswered answers that the store is closed")
    func droppedReplyAnswers() async {
        let result: Result<Int, SessionStoreError> = await withUnsafeContinuation { continuation in
            let reply = Reply<Int>(continuation)
            _ = consume reply
        }
        #expect(kind(result) == .closed)
    }

    @Test("a kept reply answers once: the first answer is the one the caller gets, and a later one finds nothing")
    func pendingReplyAnswersOnce() async throws {
        let result: Result<Int, SessionStoreError> = await withUnsafeContinuation { continuation in
            let pending = PendingReply<Int>(Reply(continuation))
            pending.resume(.success(7))
            pending.resume(.success(8))
            pending.resume(.failure(SessionStoreError(.closed)))
        }
        #expect(try result.get() == 7)
    }

    @Test("an outcome answers what was staged, the batch's failure in place of a success, and only once")
    func outcomeRules() async {
        let success: Result<Int, SessionStoreError> = await withUnsafeContinuation { continuation in
            var outcome = Outcome<Int>(Reply(continuation))
            outcome.set(.success(1))
            outcome.fail(SessionStoreError(.closed))
            outcome.answer()
            outcome.answer()
        }
        #expect(kind(success) == .closed)
        let refused: Result<Int, SessionStoreError> = await withUnsafeContinuation { continuation in
            var outcome = Outcome<Int>(Reply(continuation))
            outcome.set(.failure(SessionStoreError(.notOnline(IPAddress(ipv4: 1)))))
            outcome.fail(SessionStoreError(.closed))
            outcome.answer()
        }
        #expect(kind(refused) == .notOnline)
        let neverStaged: Result<Int, SessionStoreError> = await withUnsafeContinuation { continuation in
            var outcome = Outcome<Int>(Reply(continuation))
            outcome.fail(SessionStoreError(.notOnline(IPAddress(ipv4: 2))))
            outcome.answer()
        }
        #expect(kind(neverStaged) == .notOnline)
    }

    @Test("a request the store refuses to queue, or one still queued when the writer stops, answers closed")
    func rejectedRequests() async throws {
        let directory = TemporaryDirectory()
        let store = try SessionStore.open(
            at: directory.child("store"),
            configuration: SessionStore.Configuration(deviceID: 1, portalGroup: "campus")
        )
        let rejected: Result<Session, SessionStoreError> = await withUnsafeContinuation { continuation in
            let session = Session(
                ip: IPAddress(ipv4: 0x0A00_0001),
                mac: MACAddress(rawValue: 1),
                userName: "one",
                vlan: 1,
                accessInterface: "GigabitEthernet1/0/1",
                portalGroup: "campus",
                authenticationMode: .direct,
                owner: 1
            )
            LogWriter.Request.staged(LogWriter.LoginRequest(session, Reply(continuation)))
                .reject(SessionStoreError(.closed))
        }
        #expect(kind(rejected) == .closed)
        await store.close()
        // Closed: the writer takes nothing more, and says so.
        let afterClose = await store.writer.checkpoint()
        #expect(kind(afterClose) == .closed)
    }

    private func kind<T>(_ result: Result<T, SessionStoreError>) -> SessionStoreError.Kind? {
        if case .failure(let error) = result { error.kind } else { nil }
    }
}
