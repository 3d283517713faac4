/// A value that breaks one of the rules of the session model.
///
/// Thrown by the validating initializers (``DeviceID/init(_:)``, ``PortalGroup/init(_:)``) and by
/// ``Session/validate(statefulFailover:)``. The ``field`` names the offending field (with a dotted path for nested
/// fields, such as `radius.acctSessionID`), and ``description`` says what is wrong and what is allowed, in words
/// an operator can act on:
///
/// ```
/// userName: 300 bytes is too long (at most 253)
/// ```
public struct InvalidFieldError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The field that breaks a rule, such as `userName`, `vlan` or `radius.classAttribute`.
    public let field: String

    private let code: Code

    private enum Code: Hashable, Sendable {
        case empty(allowed: String)
        case tooLong(bytes: Int, maximum: Int)
        case invalidCharacter(String, byteOffset: Int, allowed: String)
        case outOfRange(value: String, allowed: String)
        case reDHCPInStatefulFailover
    }

    private init(field: String, code: Code) {
        self.field = field
        self.code = code
    }

    /// What is wrong and what is allowed, prefixed by the field name.
    public var description: String {
        "\(field): \(detail)"
    }

    /// What is wrong and what is allowed, without the field name.
    var detail: String {
        switch code {
        case .empty(let allowed):
            return "is empty (\(allowed))"
        case .tooLong(let bytes, let maximum):
            return "\(bytes) bytes is too long (at most \(maximum))"
        case .invalidCharacter(let character, let byteOffset, let allowed):
            return "contains \(character) at byte \(byteOffset) (\(allowed))"
        case .outOfRange(let value, let allowed):
            return "\(value) is out of range (\(allowed))"
        case .reDHCPInStatefulFailover:
            return
                "re-DHCP portal authentication is not supported in stateful failover mode (R10); "
                + "use direct or cross-subnet authentication on the portal service backup interface"
        }
    }

    static func empty(_ field: String, allowed: String) -> InvalidFieldError {
        InvalidFieldError(field: field, code: .empty(allowed: allowed))
    }

    static func tooLong(_ field: String, bytes: Int, maximum: Int) -> InvalidFieldError {
        InvalidFieldError(field: field, code: .tooLong(bytes: bytes, maximum: maximum))
    }

    static func invalidCharacter(
        _ field: String,
        _ character: String,
        byteOffset: Int,
        allowed: String
    ) -> InvalidFieldError {
        InvalidFieldError(field: field, code: .invalidCharacter(character, byteOffset: byteOffset, allowed: allowed))
    }

    static func outOfRange(_ field: String, value: String, allowed: String) -> InvalidFieldError {
        InvalidFieldError(field: field, code: .outOfRange(value: value, allowed: allowed))
    }

    static var reDHCPInStatefulFailover: InvalidFieldError {
        InvalidFieldError(field: "authenticationMode", code: .reDHCPInStatefulFailover)
    }
}
