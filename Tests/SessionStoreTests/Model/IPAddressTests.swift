import Foundation
import SessionStore
import Testing

@Suite("IPAddress")
struct IPAddressTests {
    @Test(
        "parses strict dotted quads",
        arguments: [
            ("0.0.0.0", 0x0000_0000 as UInt32),
            ("10.0.0.1", 0x0A00_0001),
            ("192.168.1.254", 0xC0A8_01FE),
            ("255.255.255.255", 0xFFFF_FFFF),
            ("1.22.203.0", 0x0116_CB00),
        ]
    )
    func parsesIPv4(text: String, value: UInt32) throws {
        let address = try #require(IPAddress(text))
        #expect(address.isIPv4)
        #expect(address.ipv4 == value)
        #expect(address == IPAddress(ipv4: value))
        #expect(address.high == 0)
        #expect(address.low == 0xFFFF_0000_0000 | UInt64(value))
        #expect(address.description == text)
    }

    @Test(
        "refuses malformed IPv4",
        arguments: [
            "", "010.0.0.1", "10.0.0.01", "00.0.0.0", "256.0.0.1", "1.2.3.300", "1.2.3", "1.2.3.4.5", "1..2.3",
            ".1.2.3", "1.2.3.", " 1.2.3.4", "1.2.3.4 ", "1.2.3.-4", "+1.2.3.4", "0x1.2.3.4", "1.2.3.4/24", "1234.1.1.1",
            "1.2.3.4a", "１.2.3.4",
        ]
    )
    func refusesMalformedIPv4(text: String) {
        #expect(IPAddress(text) == nil, "\(text) should not parse")
    }

    @Test(
        "parses IPv6 and prints it per RFC 5952",
        arguments: [
            ("2001:db8:0:0:0:0:2:1", "2001:db8::2:1"),
            ("2001:0db8:0000:0000:0000:0000:0002:0001", "2001:db8::2:1"),
            ("2001:DB8::1", "2001:db8::1"),
            ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),  // leftmost of two equal runs
            ("2001:0:0:1:0:0:0:1", "2001:0:0:1::1"),  // the longest run
            ("2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"),  // a single zero group is not compressed
            ("2001:db8::1:0:0:0", "2001:db8:0:0:1::"),
            ("::2:3:4:5:6:7:8", "0:2:3:4:5:6:7:8"),
            ("1:2:3:4:5:6:7::", "1:2:3:4:5:6:7:0"),
            ("1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8"),
            ("::", "::"),
            ("0:0:0:0:0:0:0:0", "::"),
            ("::1", "::1"),
            ("1::", "1::"),
            ("fe80::a:B:c:D", "fe80::a:b:c:d"),
            ("FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
            ("0:0:1:0:0:0:0:0", "0:0:1::"),
            ("::192.0.2.1", "::c000:201"),  // IPv4-compatible, deprecated: printed as hexadecimal
            ("64:ff9b::192.0.2.33", "64:ff9b::c000:221"),
            ("1:2:3:4:5:6:1.2.3.4", "1:2:3:4:5:6:102:304"),
            ("::fffe:ffff:ffff", "::fffe:ffff:ffff"),
            ("::1:ffff:0:0", "::1:ffff:0:0"),
        ]
    )
    func parsesIPv6(text: String, canonical: String) throws {
        let address = try #require(IPAddress(text))
        #expect(!address.isIPv4)
        #expect(address.ipv4 == nil)
        #expect(address.description == canonical)
        #expect(IPAddress(canonical) == address)
    }

    @Test(
        "reads IPv4-mapped IPv6 as IPv4",
        arguments: ["::ffff:192.0.2.1", "::FFFF:c000:0201", "0:0:0:0:0:ffff:192.0.2.1"]
    )
    func readsIPv4Mapped(text: String) throws {
        let address = try #require(IPAddress(text))
        #expect(address == IPAddress("192.0.2.1"))
        #expect(address.isIPv4)
        #expect(address.description == "192.0.2.1")
    }

