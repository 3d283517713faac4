import SessionStore

/// A JSON object written by appending bytes, for the hot path of `tandem log dump --json`: a million lines a
/// second leaves no room for a general serializer or for a `String` per field.
struct JSONWriter: ~Copyable {
    private let bytes: UnsafeMutablePointer<[UInt8]>
    private var empty = true

    /// An object appended to `bytes`, which must outlive it (use it within one call).
    init(_ bytes: UnsafeMutablePointer<[UInt8]>) {
        self.bytes = bytes
        bytes.pointee.append(UInt8(ascii: "{"))
    }

    /// `,"name":` (no comma first), in one append.
    private mutating func key(_ name: StaticString) {
        var scratch: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)  // 32 bytes: names are short
        let comma = !empty
        empty = false
        withUnsafeMutableBytes(of: &scratch) { buffer in
            var index = 0
            if comma {
                buffer[0] = UInt8(ascii: ",")
                index = 1
            }
            buffer[index] = UInt8(ascii: "\"")
            index += 1
            name.withUTF8Buffer { utf8 in
                for byte in utf8 {
                    buffer[index] = byte
                    index += 1
                }
            }
            buffer[index] = UInt8(ascii: "\"")
            buffer[index + 1] = UInt8(ascii: ":")
            bytes.pointee.append(contentsOf: buffer[..<(index + 2)])
        }
    }

    mutating func add(_ name: StaticString, _ value: UInt64) {
        key(name)
        appendDigits(value)
    }

    private mutating func appendDigits(_ value: UInt64) {
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 24 bytes: room for 20 digits
        withUnsafeMutableBytes(of: &digits) { buffer in
            var value = value
            var index = buffer.count
            repeat {
                index -= 1
                buffer[index] = UInt8(ascii: "0") + UInt8(value % 10)
                value /= 10
            } while value > 0
            bytes.pointee.append(contentsOf: buffer[index...])
        }
    }

    mutating func add(_ name: StaticString, _ value: String) {
        var value = value
        value.withUTF8 { add(name, utf8: $0) }
    }

    mutating func add(_ name: StaticString, utf8: UnsafeBufferPointer<UInt8>) {
        key(name)
        bytes.pointee.append(UInt8(ascii: "\""))
        // Most values need no escaping: one copy.
        if utf8.contains(where: { $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") || $0 < 0x20 }) {
            for byte in utf8 {
                switch byte {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"):
                    bytes.pointee.append(UInt8(ascii: "\\"))
                    bytes.pointee.append(byte)
                case 0..<0x20:
                    let hex = Array("0123456789abcdef".utf8)
                    bytes.pointee.append(contentsOf: Array("\\u00".utf8))
                    bytes.pointee.append(hex[Int(byte >> 4)])
                    bytes.pointee.append(hex[Int(byte & 15)])
                default:
                    bytes.pointee.append(byte)
                }
            }
        } else {
            bytes.pointee.append(contentsOf: utf8)
        }
        bytes.pointee.append(UInt8(ascii: "\""))
    }

    /// A generation as `term.sequence`, quoted.
    mutating func add(_ name: StaticString, _ generation: Generation) {
        key(name)
        bytes.pointee.append(UInt8(ascii: "\""))
        appendDigits(UInt64(generation.term))
        bytes.pointee.append(UInt8(ascii: "."))
        appendDigits(generation.sequence)
        bytes.pointee.append(UInt8(ascii: "\""))
    }

    mutating func add(_ name: StaticString, _ time: Timestamp) {
        var scratch: (UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0)  // 40 bytes
        withUnsafeMutableBytes(of: &scratch) { raw in
            let buffer = raw.bindMemory(to: UInt8.self)
            add(name, utf8: UnsafeBufferPointer(rebasing: buffer[..<time.writeDescription(into: buffer)]))
        }
    }

    mutating func add(_ name: StaticString, _ mac: MACAddress) {
        var scratch: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 24 bytes
        withUnsafeMutableBytes(of: &scratch) { raw in
            let buffer = raw.bindMemory(to: UInt8.self)
            add(name, utf8: UnsafeBufferPointer(rebasing: buffer[..<mac.writeDescription(into: buffer)]))
        }
    }

    /// `"name":{...}`: a nested object holding the fields `fields` adds.
    mutating func addObject(_ name: StaticString, _ fields: (inout JSONWriter) -> Void) {
        key(name)
        var object = JSONWriter(bytes)
        fields(&object)
        object.finish()
    }

    /// `"name":["a","b"]`.
    mutating func add(_ name: StaticString, strings: [String]) {
        key(name)
        bytes.pointee.append(UInt8(ascii: "["))
        for (index, string) in strings.enumerated() {
            if index > 0 { bytes.pointee.append(UInt8(ascii: ",")) }
            bytes.pointee.append(UInt8(ascii: "\""))
            bytes.pointee.append(contentsOf: string.utf8)  // names of parts: no escaping needed
            bytes.pointee.append(UInt8(ascii: "\""))
        }
        bytes.pointee.append(UInt8(ascii: "]"))
    }

    /// The attributes of an authorization (those present, keys sorted), and its timeouts when given.
    mutating func addAuthorization(_ authorization: Authorization, sessionTimeout: UInt32?, idleTimeout: UInt32?) {
        addObject("authorization") { json in
            json.add("accounting_interval", UInt64(authorization.accountingInterval))
            switch authorization.acl {
            case .number(let number): json.add("acl", String(number))
            case .name(let name): json.add("acl", name)
            case nil: break
            }
            if let filterID = authorization.filterID { json.add("filter_id", filterID) }
            if let idleTimeout { json.add("idle_timeout", UInt64(idleTimeout)) }
            if let car = authorization.inboundCAR {
                json.addObject("inbound_car") { json in
                    json.add("cbs", UInt64(car.cbs))
                    json.add("cir", UInt64(car.cir))
                }
            }
            if let car = authorization.outboundCAR {
                json.addObject("outbound_car") { json in
                    json.add("cbs", UInt64(car.cbs))
                    json.add("cir", UInt64(car.cir))
                }
            }
            if let sessionTimeout { json.add("session_timeout", UInt64(sessionTimeout)) }
            if let profile = authorization.userProfile { json.add("user_profile", profile) }
            if let vpn = authorization.vpnInstance { json.add("vpn_instance", vpn) }
        }
    }

    /// An accounting state, keys sorted.
    mutating func addAccounting(_ accounting: AccountingState) {
        addObject("accounting") { json in
            json.add("input_octets", accounting.inputOctets)
            json.add("input_packets", accounting.inputPackets)
            json.add("output_octets", accounting.outputOctets)
            json.add("output_packets", accounting.outputPackets)
            if let reportedAt = accounting.reportedAt { json.add("reported_at", reportedAt) }
        }
    }

    consuming func finish() {
        bytes.pointee.append(UInt8(ascii: "}"))
    }

    /// Appends to `bytes` one object holding the fields `fields` adds.
    static func append(to bytes: inout [UInt8], _ fields: (inout JSONWriter) -> Void) {
        withUnsafeMutablePointer(to: &bytes) { pointer in
            var object = JSONWriter(pointer)
            fields(&object)
            object.finish()
        }
    }

    /// One object holding the fields `fields` adds, as a string.
    static func string(_ fields: (inout JSONWriter) -> Void) -> String {
        var bytes: [UInt8] = []
        append(to: &bytes, fields)
        return String(decoding: bytes, as: UTF8.self)
    }
}

