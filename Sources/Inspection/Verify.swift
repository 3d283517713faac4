import SessionStore

/// What `tandem log verify` found wrong.
public struct Problem: Sendable, Hashable, CustomStringConvertible {
    /// What kind of problem.
    public enum Kind: String, Sendable, Hashable, CustomStringConvertible {
        /// A log record (or its key) that fails its checksum or whose fields do not decode.
        case corruptRecord = "corrupt-record"
        /// Sequences missing between the first record kept and the last.
        case sequenceGap = "sequence-gap"
        /// The users table on disk differs from what the log replayed says it holds.
        case tableMismatch = "table-mismatch"
        /// A session of the users table that does not decode.
        case corruptSession = "corrupt-session"

        /// The kind's name, as in `corrupt-record`.
        public var description: String { rawValue }
    }

    public var kind: Kind
    /// Where and what, precisely.
    public var detail: String

    public var description: String { "\(kind): \(detail)" }
}

/// The result of a verification.
public struct Verification: Sendable {
    /// Log records read.
    public var records = 0
    /// Sessions in the users table on disk.
    public var checkpointedSessions = 0
    /// The sequences checked for continuity.
    public var firstSequence: UInt64?
    public var lastSequence: UInt64 = 0
    /// Whether the whole log from sequence 1 was there and intact, so the table was checked against a full
    /// replay (otherwise against the log after its checkpoint, when that is intact).
    public var fullReplay = false
    /// Every problem found.
    public var problems: [Problem] = []
}

/// Checks a store: every record's checksum and fields, the sequence's continuity from the first record kept
/// to the last one logged, every session of the users table, and that the users table equals the log
/// replayed — from the first record when the log still holds it, otherwise the table at its checkpoint with
/// the log after it, each event of which must apply.
///
/// A crash between the transactions of a checkpoint larger than one transaction
/// (`StoreLayout.checkpointTransactionSize` users) leaves the table past its position at some addresses (the
/// position is recorded with the last transaction; the store's next open replays the log after it, which changes
/// nothing there). When more addresses changed after the position than one transaction writes, an address
/// changed after it that holds a state the log reaches after it is therefore not a mismatch. In the check
/// against the log after the position (no full replay), a logout that does not apply is then accepted where
/// the table holds what the log reaches at or after it, a free address included: a session lost from the table
/// and logged out later is not reported in that case.
///
/// - Parameters:
///   - reader: the store.
///   - progress: called now and then with the fraction done (0...1).
///
/// On a store that a device is writing, a checkpoint committed part-way through the reads can look like a
/// table that disagrees with its log; the verification is then run again (up to three times in all) once
/// the checkpoint has moved on.
public func verifyStore(_ reader: StoreReader, progress: (Double) -> Void = { _ in }) throws -> Verification {
    var attempt = 1
    while true {
        let before = try reader.positions().checkpointSequence
        let result = try verifyOnce(reader, progress: progress)
        guard attempt < 3, result.problems.contains(where: { $0.kind == .tableMismatch }),
            try reader.positions().checkpointSequence != before
        else { return result }
        attempt += 1
    }
}

