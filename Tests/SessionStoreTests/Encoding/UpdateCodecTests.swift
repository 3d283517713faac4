import Testing

@testable import SessionStore

/// An update of `FixedRecords.session` setting every part, and its bytes built field by field.
enum FixedUpdate {
    static let authorization = Authorization(
        acl: .name("staff-acl"),
        userProfile: "staff",
        inboundCAR: .init(cir: 2_000, cbs: 250_000),
        outboundCAR: .init(cir: 10_000),
        vpnInstance: "vpn1",
        filterID: "f1",
        accountingInterval: 900
    )
    static let accounting = AccountingState(
        inputOctets: 5 << 32 | 17,
        outputOctets: 1_000,
        inputPackets: 12,
        outputPackets: 9,
        reportedAt: FixedRecords.time
    )
    static let update = Update(
        ip: FixedRecords.ip,
        owner: 2,
        generation: FixedRecords.session.generation,
        revision: Revision(term: 3, sequence: 9, device: 1),
        reason: .reauthentication,
        authorization: .init(authorization: authorization, sessionTimeout: 7_200, idleTimeout: 300),
        accounting: accounting,
        lastActivity: FixedRecords.time.adding(seconds: 30)
    )
    static let record = LogRecord(sequence: 9, term: 3, origin: 1, time: FixedRecords.time, event: .update(update))

    static let authorizationBytes: [UInt8] =
        [0x7E]  // flags: ACL name, user profile, inbound CAR, outbound CAR, VPN instance, Filter-Id
        + RawUnit.prefixed("staff-acl") + RawUnit.prefixed("staff")
        + RawUnit.varint(2_000) + RawUnit.varint(250_000) + RawUnit.varint(10_000) + RawUnit.varint(0)
        + RawUnit.prefixed("vpn1") + RawUnit.prefixed("f1") + RawUnit.varint(900)
    static let accountingBytes: [UInt8] =
        [0x01]  // report time follows
        + RawUnit.varint(5 << 32 | 17) + RawUnit.varint(1_000) + RawUnit.varint(12) + RawUnit.varint(9)
        + RawUnit.zigzag(1_795_246_460_123_456)

    /// The update record, field by field as `RecordCodec` documents it.
    static func recordBytes(
        revision: [UInt8] = RawUnit.varint(3) + RawUnit.varint(9) + [1],
        reason: [UInt8] = [2],
        parts: [UInt8] = [0x07],
        authorization: [UInt8] = authorizationBytes,
        version: UInt8 = 2
    ) -> [UInt8] {
        RawUnit.sealed(
            version: version,
            kind: 5,
            RawRecordHeader(sequence: RawUnit.varint(9), origin: [1]).bytes + RawSessionBody.ip10001 + [2]
                + RawUnit.varint(3) + RawUnit.varint(1_000_000) + revision + reason + parts
                + authorization + RawUnit.varint(7_200) + RawUnit.varint(300)
                + accountingBytes + RawUnit.zigzag(1_795_246_490_123_456)
        )
    }
}

@Suite("RecordCodec: updates and the parts they change")
struct UpdateCodecTests {
    @Test("an update record and a session with every part are laid out as documented, and read back")
    func layout() throws {
        #expect(TestCodec.encoded(FixedUpdate.record) == FixedUpdate.recordBytes())
        #expect(try TestCodec.decodeRecord(FixedUpdate.recordBytes()) == FixedUpdate.record)

        let session = FixedUpdate.update.applied(to: FixedRecords.session)
        var body = RawSessionBody()
        body.sessionTimeout = RawUnit.varint(7_200)
        body.idleTimeout = RawUnit.varint(300)
        body.parts =
            [0x0F] + FixedUpdate.authorizationBytes + FixedUpdate.accountingBytes
            + RawUnit.zigzag(1_795_246_490_123_456)
            + RawUnit.varint(3) + RawUnit.varint(9) + [1]  // authorization revision
            + RawUnit.varint(3) + RawUnit.varint(9) + [1]  // accounting revision
            + RawUnit.varint(3) + RawUnit.varint(9) + [1]  // activity revision
        #expect(TestCodec.encodedValue(session) == body.sessionValue())
        #expect(try TestCodec.decodeSessionValue(body.sessionValue(), ip: FixedRecords.ip) == session)
    }

