/// A user logged off, on either device (R7): the event that deletes the session on both.
public struct Logout: Hashable, Sendable, Codable {
    /// The IP address of the session that ends.
    public var ip: IPAddress
    /// The MAC address of the session that ends.
    public var mac: MACAddress
    /// The user name of the session that ends.
    public var userName: String
    /// The device that owned the session.
    public var owner: DeviceID
    /// The generation of the session that ends; a logout of an older generation than the stored session's changes
    /// nothing.
    public var generation: Generation
    /// Why the user was logged off.
    public var reason: LogoutReason

    /// Creates a logout.
    ///
    /// - Parameters:
    ///   - ip: The IP address of the session that ends.
    ///   - mac: Its MAC address.
    ///   - userName: Its user name.
    ///   - owner: The device that owned it.
    ///   - generation: Its generation.
    ///   - reason: Why the user was logged off.
    public init(
        ip: IPAddress,
        mac: MACAddress,
        userName: String,
        owner: DeviceID,
        generation: Generation,
        reason: LogoutReason
    ) {
        self.ip = ip
        self.mac = mac
        self.userName = userName
        self.owner = owner
        self.generation = generation
        self.reason = reason
    }

    /// Creates the logout that ends `session`.
    ///
    /// - Parameters:
    ///   - session: The session that ends.
    ///   - reason: Why the user was logged off.
    public init(ending session: Session, reason: LogoutReason) {
        self.init(
            ip: session.ip,
            mac: session.mac,
            userName: session.userName,
            owner: session.owner,
            generation: session.generation,
            reason: reason
        )
    }
}
