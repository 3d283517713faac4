import Testing

@testable import SessionStore

@Suite("The users table's digest")
struct TableDigestTests {
    @Test(
        "a stored session hashes from its bytes to what it hashes to decoded, with and without each part",
        arguments: [11, 12, 13] as [UInt64]
    )
    func storedBytesHashLikeTheSession(seed: UInt64) throws {
        var random = SeededGenerator(seed: seed)
        var hashes: Set<UInt64> = []
        for sequence in 1...400 as ClosedRange<UInt64> {
            var session = randomSession(using: &random)
            session.generation = Generation(term: 2, sequence: sequence)
            if sequence % 3 == 0 {
                session.accounting = randomAccounting(using: &random)
                session.revisions.accounting = Revision(term: 2, sequence: sequence + 1000, device: 1)
            }
            if sequence % 4 == 0 {
                session.authorization = randomAuthorization(using: &random)
                session.revisions.authorization = Revision(term: 2, sequence: sequence + 2000, device: 2)
            }
            if sequence % 5 == 0 { session.lastActivity = randomTimestamp(using: &random) }
            var value: [UInt8] = []
            RecordCodec.encodeSessionValue(session, into: &value)
            let stored = try value.withUnsafeBytes { try TableDigest.contribution(ofStored: $0, ip: session.ip) }
            #expect(stored == TableDigest.contribution(of: session))
            hashes.insert(stored)
        }
        #expect(hashes.count == 400)
    }

    @Test("a version 1 session value hashes from its bytes to what it hashes to decoded")
    func versionOneValue() throws {
        let decoded = try TestCodec.decodeSessionValue(GoldenBytesV1.sessionValue, ip: FixedRecords.ip)
        let stored = try GoldenBytesV1.sessionValue.withUnsafeBytes {
            try TableDigest.contribution(ofStored: $0, ip: FixedRecords.ip)
        }
        #expect(stored == TableDigest.contribution(of: decoded))
    }

    @Test("a damaged stored value is refused with its place, not hashed")
    func damagedValue() throws {
        var value: [UInt8] = []
        RecordCodec.encodeSessionValue(testSession(3), into: &value)
        value[value.count / 2] ^= 0x10
        let error = #expect(throws: SessionStoreError.self) {
            try value.withUnsafeBytes { try TableDigest.contribution(ofStored: $0, ip: testSession(3).ip) }
        }
        #expect(error?.kind == .corruptRecord)
        #expect("\(error!)".contains("users table, key \(testSession(3).ip)"))
    }
}
