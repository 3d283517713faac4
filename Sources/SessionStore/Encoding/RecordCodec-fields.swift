// The payloads of ``RecordCodec``'s units; the layout tables are in RecordCodec.swift.

extension RecordCodec {
    // MARK: Log record fields

    @inline(__always)
    static func writeRecordFields<Sink: UnitSink>(_ record: LogRecord, to sink: inout Sink) {
        writeRecordHeader(
            sequence: record.sequence,
            term: record.term,
            origin: record.origin,
            time: record.time,
            to: &sink
        )
        switch record.event {
        case .login(let session):
            writeLoginFields(session, to: &sink)
        case .logout(let logout):
            sink.writeIP(logout.ip)
            sink.writeMAC(logout.mac)
            sink.writeByte(logout.owner.rawValue)
            writeGeneration(logout.generation, to: &sink)
            sink.writeByte(logout.reason.rawValue)
            sink.writeString(logout.userName)
        case .deviceIDChanged(let from, let to):
            sink.writeByte(from.rawValue)
            sink.writeByte(to.rawValue)
        case .takeover(let from, let to, let term):
            sink.writeByte(from.rawValue)
            sink.writeByte(to.rawValue)
            sink.writeVarint(UInt64(term))
        case .update(let update):
            writeUpdateFields(update, to: &sink)
        }
    }

    /// The fields every record starts with.
    @inline(__always)
    static func writeRecordHeader<Sink: UnitSink>(
        sequence: UInt64,
        term: UInt32,
        origin: DeviceID,
        time: Timestamp,
        to sink: inout Sink
    ) {
        sink.writeVarint(sequence)
        sink.writeVarint(UInt64(term))
        sink.writeByte(origin.rawValue)
        sink.writeSignedVarint(time.microsecondsSinceEpoch)
    }

    /// A login's fields after the header.
    @inline(__always)
    static func writeLoginFields<Sink: UnitSink>(_ session: borrowing Session, to sink: inout Sink) {
        sink.writeIP(session.ip)
        writeSessionBody(session, to: &sink)
    }

    static func readRecordFields(
        kind: Event.Kind,
        from reader: inout UnitReader
    ) throws(CorruptRecordError) -> LogRecord {
        let sequence = try reader.readVarint("sequence")
        let term = try reader.readVarint32("term")
        let origin = try reader.readDeviceID("origin")
        let time = Timestamp(microsecondsSinceEpoch: try reader.readSignedVarint("time"))
        let event: Event
        switch kind {
        case .login:
            let ip = try reader.readIP()
            event = .login(try readSessionBody(ip: ip, from: &reader))
        case .logout:
            let ip = try reader.readIP()
            let mac = try reader.readMAC()
            let owner = try reader.readDeviceID("owner")
            let generation = try readGeneration(from: &reader)
            let reasonStart = reader.offset
            let reasonByte = try reader.readByte()
            guard let reason = LogoutReason(rawValue: reasonByte) else {
                throw .invalidField(
                    at: reasonStart,
                    field: "reason",
                    detail: "\(reasonByte) is not a logout reason (1 to \(LogoutReason.allCases.count))"
                )
            }
            let userName = try readUserName(from: &reader)
            event = .logout(
                Logout(ip: ip, mac: mac, userName: userName, owner: owner, generation: generation, reason: reason)
            )
        case .deviceIDChanged:
            let from = try reader.readDeviceID("from")
            let to = try reader.readDeviceID("to")
            event = .deviceIDChanged(from: from, to: to)
        case .takeover:
            let from = try reader.readDeviceID("from")
            let to = try reader.readDeviceID("to")
            let term = try reader.readVarint32("term")
            event = .takeover(from: from, to: to, term: term)
        case .update:
            guard reader.version >= 2 else {
                throw .invalidField(at: 1, field: "kind", detail: "an update record in a version 1 unit")
            }
            event = .update(try readUpdateFields(from: &reader))
        }
        return LogRecord(sequence: sequence, term: term, origin: origin, time: time, event: event)
    }

    // MARK: Session body