private func verifyOnce(_ reader: StoreReader, progress: (Double) -> Void) throws -> Verification {
    var result = Verification()
    let positions = try reader.positions()
    let total = Double(max(1, Int(positions.lastSequence - (positions.firstRetained ?? positions.lastSequence)) + 1))

    // The log: checksums, order, continuity, and a replay of it.
    var atCheckpoint = SessionTable(reservingCapacity: positions.checkpointedUsers)
    var afterCheckpoint: [LogRecord] = []
    var changedAfter = Set<IPAddress>()
    var expected: UInt64?
    try reader.forEachRawRecord { key, value in
        result.records += 1
        if result.records % 65_536 == 0 { progress(0.7 * Double(result.records) / total) }
        guard key.count == 8 else {
            result.problems.append(Problem(kind: .corruptRecord, detail: "a log key of \(key.count) bytes"))
            return true
        }
        let sequence = UInt64(bigEndian: key.loadUnaligned(as: UInt64.self))
        if result.firstSequence == nil { result.firstSequence = sequence }
        if let expected, sequence != expected {
            result.problems.append(
                Problem(kind: .sequenceGap, detail: "records \(expected)...\(sequence - 1) are missing")
            )
        }
        expected = sequence + 1
        result.lastSequence = sequence
        do {
            let record = try RecordCodec.decodeRecord(value)
            guard record.sequence == sequence else {
                result.problems.append(
                    Problem(
                        kind: .corruptRecord,
                        detail: "the record at key \(sequence) says sequence \(record.sequence)"
                    )
                )
                return true
            }
            if sequence <= positions.checkpointSequence {
                atCheckpoint.apply(record)
            } else {
                if let ip = record.event.address { changedAfter.insert(ip) }
                // Checked against the table below; a full replay reads them again only if it needs them.
                if result.firstSequence != 1 { afterCheckpoint.append(record) }
            }
        } catch {
            result.problems.append(Problem(kind: .corruptRecord, detail: "sequence \(sequence): \(error)"))
        }
        return true
    }
    if positions.lastSequence > result.lastSequence, positions.lastSequence > positions.checkpointSequence {
        result.problems.append(
            Problem(
                kind: .sequenceGap,
                detail: "records \(result.lastSequence + 1)...\(positions.lastSequence) were logged but are missing"
            )
        )
    }
    if let first = result.firstSequence, first > positions.checkpointSequence + 1 {
        result.problems.append(
            Problem(
                kind: .sequenceGap,
                detail: "the log starts at \(first), but the table's checkpoint is \(positions.checkpointSequence)"
            )
        )
    }

    // The users table at its checkpoint, against the log.
    result.fullReplay = result.firstSequence == 1 || (result.firstSequence == nil && positions.lastSequence == 0)
    // A damaged record would show as differences of its own: the table is compared with an intact log only.
    let intact = !result.problems.contains { $0.kind == .corruptRecord }
    if !intact { result.fullReplay = false }
    let replayed = atCheckpoint.sessions
    // A checkpoint of more addresses than one transaction writes commits its transactions one by one and records
    // its position with the last: after a crash in between, the table holds, at some of the addresses changed
    // after the position, a state the log reaches only after it. Only then is such an address sound.
    let mayBePast = changedAfter.count > StoreLayout.checkpointTransactionSize
    var mismatches = Mismatches()
    var table: [IPAddress: Session] = [:]
    var matched = 0
    // In a full replay, the differences at addresses changed after the position, with the table's state there
    // (`nil`: free), checked against the log after the position once the table is read.
    var differences: [(ip: IPAddress, onDisk: Session?, detail: String)] = []
    func differ(_ ip: IPAddress, _ onDisk: Session?, _ detail: String) {
        if mayBePast && changedAfter.contains(ip) {
            differences.append((ip, onDisk, detail))
        } else {
            mismatches.report(detail)
        }
    }
    do {
        try reader.forEachCheckpointedSession { session in
            result.checkpointedSessions += 1
            if result.fullReplay {
                // The whole log replayed up to the checkpoint must be the table on disk.
                guard let expected = replayed[session.ip] else {
                    differ(session.ip, session, "\(session.ip) is in the users table but the log has it offline")
                    return
                }
                matched += 1
                if expected != session {
                    differ(
                        session.ip,
                        session,
                        "\(session.ip) differs from the log: table \(describe(session)), log \(describe(expected))"
                    )
                }
            } else if intact {
                table[session.ip] = session
            }
        }
    } catch let error as SessionStoreError where error.kind == .corruptRecord {
        result.problems.append(Problem(kind: .corruptSession, detail: "\(error)"))
    }
    progress(0.85)
    if result.fullReplay && matched < replayed.count {
        var present = Set<IPAddress>()
        try reader.forEachCheckpointedSession { present.insert($0.ip) }
        for ip in replayed.keys.sorted() where !present.contains(ip) {
            differ(ip, nil, "\(ip) is online by the log but missing from the users table")
        }
    }
    if !differences.isEmpty {
        // The states the log brings these addresses to after the position, from the replay up to it.
        let addresses = Set(differences.map(\.ip))
        var reached = StatesReached()
        try reader.forEachRawRecord(from: positions.checkpointSequence + 1) { _, value in
            guard let record = try? RecordCodec.decodeRecord(value), let ip = record.event.address,
                addresses.contains(ip)
            else { return true }
            reached.apply(record, index: 0, start: .some(replayed[ip]))
            return true
        }
        for difference in differences where !reached.reaches(difference.onDisk, at: difference.ip) {
            mismatches.report(difference.detail)
        }
    }
    if !result.fullReplay && intact {
        // The log after the checkpoint must apply to the table: every logout ends a session it holds. Where the
        // table may be past the position, a logout that does not apply is sound when the table holds there what
        // the log reaches at or after it: the address free, or a session a later login brings.
        var later = StatesReached()
        if mayBePast {
            for (index, record) in afterCheckpoint.enumerated() { later.apply(record, index: index, start: nil) }
        }
        var onDisk: [IPAddress: Session?] = [:]
        for (index, record) in afterCheckpoint.enumerated() {
            guard let ip = record.event.address else { continue }
            if mayBePast && onDisk.index(forKey: ip) == nil { onDisk[ip] = .some(table[ip]) }
            if let (_, entry) = ApplyRule.change(for: record.event, current: table[ip]) {
                table[ip] = entry.session
            } else if case .logout = record.event,
                !(mayBePast && later.reaches(onDisk[ip] ?? nil, at: ip, from: index))
            {
                mismatches.report(
                    "record \(record.sequence) logs out \(ip), which the table does not hold in that session"
                )
            }
        }
    }
    result.problems += mismatches.problems
    progress(1)
    return result
}

