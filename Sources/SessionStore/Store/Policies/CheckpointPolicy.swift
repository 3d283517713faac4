/// When the writer freezes the changes in memory for a checkpoint, and when it stops taking requests until
/// the running checkpoint is done. Pure: the writer passes the monotonic time in nanoseconds and what it
/// holds, and does what the answer says.
struct CheckpointPolicy: Sendable, Equatable {
    /// The longest time changes stay in memory before a checkpoint, in nanoseconds.
    var interval: UInt64
    /// A checkpoint starts as soon as this many changes are in memory.
    var threshold: Int
    /// While a checkpoint runs and this many changes are in memory, the writer takes no new request.
    var maxChangesInMemory: Int

    init(interval: UInt64, threshold: Int, maxChangesInMemory: Int) {
        self.interval = interval
        self.threshold = threshold
        self.maxChangesInMemory = maxChangesInMemory
    }

    init(_ configuration: SessionStore.Configuration) {
        self.init(
            interval: UInt64(configuration.checkpointInterval.nanoseconds),
            threshold: configuration.checkpointThreshold,
            maxChangesInMemory: configuration.maxChangesInMemory
        )
    }

    /// What the writer does about checkpoints when no checkpoint is running.
    enum Step: Sendable, Equatable {
        /// Freeze the changes in memory and write them to the users table.
        case freeze
        /// Nothing to write, but the interval is over: it starts again from now.
        case restartInterval
        /// Nothing yet.
        case wait
    }

    /// The step at `now`, for `changes` in memory since the interval began at `lastFreeze`; `pendingPosition`:
    /// the log is ahead of the users table (even with no change to write, the table's position must move);
    /// `waiters`: callers wait for a checkpoint.
    func step(now: UInt64, lastFreeze: UInt64, changes: Int, pendingPosition: Bool, waiters: Bool) -> Step {
        let due = now >= lastFreeze && now - lastFreeze >= interval
        if changes >= threshold || (pendingPosition && (due || waiters)) { return .freeze }
        return due ? .restartInterval : .wait
    }

    /// Whether the writer holds new requests back: a checkpoint is running and memory is full.
    func holdsBack(checkpointRunning: Bool, changes: Int) -> Bool {
        checkpointRunning && changes >= maxChangesInMemory
    }

    /// When the writer must next look at checkpoints if no request comes: the end of the interval that began
    /// at `lastFreeze`; never while a checkpoint runs, since its completion comes as a request (a deadline
    /// already past would otherwise wake the writer at once, again and again, until the checkpoint ends).
    func deadline(lastFreeze: UInt64, checkpointRunning: Bool) -> UInt64 {
        checkpointRunning ? .max : lastFreeze &+ interval
    }
}
