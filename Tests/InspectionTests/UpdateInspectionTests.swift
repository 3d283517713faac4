import Foundation
import Inspection
import SessionStore
import Testing

@Suite("Inspecting updates")
struct UpdateInspectionTests {
    static let staff = Authorization(
        acl: .number(3001),
        userProfile: "staff",
        outboundCAR: .init(cir: 10_000),
        vpnInstance: "vpn1",
        accountingInterval: 600
    )
    static let report = AccountingState(
        inputOctets: 5 << 32,
        outputOctets: 900,
        inputPackets: 40,
        outputPackets: 30,
        reportedAt: Timestamp(microsecondsSinceEpoch: 1_795_000_100_000_000)
    )

    /// Users 1...4 log in (1 and 2 with NAS IP 192.0.2.1), 1 gets a CoA, 2 an accounting report; returns the time
    /// between the two updates.
    static func history(_ scratch: ScratchStore) async throws -> Timestamp {
        let store = try scratch.open()
        try await store.holdLog("inspection", from: 1)
        for number in 1...4 {
            var session = user(number)
            if number <= 2 { session.radius.nasIP = IPAddress("192.0.2.1") }
            try await store.login(session)
        }
        try await store.update(.changeOfAuthorization(user(1).ip, Self.staff, sessionTimeout: 3_600))
        try await Task.sleep(for: .milliseconds(5))
        let between = Timestamp.now
        try await Task.sleep(for: .milliseconds(5))
        try await store.update(.accountingInterim(user(2).ip, Self.report, lastActivity: Self.report.reportedAt))
        await store.close()
        return between
    }

    @Test("dump shows updates with what they changed, in text and JSON, and --kind update picks them")
    func dump() async throws {
        let scratch = try ScratchStore()
        _ = try await Self.history(scratch)
        let reader = try StoreReader(path: scratch.path)
        var filter = LogFilter()
        filter.kind = .update
        var text: [UInt8] = []
        try dumpLog(reader, filter: filter, json: false) { text += $0 }
        let lines = splitLines(text).map(maskTimes)
        #expect(lines.count == 2)
        #expect(lines[0].contains("update"))
        #expect(
            lines[0].hasSuffix(
                "coa: acl 3001, profile staff, out CAR 10000 kbit/s, vpn vpn1, accounting every 600 s; "
                    + "session timeout 3600 s, idle timeout 0 s"
            )
        )
        #expect(
            lines[1].hasSuffix(
                "accounting-interim: in 21474836480 B/40 pkt, out 900 B/30 pkt at <time>; active at <time>"
            )
        )

        var json: [UInt8] = []
        try dumpLog(reader, filter: filter, json: true) { json += $0 }
        let objects = try splitLines(json).map {
            try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
        #expect(objects.map { $0["kind"] as? String } == ["update", "update"])
        #expect(objects[0]["changed"] as? [String] == ["authorization"])
        #expect(objects[0]["reason"] as? String == "coa")
        #expect(objects[0]["revision"] as? String == "1.5@1")
        let authorization = try #require(objects[0]["authorization"] as? [String: Any])
        #expect(authorization["acl"] as? String == "3001")
        #expect(authorization["session_timeout"] as? Int == 3_600)
        #expect((authorization["outbound_car"] as? [String: Int])?["cir"] == 10_000)
        #expect(objects[1]["changed"] as? [String] == ["accounting", "activity"])
        #expect((objects[1]["accounting"] as? [String: Any])?["input_octets"] as? Int == 5 << 32)
        #expect(objects[1]["last_activity"] as? String == Self.report.reportedAt?.description)
        // The line read straight from the record is the line of the decoded record.
        try reader.forEachRawRecord { _, value in
            var fast: [UInt8] = []
            try RecordCodec.appendJSON(ofRecord: value, to: &fast)
            #expect(String(decoding: fast, as: UTF8.self) == LogLine.json(try RecordCodec.decodeRecord(value)))
            return true
        }
    }

    @Test("users shows what updates set, --nas-ip finds the users of a NAS IP, --at applies updates")
    func users() async throws {
        let scratch = try ScratchStore()
        let between = try await Self.history(scratch)
        let reader = try StoreReader(path: scratch.path)
        let sessions = try reader.onlineSessions()
        let first = try #require(sessions.first { $0.ip == user(1).ip })
        #expect(first.authorization == Self.staff)
        #expect(first.sessionTimeout == 3_600)
        #expect(
            UserRow.details(first)
                == "    acl 3001, profile staff, out CAR 10000 kbit/s, vpn vpn1, accounting every 600 s"
        )
        let second = try #require(sessions.first { $0.ip == user(2).ip })
        #expect(second.accounting == Self.report)
        #expect(UserRow.details(second)?.contains("accounting in 21474836480 B/40 pkt, out 900 B/30 pkt") == true)
        #expect(UserRow.details(try #require(sessions.first { $0.ip == user(3).ip })) == nil)
        #expect(sessions.filter { $0.radius.nasIP == IPAddress("192.0.2.1") }.map(\.ip) == [user(1).ip, user(2).ip])

        let then = try Inspection.sessions(at: between, in: reader)
        #expect(then.first { $0.ip == user(1).ip }?.authorization == Self.staff)
        #expect(then.first { $0.ip == user(2).ip }?.accounting == AccountingState.none)
        #expect(try Inspection.sessions(at: .now, in: reader) == sessions)

        // The live store answers the same, for a controller about to delete a NAS IP (R11).
        let store = try scratch.open()
        #expect(try store.sessions(withNASIP: IPAddress("192.0.2.1")!).map(\.ip) == [user(1).ip, user(2).ip])
        #expect(try store.sessions(withNASIP: IPAddress("192.0.2.9")!).isEmpty)
        await store.close()
    }

    @Test("diff names every field that differs, and verify replays updates")
    func diffAndVerify() async throws {
        let scratch = try ScratchStore()
        _ = try await Self.history(scratch)
        #expect(try verifyStore(try StoreReader(path: scratch.path)).problems.isEmpty)
        let copy = scratch.directory + "/copy"
        let store = try scratch.open()
        try await store.copy(to: copy)
        try await store.update(
            .changeOfAuthorization(user(1).ip, Authorization(acl: .name("guests"), accountingInterval: 600))
        )
        try await store.update(.activity(user(3).ip, at: Timestamp(microsecondsSinceEpoch: 1_795_000_200_000_000)))
        await store.close()
        #expect(try verifyStore(try StoreReader(path: scratch.path)).problems.isEmpty)
        let found = differences(
            try StoreReader(path: scratch.path).onlineSessions(),
            try StoreReader(path: copy).onlineSessions()
        )
        #expect(found.map(\.kind) == [.differs, .differs])
        #expect(
            found[0].detail.hasPrefix("ACL guests / 3001, user profile none / staff, outbound CAR none / 10000 kbit/s")
        )
        #expect(found[0].detail.contains("revisions"))
        #expect(found[1].detail.hasPrefix("last activity 2026-"))
        #expect(found[1].detail.contains(" / none"))
    }
}
