import SessionStore
import Testing

/// `RecordCodec` over arrays, for tests.
enum TestCodec {
    /// Decodes a record from an array.
    static func decodeRecord(_ bytes: [UInt8]) throws -> LogRecord {
        try bytes.withUnsafeBytes { try RecordCodec.decodeRecord($0) }
    }

    /// Decodes a session value from an array.
    static func decodeSessionValue(_ bytes: [UInt8], ip: IPAddress) throws -> Session {
        try bytes.withUnsafeBytes { try RecordCodec.decodeSessionValue($0, ip: ip) }
    }

    /// Encodes a record into a new array.
    static func encoded(_ record: LogRecord) -> [UInt8] {
        var buffer: [UInt8] = []
        RecordCodec.encode(record, into: &buffer)
        return buffer
    }

    /// Encodes a session value into a new array.
    static func encodedValue(_ session: Session) -> [UInt8] {
        var buffer: [UInt8] = []
        RecordCodec.encodeSessionValue(session, into: &buffer)
        return buffer
    }
}

/// The fixed records of the golden tests.
enum FixedRecords {
    static let ip = IPAddress("10.0.0.1")!
    static let session = RawSessionBody.session(ip: ip)
    static let time = Timestamp(microsecondsSinceEpoch: 1_795_246_460_123_456)
    static let login = LogRecord(sequence: 7, term: 3, origin: 2, time: time, event: .login(session))
    static let logout = LogRecord(
        sequence: 8,
        term: 3,
        origin: 2,
        time: time.adding(seconds: 60),
        event: .logout(Logout(ending: session, reason: .idleTimeout))
    )
    static let deviceIDChange = LogRecord(
        sequence: 300,
        term: 4,
        origin: 2,
        time: time,
        event: .deviceIDChanged(from: 2, to: 5)
    )
}

@Suite("RecordCodec: round trips and format")
struct RecordCodecTests {
    @Test("random log records round trip, appended one after another into one buffer")
    func recordsRoundTrip() throws {
        var generator = SeededGenerator(seed: 10)
        var buffer: [UInt8] = [0xEE]  // What the buffer held before is kept.
        var ranges: [(Range<Int>, LogRecord)] = []
        for _ in 0..<5000 {
            let record = randomLogRecord(using: &generator, allowReDHCP: true)
            let start = buffer.count
            RecordCodec.encode(record, into: &buffer)
            ranges.append((start..<buffer.count, record))
        }
        #expect(buffer[0] == 0xEE)
        for (range, record) in ranges {
            let decoded = try TestCodec.decodeRecord(Array(buffer[range]))
            #expect(decoded == record)
            if case .login(let session) = decoded.event {
                try session.validate(statefulFailover: false)
            }
        }
    }

    @Test("random session values round trip and peek their index fields")
    func sessionValuesRoundTrip() throws {
        var generator = SeededGenerator(seed: 11)
        for _ in 0..<5000 {
            let session = randomSession(using: &generator, allowReDHCP: true)
            let bytes = TestCodec.encodedValue(session)
            let decoded = try TestCodec.decodeSessionValue(bytes, ip: session.ip)
            #expect(decoded == session)
            try decoded.validate(statefulFailover: false)
            try bytes.withUnsafeBytes { raw in
                let peeked = try RecordCodec.peekSessionIndexFields(raw)
                #expect(peeked.mac == session.mac)
                #expect(Array(peeked.userNameBytes) == Array(session.userName.utf8))
                #expect(peeked.deadline == session.deadline)
                #expect(peeked.generation == session.generation)
                let subject = try RecordCodec.peekSessionOwner(raw)
                #expect(subject.owner == session.owner)
                #expect(subject.generation.term == session.generation.term)
            }
        }
    }

    @Test("peeking a session value's owner checks its checksum and its length, as a decode does")
    func peekedOwnerOfDamagedValues() throws {
        let bytes = TestCodec.encodedValue(FixedRecords.session)
        for index in bytes.indices {
            var damaged = bytes
            damaged[index] ^= 0x20
            damaged.withUnsafeBytes { raw in
                _ = #expect(throws: CorruptRecordError.self) { try RecordCodec.peekSessionOwner(raw) }
            }
        }
        for length in 0..<bytes.count {
            Array(bytes[..<length]).withUnsafeBytes { raw in
                _ = #expect(throws: CorruptRecordError.self) { try RecordCodec.peekSessionOwner(raw) }
            }
        }
    }

