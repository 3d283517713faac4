/// Sessions as the users table stores them, gathered by a walk to be decoded later, on another thread or the
/// same one: the encoded values back to back, with their addresses.
struct StoredSessions: Sendable {
    private var addresses: [IPAddress] = []
    private var bytes: [UInt8] = []
    private var ends: [Int] = []

    /// Room for `count` sessions of about 160 bytes each.
    init(capacity count: Int) {
        addresses.reserveCapacity(count)
        ends.reserveCapacity(count)
        bytes.reserveCapacity(count * 160)
    }

    var count: Int { addresses.count }

    /// Adds the session stored as `value` at `ip`, copying its bytes.
    mutating func append(_ value: UnsafeRawBufferPointer, ip: IPAddress) {
        bytes.append(contentsOf: value)
        ends.append(bytes.count)
        addresses.append(ip)
    }

    /// The sessions, decoded in the order they were added.
    ///
    /// - Throws: ``SessionStoreError`` of kind ``SessionStoreError/Kind/corruptRecord`` naming the first
    ///   damaged session's address.
    func decoded() throws(SessionStoreError) -> [Session] {
        var sessions: [Session] = []
        sessions.reserveCapacity(addresses.count)
        let failure: SessionStoreError? = bytes.withUnsafeBytes { all in
            var start = 0
            for index in addresses.indices {
                let value = UnsafeRawBufferPointer(rebasing: all[start..<ends[index]])
                do throws(SessionStoreError) {
                    sessions.append(try decodeStoredSession(value, ip: addresses[index]))
                } catch {
                    return error
                }
                start = ends[index]
            }
            return nil
        }
        if let failure { throw failure }
        return sessions
    }
}

/// A second thread, `tandem-decode`, that decodes batches of a walk beside the walking thread and hands each
/// one, decoded, to `deliver`.
///
/// It holds one batch waiting beside the one it decodes. The walk offers it each full batch; when one is
/// already waiting, the walk decodes the batch itself. On two cores, the walk and this thread thus share the
/// decoding, and the walk never waits for the thread. The thread starts with the first batch offered: a walk
/// of a single batch starts none.
///
/// `@unchecked Sendable`: `waiting`, `finishing` and `failure` are read and written only under `lock`;
/// `thread` only by the walking thread, in ``offer(_:)`` and ``finish()``.
final class BatchDecoder: @unchecked Sendable {
    private let lock = ConditionLock()
    private let deliver: @Sendable ([Session]) -> Void
    private var waiting: StoredSessions?
    private var finishing = false
    private var failure: SessionStoreError?
    private var thread: StoreThread?

    init(deliver: @escaping @Sendable ([Session]) -> Void) {
        self.deliver = deliver
    }

    /// Why the thread stopped decoding: the first damaged session it met; `nil` while it decodes.
    var failed: SessionStoreError? { lock.withLock { failure } }

    /// Hands `batch` to the thread, unless one already waits for it.
    ///
    /// - Returns: `batch` when the thread has one waiting, for the caller to decode itself; `nil` when the
    ///   thread took it.
    func offer(_ batch: StoredSessions) -> StoredSessions? {
        let taken: Bool = lock.withLock {
            guard waiting == nil else { return false }
            waiting = batch
            lock.signal()
            return true
        }
        guard taken else { return batch }
        if thread == nil { thread = StoreThread(name: "tandem-decode") { [self] in run() } }
        return nil
    }

    /// Lets the thread decode what waits for it, then ends it.
    ///
    /// - Returns: the first damaged session the thread met, if any.
    func finish() -> SessionStoreError? {
        lock.withLock {
            finishing = true
            lock.signal()
        }
        thread?.join()
        return failed
    }

    private func run() {
        while true {
            lock.lock()
            while waiting == nil, !finishing { lock.wait() }
            guard let batch = waiting else {
                lock.unlock()
                return
            }
            waiting = nil
            let stopped = failure != nil
            lock.unlock()
            if stopped { continue }
            do {
                deliver(try batch.decoded())
            } catch {
                lock.withLock { failure = failure ?? error }
            }
        }
    }
}
