/// The binary format of log records and of the values of the users table.
///
/// ## Envelope
///
/// Every encoded unit, whatever its version, is
///
/// | bytes | field | |
/// |---|---|---|
/// | 1 | format version | `2` (written); `1` and `2` are read |
/// | 1 | kind | `1` login, `2` logout, `3` device-ID change, `4` takeover, `5` update (log records, = ``Event/Kind``); `16` session value |
/// | n | payload | by kind, below |
/// | 4 | CRC-32C | over every byte before it, little-endian (``CRC32C``) |
///
/// A unit has no length of its own: the store keeps each unit in its own LMDB value, and the replication link
/// frames them. The decoder checks the checksum first, then the version (so a damaged version byte reads as
/// damage, and only a sound unit of a newer version asks for an upgrade), then the kind, then every field, and
/// last that no byte is left over.
///
/// ## Field encodings
///
/// | type | encoding |
/// |---|---|
/// | `varint` | unsigned LEB128, 1...10 bytes, shortest form only; a `u16`/`u32` field must fit its width |
/// | `zigzag` | signed as zigzag (`(n << 1) ^ (n >> 63)`) in a `varint` |
/// | `ip` | 16 bytes, network order; IPv4 as `::ffff:a.b.c.d` |
/// | `mac` | 6 bytes, network order |
/// | `device` | 1 byte, 1...255 |
/// | `string(max)` | `varint` byte count (at most `max`), then that many bytes of UTF-8 |
/// | `bytes(max)` | `varint` byte count (at most `max`), then the bytes |
/// | `generation` | term `varint` (u32), sequence `varint` (u64) |
/// | `revision` | term `varint` (u32), sequence `varint` (u64), device `u8` (0 only in the zero revision) |
///
/// ## Log record (kinds 1 to 5)
///
/// | field | encoding |
/// |---|---|
/// | sequence | `varint` |
/// | term | `varint` (u32) |
/// | origin | `device` |
/// | time | `zigzag`, microseconds since the epoch |
/// | event | by kind: |
/// | 1, login | ip `ip`, then the session body |
/// | 2, logout | ip `ip`, mac `mac`, owner `device`, `generation`, reason `u8` (``LogoutReason``), user name `string(253)` |
/// | 3, device-ID change | from `device`, to `device` |
/// | 4, takeover | from `device`, to `device`, term `varint` (u32) |
/// | 5, update | ip `ip`, owner `device`, `generation` (of the session), `revision` (device 1...255), reason `u8` (``UpdateReason``), parts `u8` (bit 0 authorization, bit 1 accounting, bit 2 activity; at least one), then each part flagged: the authorization block, session timeout `varint` (u32) and idle timeout `varint` (u32); the accounting block; last activity `zigzag` |
///
/// ## Session value (kind 16)
///
/// The value of the users table, whose key is the session's IP address: the session body alone.
///
/// ## Session body
///
/// The fields ``RecordCodec/peekSessionIndexFields(_:)`` reads come first.
///
/// | field | encoding |
/// |---|---|
/// | mac | `mac` |
/// | generation | `generation` |
/// | login time | `zigzag`, microseconds since the epoch |
/// | session timeout | `varint` (u32), seconds |
/// | user name | `string(253)`, no control characters |
/// | idle timeout | `varint` (u32), seconds |
/// | VLAN | `varint` (u16), 0...4094 |
/// | access interface | `string(63)`, printable ASCII |
/// | portal group | `string(31)`, `[A-Za-z0-9._-]` |
/// | authentication mode | `u8` (``AuthenticationMode``) |
/// | owner | `device` |
/// | RADIUS flags | `u8`: bit 0 set when a NAS IP follows; the other bits are 0 |
/// | NAS IP | `ip`, only when flagged |
/// | Acct-Session-Id | `string(253)` |
/// | Class | `bytes(253)` |
/// | parts | `u8`, version 2 only: bit 0 an authorization block follows, bit 1 an accounting block, bit 2 the last activity, bit 3 the revisions; a part that is empty (no attribute, no report, every revision zero) is left out |
/// | authorization | the authorization block, when flagged |
/// | accounting | the accounting block, when flagged |
/// | last activity | `zigzag`, microseconds since the epoch, when flagged |
/// | revisions | authorization, accounting and activity `revision`s, when flagged |
///
/// A version 1 session body ends after Class: it reads as a session with no part set.
///
/// ## Authorization block
///
/// | field | encoding |
/// |---|---|
/// | flags | `u8`: bit 0 ACL number, bit 1 ACL name (not both), bit 2 user profile, bit 3 inbound CAR, bit 4 outbound CAR, bit 5 VPN instance, bit 6 Filter-Id; bit 7 is 0 |
/// | ACL | number `varint` (1...99999), or name `string(63)`, printable ASCII without spaces, first a letter |
/// | user profile | `string(63)`, printable ASCII without spaces |
/// | inbound CAR, outbound CAR | CIR `varint` (u32, above 0), CBS `varint` (u32) |
/// | VPN instance | `string(31)`, printable ASCII without spaces |
/// | Filter-Id | `string(253)`, no control characters |
/// | accounting interval | `varint` (u32), 0 or at least 60 |
///
/// ## Accounting block
///
/// | field | encoding |
/// |---|---|
/// | flags | `u8`: bit 0 the report time follows |
/// | input octets, output octets, input packets, output packets | `varint` each (u64) |
/// | report time | `zigzag`, microseconds since the epoch, when flagged |
///
/// Every field holds exactly one encoding of each value, so decoding then encoding gives back the same bytes.
///
/// ## Example
///
/// The device-ID change from 2 to 5 logged as record 300 of term 4 by device 2, at 2026-11-21T07:34:20.123456Z:
///
/// ```
/// 02 03 | AC 02 | 04 | 02 | 80 E5 D1 B8 8C B1 B0 06 | 02 | 05 | 1E 77 DB D3
/// v2 kind 3  sequence  term  origin  time (zigzag)         from   to   CRC-32C
/// ```
///
/// ## Performance
///
/// Encoding measures the unit, grows the caller's buffer once and writes into it; decoding reads in place, checks
/// every bound before reading, and allocates nothing but the strings and arrays of the result (a string of at most
/// 15 bytes allocates nothing).
public enum RecordCodec {
    /// The format version this code writes. It reads it and every earlier one (``oldestReadableVersion``).
    static let version: UInt8 = 2
    /// The oldest format version this code reads: version 1 units are read as sessions without the parts
    /// updates change (no authorization, no accounting report, no activity, every revision zero).
    static let oldestReadableVersion: UInt8 = 1
    /// The kind byte of a session value.
    static let sessionValueKind: UInt8 = 16
    /// Version, kind and checksum.
    static let envelopeSize = 6

