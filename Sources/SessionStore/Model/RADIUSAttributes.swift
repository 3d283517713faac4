/// The RADIUS attributes that the device taking over a user needs to go on with its accounting (R9).
public struct RADIUSAttributes: Hashable, Sendable, Codable {
    /// The NAS IP address for the user's RADIUS packets: the backup source IP configured for outgoing RADIUS packets,
    /// so that the server's replies reach whichever device holds the user (R9). `nil` when none is configured.
    public var nasIP: IPAddress?
    /// The Acct-Session-Id (RADIUS attribute 44) of the user's accounting session: at most 253 bytes of UTF-8.
    public var acctSessionID: String
    /// The Class attribute (RADIUS attribute 25) the server sent in its Access-Accept, echoed in accounting
    /// requests: at most 253 bytes.
    public var classAttribute: [UInt8]

    /// Creates a set of RADIUS attributes; ``Session/validate(statefulFailover:)`` checks their lengths.
    ///
    /// - Parameters:
    ///   - nasIP: The NAS IP address (backup source IP), or `nil`.
    ///   - acctSessionID: The Acct-Session-Id, at most 253 bytes of UTF-8.
    ///   - classAttribute: The Class attribute, at most 253 bytes.
    public init(nasIP: IPAddress? = nil, acctSessionID: String = "", classAttribute: [UInt8] = []) {
        self.nasIP = nasIP
        self.acctSessionID = acctSessionID
        self.classAttribute = classAttribute
    }
}