    @Test("a session value is the session body, laid out as documented")
    func layoutMatchesDocumentation() throws {
        #expect(TestCodec.encodedValue(FixedRecords.session) == RawSessionBody().sessionValue())
        #expect(TestCodec.encoded(FixedRecords.login) == RawSessionBody().loginRecord())
        var noRADIUS = FixedRecords.session
        noRADIUS.radius = RADIUSAttributes()
        var raw = RawSessionBody()
        raw.radiusFlags = [0]
        raw.nasIP = []
        raw.acctSessionID = [0]
        raw.classAttribute = [0]
        #expect(TestCodec.encodedValue(noRADIUS) == raw.sessionValue())
        let logout =
            RawRecordHeader(sequence: RawUnit.varint(8), time: RawUnit.zigzag(1_795_246_520_123_456)).bytes
            + RawSessionBody.ip10001 + [0x00, 0x11, 0x22, 0xAA, 0xBB, 0xCC] + [2] + RawUnit.varint(3)
            + RawUnit.varint(1_000_000)
            + [5] + RawUnit.prefixed("alice")
        #expect(TestCodec.encoded(FixedRecords.logout) == RawUnit.sealed(kind: 2, logout))
        #expect(
            TestCodec.encoded(FixedRecords.deviceIDChange)
                == RawUnit.sealed(
                    kind: 3,
                    RawRecordHeader(sequence: RawUnit.varint(300), term: RawUnit.varint(4)).bytes + [2, 5]
                )
        )
    }

    @Test("the encoding of fixed records is byte for byte the golden one (format stability)")
    func golden() {
        #expect(TestCodec.encoded(FixedRecords.login) == GoldenBytes.login)
        #expect(TestCodec.encodedValue(FixedRecords.session) == GoldenBytes.sessionValue)
        #expect(TestCodec.encoded(FixedRecords.logout) == GoldenBytes.logout)
        #expect(TestCodec.encoded(FixedRecords.deviceIDChange) == GoldenBytes.deviceIDChange)
    }

    @Test("golden bytes decode to the fixed records")
    func goldenDecodes() throws {
        #expect(try TestCodec.decodeRecord(GoldenBytes.login) == FixedRecords.login)
        #expect(try TestCodec.decodeSessionValue(GoldenBytes.sessionValue, ip: FixedRecords.ip) == FixedRecords.session)
        #expect(try TestCodec.decodeRecord(GoldenBytes.logout) == FixedRecords.logout)
        #expect(try TestCodec.decodeRecord(GoldenBytes.deviceIDChange) == FixedRecords.deviceIDChange)
    }

    @Test("a typical IPv4 login record and session value have the expected sizes")
    func typicalSizes() {
        let session = Session(
            ip: IPAddress("10.1.2.3")!,
            mac: MACAddress("aabb-ccdd-eeff")!,
            userName: "student12345",
            vlan: 100,
            accessInterface: "GigabitEthernet1/0/1",
            portalGroup: "campus",
            owner: 1,
            loginTime: Timestamp(microsecondsSinceEpoch: 1_795_246_460_123_456),
            sessionTimeout: 86_400,
            idleTimeout: 900,
            radius: RADIUSAttributes(
                nasIP: IPAddress("192.0.2.1"),
                acctSessionID: "0000001a2b3c4d5e",
                classAttribute: [UInt8](repeating: 0xA5, count: 20)
            ),
            generation: Generation(term: 1, sequence: 1_234_567)
        )
        let record = LogRecord(
            sequence: 1_234_567,
            term: 1,
            origin: 1,
            time: session.loginTime,
            event: .login(session)
        )
        #expect(TestCodec.encoded(record).count == GoldenBytes.typicalLoginRecordSize)
        #expect(TestCodec.encodedValue(session).count == GoldenBytes.typicalSessionValueSize)
    }
}

