import LMDB

// What the failover link needs from a store: its stream read out, the peer's stream applied, promotion,
// demotion and the table's digest. Package API: the `Replication` module drives it.

extension SessionStore {
    /// The takeovers this store knows (its own promotions and its peer's).
    public var takeovers: Takeovers { writer.shared.identity.withLock { $0.takeovers } }

    /// The device that owns `session` in effect: its ``Session/owner``, unless a takeover moved it since
    /// (see ``Takeover``). This device is primary for the sessions it owns in effect and holds the backup
    /// copy of the others.
    ///
    /// - Parameter session: a session of this store.
    /// - Returns: the device responsible for it.
    public func effectiveOwner(of session: Session) -> DeviceID {
        takeovers.effectiveOwner(of: session)
    }

    /// Sets the function called on the writer thread after each commit that logged records, with the last
    /// sequence; it must return at once.
    package func setCommitObserver(_ observer: (@Sendable (UInt64) -> Void)?) {
        writer.shared.commitObserver.withLock { $0 = observer.map(CommitObserver.init) }
    }

    /// Applies a batch of the peer's stream; returns once it is committed here.
    package func applyPeer(_ batch: PeerBatch) async throws(SessionStoreError) -> PeerApplied {
        try await writer.applyPeer(batch).get()
    }

    /// Takes over `peer`'s users: logs a takeover record and raises the term above `peerTerm` and this
    /// store's term.
    package func promote(over peer: DeviceID, peerTerm: UInt32) async throws(SessionStoreError) -> Promotion {
        try await writer.promote(over: peer, peerTerm: peerTerm).get()
    }

    /// Empties the store for a full resynchronization from `peer`, of term `term`: this device's events after
    /// `keepThrough` (the peer never acknowledged them) are discarded, but for its logouts, which are logged
    /// again and held for the peer under `holdName`.
    package func resetForResync(
        term: UInt32,
        keepThrough: UInt64,
        from peer: DeviceID,
        holdName: String
    ) async throws(SessionStoreError) -> Demotion {
        try await writer.resetForResync(term: term, keepThrough: keepThrough, peer: peer, holdName: holdName).get()
    }

    /// Starts keeping the users table's digest (one pass over the table, then O(1) per change). A damaged
    /// session found on the way is repaired under ``Configuration/DamagePolicy/recoverFromPeer``: the store is
    /// emptied to recover from the peer (see ``repairDamage()``).
    ///
    /// - Returns: whether the store was repaired.
    @discardableResult
    package func initializeDigest() async throws(SessionStoreError) -> Bool {
        do {
            try await writer.initializeDigest().get()
            return false
        } catch  where error.kind == .corruptRecord && configuration.onDamage == .recoverFromPeer {
            writer.logger.error("the users table is damaged", metadata: ["tandem.error": "\(error)"])
            try await repairDamage()
            try await writer.initializeDigest().get()
            return true
        }
    }

    /// Empties this store, but for the logouts it can still read (logged again), to recover its users from
    /// the peer: the repair of a damaged store.
    package func repairDamage() async throws(SessionStoreError) {
        _ = try await writer.repairDamage().get()
    }

    /// This log's history ID: random, new with the store and with each reset for a resynchronization.
    package var historyID: UInt64 { writer.shared.identity.withLock { $0.history } }

    /// How far this device applied `peer`'s stream: a position in one history of the peer's log.
    package func peerPosition(_ peer: DeviceID) -> LogPosition {
        writer.shared.status.withLock {
            LogPosition(history: $0.appliedHistory[peer] ?? 0, sequence: $0.applied[peer] ?? 0)
        }
    }

    /// The last sequence logged (without reading the log's size, as ``logStatus`` does).
    package var lastLoggedSequence: UInt64 { writer.shared.status.withLock { $0.lastSequence } }

    /// Whether a snapshot of the peer's users is being installed: until the stream after it has been applied
    /// far enough, this device's copy of the peer's users is incomplete.
    package var isInstallingSnapshot: Bool { !writer.shared.status.withLock { $0.installing.isEmpty } }

    /// Whether this device recovers its users from the peer: a new store, a demotion or a repaired damage
    /// left it without a copy it can trust of its own users, and the peer's is the best there is.
    package var isRecovering: Bool { writer.shared.status.withLock { $0.recoveringFrom != nil } }

    /// This device's sequence when it recovered from `peer`, while the peer may not have everything since:
    /// the peer holds this device's users as it sent them, so this device's next snapshot to it keeps the
    /// peer's copy instead of rebuilding it (see ``readStream(after:for:everythingThrough:sentBackAfter:maxBytes:into:)``).
    package func recoveredPosition(from peer: DeviceID) -> UInt64? {
        writer.shared.status.withLock { $0.recoveredFrom[peer] }
    }

    /// Forgets that this device recovered from `peer`: the peer has everything since.
    package func forgetRecovery(from peer: DeviceID) async throws(SessionStoreError) {
        try await writer.forgetRecovery(peer).get()
    }

