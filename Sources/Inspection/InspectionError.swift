/// The error an inspection of a store reports when it cannot answer (errors of the store itself, such as a
/// missing or damaged store, are ``SessionStore/SessionStoreError``s).
///
/// A struct around a private code, like the store's and the link's errors, so that cases can be added;
/// compare ``kind`` with the static kinds and show ``description`` to the operator.
public struct InspectionError: Error, Sendable, Hashable, CustomStringConvertible {
    enum Code: Sendable, Hashable {
        case pastTruncated(firstRetained: UInt64)
    }

    let code: Code

    init(_ code: Code) { self.code = code }

    /// What kind of failure this is.
    public struct Kind: Hashable, Sendable, CustomStringConvertible {
        private let name: String
        private init(_ name: String) { self.name = name }
        /// The kind's name, as in `past-truncated`.
        public var description: String { name }

        /// The past asked for cannot be rebuilt: the log no longer starts at its first record.
        public static let pastTruncated = Kind("past-truncated")
    }

    public var kind: Kind {
        switch code {
        case .pastTruncated: .pastTruncated
        }
    }

    public var description: String {
        switch code {
        case .pastTruncated(let first):
            "the log starts at record \(first): records before it were truncated behind a checkpoint, so the past "
                + "cannot be rebuilt (keep the log with a hold to answer --at)"
        }
    }
}
