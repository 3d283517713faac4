import SessionStore

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

    /// The row of a user given as ``json(_:owner:device:)``'s object (a running device's answer); `nil` when
    /// the object is not one.
    public static func text(json object: [String: Any]) -> String? {
        guard let ip = object["ip"] as? String, let mac = object["mac"] as? String else { return nil }
        func field(_ key: String) -> String { object[key].map { "\($0)" } ?? "" }
        return pad(ip, 39) + "  " + pad(mac, 17) + "  " + pad(field("vlan"), 4, right: true) + "  "
            + pad(field("interface"), 24) + "  " + pad(field("user"), 20) + "  " + pad(field("owner"), 5, right: true)
            + "  " + pad(field("copy"), 7) + "  " + field("login_time")
    }

    /// The second line of a row: the session's authorization, accounting and activity, indented; `nil` when
    /// none is known (a session as its login left it, without authorization attributes).
    public static func details(_ session: Session) -> String? {
        var parts: [String] = []
        if session.authorization != .none { parts.append(UpdateText.authorization(session.authorization)) }
        let accounting = session.accounting
        if accounting != .none {
            var text =
                "accounting in \(accounting.inputOctets) B/\(accounting.inputPackets) pkt, "
                + "out \(accounting.outputOctets) B/\(accounting.outputPackets) pkt"
            if let reportedAt = accounting.reportedAt { text += " at \(reportedAt)" }
            parts.append(text)
        }
        if let lastActivity = session.lastActivity { parts.append("active at \(lastActivity)") }
        return parts.isEmpty ? nil : "    " + parts.joined(separator: "; ")
    }

    /// The session as one JSON object on one line, keys sorted.
    public static func json(_ session: Session, owner: DeviceID, device: DeviceID) -> String {
        var bytes: [UInt8] = []
        appendJSON(session, owner: owner, device: device, to: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Appends ``json(_:owner:device:)``'s object to `bytes`, without a newline: no general serializer and
    /// no `String` per field, so that a `--json` listing runs within a small factor of its text twin.
    public static func appendJSON(_ session: Session, owner: DeviceID, device: DeviceID, to bytes: inout [UInt8]) {
        JSONWriter.append(to: &bytes) { object in
            object.addAccounting(session.accounting)
            object.addAuthorization(session.authorization, sessionTimeout: nil, idleTimeout: nil)
            object.add("copy", owner == device ? "primary" : "backup")
            object.add("generation", session.generation)
            object.add("idle_timeout", UInt64(session.idleTimeout))
            object.add("interface", session.accessInterface)
            object.add("ip", session.ip.description)
            if let lastActivity = session.lastActivity { object.add("last_activity", lastActivity) }
            object.add("logged_in_owner", UInt64(session.owner.rawValue))
            object.add("login_time", session.loginTime)
            object.add("mac", session.mac)
            object.add("owner", UInt64(owner.rawValue))
            object.add("portal_group", session.portalGroup.name)
            object.addObject("revisions") { json in
                json.add("accounting", session.revisions.accounting.description)
                json.add("activity", session.revisions.activity.description)
                json.add("authorization", session.revisions.authorization.description)
            }
            object.add("session_timeout", UInt64(session.sessionTimeout))
            object.add("user", session.userName)
            object.add("vlan", UInt64(session.vlan))
        }
    }
}
