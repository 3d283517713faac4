/// Why a portal user was logged off (R7). The reason is kept in the log.
public enum LogoutReason: UInt8, Sendable, CaseIterable {
    /// The user logged off.
    case user = 1
    /// An administrator deleted the user (`portal delete-user`).
    case deleteUser = 2
    /// An administrator cut the user's connection (`cut connection`).
    case cutConnection = 3
    /// The portal server logged the user off.
    case portalServer = 4
    /// The user was idle for longer than the idle timeout.
    case idleTimeout = 5
    /// The session lasted longer than the session timeout.
    case sessionTimeout = 6
    /// The device ID changed, which logs every user off (R4).
    case deviceIDChange = 7
    /// The address logged in again with a newer session, on this device or its peer, which replaced this one.
    case superseded = 8
    /// A resynchronization replaced this device's copy of its peer's users; the peer's own log says nothing
    /// of it.
    case resync = 9
    /// The RADIUS server sent a Disconnect-Message (RFC 5176), to either device of the pair.
    case disconnectMessage = 10

    /// Looks a reason up by its name (``description``), such as `idle-timeout`.
    ///
    /// - Parameter name: The name.
    public init?(name: some StringProtocol) {
        guard let reason = LogoutReason.allCases.first(where: { $0.description == name }) else {
            return nil
        }
        self = reason
    }
}

extension LogoutReason: CustomStringConvertible {
    /// The short name of the reason: `user`, `delete-user`, `cut-connection`, `portal-server`, `idle-timeout`,
    /// `session-timeout`, `device-id-change`, `superseded`, `resync` or `disconnect-message`.
    public var description: String {
        switch self {
        case .user: "user"
        case .deleteUser: "delete-user"
        case .cutConnection: "cut-connection"
        case .portalServer: "portal-server"
        case .idleTimeout: "idle-timeout"
        case .sessionTimeout: "session-timeout"
        case .deviceIDChange: "device-id-change"
        case .superseded: "superseded"
        case .resync: "resync"
        case .disconnectMessage: "disconnect-message"
        }
    }
}

extension LogoutReason: Codable {
    /// Decodes a reason from its name (see ``init(name:)``).
    ///
    /// - Parameter decoder: The decoder to read from.
    /// - Throws: `DecodingError.dataCorrupted` for an unknown name.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let name = try container.decode(String.self)
        guard let reason = LogoutReason(name: name) else {
            let names = LogoutReason.allCases.map(\.description).joined(separator: ", ")
            throw DecodingError.dataCorruptedError(
                in: container,
                debugDescription: "'\(name)' is not a logout reason (\(names))"
            )
        }
        self = reason
    }

    /// Encodes the reason as its name (``description``).
    ///
    /// - Parameter encoder: The encoder to write to.
    /// - Throws: What the encoder throws.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}
