/// A takeover in effect: device ``to`` took over the users of device ``from`` when it raised the pair's
/// term to ``term`` on promotion.
///
/// Sessions are never rewritten on promotion. A session whose ``Session/owner`` is ``from`` and whose
/// generation's term is below ``term`` is owned in effect by ``to``; sessions that ``from`` logs in after
/// it learned the new term stay its own.
public struct Takeover: Sendable, Hashable, Codable {
    /// The device whose users were taken over.
    public var from: DeviceID
    /// The device that took them over.
    public var to: DeviceID
    /// The term the takeover raised the pair to.
    public var term: UInt32

    /// A takeover.
    /// - Parameters:
    ///   - from: the device whose users were taken over.
    ///   - to: the device that took them over.
    ///   - term: the term the takeover raised the pair to.
    public init(from: DeviceID, to: DeviceID, term: UInt32) {
        self.from = from
        self.to = to
        self.term = term
    }

    /// The 8-byte `meta` value: `to` in the high half, the term in the low one.
    var metaValue: UInt64 { UInt64(to.rawValue) << 32 | UInt64(term) }

    init?(from: DeviceID, metaValue: UInt64) {
        guard let to = DeviceID(rawValue: UInt8(truncatingIfNeeded: metaValue >> 32)), metaValue >> 40 == 0 else {
            return nil
        }
        self.init(from: from, to: to, term: UInt32(truncatingIfNeeded: metaValue))
    }
}

/// The takeovers a store knows, by the device taken over (only the latest one per device matters: it covers
/// every earlier term).
public struct Takeovers: Sendable, Hashable {
    /// The latest takeover of each device, indexed by the device's byte (256 slots, none while there is no
    /// takeover): ``effectiveOwner(owner:term:)`` runs for every session a handover walks, and a dictionary
    /// lookup would hash a device ID each time.
    private var bySlot: [Takeover?] = []

    /// The latest takeover of each device.
    public var byDevice: [DeviceID: Takeover] {
        Dictionary(uniqueKeysWithValues: bySlot.lazy.compactMap { $0 }.map { ($0.from, $0) })
    }

    /// No takeovers.
    public init() {}

    /// Records a takeover; an older one of the same device is replaced.
    /// - Parameter takeover: the takeover.
    public mutating func record(_ takeover: Takeover) {
        let slot = Int(takeover.from.rawValue)
        if let known = bySlot.isEmpty ? nil : bySlot[slot], known.term >= takeover.term { return }
        if bySlot.isEmpty { bySlot = Array(repeating: nil, count: 256) }
        bySlot[slot] = takeover
    }

    /// The device that owns `session` in effect: its owner, or the device that took that owner's users
    /// over after the session began (followed through later takeovers, each of a higher term).
    /// - Parameter session: a session.
    /// - Returns: the device responsible for it.
    public func effectiveOwner(of session: Session) -> DeviceID {
        effectiveOwner(owner: session.owner, term: session.generation.term)
    }

    /// The device that owns in effect a session of `owner` whose generation has term `sessionTerm` (see
    /// ``effectiveOwner(of:)``).
    /// - Parameters:
    ///   - owner: the session's owner.
    ///   - sessionTerm: the term of the session's generation.
    /// - Returns: the device responsible for it.
    public func effectiveOwner(owner: DeviceID, term sessionTerm: UInt32) -> DeviceID {
        guard !bySlot.isEmpty else { return owner }
        var owner = owner
        var floor = sessionTerm
        while let takeover = bySlot[Int(owner.rawValue)], floor < takeover.term {
            owner = takeover.to
            floor = takeover.term
        }
        return owner
    }
}

/// An order-free digest of a users table: the wrapping sum of a 64-bit hash of each session, so that a
/// session added or removed changes it in O(1), and two tables with the same sessions have the same digest
/// whatever the order they were built in. Every field of a session goes into its hash, so that two tables
/// differing in any field of any session differ in their digests (but for a collision of 64-bit hashes).
enum TableDigest {
    /// The hash a session's contribution is: each field mixed in turn. A struct rather than a local variable
    /// captured by local functions, which the compiler checks for exclusive access at run time on every mix.
    private struct SessionHasher {
        private var hash: UInt64 = 0x9E37_79B9_7F4A_7C15

        mutating func mix(_ value: UInt64) {
            hash = (hash ^ value) &* 0xBF58_476D_1CE4_E5B9
            hash ^= hash >> 31
        }

        mutating func mix(_ bytes: some Sequence<UInt8>) {
            // Over contiguous bytes when the sequence has them (a native string's UTF-8 and an array do): a
            // string's own iterator costs several times as much per byte.
            let folded =
                bytes.withContiguousStorageIfAvailable { Self.fold($0) } ?? Self.fold(bytes)
            mix(folded)
        }

        private static func fold(_ bytes: some Sequence<UInt8>) -> UInt64 {
            var folded: UInt64 = 0xcbf2_9ce4_8422_2325
            var count: UInt64 = 0
            for byte in bytes {
                folded = (folded ^ UInt64(byte)) &* 0x0000_0100_0000_01b3
                count &+= 1
            }
            return folded ^ count << 56
        }

        /// Mixes `text`'s bytes, or the mark of an absent text.
        mutating func mix(_ text: String?) {
            if let text { mix(text.utf8) } else { mix(0xFFFF_FFFF_FFFF_FFFE as UInt64) }
        }

        /// Mixes a committed access rate, or the mark of an absent one.
        mutating func mix(_ car: Authorization.CAR?) {
            mix(car.map { UInt64($0.cir) << 32 | UInt64($0.cbs) } ?? 0xFFFF_FFFF_FFFF_FFFD)
        }

