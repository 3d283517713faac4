import Foundation
import SessionStore
import Testing

@Suite("MACAddress")
struct MACAddressTests {
    @Test(
        "parses the four notations in either case",
        arguments: [
            "aa:bb:cc:dd:ee:ff", "AA:BB:CC:DD:EE:FF", "aa-bb-cc-dd-ee-ff", "AA-BB-CC-DD-EE-FF", "aabb-ccdd-eeff",
            "AABB-CCDD-EEFF", "aabb.ccdd.eeff", "AaBb.cCdD.EeFf",
        ]
    )
    func parsesNotations(text: String) throws {
        let address = try #require(MACAddress(text))
        #expect(address.rawValue == 0xAABB_CCDD_EEFF)
        #expect(address.description == "aa:bb:cc:dd:ee:ff")
    }

    @Test(
        "refuses malformed addresses",
        arguments: [
            "", "aa:bb:cc:dd:ee", "aa:bb:cc:dd:ee:ff:00", "aa:bb-cc:dd:ee:ff", "aa.bb.cc.dd.ee.ff", "aabb:ccdd:eeff",
            "aabb-ccdd.eeff", "aabbccddeeff", "gg:bb:cc:dd:ee:ff", " aa:bb:cc:dd:ee:ff", "aa:bb:cc:dd:ee:ff ",
            "a:bb:cc:dd:ee:fff", "aabbc-cdde-eff0", "aa:bb:cc:dd:ee:f",
        ]
    )
    func refusesMalformed(text: String) {
        #expect(MACAddress(text) == nil, "\(text) should not parse")
    }

    @Test("prints leading zeros and round trips")
    func roundTrips() throws {
        #expect(MACAddress(rawValue: 0x0001_0203_0A0B).description == "00:01:02:03:0a:0b")
        #expect(MACAddress(rawValue: 0).description == "00:00:00:00:00:00")
        var generator = SeededGenerator(seed: 3)
        for _ in 0..<10_000 {
            let address = randomMACAddress(using: &generator)
            #expect(MACAddress(address.description) == address)
        }
    }

    @Test("orders numerically")
    func ordersNumerically() {
        let ordered = ["00:00:00:00:00:01", "00:00:00:00:01:00", "0a:00:00:00:00:00", "ff:ff:ff:ff:ff:ff"].map {
            MACAddress($0)!
        }
        #expect(ordered.shuffled().sorted() == ordered)
    }

    @Test("encodes as its string form")
    func codable() throws {
        let json = try JSONEncoder().encode([MACAddress(rawValue: 0xAABB_CCDD_EEFF)])
        #expect(String(decoding: json, as: UTF8.self) == #"["aa:bb:cc:dd:ee:ff"]"#)
        #expect(
            try JSONDecoder().decode([MACAddress].self, from: Data(#"["AABB.CCDD.EEFF"]"#.utf8)) == [
                MACAddress(rawValue: 0xAABB_CCDD_EEFF)
            ]
        )
    }
}
