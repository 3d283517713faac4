// The fields of version 2: the parts of a session that updates change, and the update record. The layout tables
// are in RecordCodec.swift.

extension RecordCodec {
    // MARK: Session parts

    /// Bits of the session-parts byte, and of an update record's parts byte (where revisions never follow).
    private static var partAuthorization: UInt8 { 1 }
    private static var partAccounting: UInt8 { 2 }
    private static var partActivity: UInt8 { 4 }
    private static var partRevisions: UInt8 { 8 }

    @inline(__always)
    static func writeSessionParts<Sink: UnitSink>(_ session: borrowing Session, to sink: inout Sink) {
        guard session.hasParts else { return sink.writeByte(0) }
        let authorization = session.authorization != .none
        let accounting = session.accounting != .none
        let revisions = session.revisions != .zero
        var parts: UInt8 = 0
        if authorization { parts |= partAuthorization }
        if accounting { parts |= partAccounting }
        if session.lastActivity != nil { parts |= partActivity }
        if revisions { parts |= partRevisions }
        sink.writeByte(parts)
        guard parts != 0 else { return }
        if authorization { writeAuthorization(session.authorization, to: &sink) }
        if accounting { writeAccounting(session.accounting, to: &sink) }
        if let lastActivity = session.lastActivity { sink.writeSignedVarint(lastActivity.microsecondsSinceEpoch) }
        if revisions {
            writeRevision(session.revisions.authorization, to: &sink)
            writeRevision(session.revisions.accounting, to: &sink)
            writeRevision(session.revisions.activity, to: &sink)
        }
    }

    /// Reads a session body's parts; `nil` when it holds none.
    static func readParts(from reader: inout UnitReader) throws(CorruptRecordError) -> Parts? {
        let partsStart = reader.offset
        let parts = try reader.readByte()
        guard parts & ~(partAuthorization | partAccounting | partActivity | partRevisions) == 0 else {
            throw .invalidField(
                at: partsStart,
                field: "parts",
                detail: "has unknown bits set (0x\(String(parts, radix: 16)); bits 0 to 3 are defined)"
            )
        }
        guard parts != 0 else { return nil }
        var value = Parts.none
        if parts & partAuthorization != 0 {
            let start = reader.offset
            value.authorization = try readAuthorization(from: &reader)
            guard value.authorization != .none else {
                throw .invalidField(at: start, field: "authorization", detail: "is flagged but holds no attribute")
            }
        }
        if parts & partAccounting != 0 {
            let start = reader.offset
            value.accounting = try readAccounting(from: &reader)
            guard value.accounting != .none else {
                throw .invalidField(at: start, field: "accounting", detail: "is flagged but holds no report")
            }
        }
        if parts & partActivity != 0 {
            value.lastActivity = Timestamp(microsecondsSinceEpoch: try reader.readSignedVarint("lastActivity"))
        }
        if parts & partRevisions != 0 {
            let start = reader.offset
            value.revisions = Session.Revisions(
                authorization: try readRevision("revisions.authorization", from: &reader),
                accounting: try readRevision("revisions.accounting", from: &reader),
                activity: try readRevision("revisions.activity", from: &reader)
            )
            guard value.revisions != .zero else {
                throw .invalidField(at: start, field: "revisions", detail: "are flagged but all zero")
            }
        }
        return value
    }

    // MARK: Update record

    @inline(__always)
    static func writeUpdateFields<Sink: UnitSink>(_ update: Update, to sink: inout Sink) {
        sink.writeIP(update.ip)
        sink.writeByte(update.owner.rawValue)
        writeGeneration(update.generation, to: &sink)
        writeRevision(update.revision, to: &sink)
        sink.writeByte(update.reason.rawValue)
        var parts: UInt8 = 0
        if update.authorization != nil { parts |= partAuthorization }
        if update.accounting != nil { parts |= partAccounting }
        if update.lastActivity != nil { parts |= partActivity }
        sink.writeByte(parts)
        if let part = update.authorization {
            writeAuthorization(part.authorization, to: &sink)
            sink.writeVarint(UInt64(part.sessionTimeout))
            sink.writeVarint(UInt64(part.idleTimeout))
        }
        if let accounting = update.accounting { writeAccounting(accounting, to: &sink) }
        if let lastActivity = update.lastActivity { sink.writeSignedVarint(lastActivity.microsecondsSinceEpoch) }
    }

