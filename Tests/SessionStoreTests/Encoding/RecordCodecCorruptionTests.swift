import SessionStore
import Testing

/// One way to break a well-sealed session value, and what the decoder must say about it.
struct SessionValueCorruption: Sendable, CustomTestStringConvertible {
    let name: String
    /// The expected code; `nil` when any `CorruptRecordError` will do.
    let code: CorruptRecordError.Code?
    /// Words the description must contain.
    let message: String
    let change: @Sendable (inout RawSessionBody) -> Void

    init(
        _ name: String,
        _ code: CorruptRecordError.Code?,
        _ message: String,
        change: @escaping @Sendable (inout RawSessionBody) -> Void
    ) {
        self.name = name
        self.code = code
        self.message = message
        self.change = change
    }

    var testDescription: String { name }
}

/// One way to break a well-sealed log record.
struct RecordCorruption: Sendable, CustomTestStringConvertible {
    let name: String
    let bytes: [UInt8]
    let code: CorruptRecordError.Code
    let message: String

    var testDescription: String { name }
}

/// A logout record with the given fields (defaults: a valid idle-timeout logout of "alice").
private func logoutRecord(
    header: RawRecordHeader = RawRecordHeader(),
    owner: [UInt8] = [2],
    reason: [UInt8] = [5],
    userName: [UInt8] = RawUnit.prefixed("alice")
) -> [UInt8] {
    RawUnit.sealed(
        kind: 2,
        header.bytes + RawSessionBody.ip10001 + [0x00, 0x11, 0x22, 0xAA, 0xBB, 0xCC] + owner + RawUnit.varint(3)
            + RawUnit.varint(1_000_000) + reason + userName
    )
}

private let twoToThe60: UInt64 = 1 << 60

