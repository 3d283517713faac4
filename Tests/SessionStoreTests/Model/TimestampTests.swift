import Foundation
import SessionStore
import Testing

@Suite("Timestamp")
struct TimestampTests {
    @Test(
        "prints ISO 8601 UTC with microseconds",
        arguments: [
            (0 as Int64, "1970-01-01T00:00:00.000000Z"),
            (1, "1970-01-01T00:00:00.000001Z"),
            (-1, "1969-12-31T23:59:59.999999Z"),
            (1_795_246_460_123_456, "2026-11-21T07:34:20.123456Z"),
            (951_782_400_000_000, "2000-02-29T00:00:00.000000Z"),  // leap: divisible by 400
            (1_709_208_000_000_000, "2024-02-29T12:00:00.000000Z"),  // leap: divisible by 4
            (-2_203_891_200_000_000, "1900-03-01T00:00:00.000000Z"),  // 1900 is not a leap year
            (4_107_542_400_000_000, "2100-03-01T00:00:00.000000Z"),  // nor is 2100
            (-14_182_940_000_000, "1969-07-20T20:17:40.000000Z"),
            (-11_670_912_001_000_000, "1600-02-29T23:59:59.000000Z"),
            (-62_135_596_800_000_000, "0001-01-01T00:00:00.000000Z"),
            (-62_167_219_200_000_000, "0000-01-01T00:00:00.000000Z"),
            (-62_167_219_200_000_001, "-0001-12-31T23:59:59.999999Z"),
            (253_402_300_799_999_999, "9999-12-31T23:59:59.999999Z"),
            (253_402_300_800_000_000, "+10000-01-01T00:00:00.000000Z"),
        ]
    )
    func prints(microseconds: Int64, text: String) throws {
        let time = Timestamp(microsecondsSinceEpoch: microseconds)
        #expect(time.description == text)
        #expect(Timestamp(iso8601: text) == time)
    }

    @Test(
        "parses without fraction or with a shorter one",
        arguments: [
            ("2026-11-21T07:34:20Z", 1_795_246_460_000_000 as Int64),
            ("2026-11-21T07:34:20.5Z", 1_795_246_460_500_000),
            ("2026-11-21T07:34:20.123Z", 1_795_246_460_123_000),
            ("2026-11-21T07:34:20.000001Z", 1_795_246_460_000_001),
            ("1969-12-31T23:59:59.5Z", -500_000),
        ]
    )
    func parsesShortForms(text: String, microseconds: Int64) {
        #expect(Timestamp(iso8601: text)?.microsecondsSinceEpoch == microseconds)
    }

    @Test(
        "refuses malformed times",
        arguments: [
            "", "2026-11-21", "2026-11-21T07:34:20", "2026-11-21 07:34:20Z", "2026-11-21t07:34:20z",
            "2026-11-21T07:34:20+00:00", "2026-11-21T07:34:20.Z", "2026-11-21T07:34:20.1234567Z", "26-11-21T07:34:20Z",
            "2026-1-21T07:34:20Z", "2026-13-01T00:00:00Z", "2026-00-01T00:00:00Z", "2026-11-31T00:00:00Z",
            "2026-11-00T00:00:00Z", "2023-02-29T00:00:00Z", "1900-02-29T00:00:00Z", "2100-02-29T00:00:00Z",
            "2026-11-21T24:00:00Z", "2026-11-21T23:60:00Z", "2026-11-21T23:59:60Z", "2026-11-21T07:34:20ZZ",
            " 2026-11-21T07:34:20Z", "+999999-01-01T00:00:00Z", "-999999-01-01T00:00:00Z", "+1234567-01-01T00:00:00Z",
            "2026-11-21T07:34:2OZ",
        ]
    )
    func refusesMalformed(text: String) {
        #expect(Timestamp(iso8601: text) == nil, "\(text) should not parse")
    }

    @Test("accepts the leap days of leap years", arguments: [1600, 2000, 2004, 2024, 2400, 0, -4])
    func acceptsLeapDays(year: Int) {
        let text = (year < 0 ? "-" : "") + String(format: "%04d", abs(year)) + "-02-29T00:00:00Z"
        #expect(Timestamp(iso8601: text) != nil, "\(text)")
    }

