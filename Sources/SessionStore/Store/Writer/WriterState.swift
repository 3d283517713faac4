import LMDB
import Logging

/// What the writer knows between batches — the log's positions and holds, the peers' positions, snapshot
/// installs and recovery, the sessions that ended recently, deadlines, the digest — and the batch it stages on
/// top of that.
///
/// Only the writer thread holds it: ``LogWriter`` keeps it private and lends it to each staged request's
/// staging step, on its thread, with the batch's read transaction of the users table. Its fields are private
/// to this file: a staging step reads what it may through the accessors and changes the batch only through
/// the staging primitives below ("Staging"), and nothing of a batch counts until ``applyCommitted(truncated:)``
/// applies it after its commit.
final class WriterState {
    let files: StoreFiles
    let overlay: Overlay
    let shared: WriterShared
    let logger: Logger

    // MARK: Committed state

    /// The last sequence of the log.
    private(set) var lastSequence: UInt64
    /// The last sequence the users table on disk holds.
    private(set) var checkpointSequence: UInt64
    /// The first sequence the log still holds, `nil` when empty.
    private(set) var firstRetained: UInt64?
    /// The log's holds: the first sequence kept for each.
    private(set) var holds: [String: UInt64]
    /// While this device recovers its users from the peer (a new store, a demotion, a repaired damage): the
    /// last sequence of its own before it began; its own logins after it are kept through the recovery.
    private(set) var recoveringFrom: UInt64?
    /// How many snapshots this store began to install since it was opened.
    private(set) var installs: UInt64 = 0
    private var deadlines: DeadlineHeap
    /// The highest sequence of each peer's stream applied (committed), and the history of each peer's log it
    /// counts in.
    private var applied: [DeviceID: UInt64]
    private var appliedHistory: [DeviceID: UInt64]
    /// The peers whose snapshot is being installed, with the position of their stream from which this
    /// device's copy of their users is whole again (`UInt64.max` until the snapshot's end is applied).
    private var installing: [DeviceID: UInt64]
    /// The peers whose snapshot of everything is being installed, and through which sequence of theirs their
    /// stream carries this device's own changes.
    private var everything: Set<DeviceID> = []
    private var recoveredThrough: [DeviceID: UInt64] = [:]
    /// The peers whose current snapshot keeps this device's copy (no sessions).
    private var keeping: Set<DeviceID> = []
    /// The last sequence of a record this device logged of its own (not applied from a peer's stream).
    private var ownThrough: UInt64
    /// The last sequence of a record this device logged from a peer's snapshot, or of its own events recovered
    /// from the peer, about a session it owns in effect (see ``DigestHistory/Point/returnedThrough``).
    private var returnedThrough: UInt64 = 0
    /// The users table's digest, once computed (`digestReady`).
    private var digest: UInt64 = 0
    private var digestReady = false
    /// The sessions that ended recently.
    private var ended = EndedSessions()
    /// The addresses each snapshot being installed listed so far: its end drops the sessions it replaces that
    /// it did not list. Until then the copy it replaces stays whole, so that a snapshot cut short (its sender
    /// died) never leaves this device with part of the peer's users, the only copy if the peer's store is
    /// lost next.
    private var listed: [DeviceID: Set<IPAddress>] = [:]

    // MARK: The batch being staged (scratch space, reused)

