/// An online portal user: the record the store keeps for each user, keyed by ``ip``.
///
/// A session is created by the controller at login and handed to the store, which assigns its ``generation``.
/// The initializer does not check the fields; ``validate(statefulFailover:)`` does, and the store calls it before
/// it accepts a session. Decoding a session with `Codable` checks what each field's type checks (addresses, device
/// ID, portal group), not the session's rules: validate a decoded session too.
public struct Session: Hashable, Sendable, Codable {
    /// The user's IP address: the key of the session.
    public var ip: IPAddress
    /// The MAC address of the user's device.
    public var mac: MACAddress
    /// The user name: 1...253 bytes of UTF-8 without control characters.
    public var userName: String
    /// The VLAN the user is on: 0 for untagged, otherwise 1...4094.
    public var vlan: UInt16
    /// The interface the user reached the device through, such as `GigabitEthernet1/0/1`: 1...63 bytes of printable
    /// ASCII.
    public var accessInterface: String
    /// The portal group of the interface (R5).
    public var portalGroup: PortalGroup
    /// How the user was authenticated.
    public var authenticationMode: AuthenticationMode
    /// The device that owns the session: the one the user logged in on (R1).
    public var owner: DeviceID
    /// When the user logged in.
    public var loginTime: Timestamp
    /// The longest the session may last, in seconds from ``loginTime``; 0 for no limit.
    public var sessionTimeout: UInt32
    /// The longest the user may stay idle, in seconds; 0 for no limit.
    public var idleTimeout: UInt32
    /// The RADIUS attributes the owner needs to go on with accounting (R9).
    public var radius: RADIUSAttributes
    /// What the user is authorized for: ACL, user profile, CAR, VPN instance, Filter-Id, accounting interval.
    /// A change of authorization or a re-authentication changes it (``SessionUpdate``).
    public var authorization: Authorization {
        get { parts?.value.authorization ?? .none }
        set { changeParts { $0.authorization = newValue } }
    }
    /// Where accounting stands: the counters of the last accounting report and its time. An accounting interim
    /// report changes it (``SessionUpdate``).
    public var accounting: AccountingState {
        get { parts?.value.accounting ?? .none }
        set { changeParts { $0.accounting = newValue } }
    }
    /// When the user was last seen active; `nil` when not reported since login. An idle timeout runs from here,
    /// on whichever device holds the user.
    public var lastActivity: Timestamp? {
        get { parts?.value.lastActivity }
        set { changeParts { $0.lastActivity = newValue } }
    }
    /// Which update last set each part of the session; assigned by the store, callers leave it ``Revisions/zero``.
    public var revisions: Revisions {
        get { parts?.value.revisions ?? .zero }
        set { changeParts { $0.revisions = newValue } }
    }
    /// The parts above, boxed: most sessions have none, and a session is copied as it moves through the store
    /// (a million at a time in a snapshot), so they cost one pointer until an update sets one. `nil` exactly
    /// when every part is empty.
    private var parts: PartsBox?

    /// Whether any part that updates change is set (a session as a plain login left it has none).
    var hasParts: Bool { parts != nil }
    /// The parts that updates change, together; `nil` when none is set.
    var setParts: Parts? { parts?.value }
    /// The version of the session, assigned by the store at login; callers leave it ``Generation/zero``.
    public var generation: Generation

