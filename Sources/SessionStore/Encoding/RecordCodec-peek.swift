// Fields of an encoded log record or session value read without decoding it: what the replication stream's
// sender needs to decide, per record, whether the peer must receive it, and what a snapshot's sender and the
// handover after a takeover filter sessions on.

extension RecordCodec {
    /// The origin of an encoded log record, read without decoding it; `nil` when the bytes are too short.
    static func peekOrigin(_ bytes: UnsafeRawBufferPointer) -> DeviceID? {
        var offset = 2  // version, kind
        for _ in 0..<2 {  // sequence, term
            while offset < bytes.count, bytes[offset] & 0x80 != 0 { offset += 1 }
            offset += 1
        }
        guard offset < bytes.count else { return nil }
        return DeviceID(rawValue: bytes[offset])
    }

    /// The session an encoded login, logout or update record is about: its owner and the term of its generation,
    /// read without decoding the record (the checksum is not checked; the reader of the bytes checks it).
    ///
    /// - Returns: `nil` for the other kinds of record, and for bytes that do not hold those fields.
    static func peekSubject(_ bytes: UnsafeRawBufferPointer) -> (owner: DeviceID, term: UInt32)? {
        guard bytes.count > envelopeSize, let base = bytes.baseAddress,
            let kind = Event.Kind(rawValue: bytes[1]), kind == .login || kind == .logout || kind == .update
        else { return nil }
        var reader = UnitReader(base: base, offset: 2, end: bytes.count - 4)
        do throws(CorruptRecordError) {
            _ = try reader.readVarint("sequence")
            _ = try reader.readVarint32("term")
            _ = try reader.readDeviceID("origin")
            _ = try reader.readSignedVarint("time")
            _ = try reader.readIP()
            if kind == .update {
                let owner = try reader.readDeviceID("owner")
                return (owner, try readGeneration(from: &reader).term)
            }
            _ = try reader.readMAC()
            if kind == .logout {
                let owner = try reader.readDeviceID("owner")
                return (owner, try readGeneration(from: &reader).term)
            }
            let term = try readGeneration(from: &reader).term
            _ = try reader.readSignedVarint("loginTime")
            _ = try reader.readVarint32("sessionTimeout")
            _ = try reader.readLengthPrefixed("userName", maximum: FieldRules.maximumUserNameBytes)
            _ = try reader.readVarint32("idleTimeout")
            _ = try reader.readVarint16("vlan")
            _ = try reader.readLengthPrefixed("accessInterface", maximum: FieldRules.maximumAccessInterfaceBytes)
            _ = try reader.readLengthPrefixed("portalGroup", maximum: FieldRules.maximumPortalGroupBytes)
            _ = try reader.readByte()  // authentication mode
            return (try reader.readDeviceID("owner"), term)
        } catch {
            return nil
        }
    }

    /// The owner of a stored session value and its generation, read without decoding the rest of it: what the
    /// sender of a snapshot, the end of a received one and the handover after a takeover filter on before they
    /// decode a session. The checksum, version and kind are checked, and the lengths of the fields skipped;
    /// their contents are not (a decode of the value checks them).
    ///
    /// - Parameter bytes: One encoded session value.
    /// - Returns: the owner and the generation.
    /// - Throws: ``CorruptRecordError`` when the bytes are damaged, are not a session value, or end early.
    package static func peekSessionOwner(
        _ bytes: UnsafeRawBufferPointer
    ) throws(CorruptRecordError) -> (owner: DeviceID, generation: Generation) {
        var reader = try openSessionValue(bytes)
        _ = try reader.readMAC()
        let generation = try readGeneration(from: &reader)
        _ = try reader.readSignedVarint("loginTime")
        _ = try reader.readVarint32("sessionTimeout")
        _ = try reader.readLengthPrefixed("userName", maximum: FieldRules.maximumUserNameBytes)
        _ = try reader.readVarint32("idleTimeout")
        _ = try reader.readVarint16("vlan")
        _ = try reader.readLengthPrefixed("accessInterface", maximum: FieldRules.maximumAccessInterfaceBytes)
        _ = try reader.readLengthPrefixed("portalGroup", maximum: FieldRules.maximumPortalGroupBytes)
        _ = try reader.readByte()  // authentication mode
        return (try reader.readDeviceID("owner"), generation)
    }

    /// The fields of a stored session value, its strings as bytes in the value: what a digest of the users table
    /// hashes and a logout logs, read without allocating anything for a session without parts.
    struct SessionValueFields {
        var mac: MACAddress
        var generation: Generation
        var loginTime: Int64
        var sessionTimeout: UInt32
        var userName: UnsafeBufferPointer<UInt8>
        var idleTimeout: UInt32
        var vlan: UInt16
        var accessInterface: UnsafeBufferPointer<UInt8>
        var portalGroup: UnsafeBufferPointer<UInt8>
        var authenticationMode: UInt8
        var owner: DeviceID
        var nasIP: IPAddress?
        var acctSessionID: UnsafeBufferPointer<UInt8>
        var classAttribute: UnsafeBufferPointer<UInt8>
        /// What updates changed, decoded and boxed; `nil` for most sessions, which have none.
        var parts: PartsBox?

        /// When the session timeout ends the session (``Session/deadline``).
        var deadline: Timestamp? {
            Session.deadline(loginTime: Timestamp(microsecondsSinceEpoch: loginTime), sessionTimeout: sessionTimeout)
        }
    }

    /// Reads the fields of a stored session value without decoding it into a ``Session``: its checksum, version
    /// and kind are checked, and every field as a decode checks it (``decodeSessionValue(_:ip:)`` reads the value
    /// through this same reader), unless `checkingRules` is `false`: then only the encoding is checked, for a
    /// value that is only hashed (a digest) or that was checked when it came (a peer's snapshot).
    ///
    /// The parts (authorization, accounting, activity, revisions) are decoded; nothing else is allocated.
    ///
    /// - Parameters:
    ///   - bytes: One encoded session value; the fields returned point into it.
    ///   - checkingRules: Whether each field is checked against the model's rules too.
    /// - Returns: the fields.
    /// - Throws: ``CorruptRecordError`` when the bytes are damaged, are not a session value, a field breaks the
    ///   rules (when checked), or they end early or late.
    static func peekSessionValueFields(
        _ bytes: UnsafeRawBufferPointer,
        checkingRules: Bool = true
    ) throws(CorruptRecordError) -> SessionValueFields {
        var reader = try openSessionValue(bytes)
        let fields = try readSessionFields(from: &reader, checkingRules: checkingRules)
        try reader.finish()
        return fields
    }

}