    /// The sequence of the last record staged.
    private(set) var sequence: UInt64 = 0
    /// This device's ID, term and takeovers as the batch leaves them.
    private(set) var origin: DeviceID
    private(set) var term: UInt32
    private(set) var takeovers: Takeovers
    /// The addresses this batch changed, with the index of their latest change in `changes`.
    private var staged: [IPAddress: Int] = [:]
    private var changes: [EncodedChange] = []
    private var countDelta = 0
    private var digestDelta: UInt64 = 0
    /// The digest change of each own record of this batch, and the addresses the peer's events touched.
    private var ownDeltas: [DigestHistory.OwnDelta] = []
    private var peerTouched: [IPAddress] = []
    private var endedThisBatch: Set<EndedSessions.Key> = []
    private var buffer: [UInt8] = []
    private var records: [(sequence: UInt64, range: Range<Int>)] = []
    private var newDeadlines: [DeadlineHeap.Item] = []
    private var metaChanges: [MetaChange] = []
    /// Own users that the peer's events logged off or replaced, for the store's automatic logouts.
    private var peerNotices: [Logout] = []
    /// Own users that the peer's events updated, for the store's peer updates.
    private var peerUpdates: [PeerUpdate] = []
    /// The peer state as this batch leaves it.
    private var stagedApplied: [DeviceID: UInt64] = [:]
    private var stagedInstalling: [DeviceID: UInt64] = [:]
    private var stagedEverything: Set<DeviceID> = []
    private var stagedKeeping: Set<DeviceID> = []
    private var stagedRecoveredThrough: [DeviceID: UInt64] = [:]
    private var stagedOwnThrough: UInt64 = 0
    private var stagedReturnedThrough: UInt64 = 0
    /// This batch's share of the listings (see `listed`).
    private var listedThisBatch: [DeviceID: [IPAddress]] = [:]
    private var listingBegun: Set<DeviceID> = []
    private var listingEnded: Set<DeviceID> = []
    /// Whether the records staged now come from a peer's stream.
    private var stagingPeer = false

    init(files: StoreFiles, overlay: Overlay, shared: WriterShared, logger: Logger, recovered: LogWriter.Recovered) {
        self.files = files
        self.overlay = overlay
        self.shared = shared
        self.logger = logger
        lastSequence = recovered.lastSequence
        checkpointSequence = recovered.checkpointSequence
        firstRetained = recovered.firstRetained
        holds = recovered.holds
        deadlines = recovered.deadlines
        applied = recovered.applied
        appliedHistory = recovered.appliedHistory
        installing = recovered.installing
        recoveringFrom = recovered.recoveringFrom
        origin = recovered.identity.deviceID
        term = recovered.identity.term
        takeovers = recovered.identity.takeovers
        // What came before this open counts as this device's own: comparisons wait until the peer has it all.
        ownThrough = recovered.lastSequence
        buffer.reserveCapacity(1 << 20)
    }

    // MARK: - The writer's steps

    /// Starts a batch on the committed state.
    func beginBatch() {
        staged.removeAll(keepingCapacity: true)
        changes.removeAll(keepingCapacity: true)
        records.removeAll(keepingCapacity: true)
        newDeadlines.removeAll(keepingCapacity: true)
        metaChanges.removeAll(keepingCapacity: true)
        buffer.removeAll(keepingCapacity: true)
        countDelta = 0
        digestDelta = 0
        ownDeltas.removeAll(keepingCapacity: true)
        peerTouched.removeAll(keepingCapacity: true)
        endedThisBatch.removeAll(keepingCapacity: true)
        listedThisBatch.removeAll()
        listingBegun.removeAll()
        listingEnded.removeAll()
        stagedApplied.removeAll()
        stagedInstalling = installing
        stagedEverything = everything
        stagedKeeping = keeping
        stagedRecoveredThrough = recoveredThrough
        stagedOwnThrough = ownThrough
        stagedReturnedThrough = returnedThrough
        stagingPeer = false
        peerNotices.removeAll()
        peerUpdates.removeAll()
        sequence = lastSequence
        (origin, term, takeovers) = shared.identity.withLock { ($0.deviceID, $0.term, $0.takeovers) }
    }

    /// Whether the batch has anything to write: records, or changes of the metadata.
    var hasWrites: Bool { !records.isEmpty || !metaChanges.isEmpty }

    /// How many records the batch staged.
    var stagedRecords: Int { records.count }

    /// Writes the batch's records and metadata changes in the log's transaction `txn`.
    func write(into txn: borrowing WriteTransaction) throws {
        if !records.isEmpty {
            try txn.withCursor(files.log) { cursor in
                try buffer.withUnsafeBytes { bytes in
                    for (sequence, range) in records {
                        _ = try withUnsafeBytes(of: StoreLayout.sequenceKey(sequence)) { key in
                            try cursor.put(
                                key: key,
                                value: UnsafeRawBufferPointer(rebasing: bytes[range]),
                                flags: .append
                            )
                        }
                    }
                }
            }
            try txn.putMeta(StoreLayout.MetaKey.lastSequence, sequence, in: files.logMeta)
        }
        for change in metaChanges { try change.write(into: txn, files.logMeta) }
    }

