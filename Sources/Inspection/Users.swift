import SessionStore

/// Who was online at `time`, rebuilt from the log: every record logged at or before it, replayed.
///
/// - Throws: ``InspectionError`` when the log no longer starts at its first record (it was truncated behind a
///   checkpoint), so that the past cannot be rebuilt.
public func sessions(at time: Timestamp, in reader: StoreReader) throws -> [Session] {
    let positions = try reader.positions()
    let first = positions.firstRetained ?? positions.lastSequence + 1
    if first > 1 {
        throw InspectionError(
            "the log starts at record \(first): records before it were truncated behind a checkpoint, so the past "
                + "cannot be rebuilt (keep the log with a hold to answer --at)"
        )
    }
    var table = SessionTable()
    try reader.forEachRecord { record in
        guard record.time <= time else { return false }
        table.apply(record)
        return true
    }
    return table.sessions.values.sorted { $0.ip < $1.ip }
}

/// A problem an inspection command reports.
public struct InspectionError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A session as a row of `tandem users`, in the spirit of `display portal user`.
public enum UserRow {
    public static let header =
        pad("IP", 39) + "  " + pad("MAC", 17) + "  " + pad("VLAN", 4) + "  "
        + pad("INTERFACE", 24) + "  " + pad("USER", 20) + "  OWNER  COPY     LOGIN (UTC)"

    public static func text(_ session: Session, owner: DeviceID, device: DeviceID) -> String {
        pad("\(session.ip)", 39) + "  " + pad("\(session.mac)", 17) + "  " + pad(String(session.vlan), 4, right: true)
            + "  " + pad(session.accessInterface, 24) + "  " + pad(session.userName, 20) + "  "
            + pad(String(owner.rawValue), 5, right: true) + "  " + pad(owner == device ? "primary" : "backup", 7)
            + "  " + session.loginTime.description
    }

    public static func json(_ session: Session, owner: DeviceID, device: DeviceID) -> String {
        jsonLine([
            "ip": "\(session.ip)", "mac": "\(session.mac)", "vlan": Int(session.vlan),
            "interface": session.accessInterface, "user": session.userName, "owner": Int(owner.rawValue),
            "logged_in_owner": Int(session.owner.rawValue), "copy": owner == device ? "primary" : "backup",
            "login_time": session.loginTime.description, "portal_group": session.portalGroup.name,
            "session_timeout": Int(session.sessionTimeout), "idle_timeout": Int(session.idleTimeout),
            "generation": "\(session.generation)",
        ])
    }
}

/// How two stores' online users differ.
public struct UserDifference: Sendable, Hashable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        case onlyInFirst = "only-in-first"
        case onlyInSecond = "only-in-second"
        case differs
    }
    public var kind: Kind
    public var ip: IPAddress
    public var detail: String

    public var description: String { "\(kind.rawValue)  \(ip)  \(detail)" }

    public var json: String { jsonLine(["kind": kind.rawValue, "ip": "\(ip)", "detail": detail]) }
}

/// Compares two lists of online users, address by address.
public func differences(_ first: [Session], _ second: [Session]) -> [UserDifference] {
    let a = Dictionary(first.map { ($0.ip, $0) }, uniquingKeysWith: { $1 })
    let b = Dictionary(second.map { ($0.ip, $0) }, uniquingKeysWith: { $1 })
    var found: [UserDifference] = []
    for ip in Set(a.keys).union(b.keys).sorted() {
        switch (a[ip], b[ip]) {
        case (let x?, nil): found.append(.init(kind: .onlyInFirst, ip: ip, detail: describe(x)))
        case (nil, let y?): found.append(.init(kind: .onlyInSecond, ip: ip, detail: describe(y)))
        case (let x?, let y?) where x != y:
            var fields: [String] = []
            if x.userName != y.userName { fields.append("user \(x.userName) / \(y.userName)") }
            if x.mac != y.mac { fields.append("MAC \(x.mac) / \(y.mac)") }
            if x.owner != y.owner { fields.append("owner \(x.owner) / \(y.owner)") }
            if x.generation != y.generation { fields.append("generation \(x.generation) / \(y.generation)") }
            if x.vlan != y.vlan { fields.append("VLAN \(x.vlan) / \(y.vlan)") }
            if x.loginTime != y.loginTime { fields.append("login \(x.loginTime) / \(y.loginTime)") }
            if fields.isEmpty { fields.append("other fields differ (interface, timeouts or RADIUS attributes)") }
            found.append(.init(kind: .differs, ip: ip, detail: fields.joined(separator: ", ")))
        default: break
        }
    }
    return found
}