/// The states that log records bring their addresses to, each with the index of the record that brings it there
/// (`nil`: the address free).
private struct StatesReached {
    private var current: [IPAddress: Session?] = [:]
    private var states: [IPAddress: [(index: Int, state: Session?)]] = [:]

    /// Applies `record`, of index `index`, to the state its address holds: the one the records applied so far
    /// brought it to, or else `start`. With no `start` (the state before the records is not known), the state is
    /// known from the address's first login or logout on, and an update before it is left out.
    mutating func apply(_ record: LogRecord, index: Int, start: Session??) {
        guard let ip = record.event.address else { return }
        let state: Session?
        if let known = current.index(forKey: ip).map({ current[$0].value }) ?? start {
            guard let (_, entry) = ApplyRule.change(for: record.event, current: known) else { return }
            state = entry.session
        } else {
            switch record.event {
            case .login(let session): state = session
            case .logout: state = nil
            case .update, .deviceIDChanged, .takeover: return
            }
        }
        current[ip] = .some(state)
        states[ip, default: []].append((index, state))
    }

    /// Whether a record of index `index` or later brought `ip` to `state`.
    func reaches(_ state: Session?, at ip: IPAddress, from index: Int = 0) -> Bool {
        states[ip]?.contains { $0.index >= index && $0.state == state } == true
    }
}

/// Table mismatches, the first 100 in full and then a count.
private struct Mismatches {
    private(set) var problems: [Problem] = []
    private var count = 0

    mutating func report(_ detail: String) {
        count += 1
        if count <= 100 {
            problems.append(Problem(kind: .tableMismatch, detail: detail))
        } else if count == 101 {
            problems.append(Problem(kind: .tableMismatch, detail: "more differences (only the first 100 are listed)"))
        }
    }
}

func describe(_ session: Session) -> String {
    "(user \(session.userName), MAC \(session.mac), owner \(session.owner), generation \(session.generation))"
}
