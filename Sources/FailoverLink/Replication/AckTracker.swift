import HeapModule
import Locking

/// The peer's acknowledgements of this device's stream, and the writers waiting for them (`replicated`
/// write concern).
///
/// A wait ends once, with one ``Outcome``: acknowledged, timed out at its deadline, discarded by a demotion,
/// stopped with the node, or cancelled with its task. Deadlines are kept in order and ``expireWhenDue()``
/// sleeps until the earliest one (woken early when a wait with an earlier deadline comes), so that nothing
/// polls.
final class AckTracker: Sendable {
    /// How a wait ended.
    enum Outcome: Sendable, Equatable {
        case acknowledged
        case timedOut
        /// The events waited for are gone: this device stepped down and discarded them.
        case discarded(term: UInt32)
        /// The node stopped.
        case stopped
        /// The waiting task was cancelled.
        case cancelled
    }

    private struct Waiter {
        var sequence: UInt64
        var deadline: ContinuousClock.Instant
        var continuation: CheckedContinuation<Outcome, Never>
    }

    /// A wait in ``State/bySequence``, ordered by the sequence it waits for.
    private struct Pending: Comparable {
        var sequence: UInt64
        var id: UInt64
        static func < (a: Pending, b: Pending) -> Bool { a.sequence < b.sequence }
        static func == (a: Pending, b: Pending) -> Bool { a.sequence == b.sequence }
    }

    private struct State {
        var acked: UInt64 = 0
        var waiters: [UInt64: Waiter] = [:]
        var nextID: UInt64 = 0
        /// The waits' deadlines in order, with their IDs; entries of waits that ended are skipped when met.
        var deadlines: [(deadline: ContinuousClock.Instant, id: UInt64)] = []
        var deadlinesHead = 0
        /// The waits by the sequence they wait for, lowest first; entries of waits that ended otherwise are
        /// skipped when met, and cleared out when they outnumber the waits.
        var bySequence = Heap<Pending>()
        /// Sequences of an earlier history of the log that demotions discarded, with the term that did it.
        var discarded: [(range: ClosedRange<UInt64>, term: UInt32)] = []
        var stopped = false
        /// The expiry loop's sleep and until when, or its wait for a first waiter.
        var sleeper: Task<Void, Never>?
        var sleepingUntil: ContinuousClock.Instant?
        var idle: CheckedContinuation<Void, Never>?

        /// Notes `id`'s deadline in order (at the end when it is the latest, as it is when every wait has the
        /// same timeout).
        mutating func insertDeadline(_ deadline: ContinuousClock.Instant, id: UInt64) {
            var index = deadlines.endIndex
            while index > deadlinesHead && deadlines[index - 1].deadline > deadline { index -= 1 }
            deadlines.insert((deadline, id), at: index)
        }

        /// Notes that wait `id`, already among `waiters`, waits for `sequence`.
        mutating func insertSequence(_ sequence: UInt64, id: UInt64) {
            if bySequence.count > 1024 && bySequence.count > waiters.count * 2 {
                bySequence = Heap(waiters.map { (id, waiter) in Pending(sequence: waiter.sequence, id: id) })
            } else {
                bySequence.insert(Pending(sequence: sequence, id: id))
            }
        }

        /// Ends the waits for sequences through `acked` and returns their continuations.
        mutating func takeAcknowledged() -> [CheckedContinuation<Outcome, Never>] {
            var ready: [CheckedContinuation<Outcome, Never>] = []
            while let top = bySequence.min, top.sequence <= acked {
                bySequence.removeMin()
                if let waiter = waiters.removeValue(forKey: top.id) { ready.append(waiter.continuation) }
            }
            return ready
        }

        /// The earliest deadline of a wait still running.
        mutating func earliestDeadline() -> ContinuousClock.Instant? {
            while deadlinesHead < deadlines.endIndex, waiters[deadlines[deadlinesHead].id] == nil {
                deadlinesHead += 1
            }
            if deadlinesHead > 1024 && deadlinesHead * 2 > deadlines.count {
                deadlines.removeFirst(deadlinesHead)
                deadlinesHead = 0
            }
            return deadlinesHead < deadlines.endIndex ? deadlines[deadlinesHead].deadline : nil
        }
    }

    private let state = Locked(State())

    /// The highest sequence the peer acknowledged.
    var acked: UInt64 { state.withLock { $0.acked } }

    /// How many waits are running.
    var waiting: Int { state.withLock { $0.waiters.count } }

    /// The peer acknowledged everything through `sequence`.
    func acknowledge(_ sequence: UInt64) {
        update { $0 = max($0, sequence) }
    }

    /// Starts over where a new connection says the peer stands.
    func reset(to sequence: UInt64) {
        update { $0 = sequence }
    }

