/// How a portal user was authenticated, in the terms of H3C's `portal enable method`.
public enum AuthenticationMode: UInt8, Sendable, CaseIterable {
    /// Direct authentication: the user's address is assigned before authentication and does not change
    /// (H3C `direct`).
    case direct = 1
    /// Re-DHCP authentication: the user gets a private address before authentication and a public one after it
    /// (H3C `redhcp`). Not supported in stateful failover mode (R10).
    case reDHCP = 2
    /// Cross-subnet (layer 3) authentication: the user is behind a router (H3C `layer3`).
    case crossSubnet = 3

    /// Looks a mode up by its name: the H3C keyword (`direct`, `redhcp`, `layer3`) or `re-dhcp` / `cross-subnet`.
    ///
    /// - Parameter name: The name, in lowercase.
    public init?(name: some StringProtocol) {
        switch name {
        case "direct": self = .direct
        case "redhcp", "re-dhcp": self = .reDHCP
        case "layer3", "cross-subnet": self = .crossSubnet
        default: return nil
        }
    }
}

extension AuthenticationMode: CustomStringConvertible {
    /// The H3C keyword of the mode: `direct`, `redhcp` or `layer3`.
    public var description: String {
        switch self {
        case .direct: "direct"
        case .reDHCP: "redhcp"
        case .crossSubnet: "layer3"
        }
    }
}

extension AuthenticationMode: Codable {
    /// Decodes a mode from its name (see ``init(name:)``).
    ///
    /// - Parameter decoder: The decoder to read from.
    /// - Throws: `DecodingError.dataCorrupted` for an unknown name.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let name = try container.decode(String.self)
        guard let mode = AuthenticationMode(name: name) else {
            throw DecodingError.dataCorruptedError(
                in: container,
                debugDescription: "'\(name)' is not an authentication mode (direct, redhcp, layer3)"
            )
        }
        self = mode
    }

    /// Encodes the mode as its name (``description``).
    ///
    /// - Parameter encoder: The encoder to write to.
    /// - Throws: What the encoder throws.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}