    /// What a commit applied, for the writer's callers and observers.
    struct Applied {
        /// The records it logged.
        var records: Int
        /// The log's last sequence after it.
        var lastSequence: UInt64
        /// Own users that the peer's events logged off or replaced.
        var peerNotices: [Logout]
        /// Own users that the peer's events updated.
        var peerUpdates: [PeerUpdate]
        /// How many records of each kind it logged, by ``Event/Kind`` raw value (index 0 unused).
        var kinds: [Int]
    }

    /// Applies the batch that committed: to the in-memory table, the committed state and what readers see.
    ///
    /// - Parameter truncated: when the commit deleted the log's oldest records, the log's first sequence
    ///   after it (`.some(nil)`: the log is empty).
    func applyCommitted(truncated: UInt64?? = nil) -> Applied {
        if !records.isEmpty, firstRetained == nil { firstRetained = records.first?.sequence }
        if let truncated { firstRetained = truncated }
        if !records.isEmpty {
            overlay.apply(changes, countDelta: countDelta, throughSequence: sequence)
            lastSequence = sequence
            ownThrough = stagedOwnThrough
            returnedThrough = stagedReturnedThrough
            for item in newDeadlines { deadlines.push(item) }
            digest &+= digestDelta
        }
        for (peer, position) in stagedApplied { applied[peer] = position }
        installing = stagedInstalling
        everything = stagedEverything
        keeping = stagedKeeping
        recoveredThrough = stagedRecoveredThrough
        var holdsChanged = false
        for change in metaChanges {
            switch change {
            case .term, .takeover:
                shared.identity.withLock { [term, takeovers] in
                    $0.term = term
                    $0.takeovers = takeovers
                }
            case .applied:
                break
            case .recovered(let peer, let position):
                recoveringFrom = nil
                shared.status.withLock {
                    $0.recoveringFrom = nil
                    $0.recoveredFrom[peer] = position
                }
                logger.notice("recovered: this device's users are back from the peer")
            case .forgetRecovery(let peer):
                shared.status.withLock { $0.recoveredFrom[peer] = nil }
            case .installing(let peer, let position):
                if position == .max { installs += 1 }
                shared.status.withLock { [installs] in
                    $0.installing[peer] = position
                    $0.installs = installs
                }
            case .appliedHistory(let peer, let history):
                appliedHistory[peer] = history
                shared.status.withLock { $0.appliedHistory[peer] = history }
            case .deviceID(let id):
                shared.identity.withLock { $0.deviceID = id }
            case .hold(let name, let position):
                holds[name] = position
                holdsChanged = true
            case .release(let name), .droppedHold(let name, _):
                holds[name] = nil
                holdsChanged = true
            }
        }
        shared.status.withLock { state in
            state.lastSequence = lastSequence
            state.changesInMemory = overlay.active.count + (overlay.frozen?.count ?? 0)
            state.firstRetained = firstRetained
            if !stagedApplied.isEmpty { state.applied = applied }
            if holdsChanged {
                state.holds = holds
                for case .droppedHold(let name, let position) in metaChanges { state.droppedHolds[name] = position }
                for case .hold(let name, _) in metaChanges { state.droppedHolds[name] = nil }
            }
        }
        for session in endedThisBatch { ended.insert(session) }
        commitListings()
        if digestReady && (!ownDeltas.isEmpty || !peerTouched.isEmpty) {
            shared.digests.withLock { [ownDeltas, peerTouched] in
                $0.noteChanges(own: ownDeltas, touchedByPeer: peerTouched)
            }
        }
        if digestReady && (!records.isEmpty || !stagedApplied.isEmpty) { recordDigestPoint() }
        var kinds = [Int](repeating: 0, count: Event.Kind.allCases.count + 1)
        for (_, range) in records {
            let kind = Int(buffer[range.lowerBound + 1])
            if kind < kinds.count { kinds[kind] += 1 }
        }
        let result = Applied(
            records: records.count,
            lastSequence: lastSequence,
            peerNotices: peerNotices,
            peerUpdates: peerUpdates,
            kinds: kinds
        )
        metaChanges.removeAll(keepingCapacity: true)
        records.removeAll(keepingCapacity: true)
        return result
    }

    /// A batch with nothing to write ends: a snapshot's sessions that changed nothing were listed all the same.
    func applyWithoutWrites() { commitListings() }

