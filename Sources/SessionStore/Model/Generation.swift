/// The version of a user's session: the term of the device that logged the user in, and the sequence number of the
/// login in that device's log.
///
/// Generations make duplicated, reordered or replayed events harmless: an event about an older generation of a user
/// than the one the store holds changes nothing. The term, which promotion raises, comes first, so a demoted device
/// can never bring back a user who logged out while it was away.
public struct Generation: Hashable, Comparable, Sendable, Codable {
    /// The term (epoch) of the device when it logged the user in.
    public var term: UInt32
    /// The sequence number of the login record in the device's log.
    public var sequence: UInt64

    /// The generation before every real one: what callers put in a new session, for the store to replace.
    public static let zero = Generation(term: 0, sequence: 0)

    /// Creates a generation.
    ///
    /// - Parameters:
    ///   - term: The term (epoch) of the device.
    ///   - sequence: The sequence number of the login record.
    @inlinable
    public init(term: UInt32, sequence: UInt64) {
        self.term = term
        self.sequence = sequence
    }

    /// Orders generations by term, then by sequence number.
    ///
    /// - Parameters:
    ///   - lhs: A generation.
    ///   - rhs: Another generation.
    /// - Returns: Whether `lhs` is older than `rhs`.
    @inlinable
    public static func < (lhs: Generation, rhs: Generation) -> Bool {
        lhs.term != rhs.term ? lhs.term < rhs.term : lhs.sequence < rhs.sequence
    }
}

extension Generation: CustomStringConvertible {
    /// `term.sequence`, as in `3.1048576`.
    public var description: String {
        "\(term).\(sequence)"
    }
}
