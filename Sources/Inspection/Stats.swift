import SessionStore

/// What `tandem log stats` reports.
public struct LogStatistics: Sendable {
    public var records = 0
    public var byKind: [String: Int] = [:]
    public var byReason: [String: Int] = [:]
    public var byOrigin: [DeviceID: Int] = [:]
    public var firstTime: Timestamp?
    public var lastTime: Timestamp?
    /// Records per time bucket, oldest first, over [firstTime, lastTime].
    public var buckets: [Int] = []
    public var positions: StoreReader.Positions

    /// The bars of the rate chart: one character per bucket.
    public var chart: String {
        let bars = Array("▁▂▃▄▅▆▇█")
        let top = max(buckets.max() ?? 0, 1)
        return String(buckets.map { $0 == 0 ? " " : bars[min(bars.count - 1, ($0 * bars.count - 1) / top)] })
    }

    /// The seconds each bucket spans.
    public var bucketSeconds: Double {
        guard let firstTime, let lastTime, !buckets.isEmpty else { return 0 }
        return Double(lastTime.microsecondsSinceEpoch - firstTime.microsecondsSinceEpoch) / 1e6 / Double(buckets.count)
    }
}

/// Counts a store's log by kind, reason and origin, and its rate over time in `bucketCount` buckets.
public func logStatistics(_ reader: StoreReader, bucketCount: Int = 60) throws -> LogStatistics {
    var stats = LogStatistics(positions: try reader.positions())
    var times: [Int64] = []
    try reader.forEachRecord { record in
        stats.records += 1
        stats.byKind[record.event.kind.description, default: 0] += 1
        stats.byOrigin[record.origin, default: 0] += 1
        if case .logout(let logout) = record.event { stats.byReason[logout.reason.description, default: 0] += 1 }
        if stats.firstTime == nil || record.time < stats.firstTime! { stats.firstTime = record.time }
        if stats.lastTime == nil || record.time > stats.lastTime! { stats.lastTime = record.time }
        times.append(record.time.microsecondsSinceEpoch)
        return true
    }
    if let first = stats.firstTime?.microsecondsSinceEpoch, let last = stats.lastTime?.microsecondsSinceEpoch {
        let count = max(1, bucketCount)
        stats.buckets = Array(repeating: 0, count: count)
        let span = max(last - first, 1)
        for time in times { stats.buckets[min(count - 1, Int((time - first) * Int64(count) / span))] += 1 }
    }
    return stats
}