    /// Where hold `name` keeps the log from (without reading the log's size, as ``logStatus`` does).
    package func holdPosition(_ name: String) -> UInt64? { writer.shared.status.withLock { $0.holds[name] } }

    /// The name of the hold that keeps a recovering device's own events until the peer has them.
    package static var recoveryHold: String { Wipe.recoveryHold }

    /// The name of the hold kept for `peer`'s stream.
    package static func holdName(forPeer peer: DeviceID) -> String { Wipe.holdName(peer) }

    /// How many snapshots of a peer's users this store began to install since it was opened (see
    /// ``DigestHistory/Point/installs``).
    package var snapshotInstalls: UInt64 { writer.shared.status.withLock { $0.installs } }

    /// A copy of the digest after recent commits, for tests and tools. The link reads it with
    /// ``withDigestHistory(_:)``, which does not copy it.
    package var digestHistory: DigestHistory { writer.shared.digests.withLock { $0 } }

    /// Runs `body` with the digest after recent commits, under the lock the writer takes to note each commit.
    ///
    /// The history is lent, not copied: a copy alive while the writer notes its next commit would make the
    /// writer copy the whole history (tens of thousands of entries) in the middle of that commit.
    package func withDigestHistory<Result: Sendable>(_ body: (borrowing DigestHistory) -> Result) -> Result {
        writer.shared.digests.withLock { body($0) }
    }

    /// Places (or moves) hold `name` at the first sequence after the current checkpoint, for a snapshot, or
    /// keeps it where it is when that is earlier and still in the log; returns where it stands.
    package func holdAfterCheckpoint(_ name: String) async throws(SessionStoreError) -> UInt64 {
        try await writer.hold(name, from: nil).get()
        return writer.shared.status.withLock { $0.holds[name] } ?? 1
    }

    // MARK: Reading the stream

    /// What ``readStream(after:for:maxBytes:into:)`` found.
    package enum StreamRead: Sendable, Equatable {
        /// Records were appended (possibly none); the stream is complete through `through`.
        case records(through: UInt64, count: Int)
        /// The log no longer holds the record after the position asked for: a snapshot is needed.
        case truncated
        /// The record after the position asked for fails its checksum: it cannot be sent, and the peer needs
        /// a snapshot taken after it.
        case damaged(sequence: UInt64)
    }

    /// Appends to `buffer` the log records after `position` that `peer` must receive, each as a 4-byte
    /// big-endian length and the record's bytes, up to about `maxBytes`.
    ///
    /// Every record of this device's own is sent. A record that came from `peer` is left out, since the peer
    /// has it, unless it is about a session this device owns in effect: a logout the peer made of one of this
    /// device's users (R7), or a login or logout of a user this device took over from the peer. The peer
    /// applies those only to its copy of this device's users, where they change nothing unless that copy was
    /// rebuilt from a snapshot that did not hold them yet. A snapshot and the stream after it thereby hold
    /// every change to this device's users, whichever device made it.
    ///
    /// For a peer that recovers its users from this device, every record through `everythingThrough` goes:
    /// its own changes to its own users, which its snapshot of everything may not hold yet, included. For a
    /// peer that keeps its copy of this device's users (this device recovered from it), none of the peer's
    /// records up to `sentBackAfter` goes back: they restored this device from the peer's own data, and
    /// sending them back would bring back, for a moment, users the peer has logged off since.
    package func readStream(
        after position: UInt64,
        for peer: DeviceID,
        everythingThrough: UInt64 = 0,
        sentBackAfter: UInt64 = 0,
        maxBytes: Int,
        into buffer: inout [UInt8]
    ) throws(SessionStoreError) -> StreamRead {
        let me = deviceID
        let takeovers = self.takeovers
        do {
            return try files.logEnvironment.read { txn in
                let last = try txn.metaUInt64(StoreLayout.MetaKey.lastSequence, in: files.logMeta) ?? 0
                return try txn.withCursor(files.log) { cursor -> StreamRead in
                    var entry = try withUnsafeBytes(of: StoreLayout.sequenceKey(position + 1)) {
                        try cursor.seek(atLeast: $0)
                    }
                    guard let first = entry, let firstSequence = StoreLayout.decodeSequenceKey(first.key) else {
                        return position >= last ? .records(through: position, count: 0) : .truncated
                    }
                    if firstSequence != position + 1 { return .truncated }
                    var through = position
                    var count = 0
                    let start = buffer.count
                    while let (key, value) = entry, buffer.count - start < maxBytes {
                        guard let sequence = StoreLayout.decodeSequenceKey(key) else { break }
                        // A damaged record is never sent: the records before it go now, the damage next time.
                        guard (try? RecordCodec.openUnit(value)) != nil else {
                            return through > position
                                ? .records(through: through, count: count) : .damaged(sequence: sequence)
                        }
                        if sequence <= everythingThrough
                            || (sequence <= sentBackAfter
                                ? RecordCodec.peekOrigin(value) != peer
                                : Self.peerMustReceive(value, peer: peer, me: me, takeovers: takeovers))
                        {
                            withUnsafeBytes(of: UInt32(value.count).bigEndian) { buffer.append(contentsOf: $0) }
                            buffer.append(contentsOf: value)
                            count += 1
                        }
                        through = sequence
                        entry = try cursor.move(.next)
                    }
                    return .records(through: through, count: count)
                }
            }
        } catch let error as SessionStoreError {
            throw error
        } catch {
            throw SessionStoreError.storage(error, doing: "reading the log for the peer")
        }
    }