    @inline(__always)
    static func writeSessionBody<Sink: UnitSink>(_ session: borrowing Session, to sink: inout Sink) {
        sink.writeMAC(session.mac)
        writeGeneration(session.generation, to: &sink)
        sink.writeSignedVarint(session.loginTime.microsecondsSinceEpoch)
        sink.writeVarint(UInt64(session.sessionTimeout))
        sink.writeString(session.userName)
        sink.writeVarint(UInt64(session.idleTimeout))
        sink.writeVarint(UInt64(session.vlan))
        sink.writeString(session.accessInterface)
        sink.writeString(session.portalGroup.name)
        sink.writeByte(session.authenticationMode.rawValue)
        sink.writeByte(session.owner.rawValue)
        if let nasIP = session.radius.nasIP {
            sink.writeByte(radiusHasNASIP)
            sink.writeIP(nasIP)
        } else {
            sink.writeByte(0)
        }
        sink.writeString(session.radius.acctSessionID)
        sink.writeBytes(session.radius.classAttribute)
        writeSessionParts(session, to: &sink)
    }

    /// Bit 0 of the RADIUS flags: a NAS IP follows.
    static var radiusHasNASIP: UInt8 { 1 }

    static func readSessionBody(ip: IPAddress, from reader: inout UnitReader) throws(CorruptRecordError) -> Session {
        let fields = try readSessionFields(from: &reader)
        // Every field was checked: the strings are valid UTF-8 (the access interface and portal group ASCII).
        var session = Session(
            ip: ip,
            mac: fields.mac,
            userName: String(decoding: fields.userName, as: UTF8.self),
            vlan: fields.vlan,
            accessInterface: String(decoding: fields.accessInterface, as: UTF8.self),
            portalGroup: PortalGroup(uncheckedName: String(decoding: fields.portalGroup, as: UTF8.self)),
            authenticationMode: AuthenticationMode(rawValue: fields.authenticationMode)!,
            owner: fields.owner,
            loginTime: Timestamp(microsecondsSinceEpoch: fields.loginTime),
            sessionTimeout: fields.sessionTimeout,
            idleTimeout: fields.idleTimeout,
            radius: RADIUSAttributes(
                nasIP: fields.nasIP,
                acctSessionID: String(decoding: fields.acctSessionID, as: UTF8.self),
                classAttribute: Array(fields.classAttribute)
            ),
            generation: fields.generation
        )
        session.adoptParts(fields.parts)
        return session
    }