@Suite("RecordCodec: corrupt input")
struct RecordCodecCorruptionTests {
    static let sessionValueCorruptions: [SessionValueCorruption] = [
        .init("user name length 2^60", .lengthOutOfBounds, "userName length 1152921504606846976 is out of bounds") {
            $0.userName = RawUnit.varint(twoToThe60) + Array("alice".utf8)
        },
        .init("user name length 254", .lengthOutOfBounds, "userName length 254 is out of bounds (at most 253)") {
            $0.userName = RawUnit.prefixed(String(repeating: "a", count: 254))
        },
        .init("access interface length 2^60", .lengthOutOfBounds, "accessInterface length") {
            $0.accessInterface = RawUnit.varint(twoToThe60)
        },
        .init("portal group length 32", .lengthOutOfBounds, "portalGroup length 32 is out of bounds (at most 31)") {
            $0.portalGroup = RawUnit.prefixed(String(repeating: "g", count: 32))
        },
        .init("Acct-Session-Id length 2^64-1", .lengthOutOfBounds, "radius.acctSessionID length 18446744073709551615") {
            $0.acctSessionID = RawUnit.varint(.max)
        },
        .init("Class length 254", .lengthOutOfBounds, "radius.classAttribute length 254") {
            $0.classAttribute = RawUnit.prefixed([UInt8](repeating: 1, count: 254))
        },
        .init("user name longer than the bytes left", .truncated, "truncated") {
            $0.userName = RawUnit.varint(200) + Array("alice".utf8)
            $0.idleTimeout = []
            $0.vlan = []
            $0.accessInterface = []
            $0.portalGroup = []
            $0.authenticationMode = []
            $0.owner = []
            $0.radiusFlags = []
            $0.nasIP = []
            $0.acctSessionID = []
            $0.classAttribute = []
        },
        .init("empty user name", .invalidField, "userName is empty") { $0.userName = RawUnit.prefixed("") },
        .init("user name not UTF-8", .invalidField, "userName is not valid UTF-8") {
            $0.userName = RawUnit.prefixed([0x61, 0xFF, 0x62])
        },
        .init("user name with a lone continuation byte", .invalidField, "userName is not valid UTF-8") {
            $0.userName = RawUnit.prefixed([0x80])
        },
        .init("user name with an overlong encoding", .invalidField, "userName is not valid UTF-8") {
            $0.userName = RawUnit.prefixed([0xC0, 0xAF])
        },
        .init("user name with a control character", .invalidField, "userName contains the control character U+001B") {
            $0.userName = RawUnit.prefixed("a\u{1B}[0m")
        },
        .init("VLAN 4095", .invalidField, "vlan 4095 is out of range") { $0.vlan = RawUnit.varint(4095) },
        .init("VLAN 5000", .invalidField, "vlan 5000 is out of range") { $0.vlan = RawUnit.varint(5000) },
        .init("VLAN past 16 bits", .invalidField, "vlan 70000 does not fit 16 bits") {
            $0.vlan = RawUnit.varint(70000)
        },
        .init("session timeout past 32 bits", .invalidField, "sessionTimeout 4294967296 does not fit 32 bits") {
            $0.sessionTimeout = RawUnit.varint(1 << 32)
        },
        .init("generation term past 32 bits", .invalidField, "generation.term") {
            $0.generation = RawUnit.varint(1 << 32) + RawUnit.varint(1)
        },
        .init("varint of 11 bytes", .invalidField, "generation.sequence varint overflows 64 bits") {
            $0.generation = RawUnit.varint(3) + [UInt8](repeating: 0xFF, count: 10) + [0x01]
        },
        .init("varint over 64 bits in its 10th byte", .invalidField, "varint overflows 64 bits") {
            $0.generation = RawUnit.varint(3) + [UInt8](repeating: 0xFF, count: 9) + [0x02]
        },
        .init("varint not in its shortest form", .invalidField, "vlan varint is not in its shortest form") {
            $0.vlan = RawUnit.varint(100, padding: 1)
        },
        .init("zero varint not in its shortest form", .invalidField, "not in its shortest form") {
            $0.sessionTimeout = [0x80, 0x00]
        },
        .init("access interface with a non-ASCII byte", .invalidField, "accessInterface contains the byte 0xC3") {
            $0.accessInterface = RawUnit.prefixed("Gigabit\u{E9}")
        },
        .init("empty access interface", .invalidField, "accessInterface is empty") { $0.accessInterface = [0] },
        .init("portal group with a space", .invalidField, "portalGroup contains a space at byte 6") {
            $0.portalGroup = RawUnit.prefixed("campus 1")
        },
        .init("authentication mode 0", .invalidField, "authenticationMode 0 is not an authentication mode") {
            $0.authenticationMode = [0]
        },
        .init("authentication mode 4", .invalidField, "authenticationMode 4 is not an authentication mode") {
            $0.authenticationMode = [4]
        },
        .init("owner 0", .invalidField, "owner 0 is not a device ID") { $0.owner = [0] },
        .init("unknown RADIUS flag", .invalidField, "radius.flags has unknown bits set") { $0.radiusFlags = [3] },
        .init("NAS IP present but not flagged", .trailingBytes, "35 unexpected bytes after the last field") {
            $0.radiusFlags = [0]
        },
        .init("NAS IP flagged but missing", nil, "") { $0.nasIP = [] },
        .init("Acct-Session-Id not UTF-8", .invalidField, "radius.acctSessionID is not valid UTF-8") {
            $0.acctSessionID = RawUnit.prefixed([0xED, 0xA0, 0x80])  // a UTF-16 surrogate
        },
        .init("a byte after the last field", .trailingBytes, "1 unexpected byte after the last field") {
            $0.classAttribute += [0]
        },
    ]