    /// The users table on disk holds everything through `position` now.
    func checkpointed(at position: UInt64) {
        checkpointSequence = position
        shared.status.withLock { $0.checkpointSequence = position }
        deadlines.removeAll { $0.generation.sequence <= position }
    }

    /// The peers whose stream this store applied.
    var appliedPeers: Dictionary<DeviceID, UInt64>.Keys { applied.keys }

    /// Takes the state a wipe left on disk (a demotion's reset to `newTerm`, or the repair of a damaged store).
    func adopt(_ wipe: Wipe, term newTerm: UInt32) {
        // The logouts logged again change nothing in the empty table: it stands at the last of them.
        var empty = ChangeSet()
        empty.throughSequence = wipe.last
        overlay.load(empty, count: 0)
        lastSequence = wipe.last
        ownThrough = wipe.last
        checkpointSequence = wipe.through
        firstRetained = wipe.last > wipe.through ? wipe.through + 1 : nil
        holds = wipe.holds
        applied = [:]
        appliedHistory = [:]
        installing = wipe.installing
        installs += 1
        everything = []
        recoveredThrough = [:]
        recoveringFrom = wipe.through
        deadlines = DeadlineHeap()
        // `ended` stays: a session that ended here must not come back with the peer's snapshot either.
        listed = [:]
        digest = 0
        digestReady = true
        // The logouts logged again changed nothing here, but the peer's copy of what they end may still hold it.
        shared.digests.withLock {
            $0.removeAll()
            $0.forgetOwnChanges(through: wipe.last)
        }
        shared.identity.withLock {
            $0.term = newTerm
            $0.takeovers = Takeovers()
            $0.history = wipe.history
        }
        shared.status.withLock { [firstRetained, installs] in
            $0.lastSequence = wipe.last
            $0.checkpointSequence = wipe.through
            $0.firstRetained = firstRetained
            $0.holds = wipe.holds
            $0.droppedHolds = [:]
            $0.applied = [:]
            $0.appliedHistory = [:]
            $0.installing = wipe.installing
            $0.installs = installs
            $0.recoveringFrom = wipe.through
            $0.recoveredFrom = [:]
            $0.changesInMemory = 0
        }
    }

    /// Computes the digest of the whole users table once; each commit keeps it current from then on.
    func initializeDigest() -> Result<Void, SessionStoreError> {
        guard !digestReady else { return .success(()) }
        beginBatch()
        do {
            digest = try files.usersEnvironment.read { txn in try tableDigest(txn: txn) }
        } catch let error as SessionStoreError {
            return .failure(error)
        } catch {
            return .failure(SessionStoreError.storage(error, doing: "reading the users table"))
        }
        digestReady = true
        shared.digests.withLock { [ownThrough] in $0.forgetOwnChanges(through: ownThrough) }
        recordDigestPoint()
        return .success(())
    }

    /// Notes the digest of the table as it stands after a commit, with the positions it stands at.
    private func recordDigestPoint() {
        let point = DigestHistory.Point(
            through: lastSequence,
            applied: applied,
            appliedHistory: appliedHistory,
            value: digest,
            ownThrough: ownThrough,
            returnedThrough: returnedThrough,
            installs: installs,
            whole: installing.isEmpty
        )
        shared.digests.withLock { $0.append(point) }
    }

    /// Takes the listings of a batch that committed.
    private func commitListings() {
        for peer in listingBegun { listed[peer] = [] }
        for (peer, addresses) in listedThisBatch { listed[peer, default: []].formUnion(addresses) }
        for peer in listingEnded { listed[peer] = nil }
    }

    // MARK: - Staging: what a staging step reads and changes (nothing is applied until the batch commits)

    /// The session online at `ip` as this batch has staged it so far.
    func resolve(_ ip: IPAddress, txn: borrowing ReadTransaction) throws(SessionStoreError) -> Session? {
        if let index = staged[ip] { return changes[index].session }
        if let entry = overlay.writerEntry(for: ip) { return entry.session }
        do {
            return try files.baseSession(ip, in: txn)
        } catch {
            throw SessionStoreError.storage(error, doing: "reading the users table")
        }
    }

