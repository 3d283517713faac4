/// The name of a portal group: 1...31 bytes of letters, digits, `.`, `_` and `-`.
///
/// The portal service backup interfaces of both devices are in the same portal group (R5); negotiation refuses a
/// peer of another group, and every session carries its group.
///
/// ```swift
/// let group = try PortalGroup("campus-1")
/// let literal: PortalGroup = "campus-1"
/// ```
public struct PortalGroup: Hashable, Sendable, ExpressibleByStringLiteral {
    /// The name, 1...31 bytes of `[A-Za-z0-9._-]`.
    public let name: String

    /// Creates a portal group, checking its name.
    ///
    /// - Parameter name: 1...31 bytes of `[A-Za-z0-9._-]`.
    /// - Throws: ``InvalidFieldError`` for `portalGroup` when the name is empty, too long, or has another character.
    public init(_ name: String) throws(InvalidFieldError) {
        try name.checkUTF8(FieldRules.checkPortalGroup)
        self.name = name
    }

    /// Creates a portal group from a literal; an invalid name is a programming error and traps.
    ///
    /// - Parameter value: 1...31 bytes of `[A-Za-z0-9._-]`.
    public init(stringLiteral value: String) {
        do {
            try self.init(value)
        } catch {
            preconditionFailure(error.description)
        }
    }

    /// Creates a portal group from a name already checked.
    init(uncheckedName name: String) {
        self.name = name
    }
}

extension PortalGroup: CustomStringConvertible {
    /// The name.
    public var description: String {
        name
    }
}

extension PortalGroup: Codable {
    /// Decodes a portal group from its name, checking it.
    ///
    /// - Parameter decoder: The decoder to read from.
    /// - Throws: `DecodingError.dataCorrupted` when the name breaks the rules.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let name = try container.decode(String.self)
        do {
            try self.init(name)
        } catch {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: error.description)
        }
    }

    /// Encodes the portal group as its name.
    ///
    /// - Parameter encoder: The encoder to write to.
    /// - Throws: What the encoder throws.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(name)
    }
}