        mutating func mix(_ revision: Revision) {
            mix(UInt64(revision.term) << 8 | UInt64(revision.device))
            mix(revision.sequence)
        }

        /// Mixes the parts that updates change; a session without any (every version 1 session) mixes nothing
        /// more.
        mutating func mixParts(of parts: Parts) {
            let authorization = parts.authorization
            switch authorization.acl {
            case .number(let number): mix(1 << 32 | UInt64(number))
            case .name(let name):
                mix(2 << 32 as UInt64)
                mix(name.utf8)
            case nil: mix(0 as UInt64)
            }
            mix(authorization.userProfile)
            mix(authorization.vpnInstance)
            mix(authorization.filterID)
            mix(authorization.inboundCAR)
            mix(authorization.outboundCAR)
            mix(UInt64(authorization.accountingInterval))
            let accounting = parts.accounting
            mix(accounting.inputOctets)
            mix(accounting.outputOctets)
            mix(accounting.inputPackets)
            mix(accounting.outputPackets)
            mix(accounting.reportedAt.map { UInt64(bitPattern: $0.microsecondsSinceEpoch) } ?? 0xFFFF_FFFF_FFFF_FFFC)
            mix(parts.lastActivity.map { UInt64(bitPattern: $0.microsecondsSinceEpoch) } ?? 0xFFFF_FFFF_FFFF_FFFC)
            mix(parts.revisions.authorization)
            mix(parts.revisions.accounting)
            mix(parts.revisions.activity)
        }

        consuming func finish() -> UInt64 {
            hash = (hash ^ (hash >> 27)) &* 0x94D0_49BB_1331_11EB
            return hash ^ (hash >> 31)
        }
    }

    static func contribution(of session: Session) -> UInt64 {
        contribution(
            ip: session.ip,
            mac: session.mac,
            owner: session.owner,
            generation: session.generation,
            loginTime: session.loginTime.microsecondsSinceEpoch,
            vlan: session.vlan,
            authenticationMode: session.authenticationMode.rawValue,
            sessionTimeout: session.sessionTimeout,
            idleTimeout: session.idleTimeout,
            userName: session.userName.utf8,
            accessInterface: session.accessInterface.utf8,
            portalGroup: session.portalGroup.name.utf8,
            nasIP: session.radius.nasIP,
            acctSessionID: session.radius.acctSessionID.utf8,
            classAttribute: session.radius.classAttribute,
            parts: session.setParts
        )
    }

    /// The contribution of the session stored as `value` at `ip`, the same as ``contribution(of:)`` of it
    /// decoded, hashed from its bytes without decoding it. Its fields are hashed, not checked against the
    /// model's rules (the checksum says a checking encoder wrote them).
    static func contribution(ofStored value: UnsafeRawBufferPointer, ip: IPAddress) throws(SessionStoreError) -> UInt64
    {
        contribution(ofFields: try peekStoredSessionFields(value, ip: ip, checkingRules: false), ip: ip)
    }

    /// The contribution of the session at `ip` whose stored value holds `fields`.
    static func contribution(ofFields fields: borrowing RecordCodec.SessionValueFields, ip: IPAddress) -> UInt64 {
        contribution(
            ip: ip,
            mac: fields.mac,
            owner: fields.owner,
            generation: fields.generation,
            loginTime: fields.loginTime,
            vlan: fields.vlan,
            authenticationMode: fields.authenticationMode,
            sessionTimeout: fields.sessionTimeout,
            idleTimeout: fields.idleTimeout,
            userName: fields.userName,
            accessInterface: fields.accessInterface,
            portalGroup: fields.portalGroup,
            nasIP: fields.nasIP,
            acctSessionID: fields.acctSessionID,
            classAttribute: fields.classAttribute,
            parts: fields.parts?.value
        )
    }

    private static func contribution(
        ip: IPAddress,
        mac: MACAddress,
        owner: DeviceID,
        generation: Generation,
        loginTime: Int64,
        vlan: UInt16,
        authenticationMode: UInt8,
        sessionTimeout: UInt32,
        idleTimeout: UInt32,
        userName: some Sequence<UInt8>,
        accessInterface: some Sequence<UInt8>,
        portalGroup: some Sequence<UInt8>,
        nasIP: IPAddress?,
        acctSessionID: some Sequence<UInt8>,
        classAttribute: some Sequence<UInt8>,
        parts: Parts?
    ) -> UInt64 {
        var hasher = SessionHasher()
        hasher.mix(ip.high)
        hasher.mix(ip.low)
        hasher.mix(mac.rawValue)
        hasher.mix(UInt64(owner.rawValue) << 32 | UInt64(generation.term))
        hasher.mix(generation.sequence)
        hasher.mix(UInt64(bitPattern: loginTime))
        hasher.mix(UInt64(vlan) << 40 | UInt64(authenticationMode) << 32)
        hasher.mix(UInt64(sessionTimeout) << 32 | UInt64(idleTimeout))
        hasher.mix(userName)
        hasher.mix(accessInterface)
        hasher.mix(portalGroup)
        if let nasIP {
            hasher.mix(nasIP.high)
            hasher.mix(nasIP.low)
        } else {
            hasher.mix(0xFFFF_FFFF_FFFF_FFFF as UInt64)
        }
        hasher.mix(acctSessionID)
        hasher.mix(classAttribute)
        if let parts { hasher.mixParts(of: parts) }
        return hasher.finish()
    }
}
