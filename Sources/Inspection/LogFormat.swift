import Foundation
import SessionStore

/// Which log records an operator asked for.
public struct LogFilter: Sendable {
    public var from: UInt64?
    public var to: UInt64?
    public var since: Timestamp?
    public var until: Timestamp?
    public var origin: DeviceID?
    public var ip: IPAddress?
    public var mac: MACAddress?
    public var user: String?
    public var kind: Event.Kind?

    /// Every record.
    public init() {}

    /// Whether the only conditions are on the sequence.
    var onlySequenceRange: Bool {
        since == nil && until == nil && origin == nil && ip == nil && mac == nil && user == nil && kind == nil
    }

    /// Whether `record` passes every condition set.
    public func matches(_ record: LogRecord) -> Bool {
        if let from, record.sequence < from { return false }
        if let to, record.sequence > to { return false }
        if let since, record.time < since { return false }
        if let until, record.time > until { return false }
        if let origin, record.origin != origin { return false }
        if let kind, record.event.kind != kind { return false }
        let fields = LogFields(record.event)
        if let ip, fields.ip != ip { return false }
        if let mac, fields.mac != mac { return false }
        if let user, fields.user != user { return false }
        return true
    }
}

/// The user-level fields of an event, where it has them.
struct LogFields {
    var ip: IPAddress?
    var mac: MACAddress?
    var user: String?
    var owner: DeviceID?
    var reason: LogoutReason?

    init(_ event: Event) {
        switch event {
        case .login(let session):
            (ip, mac, user, owner) = (session.ip, session.mac, session.userName, session.owner)
        case .logout(let logout):
            (ip, mac, user, owner, reason) = (logout.ip, logout.mac, logout.userName, logout.owner, logout.reason)
        case .update(let update):
            (ip, owner) = (update.ip, update.owner)
        case .deviceIDChanged, .takeover:
            break
        }
    }
}

/// One log record as a line for people or as a JSON object.
public enum LogLine {
    /// `sequence  time  origin  kind  ip  mac  user  reason`, aligned; other kinds describe themselves.
    public static func text(_ record: LogRecord) -> String {
        let head =
            pad(String(record.sequence), 10, right: true) + "  " + record.time.description + "  "
            + pad("dev \(record.origin)", 7) + "  " + pad(record.event.kind.description, 16) + "  "
        switch record.event {
        case .login, .logout:
            let fields = LogFields(record.event)
            var line =
                head + pad(fields.ip.map { "\($0)" } ?? "", 39) + "  " + pad(fields.mac.map { "\($0)" } ?? "", 17)
                + "  " + (fields.user ?? "")
            if let reason = fields.reason { line += "  " + reason.description }
            return line
        case .deviceIDChanged(let from, let to):
            return head + "device ID \(from) -> \(to)"
        case .takeover(let from, let to, let term):
            return head + "device \(to) took over the users of device \(from), term \(term)"
        case .update(let update):
            return head + pad("\(update.ip)", 39) + "  " + update.reason.description + ": "
                + UpdateText.changes(update)
        }
    }

    /// The record's fields as one JSON object on one line (absent fields left out).
    public static func json(_ record: LogRecord) -> String {
        var bytes: [UInt8] = []
        appendJSON(record, to: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Appends ``json(_:)``'s object to `bytes`, without a newline. The record is encoded and written by
    /// the same code as `tandem log dump --json`'s lines read straight from the log, so that a dump line
    /// has one field list whichever path prints it.
    public static func appendJSON(_ record: LogRecord, to bytes: inout [UInt8]) {
        var unit: [UInt8] = []
        RecordCodec.encode(record, into: &unit)
        unit.withUnsafeBytes { encoded in
            do throws(CorruptRecordError) {
                try RecordCodec.appendJSON(ofRecord: encoded, to: &bytes)
            } catch {
                assertionFailure("a record encoded here does not read back: \(error)")
            }
        }
    }
}

/// A JSON object on one line, keys sorted (for the tools' small objects; log lines use a faster writer).
public func jsonLine(_ object: [String: Any]) -> String {
    let data =
        (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]))
        ?? Data("{}".utf8)
    return String(decoding: data, as: UTF8.self)
}

