#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A point in time, in microseconds since 1970-01-01T00:00:00Z (UTC, without leap seconds).
///
/// Prints and parses as ISO 8601 in UTC, in the proleptic Gregorian calendar:
///
/// ```swift
/// let time = Timestamp(iso8601: "2026-11-21T07:34:20.123456Z")!
/// time.description  // "2026-11-21T07:34:20.123456Z"
/// ```
///
/// The whole `Int64` range is supported, before 1970 too (roughly the years -290308 to 294247); years outside
/// 0000...9999 print with a sign and at least four digits (ISO 8601 expanded form), as in `-0001-12-31T...` or
/// `+10000-01-01T...`.
public struct Timestamp: Hashable, Comparable, Sendable {
    /// Microseconds since 1970-01-01T00:00:00Z; negative before.
    public var microsecondsSinceEpoch: Int64

    /// Creates a timestamp.
    ///
    /// - Parameter microsecondsSinceEpoch: Microseconds since 1970-01-01T00:00:00Z; negative before.
    @inlinable
    public init(microsecondsSinceEpoch: Int64) {
        self.microsecondsSinceEpoch = microsecondsSinceEpoch
    }

    /// The current time of the system's real-time clock (`CLOCK_REALTIME`).
    public static var now: Timestamp {
        var time = timespec()
        clock_gettime(CLOCK_REALTIME, &time)
        return Timestamp(microsecondsSinceEpoch: Int64(time.tv_sec) * 1_000_000 + Int64(time.tv_nsec) / 1_000)
    }

    /// The time `seconds` later (earlier when negative), saturating at the ends of the `Int64` range instead of
    /// trapping.
    ///
    /// - Parameter seconds: The number of seconds to add.
    /// - Returns: The later (or earlier) time.
    @inlinable
    public func adding(seconds: Int64) -> Timestamp {
        let (delta, productOverflow) = seconds.multipliedReportingOverflow(by: 1_000_000)
        let (sum, sumOverflow) = microsecondsSinceEpoch.addingReportingOverflow(delta)
        if productOverflow || sumOverflow {
            return Timestamp(microsecondsSinceEpoch: seconds < 0 ? .min : .max)
        }
        return Timestamp(microsecondsSinceEpoch: sum)
    }

    /// Orders timestamps chronologically.
    ///
    /// - Parameters:
    ///   - lhs: A timestamp.
    ///   - rhs: Another timestamp.
    /// - Returns: Whether `lhs` is earlier than `rhs`.
    @inlinable
    public static func < (lhs: Timestamp, rhs: Timestamp) -> Bool {
        lhs.microsecondsSinceEpoch < rhs.microsecondsSinceEpoch
    }
}

// MARK: - Civil calendar

/// Days since 1970-01-01 of a date of the proleptic Gregorian calendar (Howard Hinnant's `days_from_civil`).
@inline(__always)
private func daysFromCivil(year: Int64, month: Int64, day: Int64) -> Int64 {
    let year = month <= 2 ? year - 1 : year
    let era = (year >= 0 ? year : year - 399) / 400
    let yearOfEra = year - era * 400  // 0...399
    let dayOfYear = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1  // 0...365
    let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear  // 0...146096
    return era * 146_097 + dayOfEra - 719_468
}

/// The date of a day since 1970-01-01 in the proleptic Gregorian calendar (Howard Hinnant's `civil_from_days`).
@inline(__always)
private func civilFromDays(_ days: Int64) -> (year: Int64, month: Int64, day: Int64) {
    let shifted = days + 719_468
    let era = (shifted >= 0 ? shifted : shifted - 146_096) / 146_097
    let dayOfEra = shifted - era * 146_097  // 0...146096
    let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36524 - dayOfEra / 146_096) / 365  // 0...399
    let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)  // 0...365
    let monthIndex = (5 * dayOfYear + 2) / 153  // 0...11, from March
    let day = dayOfYear - (153 * monthIndex + 2) / 5 + 1
    let month = monthIndex < 10 ? monthIndex + 3 : monthIndex - 9
    return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
}

@inline(__always)
private func isLeapYear(_ year: Int64) -> Bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

private func daysInMonth(_ month: Int64, year: Int64) -> Int64 {
    switch month {
    case 2: isLeapYear(year) ? 29 : 28
    case 4, 6, 9, 11: 30
    default: 31
    }
}

/// Floor division and its non-negative remainder.
@inline(__always)
private func floorDivide(_ value: Int64, by divisor: Int64) -> (quotient: Int64, remainder: Int64) {
    let quotient = value / divisor
    let remainder = value % divisor
    return remainder < 0 ? (quotient - 1, remainder + divisor) : (quotient, remainder)
}

// MARK: - ISO 8601

extension Timestamp: CustomStringConvertible {
    /// The time in ISO 8601, UTC, with microseconds: `2026-11-21T07:34:20.123456Z`.
    public var description: String {
        String(unsafeUninitializedCapacity: 40) { writeDescription(into: $0) }
    }

