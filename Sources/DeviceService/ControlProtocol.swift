import Foundation
import Inspection
import NIOCore
import SessionStore

/// A request on the control socket: one JSON object on one line.
///
/// ```
/// {"command":"status"}
/// {"command":"promote"}
/// {"command":"users","nas_ip":"192.168.0.1"}
/// {"command":"logout","ip":"10.1.2.3","reason":"delete-user"}
/// ```
///
/// Each request gets its answer as lines of JSON: `status` and `promote` one object, `users` one object per
/// user and then `{"ok":true,"count":N}`, `logout` the logout. A refusal is `{"ok":false,"error":"…"}`.
public struct ControlRequest: Sendable, Equatable {
    public enum Command: String, Sendable, CaseIterable {
        case status, promote, users, logout
    }

    public var command: Command
    /// `users`: only this address, MAC, user name, owner in effect or NAS IP.
    public var ip: IPAddress?
    public var mac: MACAddress?
    public var user: String?
    public var owner: DeviceID?
    public var nasIP: IPAddress?
    /// `logout`: why.
    public var reason: LogoutReason?

    public init(
        _ command: Command,
        ip: IPAddress? = nil,
        mac: MACAddress? = nil,
        user: String? = nil,
        owner: DeviceID? = nil,
        nasIP: IPAddress? = nil,
        reason: LogoutReason? = nil
    ) {
        self.command = command
        self.ip = ip
        self.mac = mac
        self.user = user
        self.owner = owner
        self.nasIP = nasIP
        self.reason = reason
    }

    /// Parses one line; a line that is not a request is refused with what is wrong.
    public static func parse(_ line: String) throws(ControlError) -> ControlRequest {
        guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
            throw ControlError("not a JSON object: send one request per line, such as {\"command\":\"status\"}")
        }
        guard let name = object["command"] as? String, let command = Command(rawValue: name) else {
            let names = Command.allCases.map(\.rawValue).joined(separator: ", ")
            throw ControlError(
                "unknown command \(object["command"].map { "\($0)" } ?? "(none)"); the commands are \(names)"
            )
        }
        var request = ControlRequest(command)
        func text(_ key: String) -> String? { object[key].map { "\($0)" } }
        if let value = text("ip") {
            guard let ip = IPAddress(value) else { throw ControlError("ip \(value) is not an IP address") }
            request.ip = ip
        }
        if let value = text("mac") {
            guard let mac = MACAddress(value) else { throw ControlError("mac \(value) is not a MAC address") }
            request.mac = mac
        }
        request.user = text("user")
        if let value = text("owner") {
            guard let number = UInt8(value), let owner = DeviceID(rawValue: number) else {
                throw ControlError("owner \(value) is not a device ID (1 to 255)")
            }
            request.owner = owner
        }
        if let value = text("nas_ip") {
            guard let ip = IPAddress(value) else { throw ControlError("nas_ip \(value) is not an IP address") }
            request.nasIP = ip
        }
        if let value = text("reason") {
            guard let reason = LogoutReason(name: value) else {
                let names = LogoutReason.allCases.map(\.description).joined(separator: ", ")
                throw ControlError("reason \(value) is not a logout reason (\(names))")
            }
            request.reason = reason
        }
        if command == .logout {
            guard request.ip != nil else { throw ControlError("logout needs the user's ip") }
            if request.reason == nil { request.reason = .deleteUser }
        }
        return request
    }

    /// The request as one line of JSON, without the newline.
    public var line: String {
        var object: [String: Any] = ["command": command.rawValue]
        if let ip { object["ip"] = ip.description }
        if let mac { object["mac"] = mac.description }
        if let user { object["user"] = user }
        if let owner { object["owner"] = Int(owner.rawValue) }
        if let nasIP { object["nas_ip"] = nasIP.description }
        if let reason { object["reason"] = reason.description }
        return jsonLine(object)
    }
}

/// A control request refused, or a control socket that cannot be reached: what happened and what to do.
public struct ControlError: Error, Sendable, Equatable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// The lines of a control connection, as its chunks arrive: one request or answer per line.
///
/// Lines already read are dropped once per chunk, not once per line: a chunk of a listing holds hundreds of
/// lines, and moving the rest of it down after each would cost time in the square of its length.
struct ControlLines {
    private var pending: [UInt8] = []
    /// Where the next line starts in `pending`.
    private var start = 0

    mutating func append(_ chunk: ByteBuffer) {
        pending.removeSubrange(..<start)
        start = 0
        pending += chunk.readableBytesView
    }

    /// The next whole line, without its newline; `nil` until one has arrived.
    mutating func next() -> String? {
        guard let newline = pending[start...].firstIndex(of: UInt8(ascii: "\n")) else { return nil }
        let line = String(decoding: pending[start..<newline], as: UTF8.self)
        start = newline + 1
        return line
    }
}
