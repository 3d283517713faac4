import Testing

@testable import SessionStore

@Suite("Changes in memory")
struct ChangeSetTests {
    @Test(
        "a change set keeps each session as its users-table value and gives it back as it was",
        arguments: [7, 8] as [UInt64]
    )
    func sessionsComeBackAsTheyWere(seed: UInt64) {
        var random = SeededGenerator(seed: seed)
        var changes = ChangeSet()
        var sessions: [IPAddress: Session] = [:]
        for sequence in 1...500 as ClosedRange<UInt64> {
            var session = randomSession(using: &random)
            session.generation = Generation(term: 1, sequence: sequence)
            if Bool.random(using: &random) {
                session.authorization = randomAuthorization(using: &random)
                session.revisions.authorization = Revision(term: 1, sequence: sequence + 1000, device: 2)
            }
            if Bool.random(using: &random) {
                session.accounting = randomAccounting(using: &random)
                session.revisions.accounting = Revision(term: 1, sequence: sequence + 2000, device: 1)
            }
            sessions[session.ip] = session
            changes.set(session.ip, .online(session))
        }
        #expect(changes.count == sessions.count)
        for (ip, session) in sessions {
            #expect(changes.contains(ip))
            #expect(changes[ip] == .online(session))
            #expect(changes.candidates(mac: session.mac).contains(ip))
            #expect(changes.candidates(userName: session.userName).contains(ip))
            // What the checkpointer writes is exactly the session's users-table value.
            guard case .online(let value) = changes.entries[ip] else {
                Issue.record("\(ip) is not online in memory")
                continue
            }
            var expected: [UInt8] = []
            RecordCodec.encodeSessionValue(session, into: &expected)
            #expect(value == expected)
        }

        let (ip, session) = sessions.first!
        changes.set(ip, .offline(session.generation))
        #expect(changes[ip] == .offline(session.generation))
        #expect(changes.entries[ip]?.session(at: ip) == nil)
        if case .offline(let generation) = changes.entries[ip] {
            #expect(generation == session.generation)
        } else {
            Issue.record("\(ip) is not offline in memory")
        }
        #expect(changes.count == sessions.count)
    }

    @Test("an address that never changed is not in the change set")
    func missingAddress() {
        var random = SeededGenerator(seed: 9)
        var changes = ChangeSet()
        let session = randomSession(using: &random)
        changes.set(session.ip, .online(session))
        var other = randomIPAddress(using: &random)
        while other == session.ip { other = randomIPAddress(using: &random) }
        #expect(!changes.contains(other))
        #expect(changes[other] == nil)
        #expect(changes.candidates(mac: MACAddress(rawValue: session.mac.rawValue ^ 1)).isEmpty)
    }
}
