/// What the RADIUS server or local AAA authorized a user for: the policy the device that holds the user installs,
/// and must install again when it takes the user over.
///
/// Every attribute is optional: an attribute the server did not send stays `nil`. The session timeout and idle
/// timeout are fields of ``Session`` itself; a change of authorization (``SessionUpdate``) may change them too.
public struct Authorization: Hashable, Sendable, Codable {
    /// The ACL applied to the user's traffic, by number or by name.
    public var acl: ACL?
    /// The user profile (user group) the user is in.
    public var userProfile: String?
    /// The rate limit of the user's upstream traffic.
    public var inboundCAR: CAR?
    /// The rate limit of the user's downstream traffic.
    public var outboundCAR: CAR?
    /// The VPN instance the user's traffic is forwarded in.
    public var vpnInstance: String?
    /// The RADIUS Filter-Id (attribute 11).
    public var filterID: String?
    /// The realtime accounting interval (RADIUS Acct-Interim-Interval), in seconds; 0 for none.
    public var accountingInterval: UInt32

    /// Creates an authorization; ``Session/validate(statefulFailover:)`` and the store's update check it.
    public init(
        acl: ACL? = nil,
        userProfile: String? = nil,
        inboundCAR: CAR? = nil,
        outboundCAR: CAR? = nil,
        vpnInstance: String? = nil,
        filterID: String? = nil,
        accountingInterval: UInt32 = 0
    ) {
        self.acl = acl
        self.userProfile = userProfile
        self.inboundCAR = inboundCAR
        self.outboundCAR = outboundCAR
        self.vpnInstance = vpnInstance
        self.filterID = filterID
        self.accountingInterval = accountingInterval
    }

    /// No attribute at all: what a session holds when its login carried none.
    public static let none = Authorization()

    /// Checks every attribute against its rule.
    ///
    /// The rules: an ACL number 1...99999, or an ACL name of 1...63 bytes of printable ASCII without spaces
    /// that starts with a letter; ``userProfile`` 1...63 and ``vpnInstance`` 1...31 bytes of printable ASCII
    /// without spaces; ``filterID`` 1...253 bytes of UTF-8 without control characters; a CAR's committed
    /// information rate above 0; ``accountingInterval`` 0 or at least 60 seconds (RFC 2869).
    ///
    /// - Throws: ``InvalidFieldError`` naming the first attribute that breaks a rule, such as
    ///   `authorization.vpnInstance`.
    public func validate() throws(InvalidFieldError) {
        switch acl {
        case .number(let number): try FieldRules.checkACLNumber(number)
        case .name(let name): try name.checkUTF8(FieldRules.checkACLName)
        case nil: break
        }
        if let userProfile {
            try userProfile.checkUTF8 { (bytes) throws(InvalidFieldError) in
                try FieldRules.checkToken(
                    bytes,
                    field: "authorization.userProfile",
                    maximum: FieldRules.maximumUserProfileBytes
                )
            }
        }
        if let inboundCAR { try FieldRules.checkCAR(inboundCAR, field: "authorization.inboundCAR") }
        if let outboundCAR { try FieldRules.checkCAR(outboundCAR, field: "authorization.outboundCAR") }
        if let vpnInstance {
            try vpnInstance.checkUTF8 { (bytes) throws(InvalidFieldError) in
                try FieldRules.checkToken(
                    bytes,
                    field: "authorization.vpnInstance",
                    maximum: FieldRules.maximumVPNInstanceBytes
                )
            }
        }
        if let filterID {
            try filterID.checkUTF8 { (bytes) throws(InvalidFieldError) in
                try FieldRules.checkUserName(bytes, field: "authorization.filterID")
            }
        }
        try FieldRules.checkAccountingInterval(accountingInterval)
    }

    /// An ACL, as RADIUS (Filter-Id, a vendor attribute) or local AAA names it.
    public enum ACL: Hashable, Sendable, Codable {
        /// An ACL by number, 1...99999.
        case number(UInt32)
        /// A named ACL: 1...63 bytes of printable ASCII without spaces, starting with a letter.
        case name(String)
    }

