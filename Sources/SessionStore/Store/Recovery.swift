import LMDB
import Logging

/// Opening a store: its identity checked or recorded, and the log after the last checkpoint replayed.
struct Recovery {
    let files: StoreFiles
    let logger: Logger

    init(files: StoreFiles, logger: Logger) throws(SessionStoreError) {
        self.files = files
        self.logger = logger
    }

    /// Checks the stored identity against `configuration`, or records it in a new store.
    func establishIdentity(
        configuration: SessionStore.Configuration
    ) throws(SessionStoreError)
        -> StoreIdentity
    {
        do {
            return try files.logEnvironment.write { txn in
                let meta = files.logMeta
                guard let format = try txn.metaUInt64(StoreLayout.MetaKey.format, in: meta) else {
                    try txn.putMeta(StoreLayout.MetaKey.format, UInt64(StoreLayout.formatVersion), in: meta)
                    try txn.putMeta(StoreLayout.MetaKey.deviceID, UInt64(configuration.deviceID.rawValue), in: meta)
                    try txn.putMeta(StoreLayout.MetaKey.portalGroup, configuration.portalGroup.name, in: meta)
                    try txn.putMeta(StoreLayout.MetaKey.term, 1, in: meta)
                    let history = UInt64.random(in: 1...UInt64.max)
                    try txn.putMeta(StoreLayout.MetaKey.history, history, in: meta)
                    // A new store recovers its device's users from the peer, if the peer holds any.
                    try txn.putMeta(StoreLayout.MetaKey.recovering, 0, in: meta)
                    return StoreIdentity(
                        deviceID: configuration.deviceID,
                        portalGroup: configuration.portalGroup,
                        term: 1,
                        history: history
                    )
                }
                guard format <= StoreLayout.formatVersion else {
                    throw SessionStoreError(
                        .unsupportedFormat(
                            path: files.path,
                            found: UInt32(truncatingIfNeeded: format),
                            supported: StoreLayout.formatVersion
                        )
                    )
                }
                var identity = try StoreIdentity.read(txn, meta: meta)
                if identity.history == 0 {
                    identity.history = UInt64.random(in: 1...UInt64.max)
                    try txn.putMeta(StoreLayout.MetaKey.history, identity.history, in: meta)
                }
                guard identity.deviceID == configuration.deviceID else {
                    throw SessionStoreError(
                        .deviceIDMismatch(
                            path: files.path,
                            stored: identity.deviceID,
                            requested: configuration.deviceID
                        )
                    )
                }
                guard identity.portalGroup == configuration.portalGroup else {
                    throw SessionStoreError(
                        .portalGroupMismatch(
                            path: files.path,
                            stored: identity.portalGroup,
                            requested: configuration.portalGroup
                        )
                    )
                }
                if format < StoreLayout.formatVersion {
                    // Its records and values stay as they are (each unit names its version, and every earlier
                    // one is read); the store is marked as written by this version from now on, so that an
                    // older Tandem refuses it at open rather than at the first new record.
                    try txn.putMeta(StoreLayout.MetaKey.format, UInt64(StoreLayout.formatVersion), in: meta)
                    logger.notice(
                        "store format upgraded: its records are read as they are, new ones are written in the new format",
                        metadata: [
                            "tandem.path": "\(files.path)", "tandem.format.from": "\(format)",
                            "tandem.format.to": "\(StoreLayout.formatVersion)",
                        ]
                    )
                }
                return identity
            }
        } catch {
            throw SessionStoreError.storage(error, doing: "reading the store's identity")
        }
    }

