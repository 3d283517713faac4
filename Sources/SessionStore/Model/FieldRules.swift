/// The byte-level rules of the session fields, shared by ``Session/validate(statefulFailover:)``, the validating
/// initializers and ``RecordCodec`` (which applies them to decoded bytes before it builds any `String`).
enum FieldRules {
    /// The longest user name, in bytes of UTF-8.
    static let maximumUserNameBytes = 253
    /// The longest access interface name, in bytes of printable ASCII.
    static let maximumAccessInterfaceBytes = 63
    /// The longest portal group name, in bytes of `[A-Za-z0-9._-]`.
    static let maximumPortalGroupBytes = 31
    /// The longest RADIUS Acct-Session-Id, in bytes of UTF-8 (a RADIUS attribute holds at most 253 bytes).
    static let maximumAcctSessionIDBytes = 253
    /// The longest RADIUS Class, in bytes.
    static let maximumClassBytes = 253
    /// The highest VLAN ID (4095 is reserved by IEEE 802.1Q); 0 means untagged.
    static let maximumVLAN: UInt16 = 4094

    /// Checks a user name given as valid UTF-8: 1...253 bytes, no control characters (C0, DEL, C1).
    static func checkUserName(_ bytes: UnsafeBufferPointer<UInt8>, field: String = "userName") throws(InvalidFieldError)
    {
        guard !bytes.isEmpty else {
            throw .empty(field, allowed: "1 to \(maximumUserNameBytes) bytes of UTF-8 without control characters")
        }
        guard bytes.count <= maximumUserNameBytes else {
            throw .tooLong(field, bytes: bytes.count, maximum: maximumUserNameBytes)
        }
        var index = 0
        while index < bytes.count {
            let byte = bytes[index]
            // In valid UTF-8, C0 controls and DEL are single bytes, and the C1 controls U+0080...U+009F are
            // the two-byte sequences C2 80...C2 9F.
            if byte < 0x20 || byte == 0x7F {
                throw .invalidCharacter(
                    field,
                    "the control character \(scalarName(UInt32(byte)))",
                    byteOffset: index,
                    allowed: "control characters are not allowed"
                )
            }
            if byte == 0xC2, index + 1 < bytes.count, bytes[index + 1] < 0xA0 {
                throw .invalidCharacter(
                    field,
                    "the control character \(scalarName(UInt32(bytes[index + 1])))",
                    byteOffset: index,
                    allowed: "control characters are not allowed"
                )
            }
            index += 1
        }
    }

    /// Checks an access interface name: 1...63 bytes of printable ASCII (space to tilde).
    static func checkAccessInterface(_ bytes: UnsafeBufferPointer<UInt8>) throws(InvalidFieldError) {
        let field = "accessInterface"
        guard !bytes.isEmpty else {
            throw .empty(field, allowed: "1 to \(maximumAccessInterfaceBytes) bytes of printable ASCII")
        }
        guard bytes.count <= maximumAccessInterfaceBytes else {
            throw .tooLong(field, bytes: bytes.count, maximum: maximumAccessInterfaceBytes)
        }
        for index in 0..<bytes.count where !(0x20...0x7E).contains(bytes[index]) {
            throw .invalidCharacter(
                field,
                describeByte(bytes[index]),
                byteOffset: index,
                allowed: "only printable ASCII is allowed"
            )
        }
    }

    /// Checks a portal group name: 1...31 bytes of `[A-Za-z0-9._-]`.
    static func checkPortalGroup(_ bytes: UnsafeBufferPointer<UInt8>) throws(InvalidFieldError) {
        let field = "portalGroup"
        let allowed = "letters, digits, '.', '_' and '-'"
        guard !bytes.isEmpty else {
            throw .empty(field, allowed: "1 to \(maximumPortalGroupBytes) bytes of \(allowed)")
        }
        guard bytes.count <= maximumPortalGroupBytes else {
            throw .tooLong(field, bytes: bytes.count, maximum: maximumPortalGroupBytes)
        }
        for index in 0..<bytes.count where !isPortalGroupByte(bytes[index]) {
            throw .invalidCharacter(
                field,
                describeByte(bytes[index]),
                byteOffset: index,
                allowed: "only \(allowed) are allowed"
            )
        }
    }

    /// Checks a VLAN ID: 0 (untagged) or 1...4094.
    static func checkVLAN(_ vlan: UInt16) throws(InvalidFieldError) {
        guard vlan <= maximumVLAN else {
            throw .outOfRange("vlan", value: String(vlan), allowed: "0 for untagged, or 1 to \(maximumVLAN)")
        }
    }

    /// Checks a RADIUS Acct-Session-Id length: at most 253 bytes of UTF-8.
    static func checkAcctSessionID(byteCount: Int) throws(InvalidFieldError) {
        guard byteCount <= maximumAcctSessionIDBytes else {
            throw .tooLong("radius.acctSessionID", bytes: byteCount, maximum: maximumAcctSessionIDBytes)
        }
    }

