import LMDB

/// The error every ``SessionStore`` operation throws.
///
/// A struct around a private code, so that new failures can be added without breaking callers. Compare
/// ``kind`` with the static kinds to branch on the failure, and show ``description`` to a person: it says
/// what went wrong and what to do about it.
///
/// ```swift
/// do {
///     try await store.login(session)
/// } catch let error where error.kind == .alreadyOnline {
///     // the address is taken by an online user: log that user out first
/// }
/// ```
public struct SessionStoreError: Error, Sendable, CustomStringConvertible {
    /// What went wrong, with its details. `package`, like ``init(_:)``, so that the package's read-only view
    /// of a store (in the Inspection module) reports its failures as the store's own errors.
    package enum Code: Sendable {
        case deviceIDMismatch(path: String, stored: DeviceID, requested: DeviceID)
        case portalGroupMismatch(path: String, stored: PortalGroup, requested: PortalGroup)
        case alreadyOnline(IPAddress, userName: String)
        case notOnline(IPAddress)
        case invalidSession(InvalidFieldError)
        case foreignPortalGroup(session: PortalGroup, store: PortalGroup)
        case corruptRecord(CorruptRecordError, location: String)
        case corruptMetadata(key: String, detail: String)
        case storage(LMDBError, doing: String)
        case closed
        case unsupportedFormat(path: String, found: UInt32, supported: UInt32)
        case logGap(checkpoint: UInt64, firstRetained: UInt64)
        case notAStore(path: String, detail: String)
        case sameDeviceID(DeviceID)
        case invalidArgument(String)
        case logTruncated(requested: UInt64, firstRetained: UInt64)
    }

    let code: Code

    package init(_ code: Code) { self.code = code }

    /// What kind of failure this is; compare with the static members, such as ``Kind/alreadyOnline``.
    public struct Kind: Hashable, Sendable, CustomStringConvertible {
        private let name: String
        private init(_ name: String) { self.name = name }
        /// The kind's short name, such as `already-online`.
        public var description: String { name }

        /// The store belongs to another device ID than the one it was opened with (R4).
        public static let deviceIDMismatch = Kind("device-id-mismatch")
        /// The store serves another portal group than the one it was opened with (R5).
        public static let portalGroupMismatch = Kind("portal-group-mismatch")
        /// A login for an address that an online user already holds.
        public static let alreadyOnline = Kind("already-online")
        /// A logout for an address that no online user holds.
        public static let notOnline = Kind("not-online")
        /// A session field is invalid; ``SessionStoreError/invalidField`` says which.
        public static let invalidSession = Kind("invalid-session")
        /// A session of a portal group this store does not back up.
        public static let foreignPortalGroup = Kind("foreign-portal-group")
        /// Bytes on disk failed their checksum or could not be decoded.
        public static let corruptRecord = Kind("corrupt-record")
        /// The store's metadata is unreadable.
        public static let corruptMetadata = Kind("corrupt-metadata")
        /// LMDB or the file system failed (a full disk, for example); ``SessionStoreError/storageError`` has the detail.
        public static let storage = Kind("storage")
        /// The store is closed.
        public static let closed = Kind("closed")
        /// The store was written by a newer format than this build reads.
        public static let unsupportedFormat = Kind("unsupported-format")
        /// The log no longer holds events the users table needs: the store is damaged.
        public static let logGap = Kind("log-gap")
        /// The path is not a Tandem store.
        public static let notAStore = Kind("not-a-store")
        /// A device-ID change to the ID the store already has.
        public static let sameDeviceID = Kind("same-device-id")
        /// The log no longer holds the position asked for: the reader must resynchronize from a snapshot.
        public static let logTruncated = Kind("log-truncated")
        /// An argument is out of its allowed range.
        public static let invalidArgument = Kind("invalid-argument")
    }

    /// What kind of failure this is.
    public var kind: Kind {
        switch code {
        case .deviceIDMismatch: .deviceIDMismatch
        case .portalGroupMismatch: .portalGroupMismatch
        case .alreadyOnline: .alreadyOnline
        case .notOnline: .notOnline
        case .invalidSession: .invalidSession
        case .foreignPortalGroup: .foreignPortalGroup
        case .corruptRecord: .corruptRecord
        case .corruptMetadata: .corruptMetadata
        case .storage: .storage
        case .closed: .closed
        case .unsupportedFormat: .unsupportedFormat
        case .logGap: .logGap
        case .notAStore: .notAStore
        case .sameDeviceID: .sameDeviceID
        case .invalidArgument: .invalidArgument
        case .logTruncated: .logTruncated
        }
    }

    /// The field that broke a rule, behind an ``Kind/invalidSession`` error.
    public var invalidField: InvalidFieldError? {
        if case .invalidSession(let error) = code { return error }
        return nil
    }

    /// The LMDB failure behind a ``Kind/storage`` error.
    public var storageError: LMDBError? {
        if case .storage(let error, _) = code { return error }
        return nil
    }

    /// What went wrong and what to do about it, in words an operator can act on.
    public var description: String {
        switch code {
        case .deviceIDMismatch(let path, let stored, let requested):
            return "the store at \(path) belongs to device ID \(stored), not \(requested): open it with device ID "
                + "\(stored), then call changeDeviceID(to: \(requested)) if the device ID really changed "
                + "(that logs every online user off, R4)"
        case .portalGroupMismatch(let path, let stored, let requested):
            return "the store at \(path) backs up portal group '\(stored)', not '\(requested)': both devices of "
                + "a pair must use the portal group of their portal service backup interfaces (R5)"
        case .alreadyOnline(let ip, let userName):
            return "\(ip) is already online as user '\(userName)': log that session out before logging in again"
        case .notOnline(let ip):
            return "no online user holds \(ip)"
        case .invalidSession(let error):
            return "invalid session: \(error)"
        case .foreignPortalGroup(let session, let store):
            return "the session belongs to portal group '\(session)', but this store backs up portal group "
                + "'\(store)': only users of the portal service backup interface are backed up (R5)"
        case .corruptRecord(let error, let location):
            return "corrupt record at \(location): \(error); run `tandem log verify` and restore from the peer"
        case .corruptMetadata(let key, let detail):
            return "corrupt store metadata '\(key)': \(detail)"
        case .storage(let error, let doing):
            return "storage failure while \(doing): \(error); nothing of this operation was stored"
        case .closed:
            return "the session store is closed"
        case .unsupportedFormat(let path, let found, let supported):
            return "the store at \(path) has format version \(found), but this build reads up to version "
                + "\(supported): upgrade Tandem to open it"
        case .logGap(let checkpoint, let firstRetained):
            return "the users table is checkpointed through sequence \(checkpoint) but the log starts at "
                + "\(firstRetained): events in between are missing; resynchronize this device from its peer"
        case .notAStore(let path, let detail):
            return "cannot open \(path) as a Tandem session store: \(detail)"
        case .sameDeviceID(let id):
            return "the store already has device ID \(id)"
        case .invalidArgument(let detail):
            return detail
        case .logTruncated(let requested, let first):
            return "the log no longer holds sequence \(requested) (it starts at \(first)): read a snapshot of the "
                + "users table, then the log from the snapshot's position"
        }
    }

    package static func storage(_ error: any Error, doing: String) -> SessionStoreError {
        if let error = error as? SessionStoreError { return error }
        if let error = error as? LMDBError { return SessionStoreError(.storage(error, doing: doing)) }
        if let error = error as? CorruptRecordError {
            return SessionStoreError(.corruptRecord(error, location: doing))
        }
        return SessionStoreError(.invalidArgument("\(doing): \(error)"))
    }
}