    /// Creates a session; ``validate(statefulFailover:)`` checks it.
    ///
    /// - Parameters:
    ///   - ip: The user's IP address.
    ///   - mac: The MAC address of the user's device.
    ///   - userName: The user name, 1...253 bytes of UTF-8 without control characters.
    ///   - vlan: The VLAN, 0 for untagged or 1...4094.
    ///   - accessInterface: The access interface, 1...63 bytes of printable ASCII.
    ///   - portalGroup: The portal group.
    ///   - authenticationMode: How the user was authenticated.
    ///   - owner: The device the user logged in on.
    ///   - loginTime: When the user logged in; now by default.
    ///   - sessionTimeout: The session timeout in seconds, 0 for none.
    ///   - idleTimeout: The idle timeout in seconds, 0 for none.
    ///   - radius: The RADIUS attributes.
    ///   - authorization: What the user is authorized for.
    ///   - accounting: Where accounting stands; nothing reported by default.
    ///   - lastActivity: When the user was last seen active; `nil` by default.
    ///   - generation: Leave it ``Generation/zero``; the store assigns it.
    ///   - revisions: Leave it ``Revisions/zero``; the store assigns it.
    public init(
        ip: IPAddress,
        mac: MACAddress,
        userName: String,
        vlan: UInt16 = 0,
        accessInterface: String,
        portalGroup: PortalGroup,
        authenticationMode: AuthenticationMode = .direct,
        owner: DeviceID,
        loginTime: Timestamp = .now,
        sessionTimeout: UInt32 = 0,
        idleTimeout: UInt32 = 0,
        radius: RADIUSAttributes = .init(),
        authorization: Authorization = .none,
        accounting: AccountingState = .none,
        lastActivity: Timestamp? = nil,
        generation: Generation = .zero,
        revisions: Revisions = .zero
    ) {
        self.ip = ip
        self.mac = mac
        self.userName = userName
        self.vlan = vlan
        self.accessInterface = accessInterface
        self.portalGroup = portalGroup
        self.authenticationMode = authenticationMode
        self.owner = owner
        self.loginTime = loginTime
        self.sessionTimeout = sessionTimeout
        self.idleTimeout = idleTimeout
        self.radius = radius
        self.generation = generation
        self.parts = PartsBox.holding(
            Parts(
                authorization: authorization,
                accounting: accounting,
                lastActivity: lastActivity,
                revisions: revisions
            )
        )
    }

    /// Changes the boxed parts: a new box each time (sessions share boxes as values share storage). Change
    /// several parts in one call: each call makes one box.
    /// Sets the boxed parts as a decode read them (`nil`: none).
    mutating func adoptParts(_ box: PartsBox?) { parts = box }

    mutating func changeParts(_ change: (inout Parts) -> Void) {
        var value = parts?.value ?? .none
        change(&value)
        parts = PartsBox.holding(value)
    }

    /// When the session timeout ends the session: ``loginTime`` plus ``sessionTimeout``, or `nil` when the session
    /// has no timeout.
    @inlinable
    public var deadline: Timestamp? { Self.deadline(loginTime: loginTime, sessionTimeout: sessionTimeout) }

    /// The ``deadline`` of a session logged in at `loginTime` with `sessionTimeout`, for readers of its stored
    /// fields that do not build a session.
    @inlinable
    static func deadline(loginTime: Timestamp, sessionTimeout: UInt32) -> Timestamp? {
        sessionTimeout > 0 ? loginTime.adding(seconds: Int64(sessionTimeout)) : nil
    }

    /// Checks every field against the rules of the model.
    ///
    /// The rules: ``userName`` 1...253 bytes without control characters; ``vlan`` 0 or 1...4094;
    /// ``accessInterface`` 1...63 bytes of printable ASCII; `radius.acctSessionID` and `radius.classAttribute` at
    /// most 253 bytes each; and, while stateful failover is configured, an ``authenticationMode`` other than
    /// ``AuthenticationMode/reDHCP`` (R10). ``portalGroup`` and ``owner`` are checked when they are created.
    ///
    /// - Parameter statefulFailover: Whether the device runs in stateful failover mode, where re-DHCP authentication
    ///   is refused (R10).
    /// - Throws: ``InvalidFieldError`` naming the first field that breaks a rule.
    public func validate(statefulFailover: Bool) throws(InvalidFieldError) {
        try validateFormat()
        if statefulFailover, authenticationMode == .reDHCP {
            throw .reDHCPInStatefulFailover
        }
    }

    /// Checks the rules that hold whatever the configuration (every rule but R10).
    func validateFormat() throws(InvalidFieldError) {
        try userName.checkUTF8 { (bytes) throws(InvalidFieldError) in try FieldRules.checkUserName(bytes) }
        try FieldRules.checkVLAN(vlan)
        try accessInterface.checkUTF8(FieldRules.checkAccessInterface)
        try FieldRules.checkAcctSessionID(byteCount: radius.acctSessionID.utf8.count)
        try FieldRules.checkClass(byteCount: radius.classAttribute.count)
        try authorization.validate()
    }