    /// Logs this device's logout of the session online at `ip` as this batch has staged it so far, and stages its
    /// end; `nil` when no session is online there. The session is read from its stored bytes
    /// (``withStoredSession(at:txn:_:)``): a logout does not decode it.
    func stageLogout(
        at ip: IPAddress,
        reason: LogoutReason,
        time: Timestamp,
        txn: borrowing ReadTransaction
    ) throws(SessionStoreError) -> Logout? {
        try withStoredSession(at: ip, txn: txn) { value throws(SessionStoreError) in
            stageLogout(of: try peekStoredSessionFields(value, ip: ip), at: ip, reason: reason, time: time)
        }
    }

    /// Runs `body` with the users-table value of the session online at `ip` as this batch has staged it so far,
    /// without decoding it: the bytes in memory or in the users table (valid during `body` only); `nil`, without
    /// running `body`, when no session is online there.
    func withStoredSession<T>(
        at ip: IPAddress,
        txn: borrowing ReadTransaction,
        _ body: (UnsafeRawBufferPointer) throws(SessionStoreError) -> T
    ) throws(SessionStoreError) -> T? {
        let value: [UInt8]
        if let index = staged[ip] {
            guard case .online(let stored) = changes[index].stored else { return nil }
            value = stored
        } else if let entry = overlay.writerStoredEntry(for: ip) {
            guard case .online(let stored) = entry else { return nil }
            value = stored
        } else {
            var result: Result<T?, SessionStoreError> = .success(nil)
            do {
                try ip.withUnsafeBytes { key in
                    try txn.withValue(forKey: key, in: files.users) { stored in
                        guard let stored else { return }
                        result = Result { () throws(SessionStoreError) in try body(stored) }
                    }
                }
            } catch {
                throw SessionStoreError.storage(error, doing: "reading the users table")
            }
            return try result.get()
        }
        var result: Result<T, SessionStoreError>?
        value.withUnsafeBytes { bytes in result = Result { () throws(SessionStoreError) in try body(bytes) } }
        return try result!.get()
    }

    /// ``stageLogout(_:reason:time:)`` of the session at `ip` whose stored value holds `fields`
    /// (``peekStoredSessionFields(_:ip:)``), without decoding it.
    func stageLogout(
        of fields: borrowing RecordCodec.SessionValueFields,
        at ip: IPAddress,
        reason: LogoutReason,
        time: Timestamp
    ) -> Logout {
        let userName = String(decoding: fields.userName, as: UTF8.self)  // checked by the peek
        _ = nextSequence()
        let logout = Logout(
            ip: ip,
            mac: fields.mac,
            userName: userName,
            owner: fields.owner,
            generation: fields.generation,
            reason: reason
        )
        emit(.logout(logout), time: time)
        stageEnd(ip, of: fields)
        return logout
    }

    /// Stages the end of the session at `ip` whose stored value holds `fields`: what
    /// ``stage(_:_:replacing:resync:)`` does for `.offline`, replacing a session read from its stored bytes.
    func stageEnd(_ ip: IPAddress, of fields: borrowing RecordCodec.SessionValueFields) {
        endedThisBatch.insert(EndedSessions.Key(ip: ip, owner: fields.owner, generation: fields.generation))
        staged[ip] = changes.count
        changes.append(EncodedChange(ip, .offline(fields.generation)))
        countDelta -= 1
        if digestReady { noteDigestChange(at: ip, 0 &- TableDigest.contribution(ofFields: fields, ip: ip)) }
    }

    /// Every session online as this batch has staged it so far, but those at the addresses of `skipped` and, when
    /// `owned` is given, those whose owner and generation it refuses; neither is decoded.
    func onlineSessions(
        txn: borrowing ReadTransaction,
        skipping skipped: Set<IPAddress> = [],
        owned: ((_ owner: DeviceID, _ generation: Generation) -> Bool)? = nil
    ) throws(SessionStoreError) -> [Session] {
        var online: [Session] = []
        try forEachOnline(txn: txn, skipping: skipped) { (ip, value) throws(SessionStoreError) in
            if let owned {
                let subject = try peekStoredSessionOwner(value, ip: ip)
                guard owned(subject.owner, subject.generation) else { return }
            }
            online.append(try decodeStoredSession(value, ip: ip))
        }
        return online
    }