func pad(_ text: String, _ width: Int, right: Bool = false) -> String {
    guard text.count < width else { return text }
    let fill = String(repeating: " ", count: width - text.count)
    return right ? fill + text : text + fill
}

/// Writes `tandem log dump`'s output for the records `filter` passes: lines of text or JSON, handed to
/// `flush` in chunks of about 1 MiB.
///
/// - Returns: the records written.
@discardableResult
public func dumpLog(
    _ reader: StoreReader,
    filter: LogFilter,
    json: Bool,
    flush: ([UInt8]) -> Void
) throws -> Int {
    var written = 0
    var buffer: [UInt8] = []
    buffer.reserveCapacity(1 << 20 + 4096)
    /// Ends the line just appended, and hands the buffer on once it holds 1 MiB.
    func endLine() {
        buffer.append(UInt8(ascii: "\n"))
        written += 1
        if buffer.count >= 1 << 20 {
            flush(buffer)
            buffer.removeAll(keepingCapacity: true)
        }
    }
    if json && filter.onlySequenceRange {
        // JSON straight from the encoded records, without decoding them into values.
        try reader.forEachRawRecord(from: filter.from ?? 0, through: filter.to ?? .max) { key, value in
            do throws(CorruptRecordError) {
                try RecordCodec.appendJSON(ofRecord: value, to: &buffer)
            } catch {
                let sequence = key.count == 8 ? UInt64(bigEndian: key.loadUnaligned(as: UInt64.self)) : 0
                throw SessionStoreError(.corruptRecord(error, location: "log sequence \(sequence)"))
            }
            endLine()
            return true
        }
    } else {
        try reader.forEachRecord(from: filter.from ?? 0, through: filter.to ?? .max) { record in
            guard filter.matches(record) else { return true }
            if json {
                LogLine.appendJSON(record, to: &buffer)
            } else {
                buffer.append(contentsOf: LogLine.text(record).utf8)
            }
            endLine()
            return true
        }
    }
    if !buffer.isEmpty { flush(buffer) }
    return written
}

/// What an update changed, in words: `acl 3001, outbound CAR 10000 kbit/s, session timeout 3600 s`.
enum UpdateText {
    static func changes(_ update: Update) -> String {
        var parts: [String] = []
        if let part = update.authorization {
            parts.append(authorization(part.authorization))
            parts.append("session timeout \(part.sessionTimeout) s, idle timeout \(part.idleTimeout) s")
        }
        if let accounting = update.accounting {
            var text =
                "in \(accounting.inputOctets) B/\(accounting.inputPackets) pkt, "
                + "out \(accounting.outputOctets) B/\(accounting.outputPackets) pkt"
            if let reportedAt = accounting.reportedAt { text += " at \(reportedAt)" }
            parts.append(text)
        }
        if let lastActivity = update.lastActivity { parts.append("active at \(lastActivity)") }
        return parts.joined(separator: "; ")
    }

    /// The attributes of an authorization, those present: `acl 3001, profile staff, in CAR 2000 kbit/s`.
    static func authorization(_ authorization: Authorization) -> String {
        var words: [String] = []
        switch authorization.acl {
        case .number(let number): words.append("acl \(number)")
        case .name(let name): words.append("acl \(name)")
        case nil: break
        }
        if let profile = authorization.userProfile { words.append("profile \(profile)") }
        if let car = authorization.inboundCAR { words.append("in CAR \(car.cir) kbit/s") }
        if let car = authorization.outboundCAR { words.append("out CAR \(car.cir) kbit/s") }
        if let vpn = authorization.vpnInstance { words.append("vpn \(vpn)") }
        if let filter = authorization.filterID { words.append("filter-id \(filter)") }
        if authorization.accountingInterval > 0 {
            words.append("accounting every \(authorization.accountingInterval) s")
        }
        return words.isEmpty ? "no authorization attributes" : words.joined(separator: ", ")
    }
}
