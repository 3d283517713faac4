import Locking
import Logging
import Metrics
import SessionStore

/// What a node's replication connections share: the store, the replication rules and where they stand
/// (``ReplicationStateMachine``), the peer's acknowledgements and the writes waiting for them, the commit
/// signal, the lag, and the node's events.
final class ReplicationContext: Sendable {
    /// What the node knows of its peer, across connections.
    struct Peer: Sendable {
        /// The peer's device ID, once known.
        var id: DeviceID?
        /// The peer's term, as its last stream request said.
        var term: UInt32 = 0
        /// Why the last batch of the peer's stream could not be stored, until one is stored again.
        var storeFailure: String?
    }

    let store: SessionStore
    let configuration: FailoverNode.Configuration
    let logger: Logger
    /// The replication rules, and where the current connection stands.
    let machine = Locked(ReplicationStateMachine())
    let peer: Locked<Peer>
    /// The peer's acknowledgements, and the `replicated` writes waiting for them.
    let acks = AckTracker()
    let lag = LagRecorder()
    let commits: CommitSignal
    let events: AsyncStream<FailoverNode.Event>.Continuation

    let lagTimer = Metrics.Timer(label: "tandem_replication_lag")
    let mismatchCounter = Counter(label: "tandem_digest_mismatches_total")
    let snapshotCounter = Counter(label: "tandem_snapshots_sent_total")

    init(
        store: SessionStore,
        configuration: FailoverNode.Configuration,
        logger: Logger,
        events: AsyncStream<FailoverNode.Event>.Continuation
    ) {
        self.store = store
        self.configuration = configuration
        self.logger = logger
        self.events = events
        commits = CommitSignal(last: store.logStatus.lastSequence)
        peer = Locked(Peer(id: store.logStatus.peerApplied.keys.first))
    }

    /// The failover state: the link's, unless the link is up and the peer's stream cannot be stored, or the
    /// tables are not yet known to agree.
    func state(linkState: FailoverState) -> FailoverState {
        guard linkState == .synchronization else { return linkState }
        if let failure = peer.withLock({ $0.storeFailure }) { return .independence(.storageFailed(failure)) }
        let installing = store.isInstallingSnapshot
        return machine.withLock { $0.catchUp(installing: installing) }.map { .independence(.catchingUp($0)) }
            ?? .synchronization
    }

    /// Applies a batch of the peer's stream to the store. A failure to store it (a full disk, say) is shown in
    /// the failover state until a batch is stored again: the copy of the peer's users falls behind meanwhile.
    func apply(_ batch: PeerBatch) async throws(SessionStoreError) -> PeerApplied {
        do {
            let applied = try await store.applyPeer(batch)
            let recovered = peer.withLock { peer -> Bool in
                defer { peer.storeFailure = nil }
                return peer.storeFailure != nil
            }
            if recovered {
                logger.notice("the peer's stream is stored again")
            }
            return applied
        } catch {
            if error.kind == .storage {
                peer.withLock { $0.storeFailure = "\(error)" }
                logger.error(
                    "cannot store the peer's stream; the link retries, and the peer keeps its log meanwhile",
                    metadata: ["tandem.error": "\(error)"]
                )
            }
            throw error
        }
    }

    /// Steps down: the peer's term `term` prevails. The store discards what the peer never acknowledged (after
    /// `keepThrough`) and resynchronizes from the peer; every write still waiting for the peer was discarded.
    /// - Throws: always, to end the connection: ``Demoted`` once done, or the store's error.
    func demote(term: UInt32, keepThrough: UInt64, peer: DeviceID) async throws -> Never {
        let demotion = try await store.resetForResync(
            term: term,
            keepThrough: keepThrough,
            from: peer,
            holdName: SessionStore.holdName(forPeer: peer)
        )
        // Acknowledgements from now on count in the new history of the log, never for the discarded writes.
        acks.demoted(kept: keepThrough, last: demotion.lastDiscarded, term: term)
        logger.warning(
            "the peer's term \(term) prevails: this device steps down and resynchronizes from the peer",
            metadata: [
                "tandem.kept_through": "\(keepThrough)", "tandem.discarded_events": "\(demotion.discardedEvents)",
                "tandem.logged_off_again": "\(demotion.logoutsLoggedAgain)",
            ]
        )
        events.yield(
            .demoted(
                term: term,
                keptThrough: keepThrough,
                discardedEvents: demotion.discardedEvents,
                loggedOffAgain: demotion.logoutsLoggedAgain
            )
        )
        throw Demoted()
    }

    /// Why a connection ends on purpose: this device stepped down.
    struct Demoted: Error {}

    /// Asks the sender for a snapshot at its next step, and wakes it.
    func forceSnapshot() {
        machine.withLock { $0.forceSnapshot() }
        commits.poke()
    }

    func announceSynchronized(through: UInt64, peerThrough: UInt64) {
        logger.info(
            "the users tables match the peer's: in synchronization",
            metadata: ["tandem.sequence": "\(through)", "tandem.peer.sequence": "\(peerThrough)"]
        )
        events.yield(.synchronized(through: through, peerThrough: peerThrough))
    }
}
