import Testing

@testable import SessionStore

/// The writer's pure policies, with the time passed in: when to checkpoint and to hold requests back, how
/// much log to keep and which holds the quota drops, when sessions expire.
@Suite("Writer policies")
struct PolicyTests {
    static let second: UInt64 = 1_000_000_000
    static let policy = CheckpointPolicy(interval: second, threshold: 100, maxChangesInMemory: 1_000)

    @Test(
        "a checkpoint starts at the change threshold at once, and at the end of the interval only when the log is ahead"
    )
    func checkpointSteps() {
        let policy = Self.policy
        let start: UInt64 = 50 * Self.second
        // Within the interval: only the threshold, or a caller waiting for a position the table lacks.
        #expect(
            policy.step(now: start + 1, lastFreeze: start, changes: 99, pendingPosition: true, waiters: false) == .wait
        )
        #expect(
            policy.step(now: start + 1, lastFreeze: start, changes: 100, pendingPosition: false, waiters: false)
                == .freeze
        )
        #expect(
            policy.step(now: start + 1, lastFreeze: start, changes: 0, pendingPosition: true, waiters: true) == .freeze
        )
        #expect(
            policy.step(now: start + 1, lastFreeze: start, changes: 0, pendingPosition: false, waiters: true) == .wait
        )
        // At the end of the interval: a checkpoint if the log is ahead of the table, else a new interval.
        let due = start + Self.second
        #expect(policy.step(now: due, lastFreeze: start, changes: 1, pendingPosition: true, waiters: false) == .freeze)
        #expect(
            policy.step(now: due, lastFreeze: start, changes: 0, pendingPosition: false, waiters: false)
                == .restartInterval
        )
        #expect(
            policy.step(now: due - 1, lastFreeze: start, changes: 0, pendingPosition: false, waiters: false) == .wait
        )
        // A freeze stamped after the time the writer read is not an interval over.
        #expect(
            policy.step(now: start, lastFreeze: start + 5, changes: 1, pendingPosition: true, waiters: false) == .wait
        )
        #expect(policy.deadline(lastFreeze: start, checkpointRunning: false) == due)
    }

    @Test("while a checkpoint runs, no checkpoint deadline wakes the writer, even one long past")
    func noDeadlineWhileRunning() {
        let start: UInt64 = 50 * Self.second
        #expect(Self.policy.deadline(lastFreeze: start, checkpointRunning: true) == .max)
        #expect(Self.policy.deadline(lastFreeze: 0, checkpointRunning: true) == .max)
        #expect(Self.policy.deadline(lastFreeze: start, checkpointRunning: false) == start + Self.second)
    }

    @Test("back-pressure holds requests only while a checkpoint runs and memory is full")
    func backPressure() {
        #expect(Self.policy.holdsBack(checkpointRunning: true, changes: 1_000))
        #expect(!Self.policy.holdsBack(checkpointRunning: true, changes: 999))
        #expect(!Self.policy.holdsBack(checkpointRunning: false, changes: 5_000))
    }

    @Test("the log may be deleted behind the checkpoint and before the lowest hold")
    func truncationTarget() {
        let retention = RetentionPolicy(quotaBytes: 1 << 20)
        #expect(retention.truncationTarget(holds: [:], checkpoint: 80) == 80)
        #expect(retention.truncationTarget(holds: ["peer-2": 51, "peer-3": 70], checkpoint: 80) == 50)
        #expect(retention.truncationTarget(holds: ["peer-2": 90], checkpoint: 80) == 80)
        #expect(retention.truncationTarget(holds: ["peer-2": 0], checkpoint: 80) == 0)
    }

    @Test("a commit deletes at most the truncation batch behind the checkpoint, or twice what it logs when more")
    func truncationLimit() {
        let retention = RetentionPolicy(quotaBytes: 1 << 20, truncationBatch: 2_048)
        #expect(retention.truncationLimit(logged: 0) == 2_048)
        #expect(retention.truncationLimit(logged: 1_024) == 2_048)
        #expect(retention.truncationLimit(logged: 1_025) == 2_050)
        #expect(retention.truncationLimit(logged: 262_144) == 524_288)
        #expect(RetentionPolicy(quotaBytes: 1 << 20, truncationBatch: 0).truncationLimit(logged: 0) == 1)
    }

    @Test("over its quota the log drops the holds that keep what the checkpoint wrote, and reads its size only then")
    func quota() {
        let retention = RetentionPolicy(quotaBytes: 1_000)
        var reads = 0
        func size(_ bytes: Int) -> () -> Int {
            {
                reads += 1
                return bytes
            }
        }
        let holds: [String: UInt64] = ["peer-2": 40, "peer-3": 95, "recovery": 10]
        // Under the quota: none.
        #expect(retention.holdsToDrop(holds: holds, checkpoint: 80, retainedBytes: size(1_000)).isEmpty)
        // Over it: those at or behind the checkpoint, in name order; a hold ahead of it costs nothing.
        let dropped = retention.holdsToDrop(holds: holds, checkpoint: 80, retainedBytes: size(1_001))
        #expect(dropped.map(\.name) == ["peer-2", "recovery"])
        #expect(dropped.map(\.position) == [40, 10])
        #expect(reads == 2)
        // Every hold ahead of the checkpoint: the size is not read.
        #expect(retention.holdsToDrop(holds: ["peer-2": 95], checkpoint: 80, retainedBytes: size(5_000)).isEmpty)
        #expect(retention.holdsToDrop(holds: [:], checkpoint: 80, retainedBytes: size(5_000)).isEmpty)
        #expect(reads == 2)
    }

    @Test("expiry runs every interval after the last run, never without an interval")
    func expirySchedule() {
        var schedule = ExpirySchedule(interval: Self.second, now: 10 * Self.second)
        #expect(schedule.wake == 11 * Self.second)
        let run1 = schedule.take(now: 11 * Self.second - 1)
        #expect(!run1)
        let run2 = schedule.take(now: 11 * Self.second)
        #expect(run2)
        let run3 = schedule.take(now: 11 * Self.second)
        #expect(!run3)
        // A late run: the next is an interval after it, not bunched up behind it.
        let run4 = schedule.take(now: 15 * Self.second)
        #expect(run4)
        #expect(schedule.wake == 16 * Self.second)
        var never = ExpirySchedule(interval: nil, now: 10 * Self.second)
        #expect(never.wake == nil)
        let run5 = never.take(now: .max)
        #expect(!run5)
    }
}