extension RecordCodec {
    /// Appends the JSON object of `tandem log dump --json` for the encoded log record `unit`, read in place:
    /// no `LogRecord` or `Session` is built. The checksum, the version, the kind and every length are
    /// checked; the fields' values are not (`RecordCodec.decodeRecord(_:)` does, and `tandem log verify`).
    ///
    /// - Throws: `CorruptRecordError` when the record is damaged; nothing is appended then.
    package static func appendJSON(
        ofRecord unit: UnsafeRawBufferPointer,
        to bytes: inout [UInt8]
    ) throws(CorruptRecordError) {
        let record = try readPrintedFields(ofRecord: unit)
        JSONWriter.append(to: &bytes) { json in
            json.add("sequence", record.sequence)
            json.add("term", UInt64(record.term))
            json.add("origin", UInt64(record.origin.rawValue))
            json.add("time", record.time)
            json.add("kind", record.kind.description)
            switch record.details {
            case .login(let ip, let mac, let user, let owner, let vlan, let interface, let generation):
                json.add("ip", ip.description)
                json.add("mac", mac)
                json.add("user", utf8: user)
                json.add("owner", UInt64(owner.rawValue))
                json.add("vlan", UInt64(vlan))
                json.add("interface", utf8: interface)
                json.add("generation", generation)
            case .logout(let ip, let mac, let user, let owner, let reason, let generation):
                json.add("ip", ip.description)
                json.add("mac", mac)
                json.add("user", utf8: user)
                json.add("owner", UInt64(owner.rawValue))
                json.add("reason", reason.description)
                json.add("generation", generation)
            case .deviceIDChanged(let from, let to):
                json.add("from", UInt64(from.rawValue))
                json.add("to", UInt64(to.rawValue))
            case .takeover(let from, let to, let term):
                json.add("from", UInt64(from.rawValue))
                json.add("to", UInt64(to.rawValue))
                json.add("new_term", UInt64(term))
            case .update(let update):
                json.add("ip", update.ip.description)
                json.add("owner", UInt64(update.owner.rawValue))
                json.add("reason", update.reason.description)
                json.add("generation", update.generation)
                json.add("revision", update.revision.description)
                json.add("changed", strings: update.parts)
                if let part = update.authorization {
                    json.addAuthorization(
                        part.authorization,
                        sessionTimeout: part.sessionTimeout,
                        idleTimeout: part.idleTimeout
                    )
                }
                if let accounting = update.accounting { json.addAccounting(accounting) }
                if let lastActivity = update.lastActivity { json.add("last_activity", lastActivity) }
            }
        }
    }
}