    /// The size of the largest unit whose fields pass validation: a login record of a session with every string at
    /// its longest, a NAS IP, every part that updates set, and every number at its widest (1,522 bytes). A session
    /// value is at most 1,480 bytes, an update record 594, a logout record 326. Use it to bound a frame that carries
    /// one unit before allocating room for it.
    public static let maximumUnitSize = 1522

    /// Zeros to grow buffers with by copying memory: room for any unit of valid fields.
    private static let zeroBytes = [UInt8](repeating: 0, count: maximumUnitSize)

    // MARK: Log records

    /// Appends the encoding of a log record to `buffer`.
    ///
    /// - Parameters:
    ///   - record: The record. Its fields are written as they are; validate sessions before logging them.
    ///   - buffer: The buffer to append to; what it holds already is kept.
    public static func encode(_ record: LogRecord, into buffer: inout [UInt8]) {
        var counter = UnitSizeCounter()
        writeRecordFields(record, to: &counter)
        appendUnit(kind: record.event.kind.rawValue, fieldsSize: counter.count, into: &buffer) { writer in
            writeRecordFields(record, to: &writer)
        }
    }

    /// Appends a login record, exactly as ``encode(_:into:)`` would encode
    /// `LogRecord(sequence:term:origin:time:event: .login(session))`, without building that record: the
    /// writer's hot path.
    static func encodeLogin(
        _ session: borrowing Session,
        sequence: UInt64,
        term: UInt32,
        origin: DeviceID,
        time: Timestamp,
        into buffer: inout [UInt8]
    ) {
        var counter = UnitSizeCounter()
        writeRecordHeader(sequence: sequence, term: term, origin: origin, time: time, to: &counter)
        writeLoginFields(session, to: &counter)
        appendUnit(kind: Event.Kind.login.rawValue, fieldsSize: counter.count, into: &buffer) { writer in
            writeRecordHeader(sequence: sequence, term: term, origin: origin, time: time, to: &writer)
            writeLoginFields(session, to: &writer)
        }
    }