    /// Calls `stored` with the address and stored value of every session online as this batch has staged it so
    /// far, on disk, in memory or staged, but for those at the addresses of `skipped`.
    private func forEachOnline(
        txn: borrowing ReadTransaction,
        skipping skipped: Set<IPAddress>,
        _ stored: (IPAddress, UnsafeRawBufferPointer) throws(SessionStoreError) -> Void
    ) throws(SessionStoreError) {
        do {
            try txn.withCursor(files.users) { cursor in
                var entry = try cursor.move(.first)
                while let (key, value) = entry {
                    let ip = IPAddress(bytes: key)
                    if staged[ip] == nil && !skipped.contains(ip) && !overlay.writerHolds(ip) { try stored(ip, value) }
                    entry = try cursor.move(.next)
                }
            }
        } catch let error as SessionStoreError {
            throw error
        } catch {
            throw SessionStoreError.storage(error, doing: "reading the users table")
        }
        func visit(_ ip: IPAddress, _ entry: StoredEntry) throws(SessionStoreError) {
            guard case .online(let value) = entry else { return }
            try value.withUnsafeBytes { bytes in Result { () throws(SessionStoreError) in try stored(ip, bytes) } }
                .get()
        }
        let active = overlay.active
        for (ip, entry) in active.entries where staged[ip] == nil && !skipped.contains(ip) { try visit(ip, entry) }
        if let frozen = overlay.frozen {
            for (ip, entry) in frozen.entries where staged[ip] == nil && !active.contains(ip) && !skipped.contains(ip) {
                try visit(ip, entry)
            }
        }
        for (ip, index) in staged where !skipped.contains(ip) { try visit(ip, changes[index].stored) }
    }

    /// The digest of every session online as this batch has staged it so far (see ``TableDigest``), hashed from
    /// their stored bytes without decoding them.
    private func tableDigest(txn: borrowing ReadTransaction) throws(SessionStoreError) -> UInt64 {
        var digest: UInt64 = 0
        try forEachOnline(txn: txn, skipping: []) { (ip, value) throws(SessionStoreError) in
            digest &+= try TableDigest.contribution(ofStored: value, ip: ip)
        }
        return digest
    }

    /// Takes the next sequence for a record.
    func nextSequence() -> UInt64 {
        sequence += 1
        return sequence
    }

    /// Encodes the record at the current sequence into the batch and notes where it lies.
    func appendRecord(_ encode: (inout [UInt8]) -> Void) {
        let start = buffer.count
        encode(&buffer)
        records.append((sequence, start..<buffer.count))
        if !stagingPeer { stagedOwnThrough = sequence }
    }

    /// Notes that the record at the current sequence, staged from a peer's snapshot or a recovered event of
    /// this device's own, is about a session this device owns in effect: it goes back to the peer, whose table
    /// may not hold its change yet.
    func noteReturned() { stagedReturnedThrough = sequence }

    /// Encodes this device's own `event` at the current sequence.
    func emit(_ event: Event, time: Timestamp) {
        appendRecord { buffer in
            RecordCodec.encode(
                LogRecord(sequence: sequence, term: term, origin: origin, time: time, event: event),
                into: &buffer
            )
        }
    }

    /// Stages the new state of `ip`, which `current` held until now. `current` ends unless `resync`: a
    /// snapshot drops the peer's copy of its users only to install them again from what it lists.
    func stage(_ ip: IPAddress, _ entry: TableEntry, replacing current: Session?, resync: Bool = false) {
        // Taken out of the entry's box once: each `entry.session` copies the whole session.
        let session = entry.session
        if !resync, let current, session?.generation != current.generation || session?.owner != current.owner {
            endedThisBatch.insert(EndedSessions.Key(current))
        }
        staged[ip] = changes.count
        changes.append(EncodedChange(ip, entry))
        countDelta += (session != nil ? 1 : 0) - (current != nil ? 1 : 0)
        if digestReady {
            var delta: UInt64 = 0
            if let current { delta &-= TableDigest.contribution(of: current) }
            if let session { delta &+= TableDigest.contribution(of: session) }
            noteDigestChange(at: ip, delta)
        }
    }

    /// Adds a staged change of `ip`'s share of the digest, `delta`, to the batch's, and notes it for the
    /// digest history: as this device's own change at the current sequence, or as an address the peer's
    /// events touched.
    private func noteDigestChange(at ip: IPAddress, _ delta: UInt64) {
        digestDelta &+= delta
        if stagingPeer {
            peerTouched.append(ip)
        } else {
            ownDeltas.append(DigestHistory.OwnDelta(sequence: sequence, ip: ip, delta: delta))
        }
    }

