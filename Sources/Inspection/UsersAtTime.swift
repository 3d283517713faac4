import SessionStore

/// Who was online at `time`, rebuilt from the log: every record logged at or before it, replayed.
///
/// - Throws: ``InspectionError`` when the log no longer starts at its first record (it was truncated behind a
///   checkpoint), so that the past cannot be rebuilt.
public func sessions(at time: Timestamp, in reader: StoreReader) throws -> [Session] {
    let positions = try reader.positions()
    let first = positions.firstRetained ?? positions.lastSequence + 1
    if first > 1 {
        throw InspectionError(.pastTruncated(firstRetained: first))
    }
    var table = SessionTable()
    try reader.forEachRecord { record in
        guard record.time <= time else { return false }
        table.apply(record)
        return true
    }
    return table.sessions.values.sorted { $0.ip < $1.ip }
}
