/// Why an online session changed (the reason is kept in the log).
public enum UpdateReason: UInt8, Sendable, CaseIterable, Codable {
    /// A RADIUS Change-of-Authorization (RFC 5176) changed the user's authorization or timeouts.
    case changeOfAuthorization = 1
    /// The user was authenticated again, and the server granted a new authorization.
    case reauthentication = 2
    /// The device sent an accounting interim report (Acct-Status-Type Interim-Update).
    case accountingInterim = 3
    /// The user was seen active.
    case activity = 4

    /// Looks a reason up by its name (``description``), such as `coa`.
    public init?(name: some StringProtocol) {
        guard let reason = UpdateReason.allCases.first(where: { $0.description == name }) else { return nil }
        self = reason
    }
}

extension UpdateReason: CustomStringConvertible {
    /// The short name of the reason: `coa`, `reauthentication`, `accounting-interim` or `activity`.
    public var description: String {
        switch self {
        case .changeOfAuthorization: "coa"
        case .reauthentication: "reauthentication"
        case .accountingInterim: "accounting-interim"
        case .activity: "activity"
        }
    }
}

/// A change to an online session that a controller asks the store for: what ``SessionStore/update(_:)`` takes.
///
/// Each field left `nil` stays as it is. The store logs the change as an ``Update``, which carries each part it
/// changes whole (the authorization with both timeouts, the accounting state, the last activity), replicates it
/// and replays it like any event. Use the named constructors for the uses the store knows of:
///
/// ```swift
/// // A RADIUS CoA moved the user to ACL 3001 and a 10 Mbit/s downstream limit.
/// var granted = session.authorization
/// granted.acl = .number(3001)
/// granted.outboundCAR = .init(cir: 10_000)
/// try await store.update(.changeOfAuthorization(session.ip, granted))
///
/// // An accounting round: one batch, one commit.
/// let reports = counters.map { SessionUpdate.accountingInterim($0.ip, $0.state, lastActivity: $0.seen) }
/// let results = try await store.update(contentsOf: reports)
/// ```
public struct SessionUpdate: Hashable, Sendable {
    /// The address of the session to change.
    public var ip: IPAddress
    /// Why it changes.
    public var reason: UpdateReason
    /// The generation of the session the change is meant for; `nil`: whichever session is online at ``ip``. A
    /// change meant for a session that has ended is refused, even when another session holds the address now.
    public var generation: Generation?
    /// The new authorization.
    public var authorization: Authorization?
    /// The new session timeout, in seconds from the login time; 0 for none.
    public var sessionTimeout: UInt32?
    /// The new idle timeout, in seconds; 0 for none.
    public var idleTimeout: UInt32?
    /// The new accounting state.
    public var accounting: AccountingState?
    /// When the user was last seen active.
    public var lastActivity: Timestamp?

    /// Creates a change; at least one of the fields after `generation` must be set.
    public init(
        ip: IPAddress,
        reason: UpdateReason,
        generation: Generation? = nil,
        authorization: Authorization? = nil,
        sessionTimeout: UInt32? = nil,
        idleTimeout: UInt32? = nil,
        accounting: AccountingState? = nil,
        lastActivity: Timestamp? = nil
    ) {
        self.ip = ip
        self.reason = reason
        self.generation = generation
        self.authorization = authorization
        self.sessionTimeout = sessionTimeout
        self.idleTimeout = idleTimeout
        self.accounting = accounting
        self.lastActivity = lastActivity
    }

    /// A RADIUS Change-of-Authorization (RFC 5176): a new authorization, and new timeouts when it sets them.
    public static func changeOfAuthorization(
        _ ip: IPAddress,
        _ authorization: Authorization?,
        sessionTimeout: UInt32? = nil,
        idleTimeout: UInt32? = nil,
        generation: Generation? = nil
    ) -> SessionUpdate {
        SessionUpdate(
            ip: ip,
            reason: .changeOfAuthorization,
            generation: generation,
            authorization: authorization,
            sessionTimeout: sessionTimeout,
            idleTimeout: idleTimeout
        )
    }

    /// A re-authentication: the authorization the server granted this time, and its timeouts.
    public static func reauthentication(
        _ ip: IPAddress,
        _ authorization: Authorization,
        sessionTimeout: UInt32? = nil,
        idleTimeout: UInt32? = nil,
        generation: Generation? = nil
    ) -> SessionUpdate {
        SessionUpdate(
            ip: ip,
            reason: .reauthentication,
            generation: generation,
            authorization: authorization,
            sessionTimeout: sessionTimeout,
            idleTimeout: idleTimeout
        )
    }

