/// Something that happened to the online users of a device: what a log record holds.
public enum Event: Hashable, Sendable {
    /// A user logged in.
    case login(Session)
    /// A user logged off (R7).
    case logout(Logout)
    /// The device ID changed from one ID to another, which logs every user off (R4).
    case deviceIDChanged(from: DeviceID, to: DeviceID)
    /// Device `to` took over the users of device `from` on promotion, and raised the pair's term to `term`.
    /// From then on `to` is the owner in effect of every session that `from` logged in before `term`
    /// (see ``SessionStore/effectiveOwner(of:)``).
    case takeover(from: DeviceID, to: DeviceID, term: UInt32)
    /// An online session changed: its authorization, its accounting state or its last activity.
    case update(Update)

    /// The kind of an event, also its kind byte in ``RecordCodec``'s format.
    public enum Kind: UInt8, Sendable, CaseIterable {
        /// ``Event/login(_:)``.
        case login = 1
        /// ``Event/logout(_:)``.
        case logout = 2
        /// ``Event/deviceIDChanged(from:to:)``.
        case deviceIDChanged = 3
        /// ``Event/takeover(from:to:term:)``.
        case takeover = 4
        /// ``Event/update(_:)``.
        case update = 5

        /// Looks a kind up by its name (``description``): `login`, `logout`, `device-id-change`, `takeover` or
        /// `update`.
        ///
        /// - Parameter name: The name.
        public init?(name: some StringProtocol) {
            switch name {
            case "login": self = .login
            case "logout": self = .logout
            case "device-id-change": self = .deviceIDChanged
            case "takeover": self = .takeover
            case "update": self = .update
            default: return nil
            }
        }
    }

    /// The kind of the event.
    @inlinable
    public var kind: Kind {
        switch self {
        case .login: .login
        case .logout: .logout
        case .deviceIDChanged: .deviceIDChanged
        case .takeover: .takeover
        case .update: .update
        }
    }
}

extension Event.Kind: CustomStringConvertible {
    /// The name of the kind: `login`, `logout`, `device-id-change`, `takeover` or `update`.
    public var description: String {
        switch self {
        case .login: "login"
        case .logout: "logout"
        case .deviceIDChanged: "device-id-change"
        case .takeover: "takeover"
        case .update: "update"
        }
    }
}
