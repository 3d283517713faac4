import SessionStore

/// A deterministic random number generator (SplitMix64): the same seed gives the same sequence on every run and
/// platform, so a failing randomized test can be replayed.
///
/// ```swift
/// var generator = SeededGenerator(seed: 42)
/// let session = randomSession(using: &generator)
/// ```
struct SeededGenerator: RandomNumberGenerator, Sendable {
    private var state: UInt64

    /// Creates a generator.
    ///
    /// - Parameter seed: Any value; equal seeds give equal sequences.
    init(seed: UInt64) {
        self.state = seed
    }

    /// The next 64 random bits.
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Characters user names are drawn from: ASCII, Latin with diacritics (2 bytes of UTF-8), CJK (3 bytes), emoji
/// (4 bytes), a combining mark and a few that trip naive code (space, quote, backslash, percent).
private let userNameCharacters: [Character] = Array(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-@"
        + "éüßçñøÅ" + "张伟李娜王芳" + "Дмитрий" + "🙂🚀👩‍💻" + "e\u{301}" + " '\"\\%"
)

/// Printable ASCII, space to tilde: every character an access interface may hold.
private let printableASCII: [Character] = (0x20...0x7E).map { Character(Unicode.Scalar(UInt8($0))) }

/// Every character a portal group name may hold.
private let portalGroupCharacters: [Character] = Array(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"
)

/// A string of characters from `alphabet` of exactly `byteCount` bytes of UTF-8 (it ends with ASCII padding
/// when a multi-byte character does not fit).
private func randomString(
    byteCount: Int,
    from alphabet: [Character],
    using generator: inout some RandomNumberGenerator
) -> String {
    var result = ""
    while result.utf8.count < byteCount {
        let character = alphabet.randomElement(using: &generator)!
        if result.utf8.count + character.utf8.count <= byteCount {
            result.append(character)
        } else {
            result.append("x")
        }
    }
    return result
}

/// A random IPv4 (half the time) or IPv6 address; IPv6 addresses often have runs of zero groups, as real ones do.
func randomIPAddress(using generator: inout some RandomNumberGenerator) -> IPAddress {
    if Bool.random(using: &generator) {
        return IPAddress(ipv4: UInt32.random(in: 0...UInt32.max, using: &generator))
    }
    var high = UInt64.random(in: 0...UInt64.max, using: &generator)
    var low = UInt64.random(in: 0...UInt64.max, using: &generator)
    // Zero out some groups so that `::` compression is exercised.
    for group in 0..<8 where Int.random(in: 0..<3, using: &generator) == 0 {
        if group < 4 {
            high &= ~(UInt64(0xFFFF) << UInt64(48 - 16 * group))
        } else {
            low &= ~(UInt64(0xFFFF) << UInt64(48 - 16 * (group - 4)))
        }
    }
    if high == 0, low >> 32 == 0xFFFF {
        low ^= 1 << 40  // Stay IPv6: this one would be IPv4-mapped.
    }
    return IPAddress(high: high, low: low)
}

/// A random MAC address.
func randomMACAddress(using generator: inout some RandomNumberGenerator) -> MACAddress {
    MACAddress(rawValue: UInt64.random(in: 0...0xFFFF_FFFF_FFFF, using: &generator))
}

/// A random valid user name: usually 1...40 bytes, sometimes exactly 253 (the limit), mixing ASCII and multi-byte
/// UTF-8.
func randomUserName(using generator: inout some RandomNumberGenerator) -> String {
    let byteCount =
        Int.random(in: 0..<5, using: &generator) == 0 ? 253 : Int.random(in: 1...40, using: &generator)
    return randomString(byteCount: byteCount, from: userNameCharacters, using: &generator)
}

/// A random timestamp: usually within a few years of 2026, sometimes before 1970 or at the ends of the range.
func randomTimestamp(using generator: inout some RandomNumberGenerator) -> Timestamp {
    switch Int.random(in: 0..<10, using: &generator) {
    case 0:
        return Timestamp(microsecondsSinceEpoch: Int64.random(in: .min ... .max, using: &generator))
    case 1:
        return Timestamp(microsecondsSinceEpoch: -Int64.random(in: 0...3_000_000_000_000_000, using: &generator))
    default:
        // 2024-01-01 to 2030-01-01.
        return Timestamp(
            microsecondsSinceEpoch: Int64.random(
                in: 1_704_067_200_000_000...1_893_456_000_000_000,
                using: &generator
            )
        )
    }
}

/// A random valid session.
///
/// Sessions vary in everything a field allows: IPv4 and IPv6 addresses, unicode user names, VLAN 0 and 1...4094,
/// realistic and limit-length (63-byte) interface names, 1...31-byte portal groups, empty and full (253-byte)
/// RADIUS attributes with and without a NAS IP, zero and maximal timeouts and generations. Every session passes
/// `validate(statefulFailover:)`: re-DHCP authentication is drawn only when `allowReDHCP` is true, and such a
/// session passes only `validate(statefulFailover: false)`.
///
/// - Parameters:
///   - generator: The source of randomness; a ``SeededGenerator`` makes the session reproducible.
///   - owner: The owning device, random when `nil`.
///   - allowReDHCP: Whether re-DHCP authentication may be drawn (refused in stateful failover mode, R10).
/// - Returns: The session.
func randomSession(
    using generator: inout some RandomNumberGenerator,
    owner: DeviceID? = nil,
    allowReDHCP: Bool = false
) -> Session {
    let port = Int.random(in: 1...48, using: &generator)
    let subinterface = Int.random(in: 1...4094, using: &generator)
    let interfaces = [
        "GigabitEthernet1/0/\(port)",
        "Ten-GigabitEthernet1/0/\(port).\(subinterface)",
        "Vlan-interface\(Int.random(in: 1...4094, using: &generator))",
        "Bridge-Aggregation\(Int.random(in: 1...128, using: &generator))",
        randomString(byteCount: Int.random(in: 1...63, using: &generator), from: printableASCII, using: &generator),
        randomString(byteCount: 63, from: printableASCII, using: &generator),
    ]
    let groups = [
        "campus",
        "dorm-2.west_wing",
        randomString(
            byteCount: Int.random(in: 1...31, using: &generator),
            from: portalGroupCharacters,
            using: &generator
        ),
        randomString(byteCount: 31, from: portalGroupCharacters, using: &generator),
    ]
    let modes: [AuthenticationMode] = allowReDHCP ? AuthenticationMode.allCases : [.direct, .crossSubnet]
    let radius: RADIUSAttributes
    switch Int.random(in: 0..<4, using: &generator) {
    case 0:
        radius = RADIUSAttributes()
    case 1:
        radius = RADIUSAttributes(
            nasIP: randomIPAddress(using: &generator),
            acctSessionID: String(UInt64.random(in: 0...UInt64.max, using: &generator), radix: 16),
            classAttribute: (0..<20).map { _ in UInt8.random(in: 0...255, using: &generator) }
        )
    case 2:
        radius = RADIUSAttributes(
            nasIP: Bool.random(using: &generator) ? randomIPAddress(using: &generator) : nil,
            acctSessionID: randomString(byteCount: 253, from: userNameCharacters, using: &generator),
            classAttribute: (0..<253).map { _ in UInt8.random(in: 0...255, using: &generator) }
        )
    default:
        radius = RADIUSAttributes(
            nasIP: nil,
            acctSessionID: randomString(
                byteCount: Int.random(in: 0...40, using: &generator),
                from: userNameCharacters,
                using: &generator
            ),
            classAttribute: (0..<Int.random(in: 0...40, using: &generator)).map { _ in
                UInt8.random(in: 0...255, using: &generator)
            }
        )
    }
    func randomTimeout() -> UInt32 {
        switch Int.random(in: 0..<4, using: &generator) {
        case 0: 0
        case 1: UInt32.max
        default: UInt32.random(in: 1...86_400, using: &generator)
        }
    }
    let parts = Int.random(in: 0..<3, using: &generator) == 0
    return Session(
        ip: randomIPAddress(using: &generator),
        mac: randomMACAddress(using: &generator),
        userName: randomUserName(using: &generator),
        vlan: Bool.random(using: &generator) ? 0 : UInt16.random(in: 1...4094, using: &generator),
        accessInterface: interfaces.randomElement(using: &generator)!,
        portalGroup: try! PortalGroup(groups.randomElement(using: &generator)!),
        authenticationMode: modes.randomElement(using: &generator)!,
        owner: owner ?? DeviceID(rawValue: UInt8.random(in: 1...255, using: &generator))!,
        loginTime: randomTimestamp(using: &generator),
        sessionTimeout: randomTimeout(),
        idleTimeout: randomTimeout(),
        radius: radius,
        authorization: parts ? randomAuthorization(using: &generator) : .none,
        accounting: parts && Bool.random(using: &generator) ? randomAccounting(using: &generator) : .none,
        lastActivity: parts && Bool.random(using: &generator) ? randomTimestamp(using: &generator) : nil,
        generation: Generation(
            term: Bool.random(using: &generator) ? UInt32.random(in: 0...10, using: &generator) : .max,
            sequence: UInt64.random(in: 0...(Bool.random(using: &generator) ? 1_000_000 : .max), using: &generator)
        )
    )
}

/// Characters of names that hold printable ASCII without spaces.
private let tokenCharacters: [Character] = (0x21...0x7E).map { Character(Unicode.Scalar(UInt8($0))) }

/// A random valid authorization: each attribute present or not, names from 1 byte to their limits.
func randomAuthorization(using generator: inout some RandomNumberGenerator) -> Authorization {
    func token(_ maximum: Int) -> String {
        let count = Bool.random(using: &generator) ? maximum : Int.random(in: 1...maximum, using: &generator)
        return randomString(byteCount: count, from: tokenCharacters, using: &generator)
    }
    func car() -> Authorization.CAR? {
        Bool.random(using: &generator)
            ? Authorization.CAR(
                cir: UInt32.random(in: 1...UInt32.max, using: &generator),
                cbs: UInt32.random(in: 0...UInt32.max, using: &generator)
            ) : nil
    }
    let acl: Authorization.ACL?
    switch Int.random(in: 0..<3, using: &generator) {
    case 0: acl = nil
    case 1: acl = .number(UInt32.random(in: 1...99_999, using: &generator))
    default: acl = .name("A" + token(62))
    }
    let intervals: [UInt32] = [0, 60, 900, UInt32.max]
    return Authorization(
        acl: acl,
        userProfile: Bool.random(using: &generator) ? token(63) : nil,
        inboundCAR: car(),
        outboundCAR: car(),
        vpnInstance: Bool.random(using: &generator) ? token(31) : nil,
        filterID: Bool.random(using: &generator) ? randomUserName(using: &generator) : nil,
        accountingInterval: intervals.randomElement(using: &generator)!
    )
}

/// A random accounting state, with counters past 32 bits now and then.
func randomAccounting(using generator: inout some RandomNumberGenerator) -> AccountingState {
    func counter() -> UInt64 {
        Bool.random(using: &generator)
            ? UInt64.random(in: 0...UInt64(UInt32.max), using: &generator)
            : UInt64.random(in: 0...UInt64.max, using: &generator)
    }
    return AccountingState(
        inputOctets: counter(),
        outputOctets: counter(),
        inputPackets: counter(),
        outputPackets: counter(),
        reportedAt: Bool.random(using: &generator) ? randomTimestamp(using: &generator) : nil
    )
}

/// A random revision other than zero.
func randomRevision(using generator: inout some RandomNumberGenerator) -> Revision {
    Revision(
        term: UInt32.random(in: 0...UInt32.max, using: &generator),
        sequence: UInt64.random(in: 0...UInt64.max, using: &generator),
        device: UInt8.random(in: 1...255, using: &generator)
    )
}

/// A random valid session as the store holds it after updates: parts set, each with its revision.
func randomUpdatedSession(using generator: inout some RandomNumberGenerator) -> Session {
    var session = randomSession(using: &generator)
    session.authorization = randomAuthorization(using: &generator)
    session.accounting = randomAccounting(using: &generator)
    session.lastActivity = randomTimestamp(using: &generator)
    session.revisions = Session.Revisions(
        authorization: Bool.random(using: &generator) ? randomRevision(using: &generator) : .zero,
        accounting: randomRevision(using: &generator),
        activity: Bool.random(using: &generator) ? randomRevision(using: &generator) : .zero
    )
    return session
}

/// A random update of `session` (a random one when `nil`), setting one, two or all three parts.
func randomUpdate(using generator: inout some RandomNumberGenerator, of session: Session? = nil) -> Update {
    let session = session ?? randomSession(using: &generator)
    var update = Update(
        ip: session.ip,
        owner: session.owner,
        generation: session.generation,
        revision: randomRevision(using: &generator),
        reason: UpdateReason.allCases.randomElement(using: &generator)!
    )
    let parts = Int.random(in: 1...7, using: &generator)
    if parts & 1 != 0 {
        update.authorization = Update.AuthorizationPart(
            authorization: randomAuthorization(using: &generator),
            sessionTimeout: UInt32.random(in: 0...UInt32.max, using: &generator),
            idleTimeout: UInt32.random(in: 0...86_400, using: &generator)
        )
    }
    if parts & 2 != 0 { update.accounting = randomAccounting(using: &generator) }
    if parts & 4 != 0 { update.lastActivity = randomTimestamp(using: &generator) }
    return update
}

/// A random logout, of a random session or of `session` when given.
///
/// - Parameters:
///   - generator: The source of randomness.
///   - session: The session the logout ends; a random one when `nil`.
/// - Returns: The logout.
func randomLogout(using generator: inout some RandomNumberGenerator, ending session: Session? = nil) -> Logout {
    let session = session ?? randomSession(using: &generator)
    return Logout(ending: session, reason: LogoutReason.allCases.randomElement(using: &generator)!)
}

/// A random log record: a login (50%), a logout (20%), an update (20%), a device-ID change (5%) or a takeover (5%), with sequence numbers, terms
/// and times across their whole ranges now and then.
///
/// - Parameters:
///   - generator: The source of randomness.
///   - allowReDHCP: Whether a login may use re-DHCP authentication.
/// - Returns: The record.
func randomLogRecord(using generator: inout some RandomNumberGenerator, allowReDHCP: Bool = false) -> LogRecord {
    let origin = DeviceID(rawValue: UInt8.random(in: 1...255, using: &generator))!
    let event: Event
    switch Int.random(in: 0..<10, using: &generator) {
    case 0..<5:
        event = .login(randomSession(using: &generator, owner: origin, allowReDHCP: allowReDHCP))
    case 5..<7:
        event = .logout(randomLogout(using: &generator))
    case 7..<9:
        event = .update(randomUpdate(using: &generator))
    case 9 where Bool.random(using: &generator):
        let to = DeviceID(rawValue: origin.rawValue == 255 ? 1 : origin.rawValue + 1)!
        event = .deviceIDChanged(from: origin, to: to)
    default:
        let from = DeviceID(rawValue: origin.rawValue == 255 ? 1 : origin.rawValue + 1)!
        event = .takeover(from: from, to: origin, term: UInt32.random(in: 1...UInt32.max, using: &generator))
    }
    let sequence =
        Int.random(in: 0..<10, using: &generator) == 0
        ? UInt64.random(in: 0...UInt64.max, using: &generator) : UInt64.random(in: 1...10_000_000, using: &generator)
    return LogRecord(
        sequence: sequence,
        term: Bool.random(using: &generator) ? UInt32.random(in: 0...UInt32.max, using: &generator) : 1,
        origin: origin,
        time: randomTimestamp(using: &generator),
        event: event
    )
}
