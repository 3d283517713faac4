import ArgumentParser
import DeviceService
import Foundation
import Inspection
import SessionStore

/// `tandem log`: the operator's view of a store's log, live or on a copy.
struct Log: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Read a store's log: dump, tail, stats, verify. Read-only; never slows a running device.",
        discussion: """
            Every subcommand opens the store read-only with LMDB read transactions, so it can run against \
            the store of a running device (or a copy made with SessionStore.copy(to:)). \
            Exit status: 0 on success; 1 when the command failed or `verify` found a problem; 64 on a usage error.
            """,
        subcommands: [Dump.self, Tail.self, Stats.self, Verify.self]
    )

    struct Dump: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print log records in order, one line each (or JSON lines), filtered.",
            discussion: """
                Columns: sequence, time (UTC), origin device, kind, IP, MAC, user, and a logout's reason.

                Examples:
                  tandem log dump --path /var/lib/portal/tandem --user alice
                  tandem log dump --path DIR --kind logout --since 2026-11-21T08:00:00Z \\
                      --json | jq .reason
                  tandem log dump --path DIR --from 1000 --to 2000 --origin 2
                """
        )

        @OptionGroup var filter: FilterOptions
        @Option(help: "The store's directory.") var path: String
        @Flag(help: "One JSON object per line.") var json = false

        func run() throws {
            let reader = try StoreReader(path: path)
            let output = Output()
            try dumpLog(reader, filter: try filter.filter(), json: json) { output.bytes($0) }
        }
    }

    struct Tail: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the last records, and with --follow every new one as the device logs it.",
            discussion: """
                Example:
                  tandem log tail --path /var/lib/portal/tandem --follow --json
                """
        )

        @Option(help: "The store's directory.") var path: String
        @Option(name: .shortAndLong, help: "How many of the last records to print first.") var lines = 20
        @Flag(help: "Keep printing new records (polls every 200 ms with a read transaction).") var follow = false
        @Flag(help: "One JSON object per line.") var json = false

        func run() throws {
            let reader = try StoreReader(path: path)
            let output = Output()
            let last = try reader.positions().lastSequence
            var next = last >= UInt64(lines) ? last - UInt64(lines) + 1 : 0
            repeat {
                try reader.forEachRecord(from: next) { record in
                    output.line(json ? LogLine.json(record) : LogLine.text(record))
                    next = record.sequence + 1
                    return true
                }
                if follow { usleep(200_000) }
            } while follow
        }
    }

    struct Stats: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Counts by kind, reason and origin, the event rate over time, sizes and positions.",
            discussion: """
                Example:
                  tandem log stats --path /var/lib/portal/tandem
                """
        )

        @Option(help: "The store's directory.") var path: String
        @Option(help: "Columns of the rate chart.") var width = 60
        @Flag(help: "One JSON object.") var json = false

        func run() throws {
            let reader = try StoreReader(path: path)
            let identity = try reader.identity
            let stats = try logStatistics(reader, bucketCount: width)
            let positions = stats.positions
            if json {
                var object: [String: Any] = [
                    "device_id": Int(identity.deviceID.rawValue), "term": Int(identity.term),
                    "records": stats.records, "by_kind": stats.byKind, "by_reason": stats.byReason,
                    "by_origin": Dictionary(uniqueKeysWithValues: stats.byOrigin.map { ("\($0.key)", $0.value) }),
                    "last_sequence": positions.lastSequence, "checkpoint_sequence": positions.checkpointSequence,
                    "log_file_bytes": positions.logFileBytes, "users_file_bytes": positions.usersFileBytes,
                    "holds": positions.holds, "dropped_holds": positions.droppedHolds,
                    "peer_applied": Dictionary(
                        uniqueKeysWithValues: positions.peerApplied.map { ("\($0.key)", $0.value) }
                    ),
                    "rate_buckets": stats.buckets, "bucket_seconds": stats.bucketSeconds,
                ]
                if let first = positions.firstRetained { object["first_retained"] = first }
                if let time = stats.firstTime { object["first_time"] = time.description }
                if let time = stats.lastTime { object["last_time"] = time.description }
                Output().line(jsonLine(object))
                return
            }
            let output = Output()
            output.line(
                "store       \(path): device \(identity.deviceID), portal group \(identity.portalGroup), term \(identity.term)"
            )
            output.line(
                "log         records \(positions.firstRetained.map(String.init) ?? "-")...\(positions.lastSequence) retained "
                    + "(\(stats.records) records), \(positions.logFileBytes / 1024) KiB file"
            )
            output.line(
                "checkpoint  \(positions.checkpointSequence) (\(positions.checkpointedUsers) users in the table on disk, \(positions.usersFileBytes / 1024) KiB file)"
            )
            for (name, position) in positions.holds.sorted(by: { $0.key < $1.key }) {
                output.line("hold        \(name) from \(position)")
            }
            for (name, position) in positions.droppedHolds.sorted(by: { $0.key < $1.key }) {
                output.line(
                    "DROPPED     \(name) at \(position): the log passed its quota; that reader resynchronizes in full"
                )
            }
            for (peer, position) in positions.peerApplied.sorted(by: { $0.key < $1.key }) {
                output.line("peer        device \(peer)'s stream applied through \(position)")
            }
            output.line(
                "by kind     "
                    + stats.byKind.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
            )
            if !stats.byReason.isEmpty {
                output.line(
                    "by reason   "
                        + stats.byReason.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(
                            separator: ", "
                        )
                )
            }
            output.line(
                "by origin   "
                    + stats.byOrigin.sorted { $0.key < $1.key }.map { "device \($0.key) \($0.value)" }.joined(
                        separator: ", "
                    )
            )
            if let first = stats.firstTime, let last = stats.lastTime {
                let peak = Double(stats.buckets.max() ?? 0) / max(stats.bucketSeconds, 1e-6)
                output.line(
                    "rate        \(first) ... \(last), \(String(format: "%.3g", stats.bucketSeconds)) s per column, peak \(String(format: "%.0f", peak)) events/s"
                )
                output.line("            |\(stats.chart)|")
            }
        }
    }

    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check checksums, sequence continuity, and that the users table equals the log replayed.",
            discussion: """
                Exit status 0 when the store is clean, 1 with a line per problem found (corrupt-record, \
                sequence-gap, table-mismatch, corrupt-session).

                Example:
                  tandem log verify --path /var/lib/portal/tandem
                """
        )

        @Option(help: "The store's directory.") var path: String
        @Flag(help: "One JSON object.") var json = false

        func run() throws {
            let reader = try StoreReader(path: path)
            let bar = ProgressBar(label: "verifying")
            let result = try verifyStore(reader) { bar.update($0) }
            bar.finish()
            let output = Output()
            if json {
                output.line(
                    jsonLine([
                        "clean": result.problems.isEmpty, "records": result.records,
                        "checkpointed_sessions": result.checkpointedSessions, "full_replay": result.fullReplay,
                        "problems": result.problems.map { ["kind": $0.kind.rawValue, "detail": $0.detail] },
                    ])
                )
            } else {
                output.line(
                    "\(result.records) records, \(result.checkpointedSessions) sessions in the table on disk; "
                        + (result.fullReplay
                            ? "the table was checked against the whole log replayed"
                            : "the log after the checkpoint was checked against the table")
                )
                for problem in result.problems { output.line(output.colour("PROBLEM", red: true) + "  \(problem)") }
                output.line(
                    result.problems.isEmpty ? output.colour("clean", red: false) : "\(result.problems.count) problems"
                )
            }
            if !result.problems.isEmpty { throw ExitCode(1) }
        }
    }
}

