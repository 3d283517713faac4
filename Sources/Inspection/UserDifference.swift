import SessionStore

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

    /// The difference as one JSON object on one line, keys sorted.
    public var json: String {
        JSONWriter.string { object in
            object.add("detail", detail)
            object.add("ip", ip.description)
            object.add("kind", kind.rawValue)
        }
    }
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
