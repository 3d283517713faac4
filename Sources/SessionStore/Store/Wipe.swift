import LMDB

/// Empties a store so that its device recovers its users from the peer: the demotion's reset, and the repair
/// of a damaged store.
///
/// The users table is emptied first, then, in one transaction, the log; a crash between the two leaves the
/// old log, which the next reset or repair empties again. The logouts among this device's own events after
/// `keepThrough` (those the peer may not have) are logged again in the same transaction as new events, so
/// that a user logged off on this device stays off on the pair (R7); they are held for each peer, so that the
/// snapshot this device sends next streams them. The sequence goes on from where it was, the history is new,
/// and the store is marked as recovering from each peer it knew.
struct Wipe: Sendable {
    /// The last sequence of the log before: this device's events after `keepThrough`, through it, are gone.
    var through: UInt64
    /// The last sequence after the logouts logged again.
    var last: UInt64
    /// How many of this device's events after `keepThrough` were discarded.
    var discarded: Int
    /// How many of those were logouts, logged again.
    var logoutsLoggedAgain: Int
    /// How many records could not be read (a damaged log).
    var unreadable: Int
    var history: UInt64
    var holds: [String: UInt64]
    var installing: [DeviceID: UInt64]

    /// The name of the log hold kept for `peer`.
    static func holdName(_ peer: DeviceID) -> String { "peer-\(peer)" }

    /// The name of the log hold that keeps a recovering device's own events for the snapshot it sends once
    /// it has recovered: they may concern the peer's users (R7 logouts), which that snapshot does not hold.
    static let recoveryHold = "recovery"

    static func perform(
        files: StoreFiles,
        me: DeviceID,
        term: UInt32,
        keepThrough: UInt64,
        lastSequence: UInt64? = nil,
        peers: [DeviceID]
    ) throws(SessionStoreError) -> Wipe {
        var through: UInt64 = 0
        var discarded = 0
        var unreadable = 0
        var logouts: [Logout] = []
        do {
            try files.logEnvironment.read { txn in
                through = try lastSequence ?? txn.metaUInt64(StoreLayout.MetaKey.lastSequence, in: files.logMeta) ?? 0
                try txn.withCursor(files.log) { cursor in
                    var entry = try withUnsafeBytes(of: StoreLayout.sequenceKey(keepThrough + 1)) {
                        try cursor.seek(atLeast: $0)
                    }
                    while let (key, value) = entry {
                        if let sequence = StoreLayout.decodeSequenceKey(key) { through = max(through, sequence) }
                        if let record = try? decodeLogEntry(key: key, value: value) {
                            if record.origin == me {
                                discarded += 1
                                if case .logout(let logout) = record.event { logouts.append(logout) }
                            }
                        } else {
                            unreadable += 1
                        }
                        entry = try cursor.move(.next)
                    }
                }
            }
            try files.usersEnvironment.write { txn in
                try txn.clear(files.users)
                try txn.putMeta(StoreLayout.MetaKey.checkpointSequence, through, in: files.usersMeta)
            }
            let history = UInt64.random(in: 1...UInt64.max)
            let now = Timestamp.now
            try files.logEnvironment.write { txn in
                try txn.clear(files.log)
                var record: [UInt8] = []
                for (index, logout) in logouts.enumerated() {
                    let sequence = through + 1 + UInt64(index)
                    record.removeAll(keepingCapacity: true)
                    RecordCodec.encode(
                        LogRecord(sequence: sequence, term: term, origin: me, time: now, event: .logout(logout)),
                        into: &record
                    )
                    try withUnsafeBytes(of: StoreLayout.sequenceKey(sequence)) { key in
                        try record.withUnsafeBytes { value in
                            _ = try txn.put(key: key, value: value, in: files.log, flags: .append)
                        }
                    }
                }
                try txn.putMeta(StoreLayout.MetaKey.term, UInt64(term), in: files.logMeta)
                try txn.putMeta(StoreLayout.MetaKey.lastSequence, through + UInt64(logouts.count), in: files.logMeta)
                try txn.putMeta(StoreLayout.MetaKey.history, history, in: files.logMeta)
                for prefix in [
                    StoreLayout.MetaKey.appliedPrefix, StoreLayout.MetaKey.adoptedPrefix,
                    StoreLayout.MetaKey.appliedHistoryPrefix, StoreLayout.MetaKey.installingPrefix,
                    StoreLayout.MetaKey.holdPrefix, StoreLayout.MetaKey.droppedHoldPrefix,
                    StoreLayout.MetaKey.recoveredFromPrefix,
                ] {
                    for (name, _) in try txn.metaUInt64s(prefix: prefix, in: files.logMeta) {
                        try txn.deleteMeta(prefix + name, in: files.logMeta)
                    }
                }
                for peer in peers {
                    try txn.putMeta(StoreLayout.MetaKey.installingPrefix + "\(peer)", .max, in: files.logMeta)
                    try txn.putMeta(StoreLayout.MetaKey.holdPrefix + holdName(peer), through + 1, in: files.logMeta)
                }
                try txn.putMeta(StoreLayout.MetaKey.holdPrefix + recoveryHold, through + 1, in: files.logMeta)
                try txn.putMeta(StoreLayout.MetaKey.recovering, through, in: files.logMeta)
            }
            return Wipe(
                through: through,
                last: through + UInt64(logouts.count),
                discarded: discarded,
                logoutsLoggedAgain: logouts.count,
                unreadable: unreadable,
                history: history,
                holds: Dictionary(uniqueKeysWithValues: peers.map { (holdName($0), through + 1) })
                    .merging([recoveryHold: through + 1]) { $1 },
                installing: Dictionary(uniqueKeysWithValues: peers.map { ($0, UInt64.max) })
            )
        } catch let error as SessionStoreError {
            throw error
        } catch {
            throw SessionStoreError.storage(error, doing: "emptying the store to recover from the peer")
        }
    }

    /// The peers a store knows: those whose stream it applied.
    static func knownPeers(_ files: StoreFiles) -> [DeviceID] {
        let names =
            (try? files.logEnvironment.read { txn in
                try txn.metaUInt64s(prefix: StoreLayout.MetaKey.appliedPrefix, in: files.logMeta)
            }) ?? []
        return names.compactMap { UInt8($0.0).flatMap { DeviceID(rawValue: $0) } }
    }
}
