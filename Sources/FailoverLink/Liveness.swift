import NIOCore

/// A connection's timing rules, with the time passed in: the negotiation must finish within its timeout; once
/// it has, a heartbeat goes out at every tick, and a peer heard from last `silenceLimit` ago or more counts as
/// silent, which ends the connection.
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

    /// A timer fired at `now`: what to do.
    mutating func tick(at now: NIODeadline) -> Action {
        switch state {
        case .negotiating(let deadline):
            guard now >= deadline else { return .nothing }
            state = .finished
            return .fail(LinkError(.protocolViolation("negotiation did not finish in time")))
        case .established(let lastHeard):
            guard now - lastHeard >= silenceLimit else { return .sendHeartbeat }
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