    /// Appends the login record of the session stored as `value` at `ip`, exactly as
    /// ``encodeLogin(_:sequence:term:origin:time:into:)`` would encode that session, by copying the value's fields:
    /// a login's fields after its header are the address and the session body, which is all a session value
    /// holds.
    ///
    /// - Parameter value: A session value of the current ``version``, checked (``peekSessionValueFields(_:checkingRules:)``);
    ///   a value of an older version has another body and must be decoded instead.
    static func encodeLogin(
        storedValue value: UnsafeRawBufferPointer,
        ip: IPAddress,
        sequence: UInt64,
        term: UInt32,
        origin: DeviceID,
        time: Timestamp,
        into buffer: inout [UInt8]
    ) {
        precondition(value.count >= envelopeSize && value[0] == version, "a stored value of another version")
        let body = UnsafeRawBufferPointer(rebasing: value[2..<value.count - 4])
        var counter = UnitSizeCounter()
        writeRecordHeader(sequence: sequence, term: term, origin: origin, time: time, to: &counter)
        appendUnit(kind: Event.Kind.login.rawValue, fieldsSize: counter.count + 16 + body.count, into: &buffer) {
            writer in
            writeRecordHeader(sequence: sequence, term: term, origin: origin, time: time, to: &writer)
            writer.writeIP(ip)
            writer.writeEncoded(body)
        }
    }

    /// Decodes one log record, which must take exactly all of `bytes`.
    ///
    /// - Parameter bytes: One encoded record.
    /// - Returns: The record. A login's session passes ``Session/validate(statefulFailover:)`` with
    ///   `statefulFailover: false` (re-DHCP is a policy, not a format rule).
    /// - Throws: ``CorruptRecordError`` when the bytes are not one sound record: damaged, cut short, of a newer
    ///   version, of another kind, or with a field out of its range.
    public static func decodeRecord(_ bytes: UnsafeRawBufferPointer) throws(CorruptRecordError) -> LogRecord {
        let (kind, base, end) = try openUnit(bytes)
        guard let eventKind = Event.Kind(rawValue: kind) else {
            throw .unknownKind(
                found: kind,
                expected: "1 login, 2 logout, 3 device-id-change, 4 takeover or 5 update for a log record"
            )
        }
        var reader = UnitReader(base: base, offset: 2, end: end)
        let record = try readRecordFields(kind: eventKind, from: &reader)
        try reader.finish()
        return record
    }

    // MARK: Session values

    /// Appends the users-table value of a session to `buffer`: the session without its IP address, which is the
    /// table's key.
    ///
    /// - Parameters:
    ///   - session: The session. Its fields are written as they are; validate it first.
    ///   - buffer: The buffer to append to; what it holds already is kept.
    public static func encodeSessionValue(_ session: Session, into buffer: inout [UInt8]) {
        var counter = UnitSizeCounter()
        writeSessionBody(session, to: &counter)
        appendUnit(kind: sessionValueKind, fieldsSize: counter.count, into: &buffer) { writer in
            writeSessionBody(session, to: &writer)
        }
    }

    /// Decodes a users-table value, which must take exactly all of `bytes`.
    ///
    /// - Parameters:
    ///   - bytes: One encoded session value.
    ///   - ip: The session's IP address: the table key the value was stored under.
    /// - Returns: The session. It passes ``Session/validate(statefulFailover:)`` with `statefulFailover: false`.
    /// - Throws: ``CorruptRecordError`` when the bytes are not one sound session value.
    public static func decodeSessionValue(
        _ bytes: UnsafeRawBufferPointer,
        ip: IPAddress
    ) throws(CorruptRecordError) -> Session {
        var reader = try openSessionValue(bytes)
        let session = try readSessionBody(ip: ip, from: &reader)
        try reader.finish()
        return session
    }

    /// Checks the checksum, version and kind of a users-table value, and returns a reader of its fields.
    @inline(__always)
    static func openSessionValue(_ bytes: UnsafeRawBufferPointer) throws(CorruptRecordError) -> UnitReader {
        let (kind, base, end) = try openUnit(bytes)
        guard kind == sessionValueKind else {
            throw .unknownKind(found: kind, expected: "\(sessionValueKind) for a session value")
        }
        return UnitReader(base: base, offset: 2, end: end)
    }