    private func update(_ change: (inout UInt64) -> Void) {
        let ready = state.withLock { state -> [CheckedContinuation<Outcome, Never>] in
            change(&state.acked)
            return state.takeAcknowledged()
        }
        for continuation in ready { continuation.resume(returning: .acknowledged) }
    }

    /// Waits until the peer acknowledged `sequence`, `timeout` passed, the events were discarded, the node
    /// stopped, or the task is cancelled.
    func wait(for sequence: UInt64, timeout: Duration) async -> Outcome {
        let deadline = ContinuousClock.now + timeout
        let id = state.withLock { state -> UInt64 in
            state.nextID += 1
            return state.nextID
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                var wake: (Task<Void, Never>?, CheckedContinuation<Void, Never>?) = (nil, nil)
                let done = state.withLock { state -> Outcome? in
                    if let gone = state.discarded.last(where: { $0.range.contains(sequence) }) {
                        return .discarded(term: gone.term)
                    }
                    if state.acked >= sequence { return .acknowledged }
                    if state.stopped { return .stopped }
                    // Checked under the lock: a cancellation after this finds the waiter and ends it.
                    if Task.isCancelled { return .cancelled }
                    state.waiters[id] = Waiter(sequence: sequence, deadline: deadline, continuation: continuation)
                    state.insertDeadline(deadline, id: id)
                    state.insertSequence(sequence, id: id)
                    if let until = state.sleepingUntil, deadline < until { wake.0 = state.sleeper }
                    wake.1 = state.idle.take()
                    return nil
                }
                if let done { continuation.resume(returning: done) }
                wake.0?.cancel()
                wake.1?.resume()
            }
        } onCancel: {
            let waiter = state.withLock { $0.waiters.removeValue(forKey: id) }
            waiter?.continuation.resume(returning: .cancelled)
        }
    }

    /// Ends each wait with ``Outcome/timedOut`` at its deadline, until the task is cancelled: sleeps until the
    /// earliest deadline, or until a first wait comes.
    func expireWhenDue() async {
        while !Task.isCancelled {
            let sleeper = state.withLock { state -> Task<Void, Never>? in
                guard let next = state.earliestDeadline() else { return nil }
                let sleeper = Task { _ = try? await Task.sleep(until: next, clock: .continuous) }
                state.sleeper = sleeper
                state.sleepingUntil = next
                return sleeper
            }
            if let sleeper {
                await withTaskCancellationHandler {
                    await sleeper.value
                } onCancel: {
                    sleeper.cancel()
                }
                state.withLock {
                    $0.sleeper = nil
                    $0.sleepingUntil = nil
                }
                expire(now: .now)
            } else {
                await withTaskCancellationHandler {
                    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                        let resumeNow = state.withLock { state -> Bool in
                            if !state.waiters.isEmpty || Task.isCancelled { return true }
                            state.idle = continuation
                            return false
                        }
                        if resumeNow { continuation.resume() }
                    }
                } onCancel: {
                    state.withLock { $0.idle.take() }?.resume()
                }
            }
        }
    }

    /// A demotion kept the events through `kept` (the peer has them) and discarded those after it, through
    /// `last`: the waits for the kept ones end acknowledged; every other wait, and any that comes later for a
    /// discarded event, ends with ``Outcome/discarded(term:)``, since acknowledgements from now on count in
    /// the log's new history.
    func demoted(kept: UInt64, last: UInt64, term: UInt32) {
        acknowledge(kept)
        state.withLock { if last > kept { $0.discarded.append((kept + 1...last, term)) } }
        endAll(.discarded(term: term))
    }

    /// Ends the waits whose deadline has passed, earliest first.
    func expire(now: ContinuousClock.Instant) {
        let ended = state.withLock { state -> [CheckedContinuation<Outcome, Never>] in
            var ended: [CheckedContinuation<Outcome, Never>] = []
            while let deadline = state.earliestDeadline(), deadline <= now {
                let id = state.deadlines[state.deadlinesHead].id
                state.deadlinesHead += 1
                if let waiter = state.waiters.removeValue(forKey: id) { ended.append(waiter.continuation) }
            }
            return ended
        }
        for continuation in ended { continuation.resume(returning: .timedOut) }
    }

    /// Ends every wait, and every later one, with ``Outcome/stopped``: the node stopped.
    func stop() {
        state.withLock { $0.stopped = true }
        endAll(.stopped)
    }

    private func endAll(_ outcome: Outcome) {
        let ended = state.withLock { state -> [CheckedContinuation<Outcome, Never>] in
            defer {
                state.waiters.removeAll()
                state.bySequence = Heap()
            }
            return state.waiters.values.map(\.continuation)
        }
        for continuation in ended { continuation.resume(returning: outcome) }
    }
}