    /// An accounting interim report: the counters sent, and when the user was last active if known.
    public static func accountingInterim(
        _ ip: IPAddress,
        _ accounting: AccountingState,
        lastActivity: Timestamp? = nil,
        generation: Generation? = nil
    ) -> SessionUpdate {
        SessionUpdate(
            ip: ip,
            reason: .accountingInterim,
            generation: generation,
            accounting: accounting,
            lastActivity: lastActivity
        )
    }

    /// Activity: the user was seen at `time`.
    public static func activity(_ ip: IPAddress, at time: Timestamp, generation: Generation? = nil) -> SessionUpdate {
        SessionUpdate(ip: ip, reason: .activity, generation: generation, lastActivity: time)
    }

    /// Whether the change sets the authorization part (the authorization or either timeout).
    var changesAuthorization: Bool { authorization != nil || sessionTimeout != nil || idleTimeout != nil }

    /// Whether the change sets anything.
    var changesSomething: Bool { changesAuthorization || accounting != nil || lastActivity != nil }
}

/// A logged change of an online session: an ``Event/update(_:)``.
///
/// It names the session it changes by address, owner and generation, so that it never changes a later session
/// at the same address, and carries each part it changes whole, with the ``revision`` that orders it against
/// other updates of that part.
public struct Update: Hashable, Sendable, Codable {
    /// The session's address.
    public var ip: IPAddress
    /// The device the session was logged in on.
    public var owner: DeviceID
    /// The session's generation.
    public var generation: Generation
    /// The version of the parts this update sets.
    public var revision: Revision
    /// Why the session changed.
    public var reason: UpdateReason
    /// The authorization part, whole: the authorization and both timeouts; `nil` when unchanged.
    public var authorization: AuthorizationPart?
    /// The accounting state; `nil` when unchanged.
    public var accounting: AccountingState?
    /// The last activity; `nil` when unchanged.
    public var lastActivity: Timestamp?

    /// The authorization part of a session: what a change of authorization or a re-authentication replaces.
    public struct AuthorizationPart: Hashable, Sendable, Codable {
        public var authorization: Authorization
        public var sessionTimeout: UInt32
        public var idleTimeout: UInt32

        public init(authorization: Authorization, sessionTimeout: UInt32, idleTimeout: UInt32) {
            self.authorization = authorization
            self.sessionTimeout = sessionTimeout
            self.idleTimeout = idleTimeout
        }
    }

    /// Creates an update.
    public init(
        ip: IPAddress,
        owner: DeviceID,
        generation: Generation,
        revision: Revision,
        reason: UpdateReason,
        authorization: AuthorizationPart? = nil,
        accounting: AccountingState? = nil,
        lastActivity: Timestamp? = nil
    ) {
        self.ip = ip
        self.owner = owner
        self.generation = generation
        self.revision = revision
        self.reason = reason
        self.authorization = authorization
        self.accounting = accounting
        self.lastActivity = lastActivity
    }

    /// The names of the parts the update sets, such as `["authorization", "accounting"]`.
    public var parts: [String] {
        var names: [String] = []
        if authorization != nil { names.append("authorization") }
        if accounting != nil { names.append("accounting") }
        if lastActivity != nil { names.append("activity") }
        return names
    }

    /// `session` with the parts of this update whose revision is higher than the session's; the session itself
    /// when none is.
    public func applied(to session: Session) -> Session {
        let revisions = session.revisions
        let newAuthorization = authorization.flatMap { revision > revisions.authorization ? $0 : nil }
        let newAccounting = accounting.flatMap { revision > revisions.accounting ? $0 : nil }
        let newActivity = lastActivity.flatMap { revision > revisions.activity ? $0 : nil }
        guard newAuthorization != nil || newAccounting != nil || newActivity != nil else { return session }
        var updated = session
        if let newAuthorization {
            updated.sessionTimeout = newAuthorization.sessionTimeout
            updated.idleTimeout = newAuthorization.idleTimeout
        }
        updated.changeParts { parts in
            if let newAuthorization {
                parts.authorization = newAuthorization.authorization
                parts.revisions.authorization = revision
            }
            if let newAccounting {
                parts.accounting = newAccounting
                parts.revisions.accounting = revision
            }
            if let newActivity {
                parts.lastActivity = newActivity
                parts.revisions.activity = revision
            }
        }
        return updated
    }
}

/// An update of one of this device's users that the peer made: what ``SessionStore/peerUpdates`` carries.
public struct PeerUpdate: Hashable, Sendable {
    /// The session as it is after the update.
    public var session: Session
    /// Why it changed.
    public var reason: UpdateReason

    public init(session: Session, reason: UpdateReason) {
        self.session = session
        self.reason = reason
    }
}