@Suite("RecordCodec: sizes")
struct RecordCodecSizeTests {
    /// A session with every string at its longest (in 1-byte characters and in 3-byte ones), a NAS IP, and every
    /// number at its widest.
    static func largestSession() -> Session {
        Session(
            ip: IPAddress("2001:db8::1")!,
            mac: MACAddress(rawValue: 0xFFFF_FFFF_FFFF),
            userName: String(repeating: "张", count: 84) + "a",
            vlan: 4094,
            accessInterface: String(repeating: "~", count: 63),
            portalGroup: try! PortalGroup(String(repeating: "g", count: 31)),
            authenticationMode: .crossSubnet,
            owner: 255,
            loginTime: Timestamp(microsecondsSinceEpoch: .min),
            sessionTimeout: .max,
            idleTimeout: .max,
            radius: RADIUSAttributes(
                nasIP: IPAddress("2001:db8::2"),
                acctSessionID: String(repeating: "a", count: 253),
                classAttribute: [UInt8](repeating: 0xFF, count: 253)
            ),
            authorization: largestAuthorization,
            accounting: largestAccounting,
            lastActivity: Timestamp(microsecondsSinceEpoch: .min),
            generation: Generation(term: .max, sequence: .max),
            revisions: Session.Revisions(
                authorization: largestRevision,
                accounting: largestRevision,
                activity: largestRevision
            )
        )
    }

    static let largestAuthorization = Authorization(
        acl: .name("a" + String(repeating: "~", count: 62)),
        userProfile: String(repeating: "p", count: 63),
        inboundCAR: .init(cir: .max, cbs: .max),
        outboundCAR: .init(cir: .max, cbs: .max),
        vpnInstance: String(repeating: "v", count: 31),
        filterID: String(repeating: "张", count: 84) + "f",
        accountingInterval: .max
    )
    static let largestAccounting = AccountingState(
        inputOctets: .max,
        outputOctets: .max,
        inputPackets: .max,
        outputPackets: .max,
        reportedAt: Timestamp(microsecondsSinceEpoch: .min)
    )
    static let largestRevision = Revision(term: .max, sequence: .max, device: 255)

    @Test("the largest valid units are as large as documented")
    func maximumUnitSize() throws {
        let session = Self.largestSession()
        try session.validate(statefulFailover: true)
        let login = LogRecord(sequence: .max, term: .max, origin: 255, time: session.loginTime, event: .login(session))
        #expect(TestCodec.encoded(login).count == RecordCodec.maximumUnitSize)
        #expect(TestCodec.encodedValue(session).count == 1480)
        let logout = LogRecord(
            sequence: .max,
            term: .max,
            origin: 255,
            time: session.loginTime,
            event: .logout(Logout(ending: session, reason: .deviceIDChange))
        )
        #expect(TestCodec.encoded(logout).count == 326)
        let update = LogRecord(
            sequence: .max,
            term: .max,
            origin: 255,
            time: session.loginTime,
            event: .update(
                Update(
                    ip: session.ip,
                    owner: 255,
                    generation: session.generation,
                    revision: Self.largestRevision,
                    reason: .reauthentication,
                    authorization: .init(
                        authorization: Self.largestAuthorization,
                        sessionTimeout: .max,
                        idleTimeout: .max
                    ),
                    accounting: Self.largestAccounting,
                    lastActivity: Timestamp(microsecondsSinceEpoch: .min)
                )
            )
        )
        #expect(TestCodec.encoded(update).count == 594)
        #expect(try TestCodec.decodeRecord(TestCodec.encoded(login)) == login)
        #expect(try TestCodec.decodeRecord(TestCodec.encoded(update)) == update)
    }

    @Test("random records stay within the maximum size")
    func randomWithinMaximum() {
        var generator = SeededGenerator(seed: 18)
        for _ in 0..<5000 {
            #expect(TestCodec.encoded(randomLogRecord(using: &generator)).count <= RecordCodec.maximumUnitSize)
        }
    }

    @Test("units larger than the zero-fill fast path (invalid fields) still encode")
    func oversizedFieldsEncode() throws {
        var session = Self.largestSession()
        session.userName = String(repeating: "x", count: 2000)
        let bytes = TestCodec.encodedValue(session)
        #expect(bytes.count == 1480 - 255 + 2002)
        // The decoder refuses what validation would have.
        let error = #expect(throws: CorruptRecordError.self) { try TestCodec.decodeSessionValue(bytes, ip: session.ip) }
        #expect(error?.code == .lengthOutOfBounds)
    }
}