    /// Which update last set each part of a session that updates replace.
    ///
    /// A part is replaced only by an update of a higher revision, so that a duplicated, reordered or replayed
    /// update changes nothing, and both devices keep the same parts whatever order they hear of updates in.
    public struct Revisions: Hashable, Sendable, Codable {
        /// The update that last set ``Session/authorization`` and the session and idle timeouts.
        public var authorization: Revision
        /// The update that last set ``Session/accounting``.
        public var accounting: Revision
        /// The update that last set ``Session/lastActivity``.
        public var activity: Revision

        /// Creates revisions.
        public init(authorization: Revision = .zero, accounting: Revision = .zero, activity: Revision = .zero) {
            self.authorization = authorization
            self.accounting = accounting
            self.activity = activity
        }

        /// No part updated since login.
        public static let zero = Revisions()
    }
}

extension Session {
    private enum CodingKeys: String, CodingKey {
        case ip, mac, userName, vlan, accessInterface, portalGroup, authenticationMode, owner, loginTime
        case sessionTimeout, idleTimeout, radius, authorization, accounting, lastActivity, generation, revisions
    }

    /// Encodes every field, the parts updates change included.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(ip, forKey: .ip)
        try container.encode(mac, forKey: .mac)
        try container.encode(userName, forKey: .userName)
        try container.encode(vlan, forKey: .vlan)
        try container.encode(accessInterface, forKey: .accessInterface)
        try container.encode(portalGroup, forKey: .portalGroup)
        try container.encode(authenticationMode, forKey: .authenticationMode)
        try container.encode(owner, forKey: .owner)
        try container.encode(loginTime, forKey: .loginTime)
        try container.encode(sessionTimeout, forKey: .sessionTimeout)
        try container.encode(idleTimeout, forKey: .idleTimeout)
        try container.encode(radius, forKey: .radius)
        try container.encode(authorization, forKey: .authorization)
        try container.encode(accounting, forKey: .accounting)
        try container.encodeIfPresent(lastActivity, forKey: .lastActivity)
        try container.encode(generation, forKey: .generation)
        try container.encode(revisions, forKey: .revisions)
    }

    /// Decodes a session; the parts added by updates (authorization, accounting, last activity, revisions) may be
    /// missing, as in the JSON of an older version, and are then as at a login without them.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init(
            ip: try container.decode(IPAddress.self, forKey: .ip),
            mac: try container.decode(MACAddress.self, forKey: .mac),
            userName: try container.decode(String.self, forKey: .userName),
            vlan: try container.decode(UInt16.self, forKey: .vlan),
            accessInterface: try container.decode(String.self, forKey: .accessInterface),
            portalGroup: try container.decode(PortalGroup.self, forKey: .portalGroup),
            authenticationMode: try container.decode(AuthenticationMode.self, forKey: .authenticationMode),
            owner: try container.decode(DeviceID.self, forKey: .owner),
            loginTime: try container.decode(Timestamp.self, forKey: .loginTime),
            sessionTimeout: try container.decode(UInt32.self, forKey: .sessionTimeout),
            idleTimeout: try container.decode(UInt32.self, forKey: .idleTimeout),
            radius: try container.decode(RADIUSAttributes.self, forKey: .radius),
            authorization: try container.decodeIfPresent(Authorization.self, forKey: .authorization) ?? .none,
            accounting: try container.decodeIfPresent(AccountingState.self, forKey: .accounting) ?? .none,
            lastActivity: try container.decodeIfPresent(Timestamp.self, forKey: .lastActivity),
            generation: try container.decode(Generation.self, forKey: .generation),
            revisions: try container.decodeIfPresent(Revisions.self, forKey: .revisions) ?? .zero
        )
    }
}

/// The parts of a session that updates change.
struct Parts: Hashable, Sendable {
    var authorization: Authorization
    var accounting: AccountingState
    var lastActivity: Timestamp?
    var revisions: Session.Revisions

    static let none = Parts(authorization: .none, accounting: .none, lastActivity: nil, revisions: .zero)
}

/// The box of a session's parts; never changed once made.
final class PartsBox: Hashable, Sendable {
    let value: Parts

    private init(_ value: Parts) { self.value = value }

    /// A box of `value`; `nil` for no parts.
    static func holding(_ value: Parts) -> PartsBox? { value == .none ? nil : PartsBox(value) }

    static func == (a: PartsBox, b: PartsBox) -> Bool { a === b || a.value == b.value }

    func hash(into hasher: inout Hasher) { hasher.combine(value) }
}