    /// Writes ``description``'s bytes into `buffer`, which has room for 40; returns how many it wrote.
    package func writeDescription(into buffer: UnsafeMutableBufferPointer<UInt8>) -> Int {
        let (seconds, microseconds) = floorDivide(microsecondsSinceEpoch, by: 1_000_000)
        let (days, secondOfDay) = floorDivide(seconds, by: 86_400)
        let (year, month, day) = civilFromDays(days)
        var index = 0
        func put(_ value: Int64, width: Int) {
            var divisor: Int64 = 1
            for _ in 1..<width {
                divisor *= 10
            }
            while divisor > 0 {
                buffer[index] = UInt8(ascii: "0") + UInt8(value / divisor % 10)
                index += 1
                divisor /= 10
            }
        }
        func put(_ character: Unicode.Scalar) {
            buffer[index] = UInt8(ascii: character)
            index += 1
        }
        if year < 0 {
            put("-")
        } else if year > 9999 {
            put("+")
        }
        let magnitude = year.magnitude
        put(Int64(magnitude), width: max(4, magnitude >= 100_000 ? 6 : magnitude >= 10_000 ? 5 : 4))
        put("-")
        put(month, width: 2)
        put("-")
        put(day, width: 2)
        put("T")
        put(secondOfDay / 3600, width: 2)
        put(":")
        put(secondOfDay / 60 % 60, width: 2)
        put(":")
        put(secondOfDay % 60, width: 2)
        put(".")
        put(microseconds, width: 6)
        put("Z")
        return index
    }
}

extension Timestamp {
    /// Parses an ISO 8601 time in UTC: `2026-11-21T07:34:20.123456Z`, with 1 to 6 digits of fraction, or none
    /// (`2026-11-21T07:34:20Z`).
    ///
    /// The year has four digits, or a sign and four to six digits (`-0001`, `+10000`). Time zone offsets other than
    /// `Z`, leap seconds (`:60`), lowercase `t` or `z`, and times outside the `Int64` range of microseconds are
    /// refused.
    ///
    /// - Parameter iso8601: The time.
    /// - Returns: `nil` when `iso8601` is not a time in that form.
    public init?(iso8601: some StringProtocol) {
        let parsed =
            iso8601.utf8.withContiguousStorageIfAvailable { Timestamp.parse($0) }
            ?? Array(iso8601.utf8).withUnsafeBufferPointer { Timestamp.parse($0) }
        guard let parsed else {
            return nil
        }
        self = parsed
    }

    private static func parse(_ text: UnsafeBufferPointer<UInt8>) -> Timestamp? {
        var index = 0
        func number(digits range: ClosedRange<Int>) -> Int64? {
            let start = index
            var value: Int64 = 0
            while index < text.count, index - start < range.upperBound,
                text[index] &- UInt8(ascii: "0") < 10
            {
                value = value * 10 + Int64(text[index] - UInt8(ascii: "0"))
                index += 1
            }
            return range.contains(index - start) ? value : nil
        }
        func expect(_ character: Unicode.Scalar) -> Bool {
            guard index < text.count, text[index] == UInt8(ascii: character) else {
                return false
            }
            index += 1
            return true
        }
        var year: Int64
        if expect("-") {
            guard let magnitude = number(digits: 4...6) else { return nil }
            year = -magnitude
        } else if expect("+") {
            guard let magnitude = number(digits: 4...6) else { return nil }
            year = magnitude
        } else {
            guard let value = number(digits: 4...4) else { return nil }
            year = value
        }
        guard expect("-"), let month = number(digits: 2...2), (1...12).contains(month),
            expect("-"), let day = number(digits: 2...2), (1...daysInMonth(month, year: year)).contains(day),
            expect("T"), let hour = number(digits: 2...2), hour < 24,
            expect(":"), let minute = number(digits: 2...2), minute < 60,
            expect(":"), let second = number(digits: 2...2), second < 60
        else {
            return nil
        }
        var fraction: Int64 = 0
        if expect(".") {
            let start = index
            guard let digits = number(digits: 1...6) else { return nil }
            fraction = digits
            for _ in (index - start)..<6 {
                fraction *= 10
            }
        }
        guard expect("Z"), index == text.count else {
            return nil
        }
        let days = daysFromCivil(year: year, month: month, day: day)
        let seconds = days * 86_400 + hour * 3600 + minute * 60 + second
        // Before the epoch, scale the next whole second and step back, so that the earliest representable
        // microseconds do not overflow on the way.
        let (whole, part) = seconds < 0 && fraction > 0 ? (seconds + 1, fraction - 1_000_000) : (seconds, fraction)
        let (scaled, productOverflow) = whole.multipliedReportingOverflow(by: 1_000_000)
        let (microseconds, sumOverflow) = scaled.addingReportingOverflow(part)
        guard !productOverflow, !sumOverflow else {
            return nil
        }
        return Timestamp(microsecondsSinceEpoch: microseconds)
    }
}

// MARK: - Codable

extension Timestamp: Codable {
    /// Decodes a timestamp from its ISO 8601 text (see ``init(iso8601:)``) or from an integer number of
    /// microseconds since the epoch.
    ///
    /// - Parameter decoder: The decoder to read from.
    /// - Throws: `DecodingError.dataCorrupted` when the value is neither.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let microseconds = try? container.decode(Int64.self) {
            self.init(microsecondsSinceEpoch: microseconds)
            return
        }
        let text = try container.decode(String.self)
        guard let time = Timestamp(iso8601: text) else {
            throw DecodingError.dataCorruptedError(
                in: container,
                debugDescription: "'\(text)' is not an ISO 8601 UTC time (2026-11-21T07:34:20.123456Z)"
            )
        }
        self = time
    }

    /// Encodes the timestamp as its ISO 8601 text (``description``), which keeps every microsecond.
    ///
    /// - Parameter encoder: The encoder to write to.
    /// - Throws: What the encoder throws.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}