    static func readUpdateFields(from reader: inout UnitReader) throws(CorruptRecordError) -> Update {
        let ip = try reader.readIP()
        let owner = try reader.readDeviceID("owner")
        let generation = try readGeneration(from: &reader)
        let revisionStart = reader.offset
        let revision = try readRevision("revision", from: &reader)
        guard revision.device != 0 else {
            throw .invalidField(at: revisionStart, field: "revision", detail: "names no device (device 0)")
        }
        let reasonStart = reader.offset
        let reasonByte = try reader.readByte()
        guard let reason = UpdateReason(rawValue: reasonByte) else {
            throw .invalidField(
                at: reasonStart,
                field: "reason",
                detail: "\(reasonByte) is not an update reason (1 to \(UpdateReason.allCases.count))"
            )
        }
        let partsStart = reader.offset
        let parts = try reader.readByte()
        guard parts != 0, parts & ~(partAuthorization | partAccounting | partActivity) == 0 else {
            throw .invalidField(
                at: partsStart,
                field: "parts",
                detail: "0x\(String(parts, radix: 16)) names no part, or unknown ones (bits 0 to 2 are defined)"
            )
        }
        var update = Update(ip: ip, owner: owner, generation: generation, revision: revision, reason: reason)
        if parts & partAuthorization != 0 {
            let authorization = try readAuthorization(from: &reader)
            let sessionTimeout = try reader.readVarint32("sessionTimeout")
            let idleTimeout = try reader.readVarint32("idleTimeout")
            update.authorization = Update.AuthorizationPart(
                authorization: authorization,
                sessionTimeout: sessionTimeout,
                idleTimeout: idleTimeout
            )
        }
        if parts & partAccounting != 0 { update.accounting = try readAccounting(from: &reader) }
        if parts & partActivity != 0 {
            update.lastActivity = Timestamp(microsecondsSinceEpoch: try reader.readSignedVarint("lastActivity"))
        }
        return update
    }

    // MARK: Parts

    /// Bits of the authorization flags byte: which attributes follow.
    private static var aclNumber: UInt8 { 1 }
    private static var aclName: UInt8 { 2 }
    private static var userProfile: UInt8 { 4 }
    private static var inboundCAR: UInt8 { 8 }
    private static var outboundCAR: UInt8 { 16 }
    private static var vpnInstance: UInt8 { 32 }
    private static var filterID: UInt8 { 64 }

    @inline(__always)
    static func writeAuthorization<Sink: UnitSink>(_ authorization: Authorization, to sink: inout Sink) {
        var flags: UInt8 = 0
        switch authorization.acl {
        case .number: flags |= aclNumber
        case .name: flags |= aclName
        case nil: break
        }
        if authorization.userProfile != nil { flags |= userProfile }
        if authorization.inboundCAR != nil { flags |= inboundCAR }
        if authorization.outboundCAR != nil { flags |= outboundCAR }
        if authorization.vpnInstance != nil { flags |= vpnInstance }
        if authorization.filterID != nil { flags |= filterID }
        sink.writeByte(flags)
        switch authorization.acl {
        case .number(let number): sink.writeVarint(UInt64(number))
        case .name(let name): sink.writeString(name)
        case nil: break
        }
        if let profile = authorization.userProfile { sink.writeString(profile) }
        if let car = authorization.inboundCAR {
            sink.writeVarint(UInt64(car.cir))
            sink.writeVarint(UInt64(car.cbs))
        }
        if let car = authorization.outboundCAR {
            sink.writeVarint(UInt64(car.cir))
            sink.writeVarint(UInt64(car.cbs))
        }
        if let vpn = authorization.vpnInstance { sink.writeString(vpn) }
        if let filter = authorization.filterID { sink.writeString(filter) }
        sink.writeVarint(UInt64(authorization.accountingInterval))
    }