/// `tandem users`: who is online, in the spirit of a device's `display portal user`.
struct Users: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the online users of a store (now, or at a past time rebuilt from the log).",
        discussion: """
            Columns: IP, MAC, VLAN, interface, user, the device that owns the user in effect, whether this \
            device holds the primary or the backup copy, and the login time. A user whose authorization, \
            accounting or activity is known gets a second line with them (ACL, user profile, CAR, VPN \
            instance, Filter-Id, accounting interval; the counters of the last accounting report; the last \
            activity). --json has every field. --nas-ip lists the users of one NAS IP (backup source IP): \
            a NAS IP with users must not be deleted while the pair runs (R11); its count is the last line.

            Examples:
              tandem users --path /var/lib/portal/tandem --user alice
              tandem users --path DIR --owner 2 --json
              tandem users --path DIR --nas-ip 192.168.0.1
              tandem users --path DIR --at 2026-11-21T08:30:00Z
              tandem users --socket /run/tandem/control.sock --user alice      # a running device's live store
            """
    )

    @Option(help: "The store's directory (read beside a running device).") var path: String?
    @Option(help: "Ask a running device through its control socket instead of reading a store.")
    var socket: String?
    @Option(help: "Only this IP address.") var ip: String?
    @Option(help: "Only this MAC address.") var mac: String?
    @Option(help: "Only this user name.") var user: String?
    @Option(help: "Only users owned (in effect) by this device ID.") var owner: Int?
    @Option(name: .customLong("nas-ip"), help: "Only users whose RADIUS NAS IP (backup source IP) is this.")
    var nasIP: String?
    @Option(help: "Rebuild who was online at this time (ISO 8601, UTC) from the log, updates included.")
    var at: String?
    @Flag(help: "One JSON object per line.") var json = false

    func run() async throws {
        if let socket {
            return try await live(socket)
        }
        guard let path else { throw ValidationError("give the store's directory with --path, or --socket") }
        let reader = try StoreReader(path: path)
        let identity = try reader.identity
        let sessions: [Session]
        if let at {
            guard let time = Timestamp(iso8601: at) else {
                throw ValidationError("--at \(at): expected an ISO 8601 time such as 2026-11-21T08:30:00Z")
            }
            sessions = try Inspection.sessions(at: time, in: reader)
        } else {
            sessions = try reader.onlineSessions()
        }
        let ipFilter = try ip.map { text -> IPAddress in
            guard let value = IPAddress(text) else { throw ValidationError("--ip \(text) is not an IP address") }
            return value
        }
        let macFilter = try mac.map { text -> MACAddress in
            guard let value = MACAddress(text) else { throw ValidationError("--mac \(text) is not a MAC address") }
            return value
        }
        let nasFilter = try nasIP.map { text -> IPAddress in
            guard let value = IPAddress(text) else { throw ValidationError("--nas-ip \(text) is not an IP address") }
            return value
        }
        let output = Output()
        if !json { output.line(UserRow.header) }
        var shown = 0
        for session in sessions {
            let effective = identity.takeovers.effectiveOwner(of: session)
            if let ipFilter, session.ip != ipFilter { continue }
            if let macFilter, session.mac != macFilter { continue }
            if let user, session.userName != user { continue }
            if let owner, Int(effective.rawValue) != owner { continue }
            if let nasFilter, session.radius.nasIP != nasFilter { continue }
            if json {
                output.line { UserRow.appendJSON(session, owner: effective, device: identity.deviceID, to: &$0) }
            } else {
                output.line(UserRow.text(session, owner: effective, device: identity.deviceID))
                if let details = UserRow.details(session) { output.line(details) }
            }
            shown += 1
        }
        if !json {
            output.line(nasFilter.map { "\(shown) users use NAS IP \($0)" } ?? "\(shown) users")
        }
    }

    /// The users of a running device, from its live store through the control socket.
    private func live(_ socket: String) async throws {
        guard at == nil else { throw ValidationError("--at reads the log of a store: give --path, not --socket") }
        var request = ControlRequest(.users)
        request.ip = try ip.map { text in
            guard let value = IPAddress(text) else { throw ValidationError("--ip \(text) is not an IP address") }
            return value
        }
        request.mac = try mac.map { text in
            guard let value = MACAddress(text) else { throw ValidationError("--mac \(text) is not a MAC address") }
            return value
        }
        request.user = user
        request.owner = try owner.map { number in
            guard let value = DeviceID(rawValue: UInt8(clamping: number)), number > 0, number < 256 else {
                throw ValidationError("--owner \(number) is not a device ID (1 to 255)")
            }
            return value
        }
        request.nasIP = try nasIP.map { text in
            guard let value = IPAddress(text) else { throw ValidationError("--nas-ip \(text) is not an IP address") }
            return value
        }
        let output = Output()
        if !json { output.line(UserRow.header) }
        try await control(request, socket) { line in
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
                return
            }
            if let count = object["count"] {
                if !json { output.line(request.nasIP.map { "\(count) users use NAS IP \($0)" } ?? "\(count) users") }
            } else if json {
                output.line(line)
            } else if let row = UserRow.text(json: object) {
                output.line(row)
            }
        }
    }
}