    /// Loads the in-memory layer with the events logged after the last checkpoint, and returns where the
    /// log stands.
    func replay(into overlay: Overlay, identity: StoreIdentity) throws(SessionStoreError) -> LogWriter.Recovered {
        do {
            return try files.usersEnvironment.read { usersTxn in
                let checkpoint =
                    try usersTxn.metaUInt64(StoreLayout.MetaKey.checkpointSequence, in: files.usersMeta) ?? 0
                let baseCount = try usersTxn.statistics(files.users).entries
                return try files.logEnvironment.read { logTxn in
                    let meta = files.logMeta
                    let lastLogged = try logTxn.metaUInt64(StoreLayout.MetaKey.lastSequence, in: meta) ?? 0
                    var changes = ChangeSet()
                    var count = baseCount
                    var deadlines = DeadlineHeap()
                    let expected = try files.readLog(from: checkpoint + 1, in: logTxn) { record in
                        guard let ip = record.event.address else { return }
                        let current = try changes[ip].map { $0.session } ?? files.baseSession(ip, in: usersTxn)
                        if let (ip, entry) = ApplyRule.change(for: record.event, current: current) {
                            let session = entry.session  // once: each `entry.session` copies the session
                            count += (session != nil ? 1 : 0) - (current != nil ? 1 : 0)
                            changes.set(ip, entry)
                            if let session, let deadline = session.deadline {
                                deadlines.push(.init(deadline: deadline, ip: ip, generation: session.generation))
                            }
                        }
                    }
                    let replayed = expected - (checkpoint + 1)
                    if lastLogged >= expected {
                        throw SessionStoreError(.logGap(checkpoint: expected - 1, firstRetained: lastLogged))
                    }
                    let lastSequence = max(lastLogged, expected - 1)
                    changes.throughSequence = lastSequence
                    overlay.load(changes, count: count)
                    if replayed > 0 {
                        logger.info(
                            "replayed the log after the last checkpoint",
                            metadata: ["tandem.replayed": "\(replayed)", "tandem.checkpoint.sequence": "\(checkpoint)"]
                        )
                    }
                    let holds = try logTxn.metaUInt64s(prefix: StoreLayout.MetaKey.holdPrefix, in: meta)
                    let dropped = try logTxn.metaUInt64s(prefix: StoreLayout.MetaKey.droppedHoldPrefix, in: meta)
                    let applied = try Self.perDevice(StoreLayout.MetaKey.appliedPrefix, logTxn, meta: meta)
                    let appliedHistory = try Self.perDevice(
                        StoreLayout.MetaKey.appliedHistoryPrefix,
                        logTxn,
                        meta: meta
                    )
                    let installing = try Self.perDevice(StoreLayout.MetaKey.installingPrefix, logTxn, meta: meta)
                    return LogWriter.Recovered(
                        identity: identity,
                        lastSequence: lastSequence,
                        checkpointSequence: checkpoint,
                        firstRetained: try files.firstLogSequence(in: logTxn),
                        holds: Dictionary(holds, uniquingKeysWith: { $1 }),
                        droppedHolds: Dictionary(dropped, uniquingKeysWith: { $1 }),
                        deadlines: deadlines,
                        applied: applied,
                        appliedHistory: appliedHistory,
                        installing: installing,
                        recoveringFrom: try logTxn.metaUInt64(StoreLayout.MetaKey.recovering, in: meta),
                        recoveredFrom: try Self.perDevice(StoreLayout.MetaKey.recoveredFromPrefix, logTxn, meta: meta)
                    )
                }
            }
        } catch {
            throw SessionStoreError.storage(error, doing: "replaying the log")
        }
    }

    /// The `prefix<device ID>` keys of `meta`, by device.
    private static func perDevice(
        _ prefix: String,
        _ txn: borrowing some TransactionProtocol & ~Copyable,
        meta: Database
    ) throws -> [DeviceID: UInt64] {
        var values: [DeviceID: UInt64] = [:]
        for (name, value) in try txn.metaUInt64s(prefix: prefix, in: meta) {
            guard let device = UInt8(name).flatMap({ DeviceID(rawValue: $0) }) else {
                throw SessionStoreError(.corruptMetadata(key: prefix + name, detail: "not a device ID"))
            }
            values[device] = value
        }
        return values
    }
}
