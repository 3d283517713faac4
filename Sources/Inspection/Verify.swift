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
/// A crash between the transactions of a checkpoint larger than one transaction leaves the table past its
/// position at some addresses (the position is recorded with the last transaction; the store's next open
/// replays the log after it, which changes nothing there). An address holding a state that the log reaches
/// after the position is therefore not a mismatch.
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
                afterCheckpoint.append(record)  // checked against the table, below
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
    // A checkpoint larger than one transaction commits its transactions one by one and records its position only
    // with the last: after a crash in between, the table holds, at some addresses, a state the log reaches only
    // after the position. Such an address is sound when it holds one of those states.
    let later = result.fullReplay ? statesAfterCheckpoint(afterCheckpoint, from: atCheckpoint) : [:]
    var mismatches = Mismatches()
    var table: [IPAddress: Session] = [:]
    var matched = 0
    do {
        try reader.forEachCheckpointedSession { session in
            result.checkpointedSessions += 1
            if result.fullReplay {
                // The whole log replayed up to the checkpoint must be the table on disk.
                let reachedLater = later[session.ip]?.contains(session) == true
                guard let expected = replayed[session.ip] else {
                    if !reachedLater {
                        mismatches.report("\(session.ip) is in the users table but the log has it offline")
                    }
                    return
                }
                matched += 1
                if expected != session && !reachedLater {
                    mismatches.report(
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
        for ip in replayed.keys.sorted() where !present.contains(ip) && later[ip]?.contains(nil) != true {
            mismatches.report("\(ip) is online by the log but missing from the users table")
        }
    } else if !result.fullReplay && intact {
        // The log after the checkpoint must apply to the table: every logout ends a session it holds, unless the
        // table is already past it there (see `later` above): the address is free, or holds a session that a
        // later record logs in.
        var loginsAfter: [IPAddress: [(index: Int, owner: DeviceID, generation: Generation)]] = [:]
        for (index, record) in afterCheckpoint.enumerated() {
            if case .login(let session) = record.event {
                loginsAfter[session.ip, default: []].append((index, session.owner, session.generation))
            }
        }
        for (index, record) in afterCheckpoint.enumerated() {
            guard let ip = record.event.address else { continue }
            if let (_, entry) = ApplyRule.change(for: record.event, current: table[ip]) {
                table[ip] = entry.session
            } else if case .logout = record.event, let held = table[ip],
                loginsAfter[ip]?.contains(where: {
                    $0.index > index && $0.owner == held.owner && $0.generation == held.generation
                }) != true
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

/// Every state that the records after the checkpoint bring each address they change to, in order, starting from
/// the table replayed through the checkpoint (`nil`: the address is free).
private func statesAfterCheckpoint(
    _ records: [LogRecord],
    from atCheckpoint: SessionTable
) -> [IPAddress: [Session?]] {
    var current: [IPAddress: Session?] = [:]
    var states: [IPAddress: [Session?]] = [:]
    for record in records {
        guard let ip = record.event.address else { continue }
        let now: Session? = current.index(forKey: ip).map { current[$0].value } ?? atCheckpoint.sessions[ip]
        guard let (_, entry) = ApplyRule.change(for: record.event, current: now) else { continue }
        current[ip] = .some(entry.session)
        states[ip, default: []].append(entry.session)
    }
    return states
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
