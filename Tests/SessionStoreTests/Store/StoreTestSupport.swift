import Foundation
import SessionStore
import TestSupport
import Testing

extension SessionStore.Configuration {
    /// The configuration tests use: device 1 of portal group "campus", no timers unless asked for.
    static func test(deviceID: DeviceID = 1, portalGroup: PortalGroup = "campus") -> Self {
        var configuration = SessionStore.Configuration(deviceID: deviceID, portalGroup: portalGroup)
        configuration.durability = .noSync
        configuration.expiryInterval = nil
        configuration.initialMapSize = 16 << 20
        return configuration
    }
}

/// A valid session of device 1, portal group "campus", numbered so that fields differ per user.
func testSession(
    _ number: Int,
    owner: DeviceID = 1,
    portalGroup: PortalGroup = "campus",
    loginTime: Timestamp = .now,
    sessionTimeout: UInt32 = 0
) -> Session {
    Session(
        ip: number % 5 == 4
            ? IPAddress(high: 0x2001_0db8_0000_0000, low: UInt64(number))
            : IPAddress(ipv4: 0x0A00_0000 | UInt32(number)),
        mac: MACAddress(rawValue: 0x0200_0000_0000 | UInt64(number)),
        userName: "user\(number)",
        vlan: UInt16(1 + number % 4000),
        accessInterface: "GigabitEthernet1/0/\(1 + number % 48)",
        portalGroup: portalGroup,
        authenticationMode: number % 2 == 0 ? .direct : .crossSubnet,
        owner: owner,
        loginTime: loginTime,
        sessionTimeout: sessionTimeout,
        idleTimeout: 600,
        radius: RADIUSAttributes(
            nasIP: IPAddress(ipv4: 0xC0A8_0101),
            acctSessionID: "acct-\(number)",
            classAttribute: Array("class-\(number)".utf8)
        )
    )
}

/// Compares sessions ignoring the generation the store assigned.
func sameUser(_ a: Session, _ b: Session) -> Bool {
    var a = a
    var b = b
    a.generation = .zero
    b.generation = .zero
    return a == b
}

/// Closes `store`, reopens it and counts its digest from scratch, which must equal the digest it kept through its
/// changes; returns that digest and the users the reopened store holds.
func closeAndRecount(
    _ store: SessionStore,
    at path: String,
    deviceID: DeviceID
) async throws -> (digest: UInt64, count: Int) {
    let kept = try #require(store.digestHistory.latest(through: store.lastLoggedSequence))
    await store.close()
    let reopened = try SessionStore.open(at: path, configuration: .test(deviceID: deviceID))
    try await reopened.initializeDigest()
    let recounted = try #require(reopened.digestHistory.latest(through: reopened.lastLoggedSequence))
    #expect(kept.value == recounted.value, "the digest kept through the changes differs from a recount")
    let count = reopened.count
    await reopened.close()
    return (kept.value, count)
}