/// `tandem diff`: two devices' stores, user by user.
struct Diff: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compare the online users of two stores (the two devices of a pair, or copies) user by user.",
        discussion: """
            Exit status 0 when both hold the same users, 1 when they differ.

            Example:
              tandem diff /var/lib/portal/tandem /mnt/standby-copy
            """
    )

    @Argument(help: "The first store's directory.") var first: String
    @Argument(help: "The second store's directory.") var second: String
    @Flag(help: "One JSON object per line.") var json = false

    func run() throws {
        let a = try StoreReader(path: first).onlineSessions()
        let b = try StoreReader(path: second).onlineSessions()
        let found = differences(a, b)
        let output = Output()
        for difference in found { output.line(json ? difference.json : difference.description) }
        if !json {
            output.line(
                found.isEmpty
                    ? "the same \(a.count) users online in both"
                    : "\(found.count) differences (\(a.count) users in the first, \(b.count) in the second)"
            )
        }
        if !found.isEmpty { throw ExitCode(1) }
    }
}

/// The filter options of `tandem log dump`.
struct FilterOptions: ParsableArguments {
    @Option(help: "The first sequence.") var from: UInt64?
    @Option(help: "The last sequence.") var to: UInt64?
    @Option(help: "Records at or after this time (ISO 8601, UTC).") var since: String?
    @Option(help: "Records at or before this time (ISO 8601, UTC).") var until: String?
    @Option(help: "Records of this origin device.") var origin: Int?
    @Option(help: "Records about this IP address.") var ip: String?
    @Option(help: "Records about this MAC address.") var mac: String?
    @Option(help: "Records about this user name.") var user: String?
    @Option(help: "login, logout, device-id-change or takeover.") var kind: String?

