import Foundation
import TestSupport
import Testing

@testable import SessionStore

@Suite("Session store properties")
struct SessionStorePropertyTests {
    @Test(
        "random logins and logouts: the table matches a model, the log rebuilds the table, and duplicates change nothing",
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
            case 0..<55:
                if model[pick.ip] != nil {
                    await #expect(throws: SessionStoreError.self) { try await store.login(pick) }
                } else {
                    model[pick.ip] = try await store.login(pick)
                }
            case 55..<95:
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

        // Generations alone make a stale login or a logout of another generation harmless.
        for record in records {
            guard case .login(let session) = record.event, let current = model[session.ip] else { continue }
            #expect(
                ApplyRule.change(for: record.event, current: current) == nil || session.generation > current.generation
            )
        }
        await store.close()
    }
}
