import SessionStore
import Testing

/// A valid session to break one field of at a time.
private func validSession() -> Session {
    Session(
        ip: IPAddress("10.0.0.1")!,
        mac: MACAddress("aa:bb:cc:dd:ee:ff")!,
        userName: "alice",
        vlan: 100,
        accessInterface: "GigabitEthernet1/0/1",
        portalGroup: "campus",
        owner: 1,
        loginTime: Timestamp(microsecondsSinceEpoch: 1_795_246_460_000_000),
        sessionTimeout: 3600
    )
}

/// One way to break a rule, the field it must be blamed on, and words the message must contain.
struct RuleBreak: Sendable, CustomTestStringConvertible {
    let name: String
    let field: String
    let message: String
    let change: @Sendable (inout Session) -> Void

    var testDescription: String { name }
}

@Suite("Session validation")
struct ValidationTests {
    static let ruleBreaks: [RuleBreak] = [
        RuleBreak(name: "empty user name", field: "userName", message: "userName: is empty") { $0.userName = "" },
        RuleBreak(name: "254-byte user name", field: "userName", message: "254 bytes is too long (at most 253)") {
            $0.userName = String(repeating: "a", count: 254)
        },
        RuleBreak(
            name: "user name of 100 three-byte characters",
            field: "userName",
            message: "userName: 300 bytes is too long (at most 253)"
        ) { $0.userName = String(repeating: "张", count: 100) },
        RuleBreak(name: "tab in user name", field: "userName", message: "U+0009 at byte 5") {
            $0.userName = "alice\tbob"
        },
        RuleBreak(name: "NUL in user name", field: "userName", message: "U+0000") { $0.userName = "a\u{0}" },
        RuleBreak(name: "DEL in user name", field: "userName", message: "U+007F") { $0.userName = "a\u{7F}" },
        RuleBreak(name: "C1 control in user name", field: "userName", message: "U+0085 at byte 1") {
            $0.userName = "a\u{85}"
        },
        RuleBreak(
            name: "VLAN 4095",
            field: "vlan",
            message: "vlan: 4095 is out of range (0 for untagged, or 1 to 4094)"
        ) { $0.vlan = 4095 },
        RuleBreak(name: "VLAN 5000", field: "vlan", message: "5000 is out of range") { $0.vlan = 5000 },
        RuleBreak(name: "empty access interface", field: "accessInterface", message: "is empty") {
            $0.accessInterface = ""
        },
        RuleBreak(
            name: "64-byte access interface",
            field: "accessInterface",
            message: "64 bytes is too long (at most 63)"
        ) { $0.accessInterface = String(repeating: "G", count: 64) },
        RuleBreak(name: "non-ASCII access interface", field: "accessInterface", message: "only printable ASCII") {
            $0.accessInterface = "Gigabit\u{E9}"
        },
        RuleBreak(name: "newline in access interface", field: "accessInterface", message: "the byte 0x0A at byte 2") {
            $0.accessInterface = "Gi\n1"
        },
        RuleBreak(name: "254-byte Acct-Session-Id", field: "radius.acctSessionID", message: "254 bytes is too long") {
            $0.radius.acctSessionID = String(repeating: "0", count: 254)
        },
        RuleBreak(
            name: "254-byte Class",
            field: "radius.classAttribute",
            message: "254 bytes is too long (at most 253)"
        ) { $0.radius.classAttribute = [UInt8](repeating: 7, count: 254) },
    ]

    @Test("a valid session passes, with and without stateful failover")
    func validSessionPasses() throws {
        try validSession().validate(statefulFailover: true)
        try validSession().validate(statefulFailover: false)
    }

    @Test("each broken rule names its field", arguments: ruleBreaks)
    func brokenRuleNamesField(ruleBreak: RuleBreak) {
        var session = validSession()
        ruleBreak.change(&session)
        for statefulFailover in [false, true] {
            let error = #expect(throws: InvalidFieldError.self) {
                try session.validate(statefulFailover: statefulFailover)
            }
            #expect(error?.field == ruleBreak.field)
            #expect(error?.description.hasPrefix(ruleBreak.field + ": ") == true)
            #expect(error?.description.contains(ruleBreak.message) == true, "\(String(describing: error))")
        }
    }

    @Test("fields at their limits pass")
    func limitsPass() throws {
        var session = validSession()
        session.userName = String(repeating: "a", count: 253)
        session.vlan = 4094
        session.accessInterface = String(repeating: "~", count: 62) + " "
        session.radius = RADIUSAttributes(
            nasIP: IPAddress("192.0.2.1"),
            acctSessionID: String(repeating: "é", count: 126) + "x",
            classAttribute: [UInt8](repeating: 0, count: 253)
        )
        session.sessionTimeout = .max
        session.idleTimeout = .max
        try session.validate(statefulFailover: true)
        session.vlan = 0
        session.userName = "张伟 🙂 O'Brien"
        session.accessInterface = "a"
        try session.validate(statefulFailover: true)
    }

    @Test("re-DHCP is refused only in stateful failover mode (R10)")
    func reDHCPRefusedInStatefulFailover() throws {
        var session = validSession()
        session.authenticationMode = .reDHCP
        try session.validate(statefulFailover: false)
        let error = #expect(throws: InvalidFieldError.self) {
            try session.validate(statefulFailover: true)
        }
        #expect(error?.field == "authenticationMode")
        let expected =
            "authenticationMode: re-DHCP portal authentication is not supported in stateful failover mode (R10); "
            + "use direct or cross-subnet authentication on the portal service backup interface"
        #expect(error?.description == expected)
        for mode in [AuthenticationMode.direct, .crossSubnet] {
            session.authenticationMode = mode
            try session.validate(statefulFailover: true)
        }
    }

    @Test("random sessions from the factory are valid")
    func factorySessionsAreValid() throws {
        var generator = SeededGenerator(seed: 6)
        for _ in 0..<5000 {
            try randomSession(using: &generator).validate(statefulFailover: true)
            try randomSession(using: &generator, allowReDHCP: true).validate(statefulFailover: false)
        }
    }

    @Test("the deadline is the login time plus the session timeout")
    func deadline() {
        var session = validSession()
        #expect(session.deadline == session.loginTime.adding(seconds: 3600))
        session.sessionTimeout = 0
        #expect(session.deadline == nil)
    }
}
