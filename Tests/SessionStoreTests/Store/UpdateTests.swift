import Foundation
import TestSupport
import Testing

@testable import SessionStore

@Suite("Session updates")
struct UpdateTests {
    static let staff = Authorization(
        acl: .number(3001),
        userProfile: "staff",
        inboundCAR: .init(cir: 2_000, cbs: 250_000),
        outboundCAR: .init(cir: 10_000),
        vpnInstance: "vpn-campus",
        filterID: "staff-filter",
        accountingInterval: 900
    )

    @Test(
        "a change of authorization, an accounting report and activity change the online session, and stay so after reopen"
    )
    func updatesStick() async throws {
        let directory = TemporaryDirectory()
        var store = try SessionStore.open(at: directory.path, configuration: .test())
        try await store.holdLog("test", from: 1)  // keep the whole log to rebuild from it
        let alice = try await store.login(testSession(1))
        #expect(alice.authorization == .none)
        #expect(alice.revisions == .zero)

        let coa = try await store.update(.changeOfAuthorization(alice.ip, Self.staff, sessionTimeout: 7_200))
        #expect(coa.authorization == Self.staff)
        #expect(coa.sessionTimeout == 7_200)
        #expect(coa.idleTimeout == alice.idleTimeout)  // not named: kept
        #expect(coa.generation == alice.generation)
        #expect(coa.revisions.authorization == Revision(term: 1, sequence: 2, device: 1))
        #expect(coa.revisions.accounting == .zero)

        let report = AccountingState(
            inputOctets: 5 << 32 | 17,
            outputOctets: 1_000,
            inputPackets: 12,
            outputPackets: 9,
            reportedAt: Timestamp(microsecondsSinceEpoch: 1_795_246_460_000_000)
        )
        let seen = Timestamp(microsecondsSinceEpoch: 1_795_246_470_000_000)
        let interim = try await store.update(.accountingInterim(alice.ip, report, lastActivity: seen))
        #expect(interim.accounting == report)
        #expect(interim.accounting.inputGigawords == 5)
        #expect(interim.accounting.inputOctetsLow == 17)
        #expect(interim.lastActivity == seen)
        #expect(interim.authorization == Self.staff)  // the other part stays
        #expect(try store.session(for: alice.ip) == interim)

        // The log holds both updates, with what they changed, and replayed from its start it rebuilds the table.
        var records: [LogRecord] = []
        try store.forEachLogRecord {
            records.append($0)
            return true
        }
        let updates = records.compactMap { record -> Update? in
            if case .update(let update) = record.event { return update }
            return nil
        }
        #expect(updates.map(\.reason) == [.changeOfAuthorization, .accountingInterim])
        #expect(updates.map(\.parts) == [["authorization"], ["accounting", "activity"]])
        var replayed = SessionTable()
        for record in records { replayed.apply(record) }
        #expect(replayed.sessions[alice.ip] == interim)

        // Read from the table after a checkpoint and a reopen, and by the indexes.
        await store.close()
        store = try SessionStore.open(at: directory.path, configuration: .test())
        #expect(try store.session(for: alice.ip) == interim)
        #expect(try store.sessions(withMAC: alice.mac) == [interim])
        #expect(try store.sessions(withUserName: alice.userName) == [interim])
        await store.close()
    }

    @Test("an update of an address not online, or meant for a session that ended, is refused and stores nothing")
    func refusedWhenNotOnline() async throws {
        let directory = TemporaryDirectory()
        let store = try SessionStore.open(at: directory.path, configuration: .test())
        let missing = await #expect(throws: SessionStoreError.self) {
            try await store.update(.activity(IPAddress("10.9.9.9")!, at: .now))
        }
        #expect(missing?.kind == .notOnline)