    static let recordCorruptions: [RecordCorruption] = [
        RecordCorruption(
            name: "origin 0",
            bytes: RawSessionBody().loginRecord(origin: 0),
            code: .invalidField,
            message: "origin 0 is not a device ID"
        ),
        RecordCorruption(
            name: "term past 32 bits",
            bytes: logoutRecord(header: RawRecordHeader(term: RawUnit.varint(1 << 32))),
            code: .invalidField,
            message: "term 4294967296 does not fit 32 bits"
        ),
        RecordCorruption(
            name: "logout reason 0",
            bytes: logoutRecord(reason: [0]),
            code: .invalidField,
            message: "reason 0 is not a logout reason"
        ),
        RecordCorruption(
            name: "logout reason 11",
            bytes: logoutRecord(reason: [11]),
            code: .invalidField,
            message: "reason 11 is not a logout reason (1 to 10)"
        ),
        RecordCorruption(
            name: "logout owner 0",
            bytes: logoutRecord(owner: [0]),
            code: .invalidField,
            message: "owner 0 is not a device ID"
        ),
        RecordCorruption(
            name: "logout user name length 2^60",
            bytes: logoutRecord(userName: RawUnit.varint(twoToThe60)),
            code: .lengthOutOfBounds,
            message: "userName length 1152921504606846976 is out of bounds (at most 253)"
        ),
        RecordCorruption(
            name: "logout user name with DEL",
            bytes: logoutRecord(userName: RawUnit.prefixed("bob\u{7F}")),
            code: .invalidField,
            message: "userName contains the control character U+007F at byte 3"
        ),
        RecordCorruption(
            name: "device-ID change to 0",
            bytes: RawUnit.sealed(kind: 3, RawRecordHeader().bytes + [2, 0]),
            code: .invalidField,
            message: "to 0 is not a device ID"
        ),
        RecordCorruption(
            name: "device-ID change cut short",
            bytes: RawUnit.sealed(kind: 3, RawRecordHeader().bytes + [2]),
            code: .truncated,
            message: "truncated, 1 more byte needed"
        ),
        RecordCorruption(
            name: "sequence past 64 bits",
            bytes: RawUnit.sealed(
                kind: 3,
                RawRecordHeader(sequence: [UInt8](repeating: 0xFF, count: 9) + [0x7F]).bytes + [2, 5]
            ),
            code: .invalidField,
            message: "sequence varint overflows 64 bits"
        ),
        RecordCorruption(
            name: "a byte after the last field",
            bytes: RawUnit.sealed(kind: 3, RawRecordHeader().bytes + [2, 5, 0]),
            code: .trailingBytes,
            message: "1 unexpected byte after the last field"
        ),
    ]

