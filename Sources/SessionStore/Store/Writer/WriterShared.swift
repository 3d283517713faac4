import Locking

/// The function called after each commit; a class, so that loading it from its lock copies a reference.
final class CommitObserver: Sendable {
    let call: @Sendable (UInt64) -> Void
    init(_ call: @escaping @Sendable (UInt64) -> Void) { self.call = call }
}

extension LogWriter {
    /// The log's positions and holds as the last commit left them, for readers.
    struct LogStatusState: Sendable {
        var lastSequence: UInt64
        var checkpointSequence: UInt64
        var firstRetained: UInt64?
        var holds: [String: UInt64]
        var droppedHolds: [String: UInt64]
        var changesInMemory = 0
        var applied: [DeviceID: UInt64] = [:]
        var appliedHistory: [DeviceID: UInt64] = [:]
        var installing: [DeviceID: UInt64] = [:]
        var installs: UInt64 = 0
        var recoveringFrom: UInt64?
        /// The peers this device recovered from, with its sequence then, until the peer has what followed.
        var recoveredFrom: [DeviceID: UInt64] = [:]
    }

    /// What opening the store found on disk, for the writer to start from.
    struct Recovered {
        var identity: StoreIdentity
        var lastSequence: UInt64
        var checkpointSequence: UInt64
        var firstRetained: UInt64?
        var holds: [String: UInt64]
        var droppedHolds: [String: UInt64]
        var deadlines: DeadlineHeap
        var applied: [DeviceID: UInt64]
        var appliedHistory: [DeviceID: UInt64]
        var installing: [DeviceID: UInt64]
        var recoveringFrom: UInt64?
        var recoveredFrom: [DeviceID: UInt64]
    }
}

/// What the writer publishes for other threads, each under its own lock: the store's identity, the log's
/// status, the digest history, and the observer it calls after each commit. Only the writer thread changes
/// the first three.
final class WriterShared: Sendable {
    let identity: Locked<StoreIdentity>
    let status: Locked<LogWriter.LogStatusState>
    /// The users table's digest after recent commits (once the digest was first computed).
    let digests = Locked(DigestHistory())
    /// Called on the writer thread after each commit that logged records, with the last sequence.
    let commitObserver = Locked<CommitObserver?>(nil)

    init(_ recovered: LogWriter.Recovered) {
        identity = Locked(recovered.identity)
        status = Locked(
            LogWriter.LogStatusState(
                lastSequence: recovered.lastSequence,
                checkpointSequence: recovered.checkpointSequence,
                firstRetained: recovered.firstRetained,
                holds: recovered.holds,
                droppedHolds: recovered.droppedHolds,
                applied: recovered.applied,
                appliedHistory: recovered.appliedHistory,
                installing: recovered.installing,
                recoveringFrom: recovered.recoveringFrom,
                recoveredFrom: recovered.recoveredFrom
            )
        )
    }
}
