// The fields of an encoded log record that the operator's tools print, read in place without decoding the
// record: what `tandem log dump --json` writes straight from the log, a million records a second
// (`RecordCodec.appendJSON(ofRecord:to:)`, in the Inspection module, writes them as JSON).

/// The fields of a log record that `tandem log dump --json` prints, read in place by
/// ``RecordCodec/readPrintedFields(ofRecord:)``: no ``LogRecord`` or ``Session`` is built, and the user name
/// and the access interface point into the encoded bytes, so they are valid only as long as those are.
package struct PrintedRecord {
    package var sequence: UInt64
    package var term: UInt32
    package var origin: DeviceID
    package var time: Timestamp
    package var details: Details

    /// The printed fields of each kind of event.
    package enum Details {
        case login(
            ip: IPAddress,
            mac: MACAddress,
            user: UnsafeBufferPointer<UInt8>,
            owner: DeviceID,
            vlan: UInt16,
            interface: UnsafeBufferPointer<UInt8>,
            generation: Generation
        )
        case logout(
            ip: IPAddress,
            mac: MACAddress,
            user: UnsafeBufferPointer<UInt8>,
            owner: DeviceID,
            reason: LogoutReason,
            generation: Generation
        )
        case deviceIDChanged(from: DeviceID, to: DeviceID)
        case takeover(from: DeviceID, to: DeviceID, term: UInt32)
        /// An update, decoded whole (it has no field to point into the bytes for).
        case update(Update)
    }

    /// The kind of the event.
    package var kind: Event.Kind {
        switch details {
        case .login: .login
        case .logout: .logout
        case .deviceIDChanged: .deviceIDChanged
        case .takeover: .takeover
        case .update: .update
        }
    }
}

extension RecordCodec {
    /// The printed fields of the encoded log record `unit`, read in place. The checksum, the version, the kind
    /// and every length are checked; the fields' values are not (``decodeRecord(_:)`` does, and
    /// `tandem log verify`).
    ///
    /// - Throws: ``CorruptRecordError`` when the record is damaged.
    package static func readPrintedFields(
        ofRecord unit: UnsafeRawBufferPointer
    ) throws(CorruptRecordError)
        -> PrintedRecord
    {
        let (kindByte, base, end) = try openUnit(unit)
        guard let kind = Event.Kind(rawValue: kindByte) else {
            throw .unknownKind(
                found: kindByte,
                expected: "1 login, 2 logout, 3 device-id-change, 4 takeover or 5 update"
            )
        }
        var reader = UnitReader(base: base, offset: 2, end: end)
        let sequence = try reader.readVarint("sequence")
        let term = try reader.readVarint32("term")
        let origin = try reader.readDeviceID("origin")
        let time = Timestamp(microsecondsSinceEpoch: try reader.readSignedVarint("time"))
        let details: PrintedRecord.Details
        switch kind {
        case .login:
            let ip = try reader.readIP()
            let mac = try reader.readMAC()
            let generation = try readGeneration(from: &reader)
            _ = try reader.readSignedVarint("loginTime")
            _ = try reader.readVarint32("sessionTimeout")
            let user = try reader.readLengthPrefixed("userName", maximum: FieldRules.maximumUserNameBytes)
            _ = try reader.readVarint32("idleTimeout")
            let vlan = try reader.readVarint16("vlan")
            let interface = try reader.readLengthPrefixed(
                "accessInterface",
                maximum: FieldRules.maximumAccessInterfaceBytes
            )
            _ = try reader.readLengthPrefixed("portalGroup", maximum: FieldRules.maximumPortalGroupBytes)
            _ = try reader.readByte()
            let owner = try reader.readDeviceID("owner")
            details = .login(
                ip: ip,
                mac: mac,
                user: user,
                owner: owner,
                vlan: vlan,
                interface: interface,
                generation: generation
            )
        case .logout:
            let ip = try reader.readIP()
            let mac = try reader.readMAC()
            let owner = try reader.readDeviceID("owner")
            let generation = try readGeneration(from: &reader)
            let reasonByte = try reader.readByte()
            guard let reason = LogoutReason(rawValue: reasonByte) else {
                throw .invalidField(at: reader.offset - 1, field: "reason", detail: "\(reasonByte)")
            }
            let user = try reader.readLengthPrefixed("userName", maximum: FieldRules.maximumUserNameBytes)
            details = .logout(ip: ip, mac: mac, user: user, owner: owner, reason: reason, generation: generation)
        case .deviceIDChanged:
            let from = try reader.readDeviceID("from")
            details = .deviceIDChanged(from: from, to: try reader.readDeviceID("to"))
        case .takeover:
            let from = try reader.readDeviceID("from")
            let to = try reader.readDeviceID("to")
            details = .takeover(from: from, to: to, term: try reader.readVarint32("term"))
        case .update:
            details = .update(try readUpdateFields(from: &reader))
        }
        return PrintedRecord(sequence: sequence, term: term, origin: origin, time: time, details: details)
    }
}