    /// Logs this device's logout of `session` and stages its end.
    func stageLogout(_ session: Session, reason: LogoutReason, time: Timestamp) -> Logout {
        _ = nextSequence()
        let logout = Logout(ending: session, reason: reason)
        emit(.logout(logout), time: time)
        stage(session.ip, .offline(session.generation), replacing: session)
        return logout
    }

    /// Stages the session stored as `value` online at `ip`, where no session is online as this batch has staged
    /// it so far: what ``stage(_:_:replacing:resync:)`` and ``addDeadline(of:)`` do for a login that replaces
    /// nothing, with the value kept as it is. `fields` are `value`'s.
    func stageOnline(
        _ ip: IPAddress,
        stored value: UnsafeRawBufferPointer,
        _ fields: borrowing RecordCodec.SessionValueFields
    ) {
        staged[ip] = changes.count
        changes.append(EncodedChange(ip, value: Array(value), fields: fields))
        countDelta += 1
        if digestReady { noteDigestChange(at: ip, TableDigest.contribution(ofFields: fields, ip: ip)) }
        addDeadline(fields.deadline, ip: ip, generation: fields.generation)
    }

    /// Schedules the session-timeout expiry of a session staged online.
    func addDeadline(of session: Session) {
        addDeadline(session.deadline, ip: session.ip, generation: session.generation)
    }

    /// Schedules the expiry at `deadline` (none when `nil`) of the session of `generation` staged online at `ip`.
    private func addDeadline(_ deadline: Timestamp?, ip: IPAddress, generation: Generation) {
        guard let deadline else { return }
        newDeadlines.append(.init(deadline: deadline, ip: ip, generation: generation))
    }

    /// Takes the earliest deadline of a session not yet checkpointed, when it is due at `now`.
    func takeDueDeadline(now: Timestamp) -> DeadlineHeap.Item? {
        guard let top = deadlines.first, top.deadline <= now else { return nil }
        return deadlines.pop()
    }

    /// Puts back a deadline taken with ``takeDueDeadline(now:)`` whose session stays (a copy of the peer's).
    func putBackDeadline(_ item: DeadlineHeap.Item) { deadlines.push(item) }

    /// Stages a change of the log's metadata.
    func stageMeta(_ change: MetaChange) { metaChanges.append(change) }

    /// Raises this device's term.
    func raiseTerm(to newTerm: UInt32) {
        term = newTerm
        metaChanges.append(.term(newTerm))
    }

    /// Changes this device's ID for the records staged after this call.
    func changeOrigin(to newID: DeviceID) {
        metaChanges.append(.deviceID(newID))
        origin = newID
    }

    /// Records a takeover, and stages it for the log's metadata only when it is now the one in effect: one
    /// that a takeover already known covers (of a higher term, or of the same term and recorded first) changes
    /// nothing, and writing it would replace that one on disk, where the store would find it on its next open.
    func recordTakeover(_ takeover: Takeover) {
        let known = takeovers.byDevice[takeover.from]
        takeovers.record(takeover)
        if takeovers.byDevice[takeover.from] != known { metaChanges.append(.takeover(takeover)) }
    }

    /// Runs `stage` with the records it appends counted as the peer's (not this device's own).
    func stagingPeerRecords<T>(_ stage: () throws(SessionStoreError) -> T) throws(SessionStoreError) -> T {
        let before = stagingPeer
        stagingPeer = true
        defer { stagingPeer = before }
        return try stage()
    }

    /// Runs `stage` with the records it appends counted as this device's own, inside a peer's staging step.
    func stagingOwnRecords<T>(_ stage: () throws(SessionStoreError) -> T) throws(SessionStoreError) -> T {
        let before = stagingPeer
        stagingPeer = false
        defer { stagingPeer = before }
        return try stage()
    }

    /// Runs `stage`, whose own changes may repeat an earlier one the peer already has: they are marked so
    /// that a digest comparison never takes them back out of this device's digest.
    func stageRepeatingOwnChanges(_ stage: () throws(SessionStoreError) -> Void) throws(SessionStoreError) {
        let first = ownDeltas.count
        try stage()
        for index in first..<ownDeltas.count { ownDeltas[index].disturbed = true }
    }

