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