    /// Whether the record `bytes` goes to `peer` (see ``readStream(after:for:maxBytes:into:)``).
    private static func peerMustReceive(
        _ bytes: UnsafeRawBufferPointer,
        peer: DeviceID,
        me: DeviceID,
        takeovers: Takeovers
    ) -> Bool {
        guard RecordCodec.peekOrigin(bytes) == peer else { return true }
        guard let subject = RecordCodec.peekSubject(bytes) else { return false }
        return takeovers.effectiveOwner(owner: subject.owner, term: subject.term) == me
    }

    /// Decodes a stream batch made by ``readStream(after:for:maxBytes:into:)``; damage anywhere
    /// fails the whole batch.
    package static func decodeStream(_ bytes: UnsafeRawBufferPointer) throws(SessionStoreError) -> [LogRecord] {
        var records: [LogRecord] = []
        var offset = 0
        while offset < bytes.count {
            let unit = try framedUnit(bytes, at: &offset, what: "peer stream")
            do throws(CorruptRecordError) {
                records.append(try RecordCodec.decodeRecord(unit))
            } catch {
                throw SessionStoreError(
                    .corruptRecord(error, location: "record \(records.count + 1) of a peer stream batch")
                )
            }
        }
        return records
    }

    // MARK: Snapshots

    /// Appends to `buffer` up to `maxSessions` sessions of the users table on disk after address `after`
    /// (from the first when `nil`) that this device owns in effect (or all of them, for `everything`), each
    /// as its 16-byte address, a 4-byte big-endian length and its stored value.
    ///
    /// A snapshot read this way in several calls is made consistent by the stream that follows it: the
    /// caller holds the log from the checkpoint the first call reports (see ``holdAfterCheckpoint(_:)``)
    /// and streams from there; replaying records onto a later state of an address changes nothing.
    ///
    /// - Returns: the last address read (`nil` at the end), the checkpoint position of the table read, and
    ///   how many sessions were appended.
    package func readSnapshot(
        after: IPAddress?,
        maxSessions: Int,
        everything: Bool = false,
        into buffer: inout [UInt8]
    ) throws(SessionStoreError) -> (last: IPAddress?, checkpoint: UInt64, count: Int) {
        let me = deviceID
        let takeovers = self.takeovers
        do {
            return try files.usersEnvironment.read { txn in
                let checkpoint = try txn.metaUInt64(StoreLayout.MetaKey.checkpointSequence, in: files.usersMeta) ?? 0
                return try txn.withCursor(files.users) { cursor in
                    var entry: (key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer)?
                    if let after {
                        entry = try after.withUnsafeBytes { try cursor.seek(atLeast: $0) }
                        if let found = entry, IPAddress(bytes: found.key) == after { entry = try cursor.move(.next) }
                    } else {
                        entry = try cursor.move(.first)
                    }
                    var last: IPAddress?
                    var read = 0
                    var count = 0
                    while let (key, value) = entry, read < maxSessions {
                        let ip = IPAddress(bytes: key)
                        // The value is checked and filtered, not decoded: the peer decodes what it receives.
                        let subject = try peekStoredSessionOwner(value, ip: ip)
                        if everything
                            || takeovers.effectiveOwner(owner: subject.owner, term: subject.generation.term) == me
                        {
                            buffer.append(contentsOf: key)
                            withUnsafeBytes(of: UInt32(value.count).bigEndian) { buffer.append(contentsOf: $0) }
                            buffer.append(contentsOf: value)
                            count += 1
                        }
                        last = ip
                        read += 1
                        entry = try cursor.move(.next)
                    }
                    return (entry == nil ? nil : last, checkpoint, count)
                }
            }
        } catch let error as SessionStoreError {
            throw error
        } catch {
            throw SessionStoreError.storage(error, doing: "reading the users table for the peer")
        }
    }

    /// The unit at `offset` of a batch of the peer's stream or snapshot, after its 4-byte big-endian length;
    /// `offset` moves past it.
    static func framedUnit(
        _ bytes: UnsafeRawBufferPointer,
        at offset: inout Int,
        what: String
    ) throws(SessionStoreError) -> UnsafeRawBufferPointer {
        guard bytes.count - offset >= 4 else {
            throw SessionStoreError(.invalidArgument("a \(what) batch ends inside a length"))
        }
        let length = Int(UInt32(bigEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self)))
        offset += 4
        guard length <= RecordCodec.maximumUnitSize, length <= bytes.count - offset else {
            throw SessionStoreError(
                .invalidArgument("a \(what) batch announces a unit of \(length) bytes; \(bytes.count - offset) remain")
            )
        }
        defer { offset += length }
        return UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + length])
    }
}
