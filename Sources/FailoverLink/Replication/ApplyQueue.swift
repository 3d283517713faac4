import Locking
import SessionStore

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

    private let state = Locked(State())
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