    func filter() throws -> LogFilter {
        var filter = LogFilter()
        filter.from = from
        filter.to = to
        if let since {
            guard let time = Timestamp(iso8601: since) else {
                throw ValidationError("--since \(since) is not an ISO 8601 time")
            }
            filter.since = time
        }
        if let until {
            guard let time = Timestamp(iso8601: until) else {
                throw ValidationError("--until \(until) is not an ISO 8601 time")
            }
            filter.until = time
        }
        if let origin {
            guard let id = UInt8(exactly: origin).flatMap(DeviceID.init(rawValue:)) else {
                throw ValidationError("--origin \(origin) is not a device ID (1-255)")
            }
            filter.origin = id
        }
        if let ip {
            guard let value = IPAddress(ip) else { throw ValidationError("--ip \(ip) is not an IP address") }
            filter.ip = value
        }
        if let mac {
            guard let value = MACAddress(mac) else { throw ValidationError("--mac \(mac) is not a MAC address") }
            filter.mac = value
        }
        filter.user = user
        if let kind {
            guard let value = Event.Kind(name: kind) else {
                throw ValidationError("--kind \(kind): login, logout, device-id-change or takeover")
            }
            filter.kind = value
        }
        return filter
    }
}

/// Standard output, buffered, with colour only on a terminal.
final class Output {
    private let terminal = isatty(1) != 0
    private var buffer: [UInt8] = []

    init() { buffer.reserveCapacity(1 << 16) }
    deinit { flush() }

    func line(_ text: String) {
        line { $0.append(contentsOf: text.utf8) }
    }

    /// A line that `write` appends to the output's buffer as bytes (no `String` for it).
    func line(_ write: (inout [UInt8]) -> Void) {
        write(&buffer)
        buffer.append(UInt8(ascii: "\n"))
        if buffer.count >= 1 << 16 { flush() }
    }

    func bytes(_ chunk: [UInt8]) {
        flush()
        buffer = chunk
        flush()
    }

    func colour(_ text: String, red: Bool) -> String {
        terminal ? "\u{1B}[\(red ? 31 : 32)m\(text)\u{1B}[0m" : text
    }

    func flush() {
        buffer.withUnsafeBytes { bytes in
            var offset = 0
            while offset < bytes.count {
                let written = write(1, bytes.baseAddress! + offset, bytes.count - offset)
                if written <= 0 { break }
                offset += written
            }
        }
        buffer.removeAll(keepingCapacity: true)
    }
}

/// A progress bar on standard error, drawn only when it is a terminal.
final class ProgressBar {
    private let label: String
    private let terminal = isatty(2) != 0
    private var shown = -1

    init(label: String) { self.label = label }

    func update(_ fraction: Double) {
        guard terminal else { return }
        let percent = Int(min(max(fraction, 0), 1) * 100)
        guard percent != shown else { return }
        shown = percent
        let filled = percent * 30 / 100
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: 30 - filled)
        FileHandle.standardError.write(Data("\r\(label) [\(bar)] \(percent)%".utf8))
    }

    func finish() {
        if terminal && shown >= 0 { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
    }
}
