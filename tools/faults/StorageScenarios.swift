import Foundation
import LMDB
import SessionStore

/// Changes made to a stopped device's store files behind its back, as a full disk or bit rot would.
enum StoreSurgery {
    /// Sets an 8-byte value of the log's `meta` database.
    static func setMeta(_ store: String, key: String, _ value: UInt64) throws {
        let environment = try Environment(path: store + "/log.mdb")
        let meta = try environment.openDatabase("meta")
        let bytes = withUnsafeBytes(of: value.bigEndian) { Array($0) }
        try environment.write { txn in try txn.put(Array(key.utf8), bytes, in: meta) }
    }

    /// Flips one byte of a random session of the users table; returns that user's address.
    static func damageSession(_ store: String, using generator: inout SeededGenerator) throws -> IPAddress? {
        let environment = try Environment(path: store + "/users.mdb")
        let users = try environment.openDatabase("users")
        let keys: [[UInt8]] = try environment.read { txn in
            try txn.withCursor(users) { cursor in
                var keys: [[UInt8]] = []
                var entry = try cursor.move(.first)
                while let (key, _) = entry {
                    keys.append(Array(key))
                    entry = try cursor.move(.next)
                }
                return keys
            }
        }
        guard let key = keys.randomElement(using: &generator) else { return nil }
        try flip(environment, users, key, using: &generator)
        return key.withUnsafeBytes { IPAddress(bytes: $0) }
    }

    /// Flips one byte of a random log record after the users table's checkpoint (one the next open replays);
    /// returns its sequence and the address it is about.
    static func damageLogRecord(
        _ store: String,
        using generator: inout SeededGenerator
    ) throws -> (sequence: UInt64, ip: IPAddress?)? {
        let checkpoint: UInt64 = try {
            let environment = try Environment(path: store + "/users.mdb")
            let meta = try environment.openDatabase("meta")
            let value = try environment.read { txn in try txn.value(forKey: Array("checkpoint-sequence".utf8), in: meta)
            }
            return value.map { $0.withUnsafeBytes { UInt64(bigEndian: $0.loadUnaligned(as: UInt64.self)) } } ?? 0
        }()
        let environment = try Environment(path: store + "/log.mdb")
        let log = try environment.openDatabase("log")
        let records: [([UInt8], [UInt8])] = try environment.read { txn in
            try txn.withCursor(log) { cursor in
                var records: [([UInt8], [UInt8])] = []
                var entry = try withUnsafeBytes(of: (checkpoint + 1).bigEndian) { try cursor.seek(atLeast: $0) }
                while let (key, value) = entry {
                    records.append((Array(key), Array(value)))
                    entry = try cursor.move(.next)
                }
                return records
            }
        }
        guard let (key, value) = records.randomElement(using: &generator) else { return nil }
        let record = try value.withUnsafeBytes { try RecordCodec.decodeRecord($0) }
        try flip(environment, log, key, using: &generator)
        return (record.sequence, record.event.address)
    }

    private static func flip(
        _ environment: Environment,
        _ database: Database,
        _ key: [UInt8],
        using generator: inout SeededGenerator
    ) throws {
        var value = try environment.read { txn in try txn.value(forKey: key, in: database) } ?? []
        guard !value.isEmpty else { return }
        value[Int.random(in: 2..<max(3, value.count - 4), using: &generator)] ^= UInt8.random(
            in: 1...255,
            using: &generator
        )
        try environment.write { txn in try txn.put(key, value, in: database) }
    }
}

/// Device 2's disk filling up, while it streams and while it takes a full resynchronization. Device 2's store
/// lives on a small tmpfs for the whole round when this scenario is chosen.
enum DiskScenarios {
    static func run(_ round: Round) async throws {
        guard let disk = round.disk else {
            round.say("disk-full skipped: the store is not on a small disk (needs root)")
            return
        }
        let full: UInt8 = 2
        let other: UInt8 = 1
        // While streaming: the disk fills up under a running device, and storms on the peer make its files
        // grow (LMDB reuses the free pages inside them first).
        var since = ContinuousClock.now
        try disk.fill()
        round.fault("disk full while streaming", device: full)
        try await expectStorageFailure(round, on: full, since: since) {
            await StormThread(round.workload, on: other, count: 20_000, .local).finished()
        }
        try await expectHoldKept(round, on: other)
        try await Task.sleep(for: round.generator.milliseconds(500...1500))
        try disk.empty()
        var freed = ContinuousClock.now
        round.say("device \(full)'s disk has room again")
        try await round.waitSynchronized("the disk has room again", since: freed)

        // During a full resynchronization: device 2 comes back on a new store (a replaced disk), which
        // recovers every user from device 1, and its disk fills on the way.
        await round[full].quit()
        round.workload.setEnabled(full, false)
        round.workload.died(full)
        // What device 1 had of device 2's own writes is what survives the new store.
        let kept = await round[other].status().flatMap { UInt64($0["applied_from_peer"] ?? "") } ?? 0
        round.replacements[full, default: []].append((.now, kept))
        try FileManager.default.removeItem(atPath: round[full].storePath)
        try disk.fill(leaving: 1 << 20)
        since = ContinuousClock.now
        round.fault("disk full during a full resynchronization", device: full)
        try await round.restart(full)
        try await expectStorageFailure(round, on: full, since: since)
        try await expectHoldKept(round, on: other)
        try await Task.sleep(for: round.generator.milliseconds(500...1500))
        try disk.empty()
        freed = ContinuousClock.now
        round.say("device \(full)'s disk has room again")
        try await round.waitSynchronized("the full resync completes", since: freed)
    }