    @Test("version 1 units, as the previous format wrote them, decode to the same records")
    func version1Decodes() throws {
        #expect(try TestCodec.decodeRecord(GoldenBytesV1.login) == FixedRecords.login)
        #expect(
            try TestCodec.decodeSessionValue(GoldenBytesV1.sessionValue, ip: FixedRecords.ip) == FixedRecords.session
        )
        #expect(try TestCodec.decodeRecord(GoldenBytesV1.logout) == FixedRecords.logout)
        #expect(try TestCodec.decodeRecord(GoldenBytesV1.deviceIDChange) == FixedRecords.deviceIDChange)
        let fields = try GoldenBytesV1.sessionValue.withUnsafeBytes { try RecordCodec.peekSessionOwner($0) }
        #expect(fields.owner == 2)
        // A version 1 unit holds no parts byte: one there is a byte too many.
        var body = RawSessionBody()
        body.parts = [0]
        let error = #expect(throws: CorruptRecordError.self) {
            try TestCodec.decodeSessionValue(body.sessionValue(version: 1), ip: FixedRecords.ip)
        }
        #expect(error?.code == .trailingBytes)
    }

    @Test("random sessions with parts and random updates round trip, and re-encode to the same bytes")
    func randomRoundTrips() throws {
        var generator = SeededGenerator(seed: 1105)
        for _ in 0..<3000 {
            let session = randomUpdatedSession(using: &generator)
            try session.validate(statefulFailover: false)
            let value = TestCodec.encodedValue(session)
            let decoded = try TestCodec.decodeSessionValue(value, ip: session.ip)
            #expect(decoded == session)
            #expect(TestCodec.encodedValue(decoded) == value)
            #expect(value.count <= RecordCodec.maximumUnitSize)
            let record = LogRecord(
                sequence: 1,
                term: 1,
                origin: 1,
                time: .now,
                event: .update(randomUpdate(using: &generator, of: session))
            )
            let bytes = TestCodec.encoded(record)
            #expect(try TestCodec.decodeRecord(bytes) == record)
            #expect(bytes.count <= RecordCodec.maximumUnitSize)
        }
    }

    struct Corruption: Sendable, CustomStringConvertible {
        var name: String
        var bytes: [UInt8]
        var message: String
        var description: String { name }
    }

    static func valueWithParts(_ parts: [UInt8]) -> [UInt8] {
        var body = RawSessionBody()
        body.parts = parts
        return body.sessionValue()
    }

    static let corruptions: [Corruption] = [
        .init(
            name: "session parts with an unknown bit",
            bytes: valueWithParts([0x10]),
            message: "parts has unknown bits set (0x10"
        ),
        .init(
            name: "authorization flagged but empty",
            bytes: valueWithParts([0x01, 0x00] + RawUnit.varint(0)),
            message: "authorization is flagged but holds no attribute"
        ),
        .init(
            name: "accounting flagged but empty",
            bytes: valueWithParts([0x02, 0x00, 0, 0, 0, 0]),
            message: "accounting is flagged but holds no report"
        ),
        .init(
            name: "revisions flagged but zero",
            bytes: valueWithParts([0x08, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            message: "revisions are flagged but all zero"
        ),
        .init(
            name: "a revision without a device",
            bytes: valueWithParts([0x08, 1, 1, 0, 0, 0, 0, 0, 0, 0]),
            message: "revisions.authorization a revision other than zero names no device"
        ),
        .init(
            name: "both an ACL number and an ACL name",
            bytes: valueWithParts([0x01, 0x03] + RawUnit.varint(3001) + RawUnit.prefixed("x") + RawUnit.varint(0)),
            message: "both an ACL number and an ACL name"
        ),
        .init(
            name: "ACL number 0",
            bytes: valueWithParts([0x01, 0x01] + RawUnit.varint(0) + RawUnit.varint(0)),
            message: "authorization.acl 0 is out of range (1 to 99999)"
        ),
        .init(
            name: "ACL name of 64 bytes",
            bytes: valueWithParts(
                [0x01, 0x02] + RawUnit.prefixed(String(repeating: "a", count: 64)) + RawUnit.varint(0)
            ),
            message: "authorization.acl length 64 is out of bounds (at most 63)"
        ),
        .init(
            name: "VPN instance with a space",
            bytes: valueWithParts([0x01, 0x20] + RawUnit.prefixed("vpn 1") + RawUnit.varint(0)),
            message: "authorization.vpnInstance contains a space at byte 3"
        ),
        .init(
            name: "CAR of 0 kbit/s",
            bytes: valueWithParts([0x01, 0x08] + RawUnit.varint(0) + RawUnit.varint(0) + RawUnit.varint(0)),
            message: "authorization.inboundCAR.cir 0 is out of range"
        ),
        .init(
            name: "accounting interval of 30 s",
            bytes: valueWithParts([0x01, 0x00] + RawUnit.varint(30)),
            message: "authorization.accountingInterval 30 is out of range"
        ),
        .init(
            name: "Filter-Id not UTF-8",
            bytes: valueWithParts([0x01, 0x40] + RawUnit.prefixed([0xFF, 0xFE]) + RawUnit.varint(0)),
            message: "authorization.filterID is not valid UTF-8"
        ),
        .init(
            name: "update of no part",
            bytes: FixedUpdate.recordBytes(parts: [0]),
            message: "parts 0x0 names no part"
        ),
        .init(
            name: "update revision without a device",
            bytes: FixedUpdate.recordBytes(revision: RawUnit.varint(3) + RawUnit.varint(9) + [0]),
            message: "revision a revision other than zero names no device"
        ),
        .init(
            name: "update reason 5",
            bytes: FixedUpdate.recordBytes(reason: [5]),
            message: "reason 5 is not an update reason (1 to 4)"
        ),
        .init(
            name: "an update record in a version 1 unit",
            bytes: FixedUpdate.recordBytes(version: 1),
            message: "kind an update record in a version 1 unit"
        ),
    ]

    @Test("each hostile part or update gives its error, naming the field", arguments: corruptions)
    func corruption(_ corruption: Corruption) {
        let error = #expect(throws: CorruptRecordError.self) {
            if corruption.bytes[1] == 16 {
                _ = try TestCodec.decodeSessionValue(corruption.bytes, ip: FixedRecords.ip)
            } else {
                _ = try TestCodec.decodeRecord(corruption.bytes)
            }
        }
        #expect(error?.description.contains(corruption.message) == true, "\(error?.description ?? "no error")")
    }
}
