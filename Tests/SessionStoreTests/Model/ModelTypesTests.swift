import Foundation
import SessionStore
import Testing

@Suite("DeviceID")
struct DeviceIDTests {
    @Test("accepts 1...255", arguments: [1, 2, 128, 255])
    func accepts(value: Int) throws {
        let id = try DeviceID(value)
        #expect(Int(id.rawValue) == value)
        #expect(id.description == String(value))
        #expect(DeviceID(rawValue: UInt8(value)) == id)
    }

    @Test("refuses 0 and values past 255", arguments: [0, -1, 256, 1000, Int.min, Int.max])
    func refuses(value: Int) {
        let error = #expect(throws: InvalidFieldError.self) { try DeviceID(value) }
        #expect(error?.field == "deviceID")
        #expect(error?.description == "deviceID: \(value) is out of range (1 to 255)")
    }

    @Test("has no raw value 0, orders numerically, takes literals, encodes as a number")
    func misc() throws {
        #expect(DeviceID(rawValue: 0) == nil)
        let one: DeviceID = 1
        let two: DeviceID = 2
        #expect(one < two)
        #expect(String(decoding: try JSONEncoder().encode([two]), as: UTF8.self) == "[2]")
        #expect(try JSONDecoder().decode([DeviceID].self, from: Data("[2]".utf8)) == [two])
        #expect(throws: DecodingError.self) { try JSONDecoder().decode([DeviceID].self, from: Data("[0]".utf8)) }
    }
}

@Suite("PortalGroup")
struct PortalGroupTests {
    @Test(
        "accepts names of letters, digits, dot, underscore and hyphen",
        arguments: [
            "a", "campus", "Campus-1", "dorm_2.west", "0", String(repeating: "g", count: 31),
        ]
    )
    func accepts(name: String) throws {
        #expect(try PortalGroup(name).name == name)
        #expect(try PortalGroup(name).description == name)
    }

    @Test(
        "refuses other names",
        arguments: [
            ("", "portalGroup: is empty"),
            (String(repeating: "g", count: 32), "portalGroup: 32 bytes is too long (at most 31)"),
            ("campus 1", "portalGroup: contains a space at byte 6"),
            ("campus/1", "portalGroup: contains '/' at byte 6"),
            ("café", "portalGroup: contains the byte 0xC3 at byte 3"),
        ]
    )
    func refuses(name: String, message: String) {
        let error = #expect(throws: InvalidFieldError.self) { try PortalGroup(name) }
        #expect(error?.field == "portalGroup")
        #expect(error?.description.hasPrefix(message) == true, "\(String(describing: error))")
    }

    @Test("encodes as its name and checks it when decoding")
    func codable() throws {
        let group: PortalGroup = "campus"
        #expect(String(decoding: try JSONEncoder().encode([group]), as: UTF8.self) == #"["campus"]"#)
        #expect(throws: DecodingError.self) {
            try JSONDecoder().decode([PortalGroup].self, from: Data(#"["a b"]"#.utf8))
        }
    }
}

@Suite("Enumerations")
struct EnumerationTests {
    @Test("logout reasons have short kebab names and look up by them")
    func logoutReasonNames() throws {
        #expect(
            LogoutReason.allCases.map(\.description) == [
                "user", "delete-user", "cut-connection", "portal-server", "idle-timeout", "session-timeout",
                "device-id-change", "superseded", "resync", "disconnect-message",
            ]
        )
        #expect(LogoutReason.allCases.map(\.rawValue) == Array(1...10))
        for reason in LogoutReason.allCases {
            #expect(LogoutReason(name: reason.description) == reason)
        }
        #expect(LogoutReason(name: "timeout") == nil)
        let json = try JSONEncoder().encode([LogoutReason.idleTimeout])
        #expect(String(decoding: json, as: UTF8.self) == #"["idle-timeout"]"#)
        #expect(try JSONDecoder().decode([LogoutReason].self, from: json) == [.idleTimeout])
    }

    @Test("authentication modes use the H3C keywords")
    func authenticationModeNames() throws {
        #expect(AuthenticationMode.allCases.map(\.description) == ["direct", "redhcp", "layer3"])
        #expect(AuthenticationMode.allCases.map(\.rawValue) == [1, 2, 3])
        #expect(AuthenticationMode(name: "re-dhcp") == .reDHCP)
        #expect(AuthenticationMode(name: "cross-subnet") == .crossSubnet)
        for mode in AuthenticationMode.allCases {
            #expect(AuthenticationMode(name: mode.description) == mode)
        }
        #expect(AuthenticationMode(name: "web") == nil)
        let json = try JSONEncoder().encode(AuthenticationMode.allCases)
        #expect(try JSONDecoder().decode([AuthenticationMode].self, from: json) == AuthenticationMode.allCases)
    }

    @Test("event kinds have names and codes")
    func eventKinds() {
        #expect(
            Event.Kind.allCases.map(\.description) == ["login", "logout", "device-id-change", "takeover", "update"]
        )
        #expect(Event.Kind.allCases.map(\.rawValue) == [1, 2, 3, 4, 5])
        for kind in Event.Kind.allCases {
            #expect(Event.Kind(name: kind.description) == kind)
        }
        #expect(Event.deviceIDChanged(from: 1, to: 2).kind == .deviceIDChanged)
    }

    @Test("generations order by term, then sequence")
    func generations() {
        #expect(Generation(term: 1, sequence: 100) < Generation(term: 2, sequence: 1))
        #expect(Generation(term: 2, sequence: 1) < Generation(term: 2, sequence: 2))
        #expect(Generation.zero < Generation(term: 0, sequence: 1))
        #expect(Generation(term: 3, sequence: 1_048_576).description == "3.1048576")
    }
}

@Suite("Codable sessions")
struct CodableSessionTests {
    @Test("sessions and logouts survive JSON")
    func jsonRoundTrip() throws {
        var generator = SeededGenerator(seed: 7)
        for _ in 0..<200 {
            let session = randomSession(using: &generator, allowReDHCP: true)
            let json = try JSONEncoder().encode(session)
            #expect(try JSONDecoder().decode(Session.self, from: json) == session)
            let logout = Logout(ending: session, reason: .portalServer)
            #expect(try JSONDecoder().decode(Logout.self, from: JSONEncoder().encode(logout)) == logout)
        }
    }
}