    static func readAuthorization(from reader: inout UnitReader) throws(CorruptRecordError) -> Authorization {
        let flagsStart = reader.offset
        let flags = try reader.readByte()
        guard flags & 0x80 == 0, flags & (aclNumber | aclName) != aclNumber | aclName else {
            throw .invalidField(
                at: flagsStart,
                field: "authorization.flags",
                detail: "0x\(String(flags, radix: 16)) sets bit 7, or both an ACL number and an ACL name"
            )
        }
        var authorization = Authorization()
        if flags & aclNumber != 0 {
            let start = reader.offset
            let number = try reader.readVarint32("authorization.acl")
            try applying(FieldRules.checkACLNumber(number), at: start)
            authorization.acl = .number(number)
        }
        if flags & aclName != 0 {
            let start = reader.offset
            let bytes = try reader.readLengthPrefixed("authorization.acl", maximum: FieldRules.maximumACLNameBytes)
            try applying(FieldRules.checkACLName(bytes), at: start)
            authorization.acl = .name(String(decoding: bytes, as: UTF8.self))  // printable ASCII
        }
        if flags & userProfile != 0 {
            authorization.userProfile = try readToken(
                "authorization.userProfile",
                maximum: FieldRules.maximumUserProfileBytes,
                from: &reader
            )
        }
        if flags & inboundCAR != 0 {
            authorization.inboundCAR = try readCAR("authorization.inboundCAR", from: &reader)
        }
        if flags & outboundCAR != 0 {
            authorization.outboundCAR = try readCAR("authorization.outboundCAR", from: &reader)
        }
        if flags & vpnInstance != 0 {
            authorization.vpnInstance = try readToken(
                "authorization.vpnInstance",
                maximum: FieldRules.maximumVPNInstanceBytes,
                from: &reader
            )
        }
        if flags & filterID != 0 {
            let start = reader.offset
            let bytes = try reader.readLengthPrefixed(
                "authorization.filterID",
                maximum: FieldRules.maximumFilterIDBytes
            )
            guard let filter = String(validatingUTF8Bytes: bytes) else {
                throw .invalidField(at: start, field: "authorization.filterID", detail: "is not valid UTF-8")
            }
            try applying(FieldRules.checkUserName(bytes, field: "authorization.filterID"), at: start)
            authorization.filterID = filter
        }
        let intervalStart = reader.offset
        authorization.accountingInterval = try reader.readVarint32("authorization.accountingInterval")
        try applying(FieldRules.checkAccountingInterval(authorization.accountingInterval), at: intervalStart)
        return authorization
    }

    private static func readToken(
        _ field: StaticString,
        maximum: Int,
        from reader: inout UnitReader
    ) throws(CorruptRecordError) -> String {
        let start = reader.offset
        let bytes = try reader.readLengthPrefixed(field, maximum: maximum)
        try applying(FieldRules.checkToken(bytes, field: "\(field)", maximum: maximum), at: start)
        return String(decoding: bytes, as: UTF8.self)  // printable ASCII
    }

    private static func readCAR(
        _ field: StaticString,
        from reader: inout UnitReader
    ) throws(CorruptRecordError) -> Authorization.CAR {
        let start = reader.offset
        let car = Authorization.CAR(cir: try reader.readVarint32(field), cbs: try reader.readVarint32(field))
        try applying(FieldRules.checkCAR(car, field: "\(field)"), at: start)
        return car
    }

    /// Bit 0 of the accounting flags byte: the time of the report follows.
    private static var reportTime: UInt8 { 1 }

    @inline(__always)
    static func writeAccounting<Sink: UnitSink>(_ accounting: AccountingState, to sink: inout Sink) {
        sink.writeByte(accounting.reportedAt != nil ? reportTime : 0)
        sink.writeVarint(accounting.inputOctets)
        sink.writeVarint(accounting.outputOctets)
        sink.writeVarint(accounting.inputPackets)
        sink.writeVarint(accounting.outputPackets)
        if let reportedAt = accounting.reportedAt { sink.writeSignedVarint(reportedAt.microsecondsSinceEpoch) }
    }

    static func readAccounting(from reader: inout UnitReader) throws(CorruptRecordError) -> AccountingState {
        let flagsStart = reader.offset
        let flags = try reader.readByte()
        guard flags & ~reportTime == 0 else {
            throw .invalidField(
                at: flagsStart,
                field: "accounting.flags",
                detail: "has unknown bits set (0x\(String(flags, radix: 16)); only bit 0, report time, is defined)"
            )
        }
        var accounting = AccountingState(
            inputOctets: try reader.readVarint("accounting.inputOctets"),
            outputOctets: try reader.readVarint("accounting.outputOctets"),
            inputPackets: try reader.readVarint("accounting.inputPackets"),
            outputPackets: try reader.readVarint("accounting.outputPackets")
        )
        if flags & reportTime != 0 {
            accounting.reportedAt = Timestamp(
                microsecondsSinceEpoch: try reader.readSignedVarint("accounting.reportedAt")
            )
        }
        return accounting
    }

    @inline(__always)
    static func writeRevision<Sink: UnitSink>(_ revision: Revision, to sink: inout Sink) {
        sink.writeVarint(UInt64(revision.term))
        sink.writeVarint(revision.sequence)
        sink.writeByte(revision.device)
    }

    static func readRevision(
        _ field: StaticString,
        from reader: inout UnitReader
    ) throws(CorruptRecordError) -> Revision {
        let start = reader.offset
        let revision = Revision(
            term: try reader.readVarint32(field),
            sequence: try reader.readVarint(field),
            device: try reader.readByte()
        )
        guard revision == .zero || revision.device != 0 else {
            throw .invalidField(at: start, field: "\(field)", detail: "a revision other than zero names no device")
        }
        return revision
    }
}