    /// The full device says it cannot store the peer's stream, in its state or its own writes' errors.
    /// While it does not, `pressure` (a storm on the peer) runs again, for up to 60 s.
    private static func expectStorageFailure(
        _ round: Round,
        on id: UInt8,
        since: ContinuousClock.Instant,
        pressure: (() async -> Void)? = nil
    ) async throws {
        let deadline = ContinuousClock.now + .seconds(60)
        var seen: NodeLine?
        repeat {
            await pressure?()
            seen = await round[id].waitFor(since: since, within: .seconds(pressure == nil ? 20 : 3)) { line in
                (line.type == "state" && (line["state"] ?? "").contains("cannot store"))
                    || (line.type.hasSuffix("-failed") && line["kind"] == "storage")
                    || (line.type == "status" && !(line["checkpoint_failure"] ?? "").isEmpty)
            }
            if seen == nil { _ = await round[id].status() }  // its checkpoints may be what fails
        } while seen == nil && pressure != nil && ContinuousClock.now < deadline
        if seen == nil {
            round.violated(
                "a full disk gets a clear error",
                "device \(id) reported no storage failure within 20 s; its state: \(round[id].state ?? "none")"
            )
        }
    }

    /// The peer keeps its log for the full device (within its quota), or dropped the hold loudly.
    private static func expectHoldKept(_ round: Round, on id: UInt8) async throws {
        guard let status = await round[id].status() else { return }
        let peer = id == 1 ? 2 : 1
        let held = (status["holds"] ?? "").split(separator: ",").contains { $0 == "peer-\(peer)" }
        let dropped = (status["dropped_holds"] ?? "").split(separator: ",").contains { $0 == "peer-\(peer)" }
        if !held && !dropped {
            round.violated(
                "the log is held for a peer that cannot store it, or the hold is dropped loudly",
                "device \(id) neither holds its log for device \(peer) nor reports a dropped hold"
            )
        }
    }
}

/// A corrupted byte in device 2's users table, or in a record of its log that the next open replays.
enum CorruptionScenarios {
    static func run(_ round: Round) async throws {
        let victim: UInt8 = round.standby
        let peer: UInt8 = victim == 1 ? 2 : 1
        // The users table: a session rots while the device is down. The repair empties the store: its own
        // writes the peer had not applied are lost, as the repair documents.
        await round[victim].quit()
        round.workload.setEnabled(victim, false)
        round.workload.died(victim)
        let applied = await round[peer].status().flatMap { UInt64($0["applied_from_peer"] ?? "") } ?? 0
        round.repairs[victim, default: []].append((.now, applied))
        let damaged = try StoreSurgery.damageSession(round[victim].storePath, using: &round.generator)
        if let ip = damaged, let number = Round.number(of: ip) { round.damagedUsers.insert(number) }
        round.fault(
            "a byte of a session in the users table corrupted",
            device: victim,
            ["ip": "\(damaged.map { "\($0)" } ?? "-")"]
        )
        try await restartExpectingRepair(round, victim)

        // The log: records after the checkpoint, the device killed, one record rots.
        await round[victim].quit()
        round.workload.died(victim)
        try await round.restart(victim, extra: ["--checkpoint-interval", "600000"])
        try await Task.sleep(for: .seconds(1))
        let appliedBeforeKill = await round[peer].status().flatMap { UInt64($0["applied_from_peer"] ?? "") } ?? 0
        round.kill(victim)
        // What the peer had applied is all of this device's own that survives the repair.
        round.repairs[victim, default: []].append((.now, appliedBeforeKill))
        if let (sequence, ip) = try StoreSurgery.damageLogRecord(round[victim].storePath, using: &round.generator) {
            if let ip, let number = Round.number(of: ip) { round.damagedUsers.insert(number) }
            round.fault("a byte of log record \(sequence) corrupted", device: victim)
        } else {
            round.say("no log record after the checkpoint to corrupt")
        }
        try await restartExpectingRepair(round, victim)
    }

    private static func restartExpectingRepair(_ round: Round, _ id: UInt8) async throws {
        let since = ContinuousClock.now
        try await round.restart(id)
        try await round.waitSynchronized("device \(id) repaired", since: since)
        let log = round[id].lastLogText()
        if !log.contains("damaged") {
            round.violated("damage is detected and reported", "device \(id)'s log does not report the damage")
        }
    }
}
