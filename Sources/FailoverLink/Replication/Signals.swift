import SessionStore
import Synchronization

/// Wakes the stream sender when the log grows past a position, or when it is poked (a resync request).
final class CommitSignal: Sendable {
    private struct State {
        var last: UInt64
        var pokes: UInt64 = 0
        var waiters: [UInt64: CheckedContinuation<Void, Never>] = [:]
        var nextID: UInt64 = 0
    }

    private let state: Mutex<State>

    init(last: UInt64) { state = Mutex(State(last: last)) }

    /// The log committed through `sequence`.
    func committed(_ sequence: UInt64) {
        let ready = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.last = max(state.last, sequence)
            defer { state.waiters.removeAll() }
            return Array(state.waiters.values)
        }
        for waiter in ready { waiter.resume() }
    }

    /// Wakes every waiter.
    func poke() {
        let ready = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.pokes += 1
            defer { state.waiters.removeAll() }
            return Array(state.waiters.values)
        }
        for waiter in ready { waiter.resume() }
    }

    var pokes: UInt64 { state.withLock { $0.pokes } }

    /// Returns once the log is past `position`, on a poke after `pokesSeen`, or on cancellation.
    func wait(beyond position: UInt64, pokesSeen: UInt64) async {
        let id = state.withLock { state -> UInt64 in
            state.nextID += 1
            return state.nextID
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLock { state -> Bool in
                    if state.last > position || state.pokes != pokesSeen || Task.isCancelled { return true }
                    state.waiters[id] = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            let waiter = state.withLock { $0.waiters.removeValue(forKey: id) }
            waiter?.resume()
        }
    }
}

/// Commit-to-acknowledgement latencies: the time of each commit, matched with the ack that covers it.
final class LagRecorder: Sendable {
    private struct State {
        var pending: [(sequence: UInt64, at: ContinuousClock.Instant)] = []
        var head = 0
        var samples: [Duration] = []
    }

    private let state = Mutex(State())

    func committed(_ sequence: UInt64, at instant: ContinuousClock.Instant) {
        state.withLock { state in
            if state.pending.count - state.head > 65_536 { return }  // no peer acknowledging: stop sampling
            state.pending.append((sequence, instant))
        }
    }

    /// Matches the commits through `sequence`; returns their latencies.
    func acknowledged(_ sequence: UInt64, at instant: ContinuousClock.Instant) -> [Duration] {
        state.withLock { state in
            let first = state.samples.count
            while state.head < state.pending.count, state.pending[state.head].sequence <= sequence {
                state.samples.append(state.pending[state.head].at.duration(to: instant))
                state.head += 1
            }
            defer { if state.samples.count > 1_000_000 { state.samples.removeFirst(state.samples.count / 2) } }
            if state.head > 4096 {
                state.pending.removeFirst(state.head)
                state.head = 0
            }
            return Array(state.samples[first...])
        }
    }

    /// Forgets commits not yet acknowledged (a new connection).
    func clearPending() {
        state.withLock {
            $0.pending.removeAll()
            $0.head = 0
        }
    }

    func drain() -> [Duration] {
        state.withLock { state in
            defer { state.samples.removeAll() }
            return state.samples
        }
    }
}

/// The queue between a connection's reader and its applier. The applier takes everything queued at once,
/// so that the frames that arrived while the last commit was syncing go into one commit (group commit on
/// the receiving side); the reader stops reading while `limit` items wait, so memory stays bounded and TCP
/// flow control slows the sender.
final class ApplyQueue: Sendable {
    private struct State {
        var items: [PeerWork] = []
        var taker: CheckedContinuation<Void, Never>?
        var pusher: CheckedContinuation<Void, Never>?
    }

    private let state = Mutex(State())
    private let limit: Int

    init(limit: Int = 64) { self.limit = limit }

    /// Queues `work`; waits first while the queue is full.
    func push(_ work: PeerWork) async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let room = state.withLock { state -> Bool in
                    if state.items.count < limit || Task.isCancelled { return true }
                    state.pusher = continuation
                    return false
                }
                if room { continuation.resume() }
            }
        } onCancel: {
            state.withLock { state in
                defer { state.pusher = nil }
                return state.pusher
            }?.resume()
        }
        let taker = state.withLock { state -> CheckedContinuation<Void, Never>? in
            state.items.append(work)
            defer { state.taker = nil }
            return state.taker
        }
        taker?.resume()
    }

    /// Everything queued, waiting for at least one item; empty on cancellation.
    func takeAll() async -> [PeerWork] {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let ready = state.withLock { state -> Bool in
                    if !state.items.isEmpty || Task.isCancelled { return true }
                    state.taker = continuation
                    return false
                }
                if ready { continuation.resume() }
            }
        } onCancel: {
            state.withLock { state in
                defer { state.taker = nil }
                return state.taker
            }?.resume()
        }
        let (items, pusher) = state.withLock { state -> ([PeerWork], CheckedContinuation<Void, Never>?) in
            defer {
                state.items.removeAll()
                state.pusher = nil
            }
            return (state.items, state.pusher)
        }
        pusher?.resume()
        return items
    }
}

/// What the peer's stream request said: how far it had applied this device's stream, its log's history, and
/// whether it recovers its users from this device.
final class PeerPosition: Sendable {
    private let value = Atomic<UInt64>(0)
    private let peerHistory = Atomic<UInt64>(0)
    private let peerRecovering = Atomic<Bool>(false)
    var recovering: Bool {
        get { peerRecovering.load(ordering: .relaxed) }
        set { peerRecovering.store(newValue, ordering: .relaxed) }
    }
    var sequence: UInt64 {
        get { value.load(ordering: .relaxed) }
        set { value.store(newValue, ordering: .relaxed) }
    }
    var history: UInt64 {
        get { peerHistory.load(ordering: .relaxed) }
        set { peerHistory.store(newValue, ordering: .relaxed) }
    }
}

/// One operation at a time: `begin()` is `false` while one is in flight.
final class InFlight: Sendable {
    private let flag = Atomic<Bool>(false)

    func begin() -> Bool {
        flag.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged
    }
    func end() { flag.store(false, ordering: .releasing) }
    var busy: Bool { flag.load(ordering: .acquiring) }
}
