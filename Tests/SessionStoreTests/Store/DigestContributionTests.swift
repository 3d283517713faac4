import Testing

@testable import SessionStore

@Suite("A session's part of the table digest")
struct DigestContributionTests {
    static let loginTime = Timestamp(microsecondsSinceEpoch: 1_764_000_000_000_000)

    /// Sessions over the fields' shapes: IPv4 and IPv6, with and without a NAS address, and with each kind of
    /// part an update sets (an ACL by number or by name, texts present or absent, rates, counters, revisions).
    static func sessions() -> [Session] {
        var plain = testSession(1, loginTime: loginTime)
        plain.generation = Generation(term: 3, sequence: 77)
        var ipv6 = testSession(4, owner: 2, loginTime: loginTime, sessionTimeout: 3_600)
        ipv6.radius = RADIUSAttributes(nasIP: nil, acctSessionID: "", classAttribute: [])
        var named = testSession(7, loginTime: loginTime)
        named.authorization = Authorization(
            acl: .name("guests"),
            userProfile: "staff",
            inboundCAR: Authorization.CAR(cir: 2_048, cbs: 4_096),
            outboundCAR: nil,
            vpnInstance: nil,
            filterID: "filter-1",
            accountingInterval: 600
        )
        named.accounting = AccountingState(
            inputOctets: 5_000_000_000,
            outputOctets: 12,
            inputPackets: 9,
            outputPackets: 3,
            reportedAt: Timestamp(microsecondsSinceEpoch: 1_764_000_100_000_000)
        )
        named.lastActivity = Timestamp(microsecondsSinceEpoch: 1_764_000_200_000_000)
        named.revisions = Session.Revisions(
            authorization: Revision(term: 2, sequence: 10, device: 1),
            accounting: Revision(term: 2, sequence: 11, device: 2),
            activity: Revision(term: 3, sequence: 12, device: 1)
        )
        var numbered = testSession(8, loginTime: loginTime)
        numbered.authorization = Authorization(acl: .number(3_001), outboundCAR: Authorization.CAR(cir: 100))
        return [plain, ipv6, named, numbered]
    }

    @Test("each contribution is the pinned value: both devices of a pair, whatever their versions, hash alike")
    func pinned() {
        let contributions = Self.sessions().map(TableDigest.contribution(of:))
        #expect(
            contributions == [
                12_881_643_990_745_985_642, 7_066_102_681_736_728_805, 13_995_739_628_036_807_845,
                401_741_124_566_116_755,
            ]
        )
    }
}
