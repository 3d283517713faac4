import Locking
import SessionStore

/// Commit-to-acknowledgement latencies: the time of each commit, matched with the ack that covers it.
final class LagRecorder: Sendable {
    private struct State {
        var pending: [(sequence: UInt64, at: ContinuousClock.Instant)] = []
        var head = 0
        var samples: [Duration] = []
    }

    private let state = Locked(State())

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