    /// Notes, for the store's automatic logouts, an own user that the peer's events logged off or replaced.
    func notePeerNotice(_ logout: Logout) { peerNotices.append(logout) }

    /// Notes, for the store's peer updates, an own user that the peer's event updated.
    func notePeerUpdate(_ session: Session, reason: UpdateReason) {
        peerUpdates.append(PeerUpdate(session: session, reason: reason))
    }

    /// Whether `session` ended here recently (see ``EndedSessions``): a copy of it must not come back.
    func hasEnded(_ session: Session) -> Bool { hasEnded(EndedSessions.Key(session)) }

    /// Whether the session `key` names ended here recently.
    func hasEnded(_ key: EndedSessions.Key) -> Bool { endedThisBatch.contains(key) || ended.contains(key) }

    // MARK: Staging: the peers' positions, snapshot installs and recovery, as this batch leaves them

    /// How far this device has applied `peer`'s stream.
    func appliedPosition(of peer: DeviceID) -> UInt64 { stagedApplied[peer] ?? applied[peer] ?? 0 }

    /// Notes how far this device has applied `peer`'s stream, in its log's history `history` (`nil`: unchanged).
    func setApplied(_ peer: DeviceID, _ position: UInt64, history: UInt64? = nil) {
        stagedApplied[peer] = position
        metaChanges.append(.applied(peer, position))
        if let history { metaChanges.append(.appliedHistory(peer, history)) }
    }

    /// Where `peer`'s snapshot install stands: the position of its stream from which this device's copy is
    /// whole again (`.max` until its end), `nil` when the copy is whole.
    func installingPosition(of peer: DeviceID) -> UInt64? { stagedInstalling[peer] }

    /// Notes where `peer`'s snapshot install stands (see ``installingPosition(of:)``); `nil`: whole again.
    func setInstalling(_ peer: DeviceID, _ wholeFrom: UInt64?) {
        stagedInstalling[peer] = wholeFrom
        metaChanges.append(.installing(peer, wholeFrom))
    }

    /// Whether `peer`'s snapshot being installed is one of everything (this device recovers from it).
    func installsEverything(from peer: DeviceID) -> Bool { stagedEverything.contains(peer) }

    func setInstallsEverything(from peer: DeviceID, _ value: Bool) {
        if value { stagedEverything.insert(peer) } else { stagedEverything.remove(peer) }
    }

    /// Whether `peer`'s current snapshot keeps this device's copy of its users (it lists no sessions).
    func keepsCopy(of peer: DeviceID) -> Bool { stagedKeeping.contains(peer) }

    func setKeepsCopy(of peer: DeviceID, _ value: Bool) {
        if value { stagedKeeping.insert(peer) } else { stagedKeeping.remove(peer) }
    }

    /// Through which sequence of `peer`'s, its stream carries this device's own changes (after a snapshot of
    /// everything).
    func recoveredThrough(from peer: DeviceID) -> UInt64? { stagedRecoveredThrough[peer] }

    func setRecoveredThrough(from peer: DeviceID, _ position: UInt64?) { stagedRecoveredThrough[peer] = position }

    /// Notes that the snapshot `peer` sends began: the sessions it replaces stay until its end.
    func beginListing(_ peer: DeviceID) {
        listingBegun.insert(peer)
        listingEnded.remove(peer)
        listedThisBatch[peer] = []
    }

    /// Notes that the snapshot `peer` sends lists `ip`.
    func noteListed(_ ip: IPAddress, by peer: DeviceID) {
        listedThisBatch[peer, default: []].append(ip)
    }

    /// The addresses the snapshot `peer` sends listed so far.
    func listedSoFar(by peer: DeviceID) -> Set<IPAddress> {
        var addresses = listingBegun.contains(peer) ? [] : listed[peer] ?? []
        addresses.formUnion(listedThisBatch[peer] ?? [])
        return addresses
    }

    /// Notes that the snapshot `peer` sends ended: what it listed is forgotten.
    func endListing(_ peer: DeviceID) {
        listingEnded.insert(peer)
    }
}

@available(*, unavailable)
extension WriterState: Sendable {}
