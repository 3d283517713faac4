import Locking

/// Where a service that runs once stands: not yet run, running, or finished (it ran, or was shut down before
/// it ran). A second concurrent `run()` is a programming error.
final class RunOnce: Sendable {
    private enum Phase: Sendable { case idle, running, finished }

    private let phase = Locked(Phase.idle)
    private let ended = OneShot<Void>()

    /// Marks the service running; `false` when it finished already, and `run()` has nothing to do.
    /// - Parameter name: the service's type, for the message when it is already running.
    func begin(_ name: String) -> Bool {
        phase.withLock { phase -> Bool in
            switch phase {
            case .idle:
                phase = .running
                return true
            case .running:
                preconditionFailure("\(name).run() called while it runs already: a \(name) runs once")
            case .finished:
                return false
            }
        }
    }

    /// Marks the service finished and wakes whoever waits for it to end.
    func finish() {
        phase.withLock { $0 = .finished }
        ended.resolve(.success(()))
    }

    /// Marks a service that never ran finished; `true` when it had not run.
    func finishIfIdle() -> Bool {
        let wasIdle = phase.withLock { phase -> Bool in
            guard phase == .idle else { return false }
            phase = .finished
            return true
        }
        if wasIdle { ended.resolve(.success(())) }
        return wasIdle
    }

    /// Waits until the service finished.
    func waitUntilFinished() async {
        try? await ended.value()
    }
}
