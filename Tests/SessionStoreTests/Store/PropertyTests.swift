import Foundation
import TestSupport
import Testing

@testable import SessionStore

@Suite("Session store properties")
struct SessionStorePropertyTests {
    @Test(
        "random logins, updates and logouts: the table matches a model, the log rebuilds the table, and duplicates change nothing",
        arguments: [1, 2, 3, 4] as [UInt64]
    )
    func randomHistory(seed: UInt64) async throws {
        var random = SeededGenerator(seed: seed)
        let directory = TemporaryDirectory()
        var configuration = SessionStore.Configuration.test()
        configuration.checkpointThreshold = 40
        configuration.checkpointInterval = .milliseconds(20)
        var store = try SessionStore.open(at: directory.path, configuration: configuration)
        try await store.holdLog("test", from: 1)  // keep the whole log to rebuild from it
        let pool = (0..<150).map { testSession($0) }
        var model: [IPAddress: Session] = [:]

        for step in 0..<1200 {
            let pick = pool[Int.random(in: 0..<pool.count, using: &random)]
            switch Int.random(in: 0..<100, using: &random) {
            case 0..<40:
                if model[pick.ip] != nil {
                    await #expect(throws: SessionStoreError.self) { try await store.login(pick) }
                } else {
                    model[pick.ip] = try await store.login(pick)
                }
            case 40..<70:
                if model[pick.ip] != nil {
                    let logout = try await store.logout(
                        pick.ip,
                        reason: LogoutReason.allCases.randomElement(using: &random)!
                    )
                    #expect(logout.generation == model[pick.ip]?.generation)
                    model[pick.ip] = nil
                } else {
                    await #expect(throws: SessionStoreError.self) { try await store.logout(pick.ip, reason: .user) }
                }
            case 70..<95:
                var change = SessionUpdate(ip: pick.ip, reason: UpdateReason.allCases.randomElement(using: &random)!)
                let parts = Int.random(in: 1...7, using: &random)
                if parts & 1 != 0 {
                    change.authorization = randomAuthorization(using: &random)
                    if Bool.random(using: &random) { change.idleTimeout = UInt32.random(in: 0...3_600, using: &random) }
                }
                if parts & 2 != 0 { change.accounting = randomAccounting(using: &random) }
                if parts & 4 != 0 { change.lastActivity = randomTimestamp(using: &random) }
                if var expected = model[pick.ip] {
                    let updated = try await store.update(change)
                    expected.authorization = change.authorization ?? expected.authorization
                    expected.idleTimeout = change.idleTimeout ?? expected.idleTimeout
                    expected.accounting = change.accounting ?? expected.accounting
                    expected.lastActivity = change.lastActivity ?? expected.lastActivity
                    expected.revisions = updated.revisions
                    #expect(updated == expected)
                    model[pick.ip] = updated
                } else {
                    let error = await #expect(throws: SessionStoreError.self) { try await store.update(change) }
                    #expect(error?.kind == .notOnline)
                }
            case 95..<98:
                try await store.checkpoint()
            default:
                await store.close()
                store = try SessionStore.open(at: directory.path, configuration: configuration)
            }
            #expect(try store.session(for: pick.ip) == model[pick.ip], "step \(step)")
        }
        let table = try store.allSessions()
        #expect(table == model.values.sorted { $0.ip < $1.ip })
        #expect(store.count == model.count)
        for session in table { #expect(try store.sessions(withMAC: session.mac) == [session]) }

        // The log, replayed from its start, rebuilds the table.
        var records: [LogRecord] = []
        try store.forEachLogRecord {
            records.append($0)
            return true
        }
        #expect(records.map(\.sequence) == Array(1...UInt64(records.count)))
        var rebuilt = SessionTable()
        for record in records { rebuilt.apply(record) }
        #expect(rebuilt.sessions == model)

        // Every record twice, then the whole log again, then earlier records at random: nothing changes.
        var duplicated = SessionTable()
        var changedByDuplicates = 0
        for record in records {
            duplicated.apply(record)
            if duplicated.apply(record) { changedByDuplicates += 1 }
        }
        for record in records where duplicated.apply(record) { changedByDuplicates += 1 }
        for _ in 0..<200 where duplicated.apply(records.randomElement(using: &random)!) { changedByDuplicates += 1 }
        #expect(changedByDuplicates == 0)
        #expect(duplicated == rebuilt)

        // Revisions alone make a replayed update harmless: none changes the table it left.
        for record in records {
            guard case .update(let update) = record.event, let current = model[update.ip] else { continue }
            #expect(ApplyRule.change(for: record.event, current: current) == nil)
        }

        // Generations alone make a stale login or a logout of another generation harmless.
        for record in records {
            guard case .login(let session) = record.event, let current = model[session.ip] else { continue }
            #expect(
                ApplyRule.change(for: record.event, current: current) == nil || session.generation > current.generation
            )
        }
        await store.close()
    }

    @Test("updates of one session heard in any order, with duplicates, leave the same session on every device")
    func updatesInAnyOrder() {
        var random = SeededGenerator(seed: 77)
        for _ in 0..<200 {
            var session = randomSession(using: &random)
            session.revisions = .zero
            let updates = (0..<Int.random(in: 1...8, using: &random)).map { _ in
                randomUpdate(using: &random, of: session)
            }
            // The model: each part as the update of the highest revision that carries it left it.
            var expected = session
            for update in updates.sorted(by: { $0.revision < $1.revision }) {
                expected = update.applied(to: expected)
            }
            for _ in 0..<20 {
                var order = updates.shuffled(using: &random)
                order += order.prefix(Int.random(in: 0...order.count, using: &random))  // some heard twice
                var current = session
                for update in order {
                    if let (_, entry) = ApplyRule.change(for: .update(update), current: current) {
                        current = entry.session!
                    }
                }
                #expect(current == expected)
                // A snapshot's copy of the session brings a device that missed updates to the same state.
                if let (_, entry) = ApplyRule.change(for: .login(expected), current: session) {
                    #expect(entry.session == expected)
                }
                #expect(ApplyRule.change(for: .login(session), current: expected) == nil)
            }
            // An update of another generation of the address changes nothing.
            var other = updates[0]
            other.generation = Generation(term: session.generation.term, sequence: session.generation.sequence &+ 1)
            #expect(ApplyRule.change(for: .update(other), current: session) == nil)
        }
    }
}
