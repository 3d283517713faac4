import LMDB

/// Who a store belongs to, as its log's metadata records it: read when the store opens, and by the operator's
/// read-only view of a store.
package struct StoreIdentity: Sendable {
    package var deviceID: DeviceID
    package var portalGroup: PortalGroup
    package var term: UInt32
    package var takeovers = Takeovers()
    /// This log's history: a random ID, new with the store and with each reset, so that a peer's
    /// position in another history of this device is never taken for one in this one.
    var history: UInt64 = 0

    /// Reads the identity from the log's `meta` database.
    ///
    /// - Throws: ``SessionStoreError`` of kind ``SessionStoreError/Kind/corruptMetadata`` when the device ID, the
    ///   portal group or a takeover is missing or invalid, and the errors of reading.
    package static func read(
        _ txn: borrowing some TransactionProtocol & ~Copyable,
        meta: Database
    ) throws -> StoreIdentity {
        guard let rawID = try txn.metaUInt64(StoreLayout.MetaKey.deviceID, in: meta),
            let deviceID = try? DeviceID(Int(rawID))
        else {
            throw SessionStoreError(
                .corruptMetadata(key: StoreLayout.MetaKey.deviceID, detail: "missing or out of range")
            )
        }
        guard let groupName = try txn.metaString(StoreLayout.MetaKey.portalGroup, in: meta),
            let group = try? PortalGroup(groupName)
        else {
            throw SessionStoreError(
                .corruptMetadata(key: StoreLayout.MetaKey.portalGroup, detail: "missing or invalid")
            )
        }
        let term = try txn.metaUInt64(StoreLayout.MetaKey.term, in: meta) ?? 1
        var takeovers = Takeovers()
        for (name, value) in try txn.metaUInt64s(prefix: StoreLayout.MetaKey.adoptedPrefix, in: meta) {
            guard let from = UInt8(name).flatMap({ DeviceID(rawValue: $0) }),
                let takeover = Takeover(from: from, metaValue: value)
            else {
                throw SessionStoreError(
                    .corruptMetadata(key: StoreLayout.MetaKey.adoptedPrefix + name, detail: "not a takeover")
                )
            }
            takeovers.record(takeover)
        }
        return StoreIdentity(
            deviceID: deviceID,
            portalGroup: group,
            term: UInt32(truncatingIfNeeded: term),
            takeovers: takeovers,
            history: try txn.metaUInt64(StoreLayout.MetaKey.history, in: meta) ?? 0
        )
    }
}
