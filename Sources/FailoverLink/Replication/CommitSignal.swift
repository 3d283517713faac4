import Locking
import SessionStore

/// Wakes the stream sender when the log grows past a position, or when it is poked (a resync request).
final class CommitSignal: Sendable {
    private struct State {
        var last: UInt64
        var pokes: UInt64 = 0
        var waiters: [UInt64: CheckedContinuation<Void, Never>] = [:]
        var nextID: UInt64 = 0
    }

    private let state: Locked<State>

    init(last: UInt64) { state = Locked(State(last: last)) }

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
