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
            let fields = fieldDifferences(x, y)
            found.append(.init(kind: .differs, ip: ip, detail: fields.joined(separator: ", ")))
        default: break
        }
    }
    return found
}

/// Every field in which two sessions of one address differ, named, with both values: `ACL 3001 / guests`.
func fieldDifferences(_ x: Session, _ y: Session) -> [String] {
    var fields: [String] = []
    func compare<T: Equatable>(_ name: String, _ a: T, _ b: T, _ show: (T) -> String) {
        if a != b { fields.append("\(name) \(show(a)) / \(show(b))") }
    }
    func text<T>(_ value: T?) -> String { value.map { "\($0)" } ?? "none" }
    compare("user", x.userName, y.userName) { $0 }
    compare("MAC", x.mac, y.mac) { "\($0)" }
    compare("owner", x.owner, y.owner) { "\($0)" }
    compare("generation", x.generation, y.generation) { "\($0)" }
    compare("VLAN", x.vlan, y.vlan) { "\($0)" }
    compare("login", x.loginTime, y.loginTime) { "\($0)" }
    compare("interface", x.accessInterface, y.accessInterface) { $0 }
    compare("portal group", x.portalGroup, y.portalGroup) { "\($0)" }
    compare("authentication", x.authenticationMode, y.authenticationMode) { "\($0)" }
    compare("session timeout", x.sessionTimeout, y.sessionTimeout) { "\($0) s" }
    compare("idle timeout", x.idleTimeout, y.idleTimeout) { "\($0) s" }
    compare("NAS IP", x.radius.nasIP, y.radius.nasIP) { text($0) }
    compare("Acct-Session-Id", x.radius.acctSessionID, y.radius.acctSessionID) { $0 }
    compare("Class", x.radius.classAttribute, y.radius.classAttribute) { "\($0.count) bytes" }
    let a = x.authorization
    let b = y.authorization
    compare("ACL", a.acl, b.acl) { acl in
        switch acl {
        case .number(let number): "\(number)"
        case .name(let name): name
        case nil: "none"
        }
    }
    compare("user profile", a.userProfile, b.userProfile) { text($0) }
    compare("inbound CAR", a.inboundCAR, b.inboundCAR) { $0.map { "\($0.cir) kbit/s" } ?? "none" }
    compare("outbound CAR", a.outboundCAR, b.outboundCAR) { $0.map { "\($0.cir) kbit/s" } ?? "none" }
    compare("VPN instance", a.vpnInstance, b.vpnInstance) { text($0) }
    compare("Filter-Id", a.filterID, b.filterID) { text($0) }
    compare("accounting interval", a.accountingInterval, b.accountingInterval) { "\($0) s" }
    compare("input octets", x.accounting.inputOctets, y.accounting.inputOctets) { "\($0)" }
    compare("output octets", x.accounting.outputOctets, y.accounting.outputOctets) { "\($0)" }
    compare("input packets", x.accounting.inputPackets, y.accounting.inputPackets) { "\($0)" }
    compare("output packets", x.accounting.outputPackets, y.accounting.outputPackets) { "\($0)" }
    compare("accounting report", x.accounting.reportedAt, y.accounting.reportedAt) { text($0) }
    compare("last activity", x.lastActivity, y.lastActivity) { text($0) }
    compare("revisions", x.revisions, y.revisions) {
        "\($0.authorization)/\($0.accounting)/\($0.activity)"
    }
    return fields
}