    /// Reads a session body's fields without building a ``Session``: its strings stay bytes in the unit, and only
    /// its parts, when it has any, are decoded (and checked). Every field is checked as the model's rules say
    /// when `checkingRules`; otherwise only the encoding is (bounds, lengths, varints, device IDs), for bytes
    /// whose checksum says a checking encoder wrote them and which are only hashed.
    static func readSessionFields(
        from reader: inout UnitReader,
        checkingRules: Bool = true
    ) throws(CorruptRecordError) -> SessionValueFields {
        let mac = try reader.readMAC()
        let generation = try readGeneration(from: &reader)
        let loginTime = try reader.readSignedVarint("loginTime")
        let sessionTimeout = try reader.readVarint32("sessionTimeout")
        let userNameOffset = reader.offset
        let userName = try reader.readLengthPrefixed("userName", maximum: FieldRules.maximumUserNameBytes)
        if checkingRules { try checkUserName(userName, at: userNameOffset) }
        let idleTimeout = try reader.readVarint32("idleTimeout")

        let vlanStart = reader.offset
        let vlan = try reader.readVarint16("vlan")
        if checkingRules { try applying(FieldRules.checkVLAN(vlan), at: vlanStart) }

        let interfaceStart = reader.offset
        let accessInterface = try reader.readLengthPrefixed(
            "accessInterface",
            maximum: FieldRules.maximumAccessInterfaceBytes
        )
        if checkingRules { try applying(FieldRules.checkAccessInterface(accessInterface), at: interfaceStart) }

        let groupStart = reader.offset
        let portalGroup = try reader.readLengthPrefixed("portalGroup", maximum: FieldRules.maximumPortalGroupBytes)
        if checkingRules { try applying(FieldRules.checkPortalGroup(portalGroup), at: groupStart) }

        let modeStart = reader.offset
        let modeByte = try reader.readByte()
        guard !checkingRules || AuthenticationMode(rawValue: modeByte) != nil else {
            throw .invalidField(
                at: modeStart,
                field: "authenticationMode",
                detail: "\(modeByte) is not an authentication mode (1 direct, 2 redhcp, 3 layer3)"
            )
        }
        let owner = try reader.readDeviceID("owner")

        let flagsStart = reader.offset
        let flags = try reader.readByte()
        guard !checkingRules || flags & ~radiusHasNASIP == 0 else {
            throw .invalidField(
                at: flagsStart,
                field: "radius.flags",
                detail: "has unknown bits set (0x\(String(flags, radix: 16)); only bit 0, NAS IP present, is defined)"
            )
        }
        let nasIP = flags & radiusHasNASIP != 0 ? try reader.readIP() : nil
        let acctSessionIDStart = reader.offset
        let acctSessionID = try reader.readLengthPrefixed(
            "radius.acctSessionID",
            maximum: FieldRules.maximumAcctSessionIDBytes
        )
        guard !checkingRules || isValidUTF8(acctSessionID) else {
            throw .invalidField(at: acctSessionIDStart, field: "radius.acctSessionID", detail: "is not valid UTF-8")
        }
        let classAttribute = try reader.readLengthPrefixed(
            "radius.classAttribute",
            maximum: FieldRules.maximumClassBytes
        )
        let parts = reader.version >= 2 ? try readParts(from: &reader).flatMap(PartsBox.holding) : nil
        return SessionValueFields(
            mac: mac,
            generation: generation,
            loginTime: loginTime,
            sessionTimeout: sessionTimeout,
            userName: userName,
            idleTimeout: idleTimeout,
            vlan: vlan,
            accessInterface: accessInterface,
            portalGroup: portalGroup,
            authenticationMode: modeByte,
            owner: owner,
            nasIP: nasIP,
            acctSessionID: acctSessionID,
            classAttribute: classAttribute,
            parts: parts
        )
    }

    // MARK: Shared fields

    @inline(__always)
    static func writeGeneration<Sink: UnitSink>(_ generation: Generation, to sink: inout Sink) {
        sink.writeVarint(UInt64(generation.term))
        sink.writeVarint(generation.sequence)
    }

    @inline(__always)
    static func readGeneration(from reader: inout UnitReader) throws(CorruptRecordError) -> Generation {
        let term = try reader.readVarint32("generation.term")
        let sequence = try reader.readVarint("generation.sequence")
        return Generation(term: term, sequence: sequence)
    }

    /// Reads a user name: at most 253 bytes (checked before anything else), valid UTF-8, not empty, no control
    /// characters.
    @inline(__always)
    static func readUserName(from reader: inout UnitReader) throws(CorruptRecordError) -> String {
        let start = reader.offset
        let bytes = try reader.readLengthPrefixed("userName", maximum: FieldRules.maximumUserNameBytes)
        try checkUserName(bytes, at: start)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Checks the user name `bytes`, read at offset `start` of its unit: valid UTF-8, not empty, no control
    /// characters.
    @inline(__always)
    static func checkUserName(_ bytes: UnsafeBufferPointer<UInt8>, at start: Int) throws(CorruptRecordError) {
        guard isValidUTF8(bytes) else {
            throw .invalidField(at: start, field: "userName", detail: "is not valid UTF-8")
        }
        try applying(FieldRules.checkUserName(bytes), at: start)
    }

    /// Whether `bytes` are valid UTF-8, without allocating for the usual ASCII.
    @inline(__always)
    static func isValidUTF8(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        var high: UInt8 = 0
        for byte in bytes { high |= byte }
        return high < 0x80 || String(validatingUTF8Bytes: bytes) != nil
    }

    /// Turns the ``InvalidFieldError`` of a field rule into a ``CorruptRecordError`` at the field's offset.
    @inline(__always)
    static func applying(
        _ rule: @autoclosure () throws(InvalidFieldError) -> Void,
        at offset: Int
    ) throws(CorruptRecordError) {
        do {
            try rule()
        } catch {
            throw .invalidField(at: offset, field: error.field, detail: error.detail)
        }
    }
}
