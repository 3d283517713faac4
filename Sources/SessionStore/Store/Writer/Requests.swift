import LMDB

/// The writer's answer to one caller. It answers exactly once: ``resume(_:)`` consumes it, and a reply dropped
/// unanswered (a request still queued when the writer stops) answers, as it goes, that the store is closed.
struct Reply<T: Sendable>: ~Copyable, Sendable {
    private let continuation: UnsafeContinuation<Result<T, SessionStoreError>, Never>

    init(_ continuation: UnsafeContinuation<Result<T, SessionStoreError>, Never>) {
        self.continuation = continuation
    }

    consuming func resume(_ result: Result<T, SessionStoreError>) {
        continuation.resume(returning: result)
        discard self
    }

    deinit {
        continuation.resume(returning: .failure(SessionStoreError(.closed)))
    }
}

/// A reply the writer keeps for later (a `checkpoint()` caller waits for the checkpoint), in a class: the
/// writer's arrays hold copyable values only.
///
/// `@unchecked Sendable` invariant: the reply is taken only on the writer thread, or by the caller's thread
/// before the request is queued.
final class PendingReply<T: Sendable>: @unchecked Sendable {
    private var reply: Reply<T>?

    init(_ reply: consuming Reply<T>) { self.reply = consume reply }

    /// Answers the caller; a reply answers once, so that a later call finds nothing to answer.
    func resume(_ result: Result<T, SessionStoreError>) {
        guard let reply = reply.take() else { return }
        reply.resume(result)
    }
}

/// A request whose change is staged in a batch with the others, in one read transaction of the users table,
/// and answered once the batch has committed or failed.
protocol StagedRequest: AnyObject, Sendable {
    /// Runs the request's staging step on the writer thread, on the writer's state; its outcome waits for the commit.
    func stage(_ state: WriterState, _ txn: borrowing ReadTransaction)
    /// The batch did not commit: a staged success, or a request not staged yet, becomes `error`.
    func fail(_ error: SessionStoreError)
    /// Answers the caller with the outcome.
    func answer()
}

/// What a staged request came to, and its reply: each request type of the writer (`LogWriter`'s "Requests")
/// holds one, and forwards `fail` and `answer` to it. (A type per operation, rather than one generic type
/// holding a closure: called through ``StagedRequest``, a generic type's methods run unspecialized, which cost
/// the writer a sixth more CPU per login.)
struct Outcome<T: Sendable>: ~Copyable {
    private var reply: Reply<T>?
    private var result: Result<T, SessionStoreError>?

    init(_ reply: consuming Reply<T>) { self.reply = consume reply }

    /// Notes what the staging step returned or threw.
    mutating func set(_ result: Result<T, SessionStoreError>) { self.result = result }

    /// The batch did not commit: a success, or a request not staged yet, becomes `error`.
    mutating func fail(_ error: SessionStoreError) {
        if case .failure = result { return }
        result = .failure(error)
    }

    /// Answers the caller, once.
    mutating func answer() {
        guard let reply = reply.take() else { return }
        reply.resume(result ?? .failure(SessionStoreError(.closed)))
    }
}

/// A request that runs alone on the writer thread, after the batch it came in has committed: it commits by
/// itself (a demotion, a repair, the digest's first computation).
protocol AloneRequest: AnyObject, Sendable {
    func run(_ writer: LogWriter)
    func reject(_ error: SessionStoreError)
}

/// Work that runs alone, with its reply.
///
/// `@unchecked Sendable` invariant: `reply` is touched only on the writer thread once the request is queued.
final class Alone<T: Sendable>: AloneRequest, @unchecked Sendable {
    typealias Work = @Sendable (LogWriter) -> Result<T, SessionStoreError>
    private let work: Work
    private var reply: Reply<T>?

    init(_ work: @escaping Work, _ reply: consuming Reply<T>) {
        self.work = work
        self.reply = consume reply
    }

    func run(_ writer: LogWriter) {
        guard let reply = reply.take() else { return }
        reply.resume(work(writer))
    }

    func reject(_ error: SessionStoreError) {
        guard let reply = reply.take() else { return }
        reply.resume(.failure(error))
    }
}