    @Test("round trips the whole Int64 range")
    func roundTripsWholeRange() throws {
        var generator = SeededGenerator(seed: 4)
        let edges: [Int64] = [.min, .min + 1, .max, .max - 1, 0, -1, 1]
        for value in edges + (0..<20_000).map({ _ in Int64.random(in: .min ... .max, using: &generator) }) {
            let time = Timestamp(microsecondsSinceEpoch: value)
            #expect(Timestamp(iso8601: time.description) == time, "\(value) printed as \(time)")
        }
        #expect(Timestamp(microsecondsSinceEpoch: .max).description == "+294247-01-10T04:00:54.775807Z")
        #expect(Timestamp(microsecondsSinceEpoch: .min).description == "-290308-12-21T19:59:05.224192Z")
        // One microsecond past either end does not fit.
        #expect(Timestamp(iso8601: "+294247-01-10T04:00:54.775808Z") == nil)
        #expect(Timestamp(iso8601: "-290308-12-21T19:59:05.224191Z") == nil)
    }

    @Test("agrees with Foundation's Gregorian calendar from 1600 on")
    func agreesWithFoundation() throws {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        var generator = SeededGenerator(seed: 5)
        for _ in 0..<2000 {
            // 1600-01-01 to 3000-01-01, whole seconds.
            let seconds = Int64.random(in: -11_676_096_000...32_503_680_000, using: &generator)
            let components = calendar.dateComponents(
                [.year, .month, .day, .hour, .minute, .second],
                from: Date(timeIntervalSince1970: TimeInterval(seconds))
            )
            let expected = String(
                format: "%04d-%02d-%02dT%02d:%02d:%02d.000000Z",
                components.year!,
                components.month!,
                components.day!,
                components.hour!,
                components.minute!,
                components.second!
            )
            #expect(Timestamp(microsecondsSinceEpoch: seconds * 1_000_000).description == expected)
        }
    }

    @Test("adds seconds, saturating at the ends of the range")
    func addsSeconds() {
        let time = Timestamp(microsecondsSinceEpoch: 1_000_000)
        #expect(time.adding(seconds: 3600).microsecondsSinceEpoch == 3_601_000_000)
        #expect(time.adding(seconds: -2).microsecondsSinceEpoch == -1_000_000)
        #expect(Timestamp(microsecondsSinceEpoch: .max - 5).adding(seconds: 1).microsecondsSinceEpoch == .max)
        #expect(Timestamp(microsecondsSinceEpoch: .min + 5).adding(seconds: -1).microsecondsSinceEpoch == .min)
        #expect(time.adding(seconds: .max).microsecondsSinceEpoch == .max)
        #expect(time.adding(seconds: .min).microsecondsSinceEpoch == .min)
    }

    @Test("now is the system's real-time clock")
    func now() {
        let before = Date().timeIntervalSince1970
        let now = Timestamp.now
        let after = Date().timeIntervalSince1970
        let seconds = Double(now.microsecondsSinceEpoch) / 1_000_000
        #expect(seconds >= before - 0.001 && seconds <= after + 0.001)
    }

    @Test("orders chronologically")
    func orders() {
        #expect(Timestamp(iso8601: "1969-12-31T23:59:59Z")! < Timestamp(iso8601: "1970-01-01T00:00:00Z")!)
        #expect(Timestamp(microsecondsSinceEpoch: -5) < Timestamp(microsecondsSinceEpoch: 3))
    }

    @Test("encodes as ISO 8601 and decodes that or microseconds")
    func codable() throws {
        let time = Timestamp(microsecondsSinceEpoch: 1_795_246_460_123_456)
        let json = try JSONEncoder().encode([time])
        #expect(String(decoding: json, as: UTF8.self) == #"["2026-11-21T07:34:20.123456Z"]"#)
        #expect(try JSONDecoder().decode([Timestamp].self, from: json) == [time])
        #expect(try JSONDecoder().decode([Timestamp].self, from: Data("[1795246460123456]".utf8)) == [time])
        #expect(throws: DecodingError.self) {
            try JSONDecoder().decode([Timestamp].self, from: Data(#"["yesterday"]"#.utf8))
        }
    }
}
