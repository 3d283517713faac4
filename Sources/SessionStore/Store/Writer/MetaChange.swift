import LMDB

/// A change of the log's metadata that a batch stages, written in the batch's transaction.
enum MetaChange {
    case deviceID(DeviceID)
    case hold(String, UInt64)
    case release(String)
    case droppedHold(String, UInt64)
    case term(UInt32)
    case takeover(Takeover)
    case applied(DeviceID, UInt64)
    case appliedHistory(DeviceID, UInt64)
    /// A snapshot of the peer's users is being installed, whole again from this position of its stream
    /// on; `nil`: the copy is whole.
    case installing(DeviceID, UInt64?)
    /// The recovery from `peer` is complete, at this device's sequence `position`.
    case recovered(DeviceID, UInt64)
    /// The peer has what this device did since it recovered from it.
    case forgetRecovery(DeviceID)

    /// Writes the change to the log's metadata table.
    func write(into txn: borrowing WriteTransaction, _ meta: Database) throws {
        switch self {
        case .deviceID(let id):
            try txn.putMeta(StoreLayout.MetaKey.deviceID, UInt64(id.rawValue), in: meta)
        case .hold(let name, let position):
            try txn.putMeta(StoreLayout.MetaKey.holdPrefix + name, position, in: meta)
            try txn.deleteMeta(StoreLayout.MetaKey.droppedHoldPrefix + name, in: meta)
        case .release(let name):
            try txn.deleteMeta(StoreLayout.MetaKey.holdPrefix + name, in: meta)
        case .droppedHold(let name, let position):
            try txn.deleteMeta(StoreLayout.MetaKey.holdPrefix + name, in: meta)
            try txn.putMeta(StoreLayout.MetaKey.droppedHoldPrefix + name, position, in: meta)
        case .term(let newTerm):
            try txn.putMeta(StoreLayout.MetaKey.term, UInt64(newTerm), in: meta)
        case .takeover(let takeover):
            try txn.putMeta(StoreLayout.MetaKey.adoptedPrefix + "\(takeover.from)", takeover.metaValue, in: meta)
        case .applied(let peer, let position):
            try txn.putMeta(StoreLayout.MetaKey.appliedPrefix + "\(peer)", position, in: meta)
        case .appliedHistory(let peer, let history):
            try txn.putMeta(StoreLayout.MetaKey.appliedHistoryPrefix + "\(peer)", history, in: meta)
        case .installing(let peer, let position?):
            try txn.putMeta(StoreLayout.MetaKey.installingPrefix + "\(peer)", position, in: meta)
        case .installing(let peer, nil):
            try txn.deleteMeta(StoreLayout.MetaKey.installingPrefix + "\(peer)", in: meta)
        case .recovered(let peer, let position):
            try txn.deleteMeta(StoreLayout.MetaKey.recovering, in: meta)
            try txn.putMeta(StoreLayout.MetaKey.recoveredFromPrefix + "\(peer)", position, in: meta)
        case .forgetRecovery(let peer):
            try txn.deleteMeta(StoreLayout.MetaKey.recoveredFromPrefix + "\(peer)", in: meta)
        }
    }
}