    /// A committed access rate: the rate limit of one direction of a user's traffic.
    public struct CAR: Hashable, Sendable, Codable {
        /// The committed information rate, in kbit/s; above 0.
        public var cir: UInt32
        /// The committed burst size, in bytes; 0 for the device's default.
        public var cbs: UInt32

        /// Creates a rate limit.
        ///
        /// - Parameters:
        ///   - cir: The committed information rate in kbit/s, above 0.
        ///   - cbs: The committed burst size in bytes, 0 for the device's default.
        public init(cir: UInt32, cbs: UInt32 = 0) {
            self.cir = cir
            self.cbs = cbs
        }
    }
}

/// Where accounting of a session stands: the counters at the last accounting report the device sent, and when.
///
/// The device that takes a user over goes on from these counters with the kept Acct-Session-Id, so the RADIUS
/// server's accounting does not restart from zero. Octet counts are 64-bit; ``inputGigawords`` and
/// ``inputOctetsLow`` split them as RADIUS carries them (Acct-Input-Gigawords, Acct-Input-Octets).
public struct AccountingState: Hashable, Sendable, Codable {
    /// Octets received from the user.
    public var inputOctets: UInt64
    /// Octets sent to the user.
    public var outputOctets: UInt64
    /// Packets received from the user.
    public var inputPackets: UInt64
    /// Packets sent to the user.
    public var outputPackets: UInt64
    /// When the report with these counters was sent; `nil` before the first.
    public var reportedAt: Timestamp?

    /// Creates an accounting state.
    public init(
        inputOctets: UInt64 = 0,
        outputOctets: UInt64 = 0,
        inputPackets: UInt64 = 0,
        outputPackets: UInt64 = 0,
        reportedAt: Timestamp? = nil
    ) {
        self.inputOctets = inputOctets
        self.outputOctets = outputOctets
        self.inputPackets = inputPackets
        self.outputPackets = outputPackets
        self.reportedAt = reportedAt
    }

    /// No report yet.
    public static let none = AccountingState()

    /// The RADIUS Acct-Input-Gigawords of ``inputOctets``: how many times the 32-bit counter wrapped.
    public var inputGigawords: UInt32 { UInt32(truncatingIfNeeded: inputOctets >> 32) }
    /// The RADIUS Acct-Input-Octets of ``inputOctets``: its low 32 bits.
    public var inputOctetsLow: UInt32 { UInt32(truncatingIfNeeded: inputOctets) }
    /// The RADIUS Acct-Output-Gigawords of ``outputOctets``.
    public var outputGigawords: UInt32 { UInt32(truncatingIfNeeded: outputOctets >> 32) }
    /// The RADIUS Acct-Output-Octets of ``outputOctets``: its low 32 bits.
    public var outputOctetsLow: UInt32 { UInt32(truncatingIfNeeded: outputOctets) }

    /// Octets from RADIUS's split form: gigawords and the low 32 bits.
    public static func octets(gigawords: UInt32, low: UInt32) -> UInt64 { UInt64(gigawords) << 32 | UInt64(low) }
}

/// The version of one part of a session that updates replace (its authorization, its accounting state, its last
/// activity): the update record that last set it, ordered by term, then sequence, then device.
///
/// Each device's updates are numbered in its own log, so two devices' updates of one user are ordered by term
/// first and by device last: both devices of a pair keep the same one, whatever order they hear of them in.
public struct Revision: Hashable, Comparable, Sendable, Codable {
    /// The term of the update record.
    public var term: UInt32
    /// The update record's sequence in the log of the device that logged it.
    public var sequence: UInt64
    /// The device that logged it; 0 for ``zero``.
    public var device: UInt8

    /// Creates a revision.
    public init(term: UInt32, sequence: UInt64, device: UInt8) {
        self.term = term
        self.sequence = sequence
        self.device = device
    }

    /// The revision of a part no update has set: as it was at login.
    public static let zero = Revision(term: 0, sequence: 0, device: 0)

    public static func < (a: Revision, b: Revision) -> Bool {
        (a.term, a.sequence, a.device) < (b.term, b.sequence, b.device)
    }
}

extension Revision: CustomStringConvertible {
    /// `term.sequence@device`, such as `3.1042@2`; `0` for ``zero``.
    public var description: String { self == .zero ? "0" : "\(term).\(sequence)@\(device)" }
}
