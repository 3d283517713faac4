/// A position in a device's log: a sequence, in one history of that log.
///
/// A log's history is a random ID, new with the store and with each reset for a resynchronization, so that
/// sequences of a replaced, restored or reset log are never taken for those of the current one: a position
/// in another history counts for nothing. Sequence 0, before the first record, stands in every history.
package struct LogPosition: Sendable, Hashable, CustomStringConvertible {
    /// The history of the log the sequence counts in.
    package var history: UInt64
    /// The last sequence of that history reached.
    package var sequence: UInt64

    package init(history: UInt64, sequence: UInt64) {
        self.history = history
        self.sequence = sequence
    }

    /// The start of every history.
    package static let start = LogPosition(history: 0, sequence: 0)

    /// Whether this position counts in the log whose current history is `current`.
    package func counts(in current: UInt64) -> Bool { sequence == 0 || history == current }

    /// The sequence this position stands at in the log whose current history is `current`: 0 (nothing
    /// reached) when it was taken in another history.
    package func sequence(in current: UInt64) -> UInt64 { counts(in: current) ? sequence : 0 }

    /// `sequence@history`, the history in hexadecimal, as in `1048576@5f3a9c01d2e4b786`.
    package var description: String { "\(sequence)@\(String(history, radix: 16))" }
}