    @Test(
        "refuses malformed IPv6",
        arguments: [
            ":", ":::", "1:::2", "1::2::3", ":1:2:3:4:5:6:7", "1:2:3:4:5:6:7:", "1:2:3:4:5:6:7", "1:2:3:4:5:6:7:8:9",
            "::1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8::", "1:2:3:4::5:6:7:8", "12345::", "g::1", "fe80::1%eth0", "[::1]",
            "::1/128", "::1.2.3", "::1.2.3.4:5", "1.2.3.4::", "::256.1.1.1", "::01.2.3.4", "1:2:3:4:5:6:7:1.2.3.4",
            "::ffff:1.2.3.4.5", " ::1", "::1 ", "1:2", "::-1", "::+1",
        ]
    )
    func refusesMalformedIPv6(text: String) {
        #expect(IPAddress(text) == nil, "\(text) should not parse")
    }

    @Test("parses substrings without copying them into a String first")
    func parsesSubstrings() {
        let line = "client 10.1.2.3 logged in"
        let word = line.split(separator: " ")[1]
        #expect(IPAddress(word) == IPAddress(ipv4: 0x0A01_0203))
    }

    @Test("prints and parses back random addresses")
    func roundTripsRandomAddresses() throws {
        var generator = SeededGenerator(seed: 1)
        for _ in 0..<20_000 {
            let address = randomIPAddress(using: &generator)
            let parsed = try #require(IPAddress(address.description), "\(address)")
            #expect(parsed == address)
            #expect(address.description.count <= 39)
            #expect(address.description == address.description.lowercased())
        }
    }

    @Test("gives 16 network-order bytes and takes them back")
    func bytesRoundTrip() throws {
        let address = try #require(IPAddress("10.0.0.1"))
        let bytes = address.withUnsafeBytes { Array($0) }
        #expect(bytes == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 10, 0, 0, 1])
        #expect(bytes.withUnsafeBytes { IPAddress(bytes: $0) } == address)

        let v6 = try #require(IPAddress("2001:db8::1"))
        let v6Bytes = v6.withUnsafeBytes { Array($0) }
        #expect(v6Bytes == [0x20, 0x01, 0x0D, 0xB8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1])
        #expect(v6Bytes.withUnsafeBytes { IPAddress(bytes: $0) } == v6)
    }

    @Test("orders addresses numerically, the same as their bytes")
    func ordersNumerically() throws {
        let ordered = [
            "::", "::1", "::fffe:ffff:ffff", "0.0.0.0", "9.255.255.255", "10.0.0.0", "10.0.0.10",
            "192.168.0.1", "255.255.255.255", "::1:0:0:0", "2001:db8::", "2001:db8::1", "fe80::1",
        ].map { IPAddress($0)! }
        #expect(ordered.sorted() == ordered)

        var generator = SeededGenerator(seed: 2)
        let random = (0..<2000).map { _ in randomIPAddress(using: &generator) }
        let byBytes = random.sorted { lhs, rhs in
            lhs.withUnsafeBytes { a in rhs.withUnsafeBytes { b in a.lexicographicallyPrecedes(b) } }
        }
        #expect(random.sorted() == byBytes)
    }

    @Test("encodes as its string form")
    func codable() throws {
        let addresses = [IPAddress("10.0.0.1")!, IPAddress("2001:db8::1")!]
        let json = try JSONEncoder().encode(addresses)
        #expect(String(decoding: json, as: UTF8.self) == #"["10.0.0.1","2001:db8::1"]"#)
        #expect(try JSONDecoder().decode([IPAddress].self, from: json) == addresses)
        #expect(throws: DecodingError.self) {
            try JSONDecoder().decode([IPAddress].self, from: Data(#"["10.0.0.256"]"#.utf8))
        }
    }
}
