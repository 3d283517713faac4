/// How much of the log the store keeps: everything the users table does not have yet, and everything a
/// peer's hold asks for, unless the log outgrows its quota, when the holds that keep it so are dropped
/// (loudly: each such peer must then resynchronize in full). Pure: the writer passes its holds, the
/// checkpoint's position and, when asked, the log's size.
struct RetentionPolicy: Sendable, Equatable {
    /// The most log kept for lagging peers, in bytes.
    var quotaBytes: Int
    /// The most log entries a commit deletes, unless it logs more than half as many itself.
    var truncationBatch: Int

    init(quotaBytes: Int, truncationBatch: Int = 2_048) {
        self.quotaBytes = quotaBytes
        self.truncationBatch = truncationBatch
    }

    /// How many log entries a commit that logs `logged` records may delete behind the checkpoint: the batch,
    /// or twice what it logs when that is more. Deleting costs the writer time within the commit, so a small
    /// batch keeps each commit's pause short; a large commit deletes in proportion, so that truncation keeps
    /// up with the log however few commits carry it.
    func truncationLimit(logged: Int) -> Int {
        max(truncationBatch, 1, 2 * logged)
    }

    /// The highest sequence the log may delete: behind the checkpoint, and before every hold (a hold at N
    /// keeps N and after).
    func truncationTarget(holds: [String: UInt64], checkpoint: UInt64) -> UInt64 {
        guard let lowest = holds.values.min() else { return checkpoint }
        return min(checkpoint, lowest > 0 ? lowest - 1 : 0)
    }

    /// The holds to drop, with their positions, ordered by name: those that keep log the checkpoint has
    /// already written, while the retained log exceeds the quota. `retainedBytes` is read only when some
    /// hold keeps such log.
    func holdsToDrop(
        holds: [String: UInt64],
        checkpoint: UInt64,
        retainedBytes: () -> Int
    ) -> [(name: String, position: UInt64)] {
        guard let lowest = holds.values.min(), lowest <= checkpoint else { return [] }
        guard retainedBytes() > quotaBytes else { return [] }
        return holds.filter { $0.value <= checkpoint }.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
    }
}