        let first = try await store.login(testSession(1))
        try await store.logout(first.ip, reason: .user)
        let second = try await store.login(testSession(1))
        let before = store.logStatus.lastSequence
        // An accounting report of the first session, late: the address is online again, with another session.
        let late = await #expect(throws: SessionStoreError.self) {
            try await store.update(
                .accountingInterim(first.ip, AccountingState(inputOctets: 1), generation: first.generation)
            )
        }
        #expect(late?.kind == .notOnline)
        #expect(store.logStatus.lastSequence == before)
        #expect(try store.session(for: first.ip) == second)
        await store.close()
    }

    @Test("invalid attributes are refused with the field named, and an update that changes nothing is refused")
    func invalidUpdates() async throws {
        let directory = TemporaryDirectory()
        let store = try SessionStore.open(at: directory.path, configuration: .test())
        let alice = try await store.login(testSession(1))
        let before = store.logStatus.lastSequence
        let cases: [(Authorization, String, String)] = [
            (Authorization(acl: .number(0)), "authorization.acl", "0 is out of range (1 to 99999)"),
            (Authorization(acl: .name("3001x")), "authorization.acl", "an ACL name starts with a letter"),
            (Authorization(vpnInstance: "vpn campus"), "authorization.vpnInstance", "a space"),
            (Authorization(userProfile: ""), "authorization.userProfile", "is empty"),
            (Authorization(outboundCAR: .init(cir: 0)), "authorization.outboundCAR.cir", "above 0 kbit/s"),
            (Authorization(accountingInterval: 30), "authorization.accountingInterval", "at least 60 seconds"),
            (Authorization(filterID: "a\u{7}b"), "authorization.filterID", "U+0007"),
        ]
        for (authorization, field, detail) in cases {
            let error = await #expect(throws: SessionStoreError.self) {
                try await store.update(.changeOfAuthorization(alice.ip, authorization))
            }
            #expect(error?.kind == .invalidSession)
            #expect(error?.invalidField?.field == field)
            #expect(error?.description.contains(detail) == true, "\(String(describing: error))")
        }
        let nothing = await #expect(throws: SessionStoreError.self) {
            try await store.update(SessionUpdate(ip: alice.ip, reason: .changeOfAuthorization))
        }
        #expect(nothing?.kind == .invalidArgument)
        #expect(nothing?.description.contains("changes nothing") == true)
        #expect(store.logStatus.lastSequence == before)
        #expect(try store.session(for: alice.ip) == alice)
        await store.close()
    }

    @Test("an accounting round in one call: each update succeeds or fails alone, all in one commit")
    func batchedRound() async throws {
        let directory = TemporaryDirectory()
        let store = try SessionStore.open(at: directory.path, configuration: .test())
        let sessions = try await store.login(contentsOf: (1...50).map { testSession($0) }).map { try $0.get() }
        let before = store.logStatus.lastSequence
        var round = sessions.map {
            SessionUpdate.accountingInterim(
                $0.ip,
                AccountingState(inputOctets: UInt64($0.vlan), reportedAt: .now),
                lastActivity: .now
            )
        }
        round.insert(.activity(IPAddress("10.200.0.1")!, at: .now), at: 10)  // not online
        round.append(.changeOfAuthorization(sessions[0].ip, Authorization(accountingInterval: 1)))  // invalid
        let results = try await store.update(contentsOf: round)
        #expect(results.count == 52)
        #expect(results.filter { (try? $0.get()) != nil }.count == 50)
        if case .failure(let error) = results[10] { #expect(error.kind == .notOnline) } else { Issue.record() }
        if case .failure(let error) = results[51] { #expect(error.kind == .invalidSession) } else { Issue.record() }
        #expect(store.logStatus.lastSequence == before + 50)
        for session in sessions {
            #expect(try store.session(for: session.ip)?.accounting.inputOctets == UInt64(session.vlan))
        }
        await store.close()
    }

    @Test("a session timeout changed by an update moves the session's expiry")
    func timeoutMovesExpiry() async throws {
        let directory = TemporaryDirectory()
        let store = try SessionStore.open(at: directory.path, configuration: .test())
        let start = Timestamp(microsecondsSinceEpoch: 1_795_246_460_000_000)
        let short = try await store.login(testSession(1, loginTime: start, sessionTimeout: 3_600))
        let long = try await store.login(testSession(2, loginTime: start, sessionTimeout: 3_600))
        try await store.update(.changeOfAuthorization(short.ip, nil, sessionTimeout: 600))
        try await store.update(.reauthentication(long.ip, Self.staff, sessionTimeout: 86_400))
        let expired = try await store.expireSessions(asOf: start.adding(seconds: 1_200))
        #expect(expired.map(\.ip) == [short.ip])
        #expect(try store.session(for: long.ip)?.sessionTimeout == 86_400)
        // The same after a checkpoint, from the deadline index on disk.
        try await store.checkpoint()
        #expect(try await store.expireSessions(asOf: start.adding(seconds: 7_200)).isEmpty)
        #expect(try await store.expireSessions(asOf: start.adding(seconds: 86_401)).map(\.ip) == [long.ip])
        await store.close()
    }

    @Test("an update racing a logout: whichever commits second finds the other's result")
    func updateRacingLogout() async throws {
        let directory = TemporaryDirectory()
        let store = try SessionStore.open(at: directory.path, configuration: .test())
        for round in 0..<50 {
            let session = try await store.login(testSession(1 + round))
            async let update: SessionStoreError? = {
                do {
                    try await store.update(.activity(session.ip, at: .now, generation: session.generation))
                    return nil
                } catch {
                    return error as? SessionStoreError
                }
            }()
            async let logout = store.logout(session.ip, reason: .user)
            let (refused, _) = try await (update, logout)
            if let refused { #expect(refused.kind == .notOnline) }
            #expect(try store.session(for: session.ip) == nil)
        }
        await store.close()
    }
}
