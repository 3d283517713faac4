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
        }
    }

    /// The record's fields as one JSON object (keys sorted; absent fields left out).
    public static func json(_ record: LogRecord) -> String {
        var object: [String: Any] = [
            "sequence": record.sequence, "term": record.term, "origin": Int(record.origin.rawValue),
            "time": record.time.description, "kind": record.event.kind.description,
        ]
        switch record.event {
        case .login(let session):
            object["ip"] = "\(session.ip)"
            object["mac"] = "\(session.mac)"
            object["user"] = session.userName
            object["owner"] = Int(session.owner.rawValue)
            object["vlan"] = Int(session.vlan)
            object["interface"] = session.accessInterface
            object["generation"] = "\(session.generation)"
        case .logout(let logout):
            object["ip"] = "\(logout.ip)"
            object["mac"] = "\(logout.mac)"
            object["user"] = logout.userName
            object["owner"] = Int(logout.owner.rawValue)
            object["reason"] = logout.reason.description
            object["generation"] = "\(logout.generation)"
        case .deviceIDChanged(let from, let to):
            object["from"] = Int(from.rawValue)
            object["to"] = Int(to.rawValue)
        case .takeover(let from, let to, let term):
            object["from"] = Int(from.rawValue)
            object["to"] = Int(to.rawValue)
            object["new_term"] = Int(term)
        }
        return jsonLine(object)
    }
}

/// A JSON object on one line, keys sorted.
func jsonLine(_ object: [String: Any]) -> String {
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

/// Writes `tandem log dump`'s output for the records `filter` passes.
///
/// - Returns: the records written.
@discardableResult
public func dumpLog(
    _ reader: StoreReader,
    filter: LogFilter,
    json: Bool,
    write: (String) -> Void
) throws -> Int {
    var written = 0
    try reader.forEachRecord(from: filter.from ?? 0, through: filter.to ?? .max) { record in
        guard filter.matches(record) else { return true }
        write(json ? LogLine.json(record) : LogLine.text(record))
        written += 1
        return true
    }
    return written
}
