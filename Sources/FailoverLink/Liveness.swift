import NIOCore

/// A connection's timing rules, with the time passed in: the negotiation must finish within its timeout; once
/// it has, a heartbeat goes out at every tick, and a peer not heard from for `silenceLimit` or more counts as
/// silent, which ends the connection.
///
/// Silence counts only while this device could hear the peer: while it reads from the connection, or while
/// its own writes are stuck too. A device that stops reading because it is still applying what the peer sent
/// (the frames wait in its queues, and the peer's heartbeats in the socket behind them) does not call the peer
/// silent for it; the time it spends so counts for nothing, and the silence goes on counting where it stopped
/// once it reads again. A peer that died or was cut off meanwhile is thus found a silence limit after this
/// device has consumed what the peer sent before, or at once when its own writes stop flowing too.
///
/// Nor does time in which this device's event loop was held up, busy with other work or the process stopped:
/// a heartbeat tick that fires late says so, and the peer's frames that arrived meanwhile wait in the socket
/// until the loop reads again. Without this, a device whose loop spent longer than the silence limit on its
/// own work would call the peer silent at the first tick after it, before reading what the peer had sent.
///
/// ``NegotiationHandler`` tells it what happened (established, a frame heard) and asks it what to do on each
/// tick of its event loop's timers, with the event loop's time: a test drives the rules with any clock, and
/// the handler on an `EmbeddedChannel` with `advanceTime`.
struct LivenessStateMachine: Sendable {
    enum State: Sendable, Hashable {
        /// The negotiation runs; it fails at `deadline`.
        case negotiating(deadline: NIODeadline)
        /// Authenticated frames flow; the peer was last heard from at `lastHeard`.
        case established(lastHeard: NIODeadline)
        /// The connection failed or closed: nothing more to do.
        case finished
    }

    enum Action: Sendable, Hashable {
        case nothing
        case sendHeartbeat
        /// Close the connection with this error.
        case fail(LinkError)
    }

    let silenceLimit: TimeAmount
    private(set) var state: State
    /// Whether this device asks to read from the connection.
    private(set) var reading = true
    /// Whether this device's writes flow (the connection takes them).
    private(set) var writable = true
    /// Since when silence has not counted, while it does not.
    private var pausedSince: NIODeadline?

    /// A connection that became active at `now`.
    init(negotiationTimeout: TimeAmount, silenceLimit: TimeAmount, now: NIODeadline) {
        self.silenceLimit = silenceLimit
        state = .negotiating(deadline: now + negotiationTimeout)
    }

    /// The negotiation succeeded at `now`: the peer counts as heard from then.
    mutating func established(at now: NIODeadline) {
        guard case .negotiating = state else { return }
        state = .established(lastHeard: now)
    }

    /// A frame of the peer's arrived at `now`.
    mutating func heard(at now: NIODeadline) {
        guard case .established(let last) = state else { return }
        state = .established(lastHeard: max(last, now))
    }

    /// This device asks to read from the connection again (`true`), or has read what it asked for and does
    /// not ask for more yet (`false`), at `now`.
    mutating func readingChanged(_ reading: Bool, at now: NIODeadline) {
        self.reading = reading
        silenceCounts(reading || !writable, at: now)
    }

    /// This device's writes flow again (`true`) or are held back (`false`), at `now`.
    mutating func writabilityChanged(_ writable: Bool, at now: NIODeadline) {
        self.writable = writable
        silenceCounts(reading || !writable, at: now)
    }

    /// Silence counts from `now` on, or stops counting at `now`. Once it counts again, the last-heard time moves
    /// on by the time it did not count (after the last frame heard).
    private mutating func silenceCounts(_ counts: Bool, at now: NIODeadline) {
        switch (counts, pausedSince) {
        case (false, nil):
            pausedSince = now
        case (true, let since?):
            pausedSince = nil
            discount(from: since, to: now)
        default:
            break
        }
    }

    /// Time from `since` to `now` in which silence did not count: the last-heard time moves on by the part of
    /// it after the last frame heard.
    private mutating func discount(from since: NIODeadline, to now: NIODeadline) {
        guard now > since, case .established(let last) = state, now > last else { return }
        state = .established(lastHeard: last + (now - max(since, last)))
    }

    /// A timer fired at `now`: what to do. `due` is when it was to fire, if not `now`: the time it fired late
    /// counts for nothing (after the last frame heard).
    mutating func tick(at now: NIODeadline, due: NIODeadline? = nil) -> Action {
        if let due, pausedSince == nil { discount(from: due, to: now) }
        switch state {
        case .negotiating(let deadline):
            guard now >= deadline else { return .nothing }
            state = .finished
            return .fail(LinkError(.protocolViolation("negotiation did not finish in time")))
        case .established(let lastHeard):
            guard pausedSince == nil, now - lastHeard >= silenceLimit else { return .sendHeartbeat }
            state = .finished
            return .fail(LinkError(.peerSilent(limitMilliseconds: silenceLimit.nanoseconds / 1_000_000)))
        case .finished:
            return .nothing
        }
    }

    /// The connection failed or closed.
    mutating func finish() {
        state = .finished
    }
}