    @Test("each corruption of a session value gives its error", arguments: sessionValueCorruptions)
    func sessionValueCorruption(corruption: SessionValueCorruption) {
        var body = RawSessionBody()
        corruption.change(&body)
        let value = body.sessionValue()
        let error = #expect(throws: CorruptRecordError.self) {
            try TestCodec.decodeSessionValue(value, ip: FixedRecords.ip)
        }
        if let code = corruption.code {
            #expect(error?.code == code, "\(String(describing: error))")
            #expect(error?.description.contains(corruption.message) == true, "\(String(describing: error))")
            #expect(error?.offset != nil)
        }
        // The check without a decode (a logout from the stored bytes, a peer's snapshot) fails the same way.
        let checkError = #expect(throws: CorruptRecordError.self) { try TestCodec.checkSessionValue(value) }
        if let code = corruption.code {
            #expect(checkError?.code == code)
            #expect(checkError?.offset == error?.offset)
        }
        // The same body inside a login record fails the same way.
        let recordError = #expect(throws: CorruptRecordError.self) { try TestCodec.decodeRecord(body.loginRecord()) }
        if let code = corruption.code {
            #expect(recordError?.code == code)
            #expect(recordError?.offset == error?.offset.map { $0 + 27 }, "a login's body starts 27 bytes later")
        }
    }

    @Test("each corruption of a log record gives its error", arguments: recordCorruptions)
    func recordCorruption(corruption: RecordCorruption) {
        let error = #expect(throws: CorruptRecordError.self) { try TestCodec.decodeRecord(corruption.bytes) }
        #expect(error?.code == corruption.code, "\(String(describing: error))")
        #expect(error?.description.contains(corruption.message) == true, "\(String(describing: error))")
    }

    @Test("an absurd length is refused where it stands, before anything is read or allocated")
    func absurdLengthOffset() throws {
        var body = RawSessionBody()
        body.userName = RawUnit.varint(twoToThe60)
        let error = #expect(throws: CorruptRecordError.self) {
            try TestCodec.decodeSessionValue(body.sessionValue(), ip: FixedRecords.ip)
        }
        // version, kind, mac (6), generation (4), login time (8), session timeout (2): the length is at byte 22.
        #expect(error?.offset == 22)
        #expect(
            error?.description
                == "corrupt record at byte 22: userName length 1152921504606846976 is out of bounds (at most 253)"
        )
        // The index fast path refuses it too.
        let peekError = #expect(throws: CorruptRecordError.self) {
            try body.sessionValue().withUnsafeBytes { try RecordCodec.peekSessionIndexFields($0) }
        }
        #expect(peekError?.code == .lengthOutOfBounds)
    }

    @Test("the largest values of every field decode")
    func extremesDecode() throws {
        var body = RawSessionBody()
        body.generation = RawUnit.varint(UInt64(UInt32.max)) + RawUnit.varint(.max)
        body.loginTime = RawUnit.zigzag(.min)
        body.sessionTimeout = RawUnit.varint(UInt64(UInt32.max))
        body.idleTimeout = RawUnit.varint(UInt64(UInt32.max))
        body.vlan = RawUnit.varint(4094)
        let session = try TestCodec.decodeSessionValue(body.sessionValue(), ip: FixedRecords.ip)
        #expect(session.generation == Generation(term: .max, sequence: .max))
        #expect(session.loginTime.microsecondsSinceEpoch == .min)
        #expect(session.vlan == 4094)
        #expect(TestCodec.encodedValue(session) == body.sessionValue())
    }

    @Test("a unit of a newer format version asks for an upgrade", arguments: [3 as UInt8, 0, 255])
    func unsupportedVersion(version: UInt8) {
        let value = RawSessionBody().sessionValue(version: version)
        let error = #expect(throws: CorruptRecordError.self) {
            try TestCodec.decodeSessionValue(value, ip: FixedRecords.ip)
        }
        #expect(error?.code == .unsupportedVersion)
        #expect(error?.offset == 0)
        #expect(error?.description.contains("format version \(version) is not supported") == true)
        #expect(error?.description.contains("written by a newer Tandem? upgrade to read it") == true)
        var record = GoldenBytes.login
        record[0] = version
        let recordError = #expect(throws: CorruptRecordError.self) {
            try TestCodec.decodeRecord(RawUnit.resealed(record))
        }
        #expect(recordError?.code == .unsupportedVersion)
    }

    @Test("an unknown kind is refused", arguments: [0 as UInt8, 6, 15, 17, 255])
    func unknownKind(kind: UInt8) {
        var record = GoldenBytes.deviceIDChange
        record[1] = kind
        let error = #expect(throws: CorruptRecordError.self) { try TestCodec.decodeRecord(RawUnit.resealed(record)) }
        #expect(error?.code == .unknownKind)
        #expect(error?.offset == 1)
        #expect(error?.description.contains("unknown kind \(kind)") == true)
        let valueError = #expect(throws: CorruptRecordError.self) {
            try TestCodec.decodeSessionValue(RawSessionBody().sessionValue(kind: kind), ip: FixedRecords.ip)
        }
        #expect(valueError?.code == .unknownKind)
    }

    @Test("records and session values are not taken for each other")
    func kindsDoNotMix() {
        let error = #expect(throws: CorruptRecordError.self) { try TestCodec.decodeRecord(GoldenBytes.sessionValue) }
        #expect(error?.code == .unknownKind)
        for record in [GoldenBytes.login, GoldenBytes.logout, GoldenBytes.deviceIDChange] {
            let valueError = #expect(throws: CorruptRecordError.self) {
                try TestCodec.decodeSessionValue(record, ip: FixedRecords.ip)
            }
            #expect(valueError?.code == .unknownKind)
            let peekError = #expect(throws: CorruptRecordError.self) {
                try record.withUnsafeBytes { try RecordCodec.peekSessionIndexFields($0) }
            }
            #expect(peekError?.code == .unknownKind)
        }
    }

    @Test("every truncation of a valid unit throws")
    func everyTruncationThrows() throws {
        var generator = SeededGenerator(seed: 12)
        var records = [GoldenBytes.login, GoldenBytes.logout, GoldenBytes.deviceIDChange]
        records += (0..<100).map { _ in TestCodec.encoded(randomLogRecord(using: &generator)) }
        var failures: [String] = []
        for record in records {
            record.withUnsafeBytes { raw in
                for length in 0..<raw.count {
                    let prefix = UnsafeRawBufferPointer(rebasing: raw[..<length])
                    let code = corruptionCode { _ = try RecordCodec.decodeRecord(prefix) }
                    if code != (length < 6 ? .truncated : .checksumMismatch) {
                        failures.append("record cut to \(length): \(String(describing: code))")
                    }
                }
            }
        }
        var values = [GoldenBytes.sessionValue]
        values += (0..<100).map { _ in TestCodec.encodedValue(randomSession(using: &generator)) }
        for value in values {
            value.withUnsafeBytes { raw in
                for length in 0..<raw.count {
                    let prefix = UnsafeRawBufferPointer(rebasing: raw[..<length])
                    let codes = [
                        corruptionCode { _ = try RecordCodec.decodeSessionValue(prefix, ip: FixedRecords.ip) },
                        corruptionCode { _ = try RecordCodec.peekSessionIndexFields(prefix) },
                    ]
                    if codes.contains(nil) {
                        failures.append("session value cut to \(length) decoded")
                    }
                }
            }
        }
        #expect(failures.isEmpty, "\(failures.prefix(10))")
    }

    @Test("every truncation of the fields, resealed with a valid checksum, is found truncated")
    func everyResealedTruncationIsTruncated() {
        var generator = SeededGenerator(seed: 13)
        var units = [GoldenBytes.login, GoldenBytes.logout, GoldenBytes.deviceIDChange, GoldenBytes.sessionValue]
        units += (0..<50).map { _ in TestCodec.encoded(randomLogRecord(using: &generator)) }
        units += (0..<50).map { _ in TestCodec.encodedValue(randomSession(using: &generator)) }
        var failures: [String] = []
        for unit in units {
            let fields = Array(unit[2..<(unit.count - 4)])
            for length in 0..<fields.count {
                let cut = RawUnit.sealed(kind: unit[1], Array(fields[..<length]))
                let code = corruptionCode {
                    if unit[1] == 16 {
                        _ = try TestCodec.decodeSessionValue(cut, ip: FixedRecords.ip)
                    } else {
                        _ = try TestCodec.decodeRecord(cut)
                    }
                }
                if code != .truncated {
                    failures.append("kind \(unit[1]) cut to \(length) of \(fields.count): \(String(describing: code))")
                }
            }
        }
        #expect(failures.isEmpty, "\(failures.prefix(10))")
    }

    @Test("every single-bit flip of a valid unit is caught by the checksum")
    func everyBitFlipThrows() {
        var generator = SeededGenerator(seed: 14)
        var units = [GoldenBytes.login, GoldenBytes.logout, GoldenBytes.deviceIDChange, GoldenBytes.sessionValue]
        units += (0..<30).map { _ in TestCodec.encoded(randomLogRecord(using: &generator)) }
        units += (0..<30).map { _ in TestCodec.encodedValue(randomSession(using: &generator)) }
        var failures: [String] = []
        for unit in units {
            for bit in 0..<(unit.count * 8) {
                var flipped = unit
                flipped[bit / 8] ^= 1 << (bit % 8)
                let codes =
                    unit[1] == 16
                    ? [
                        corruptionCode { _ = try TestCodec.decodeSessionValue(flipped, ip: FixedRecords.ip) },
                        corruptionCode {
                            _ = try flipped.withUnsafeBytes { try RecordCodec.peekSessionIndexFields($0) }
                        },
                    ]
                    : [corruptionCode { _ = try TestCodec.decodeRecord(flipped) }]
                if codes.contains(where: { $0 != .checksumMismatch }) {
                    failures.append("kind \(unit[1]) bit \(bit): \(codes)")
                }
            }
        }
        #expect(failures.isEmpty, "\(failures.prefix(10))")
    }

    @Test("100,000 random garbage buffers never crash the decoders")
    func randomGarbage() {
        var generator = SeededGenerator(seed: 15)
        var buffer = [UInt8](repeating: 0, count: 512)
        var decoded = 0
        for _ in 0..<100_000 {
            let length = Int.random(in: 0...buffer.count, using: &generator)
            fillRandom(&buffer, count: length, using: &generator)
            buffer.withUnsafeBytes { raw in
                let garbage = UnsafeRawBufferPointer(rebasing: raw[..<length])
                let codes = [
                    corruptionCode { _ = try RecordCodec.decodeRecord(garbage) },
                    corruptionCode { _ = try RecordCodec.decodeSessionValue(garbage, ip: FixedRecords.ip) },
                    corruptionCode { _ = try RecordCodec.peekSessionIndexFields(garbage) },
                ]
                decoded += codes.filter { $0 == nil }.count
            }
        }
        // A random buffer passes the checksum once in 2^32.
        #expect(decoded == 0)
    }

    @Test("100,000 garbage buffers with a valid envelope never crash, and what decodes is canonical and valid")
    func sealedGarbage() throws {
        var generator = SeededGenerator(seed: 16)
        var buffer = [UInt8](repeating: 0, count: 400)
        let kinds: [UInt8] = [1, 2, 3, 16]
        var failures: [String] = []
        for _ in 0..<100_000 {
            let length = Int.random(in: 0...buffer.count, using: &generator)
            fillRandom(&buffer, count: length, using: &generator)
            let unit = RawUnit.sealed(kind: kinds.randomElement(using: &generator)!, Array(buffer[..<length]))
            if let failure = decodesCanonicallyOrThrows(unit) {
                failures.append(failure)
            }
        }
        #expect(failures.isEmpty, "\(failures.prefix(10))")
    }

    @Test("20,000 valid units with random bytes changed and resealed never crash, and what decodes is canonical")
    func mutatedUnits() throws {
        var generator = SeededGenerator(seed: 17)
        var failures: [String] = []
        var decoded = 0
        for _ in 0..<20_000 {
            var unit =
                Bool.random(using: &generator)
                ? TestCodec.encoded(randomLogRecord(using: &generator, allowReDHCP: true))
                : TestCodec.encodedValue(randomSession(using: &generator, allowReDHCP: true))
            for _ in 0..<Int.random(in: 1...4, using: &generator) {
                let index = Int.random(in: 2..<(unit.count - 4), using: &generator)
                switch Int.random(in: 0..<4, using: &generator) {
                case 0: unit[index] = UInt8.random(in: 0...255, using: &generator)
                case 1: unit[index] ^= 1 << UInt8.random(in: 0..<8, using: &generator)
                case 2: unit.insert(UInt8.random(in: 0...255, using: &generator), at: index)
                default: unit.remove(at: index)
                }
            }
            let resealedUnit = RawUnit.resealed(unit)
            if let failure = decodesCanonicallyOrThrows(resealedUnit) {
                failures.append(failure)
            } else if (try? TestCodec.decodeRecord(resealedUnit)) != nil
                || (try? TestCodec.decodeSessionValue(resealedUnit, ip: FixedRecords.ip)) != nil
            {
                decoded += 1
            }
        }
        #expect(failures.isEmpty, "\(failures.prefix(10))")
        // Many mutations land in free-form bytes (names, Class, times) and still decode; the rest are refused.
        #expect(decoded > 1000 && decoded < 19_000, "\(decoded) of 20000 mutated units decoded")
    }

    /// The code of the `CorruptRecordError` that `body` throws, or `nil` when it throws nothing. Any other error is
    /// an issue.
    private func corruptionCode(_ body: () throws -> Void) -> CorruptRecordError.Code? {
        do {
            try body()
            return nil
        } catch let error as CorruptRecordError {
            return error.code
        } catch {
            Issue.record("unexpected \(error)")
            return nil
        }
    }

    /// Decodes `unit` as what its kind byte says: it must either throw a `CorruptRecordError` or decode to a value
    /// that passes validation (but for R10) and encodes back to exactly `unit`. Returns what went wrong, if anything.
    private func decodesCanonicallyOrThrows(_ unit: [UInt8]) -> String? {
        do {
            if unit.count >= 2, unit[1] == 16 {
                let session = try TestCodec.decodeSessionValue(unit, ip: FixedRecords.ip)
                try session.validate(statefulFailover: false)
                guard TestCodec.encodedValue(session) == unit else {
                    return "\(unit) decoded to \(session), which encodes differently"
                }
                let peeked = try unit.withUnsafeBytes { try RecordCodec.peekSessionIndexFields($0) }
                guard peeked.mac == session.mac, peeked.generation == session.generation,
                    peeked.deadline == session.deadline, Array(peeked.userNameBytes) == Array(session.userName.utf8)
                else {
                    return "\(unit) peeks other fields than it decodes"
                }
            } else {
                let record = try TestCodec.decodeRecord(unit)
                if case .login(let session) = record.event {
                    try session.validate(statefulFailover: false)
                }
                guard TestCodec.encoded(record) == unit else {
                    return "\(unit) decoded to \(record), which encodes differently"
                }
            }
            return nil
        } catch is CorruptRecordError {
            return nil
        } catch {
            return "\(unit) decoded to a value that fails validation: \(error)"
        }
    }

    private func fillRandom(_ buffer: inout [UInt8], count: Int, using generator: inout SeededGenerator) {
        var index = 0
        while index < count {
            var word = generator.next()
            for _ in 0..<8 where index < count {
                buffer[index] = UInt8(truncatingIfNeeded: word)
                word >>= 8
                index += 1
            }
        }
    }
}