    /// Checks a RADIUS Class length: at most 253 bytes.
    static func checkClass(byteCount: Int) throws(InvalidFieldError) {
        guard byteCount <= maximumClassBytes else {
            throw .tooLong("radius.classAttribute", bytes: byteCount, maximum: maximumClassBytes)
        }
    }

    /// The longest ACL name, user profile name and VPN instance name, in bytes of printable ASCII.
    static let maximumACLNameBytes = 63
    static let maximumUserProfileBytes = 63
    static let maximumVPNInstanceBytes = 31
    /// The longest RADIUS Filter-Id, in bytes of UTF-8.
    static let maximumFilterIDBytes = 253
    /// The highest ACL number.
    static let maximumACLNumber: UInt32 = 99_999
    /// The shortest realtime accounting interval but 0 (RFC 2869, Acct-Interim-Interval), in seconds.
    static let minimumAccountingInterval: UInt32 = 60

    /// Checks an ACL number: 1...99999.
    static func checkACLNumber(_ number: UInt32) throws(InvalidFieldError) {
        guard (1...maximumACLNumber).contains(number) else {
            throw .outOfRange("authorization.acl", value: String(number), allowed: "1 to \(maximumACLNumber)")
        }
    }

    /// Checks an ACL name: a token (see ``checkToken(_:field:maximum:)``) of at most 63 bytes that starts with a
    /// letter.
    static func checkACLName(_ bytes: UnsafeBufferPointer<UInt8>) throws(InvalidFieldError) {
        let field = "authorization.acl"
        try checkToken(bytes, field: field, maximum: maximumACLNameBytes)
        let first = bytes[0] | 0x20
        guard (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(first) else {
            throw .invalidCharacter(
                field,
                describeByte(bytes[0]),
                byteOffset: 0,
                allowed: "an ACL name starts with a letter"
            )
        }
    }

    /// Checks a name of 1...`maximum` bytes of printable ASCII without spaces.
    static func checkToken(
        _ bytes: UnsafeBufferPointer<UInt8>,
        field: String,
        maximum: Int
    ) throws(InvalidFieldError) {
        guard !bytes.isEmpty else {
            throw .empty(field, allowed: "1 to \(maximum) bytes of printable ASCII without spaces")
        }
        guard bytes.count <= maximum else {
            throw .tooLong(field, bytes: bytes.count, maximum: maximum)
        }
        for index in 0..<bytes.count where !(0x21...0x7E).contains(bytes[index]) {
            throw .invalidCharacter(
                field,
                describeByte(bytes[index]),
                byteOffset: index,
                allowed: "only printable ASCII without spaces is allowed"
            )
        }
    }

    /// Checks a committed access rate: a committed information rate above 0.
    static func checkCAR(_ car: Authorization.CAR, field: String) throws(InvalidFieldError) {
        guard car.cir > 0 else {
            throw .outOfRange(field + ".cir", value: "0", allowed: "a committed information rate above 0 kbit/s")
        }
    }

    /// Checks a realtime accounting interval: 0 for none, or at least 60 seconds.
    static func checkAccountingInterval(_ seconds: UInt32) throws(InvalidFieldError) {
        guard seconds == 0 || seconds >= minimumAccountingInterval else {
            throw .outOfRange(
                "authorization.accountingInterval",
                value: String(seconds),
                allowed: "0 for none, or at least \(minimumAccountingInterval) seconds"
            )
        }
    }

    @inline(__always)
    static func isPortalGroupByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "-"):
            return true
        default:
            return false
        }
    }

    /// `'x'` for printable ASCII, `the byte 0xE9` otherwise.
    private static func describeByte(_ byte: UInt8) -> String {
        if (0x21...0x7E).contains(byte) {
            return "'\(Character(Unicode.Scalar(byte)))'"
        }
        if byte == 0x20 {
            return "a space"
        }
        return "the byte 0x\(hexDigits(UInt32(byte), width: 2))"
    }

    /// `U+0007`.
    private static func scalarName(_ value: UInt32) -> String {
        "U+\(hexDigits(value, width: 4))"
    }

    private static func hexDigits(_ value: UInt32, width: Int) -> String {
        let digits = String(value, radix: 16, uppercase: true)
        return String(repeating: "0", count: max(0, width - digits.count)) + digits
    }
}

extension String {
    /// Runs `body` on the UTF-8 bytes of the string, without copying a native string.
    @inline(__always)
    func withUTF8Bytes<R>(_ body: (UnsafeBufferPointer<UInt8>) -> R) -> R {
        var copy = self
        // `withUTF8` only rewrites `copy` when it is not contiguous UTF-8 already (a bridged string).
        return copy.withUTF8(body)
    }

    /// Applies a field rule to the UTF-8 bytes of the string.
    @inline(__always)
    func checkUTF8(_ rule: (UnsafeBufferPointer<UInt8>) throws(InvalidFieldError) -> Void) throws(InvalidFieldError) {
        let failure: InvalidFieldError? = withUTF8Bytes { bytes in
            do throws(InvalidFieldError) {
                try rule(bytes)
                return nil
            } catch {
                return error
            }
        }
        if let failure {
            throw failure
        }
    }
}