    /// Reads the fields that the users table's indexes are built from, without decoding the whole value.
    ///
    /// The checksum, version and kind are checked, and the fields returned; the fields after them are not decoded,
    /// and the user name's bytes are returned as stored (their length is checked, not their UTF-8).
    ///
    /// - Parameter bytes: One encoded session value.
    /// - Returns: The session's MAC address, the bytes of its user name (pointing into `bytes`, valid as long as
    ///   they are), its ``Session/deadline``, and its generation.
    /// - Throws: ``CorruptRecordError`` when the bytes are damaged, are not a session value, or the fields read are
    ///   out of range.
    public static func peekSessionIndexFields(
        _ bytes: UnsafeRawBufferPointer
    ) throws(CorruptRecordError) -> (
        mac: MACAddress, userNameBytes: UnsafeRawBufferPointer, deadline: Timestamp?, generation: Generation
    ) {
        var reader = try openSessionValue(bytes)
        let mac = try reader.readMAC()
        let generation = try readGeneration(from: &reader)
        let loginTime = Timestamp(microsecondsSinceEpoch: try reader.readSignedVarint("loginTime"))
        let sessionTimeout = try reader.readVarint32("sessionTimeout")
        let userNameStart = reader.offset
        let userName = try reader.readLengthPrefixed("userName", maximum: FieldRules.maximumUserNameBytes)
        guard !userName.isEmpty else {
            throw .invalidField(at: userNameStart, field: "userName", detail: "is empty")
        }
        let deadline = Session.deadline(loginTime: loginTime, sessionTimeout: sessionTimeout)
        return (mac, UnsafeRawBufferPointer(userName), deadline, generation)
    }

    // MARK: Envelope

    /// Grows `buffer` once by the size of the unit, then writes version, kind, fields and checksum in place.
    @inline(__always)
    private static func appendUnit(
        kind: UInt8,
        fieldsSize: Int,
        into buffer: inout [UInt8],
        _ writeFields: (inout UnitWriter) -> Void
    ) {
        let start = buffer.count
        let size = envelopeSize + fieldsSize
        // Appending grows the array geometrically. `reserveCapacity(count + size)` would instead reallocate to
        // exactly that size whenever the unit does not fit, which is quadratic for a caller appending many units
        // to one buffer. Copying zeros from memory is faster than appending `repeatElement(0, count:)`.
        let zeros = zeroBytes
        if size <= zeros.count {
            zeros.withUnsafeBufferPointer { buffer.append(contentsOf: UnsafeBufferPointer(rebasing: $0[..<size])) }
        } else {
            buffer.append(contentsOf: repeatElement(0, count: size))
        }
        buffer.withUnsafeMutableBytes { raw in
            let unit = raw.baseAddress! + start
            unit.storeBytes(of: version, as: UInt8.self)
            unit.storeBytes(of: kind, toByteOffset: 1, as: UInt8.self)
            var writer = UnitWriter(start: unit + 2, count: fieldsSize)
            writeFields(&writer)
            assert(writer.pointer == unit + 2 + fieldsSize, "the size measured and the bytes written differ")
            let crc = CRC32C.checksum(UnsafeRawBufferPointer(start: unit, count: size - 4))
            (unit + (size - 4)).storeBytes(of: crc.littleEndian, as: UInt32.self)
        }
    }

    /// Checks the length, checksum and version of a unit, and returns its kind and where its fields end.
    @inline(__always)
    static func openUnit(
        _ bytes: UnsafeRawBufferPointer
    ) throws(CorruptRecordError) -> (kind: UInt8, base: UnsafeRawPointer, end: Int) {
        guard bytes.count >= envelopeSize, let base = bytes.baseAddress else {
            throw .truncated(at: bytes.count, needed: envelopeSize - bytes.count)
        }
        let end = bytes.count - 4
        let stored = UInt32(littleEndian: base.loadUnaligned(fromByteOffset: end, as: UInt32.self))
        let computed = CRC32C.checksum(UnsafeRawBufferPointer(start: base, count: end))
        guard stored == computed else {
            throw .checksumMismatch(at: end, stored: stored, computed: computed)
        }
        let found = base.load(as: UInt8.self)
        guard (oldestReadableVersion...version).contains(found) else {
            throw .unsupportedVersion(found: found, supported: version)
        }
        return (base.load(fromByteOffset: 1, as: UInt8.self), base, end)
    }
}
