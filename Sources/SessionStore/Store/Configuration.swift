import LMDB

extension SessionStore {
    /// When a committed event is on disk.
    public enum Durability: Sendable, Hashable, CustomStringConvertible {
        /// Every group commit is flushed to disk before its callers resume. Nothing acknowledged is lost,
        /// even by a power cut. The default.
        case syncEveryCommit
        /// Data is flushed at every commit but LMDB's meta page is not: a power cut may lose the last
        /// commits, never corrupt the store. A killed process loses nothing.
        case noMetaSync
        /// Nothing is flushed: a killed process loses nothing (the data is in the kernel's page cache), a
        /// power cut or kernel crash loses recent commits. For benchmarks and tests.
        case noSync

        var environment: Environment.Durability {
            switch self {
            case .syncEveryCommit: .syncEveryCommit
            case .noMetaSync: .noMetaSync
            case .noSync: .noSync
            }
        }

        /// The setting's short name: `sync`, `no-meta-sync` or `no-sync`.
        public var description: String {
            switch self {
            case .syncEveryCommit: "sync"
            case .noMetaSync: "no-meta-sync"
            case .noSync: "no-sync"
            }
        }
    }

    /// What a damaged store does.
    public enum DamagePolicy: Sendable, Hashable {
        /// Opening fails with ``SessionStoreError/Kind/corruptRecord`` (or ``SessionStoreError/Kind/logGap``),
        /// naming the damage; `tandem log verify` shows all of it. Nothing is changed.
        case refuse
        /// For a device of a pair: the store is emptied, the logouts that can still be read are kept (logged
        /// again), and the device recovers its users from the peer, which holds a copy of them; a damaged
        /// session is never served. What only this device had (writes the peer never acknowledged) is lost.
        case recoverFromPeer
    }

    /// How a store is opened. Only ``deviceID`` and ``portalGroup`` have no default.
    public struct Configuration: Sendable {
        /// This device's ID (R4). A store remembers the ID it was created with and refuses another.
        public var deviceID: DeviceID
        /// The portal group of the portal service backup interface (R5). Sessions of other groups are refused.
        public var portalGroup: PortalGroup
        /// When a write is on disk. Default: ``Durability/syncEveryCommit``.
        public var durability: Durability = .syncEveryCommit
        /// Whether the device runs in stateful failover mode. While it does, re-DHCP portal authentication
        /// is refused (R10). Default: `true`, since backing up for a peer is what the store is for.
        public var statefulFailover: Bool = true
        /// The longest time changes stay in memory before they are checkpointed into the users table.
        /// Default: 1 second.
        public var checkpointInterval: Duration = .seconds(1)
        /// The number of changed users that starts a checkpoint before ``checkpointInterval`` elapses.
        /// Default: 200,000.
        public var checkpointThreshold: Int = 200_000
        /// The most changed users kept in memory ahead of the checkpointer. Past it, the writer waits for
        /// the running checkpoint before taking new writes (back-pressure), so memory stays bounded when
        /// callers outrun the checkpointer. Default: 400,000 (twice ``checkpointThreshold``).
        public var maxChangesInMemory: Int = 400_000
        /// The most log the store keeps for holders such as a lagging peer, in bytes. Past it, holds are
        /// dropped loudly (logged at error level, counted, shown in ``SessionStore/logStatus``) and the
        /// holder must resynchronize in full. Default: 8 GiB.
        public var logQuotaBytes: Int = 8 << 30
        /// How often sessions past their session-timeout deadline are logged out, or `nil` to leave that
        /// to explicit ``SessionStore/expireSessions(asOf:)`` calls. Default: 1 second.
        public var expiryInterval: Duration? = .seconds(1)
        /// The most log entries one group commit deletes behind a checkpoint, bounding the pause that
        /// truncation adds to a commit; a commit that logs more than half as many records deletes twice as
        /// many as it logs, so that truncation keeps up with the log. Default: 2,048.
        public var truncationBatch: Int = 2_048
        /// The initial size of each LMDB map; maps grow by themselves. Default: 1 GiB (address space only).
        public var initialMapSize: Int = 1 << 30
        /// What a store found damaged (a record or a session that fails its checksum) does when it is opened,
        /// or when replication starts on it. Default: ``DamagePolicy/refuse``.
        public var onDamage: DamagePolicy = .refuse

        /// A configuration with the defaults documented on each property.
        /// - Parameters:
        ///   - deviceID: this device's ID, different from the peer's.
        ///   - portalGroup: the portal group of the portal service backup interface.
        public init(deviceID: DeviceID, portalGroup: PortalGroup) {
            self.deviceID = deviceID
            self.portalGroup = portalGroup
        }
    }
}
