import LMDB
import Logging

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A log-structured store of the online portal users of one device.
///
/// Every change is an event appended to the device's log; the users table (lookups by address, MAC and
/// user name) reflects every committed event. Writes from any number of concurrent callers are
/// group-committed: one LMDB transaction and one sync carry all the events pending at that moment, and each
/// caller resumes once its own event is durable under the store's ``Durability``.
///
/// ```swift
/// let store = try SessionStore.open(
///     at: "/var/lib/portal/tandem",
///     configuration: .init(deviceID: 1, portalGroup: "campus"))
/// let session = try await store.login(Session(
///     ip: IPAddress("10.1.2.3")!, mac: MACAddress("00:11:22:33:44:55")!, userName: "alice",
///     vlan: 100, accessInterface: "GigabitEthernet1/0/1", portalGroup: "campus", owner: 1,
///     sessionTimeout: 3600))
/// let found = try store.session(for: session.ip)   // the session, with its generation
/// try await store.logout(session.ip, reason: .user)
/// await store.close()
/// ```
///
/// Lookups are synchronous and never wait for the writer. Writes are `async`, and a write that has been
/// submitted completes even if its task is cancelled. Close the store with ``close()`` to checkpoint it,
/// so that the next open has nothing to replay.
public final class SessionStore: Sendable {
    /// The directory that holds the store.
    public let path: String
    /// The configuration the store was opened with.
    public let configuration: Configuration
    let files: StoreFiles
    private let overlay: Overlay
    let writer: LogWriter

    /// The logouts of this device's users that its controller did not ask for, in batches, so that the
    /// controller can remove them from its data plane: sessions past their session-timeout deadline (logged
    /// out every ``Configuration/expiryInterval``), and, in a failover pair, this device's users that the
    /// peer logged out (R7: `portal delete-user` on the device holding the backup copy) or replaced with a
    /// newer session of the same address (reason ``LogoutReason/superseded``). One consumer; if it falls more than 4,096 batches behind, the oldest are dropped from
    /// this sequence (never from the log). It finishes when the store closes.
    public let automaticLogouts: AsyncStream<[Logout]>

    /// The updates of this device's users that reached it from the peer, in batches: a RADIUS CoA or an
    /// accounting report handled by the device that holds the backup copy (R9, a backup source IP), so that the
    /// controller installs the new authorization. Each carries the session as it is now. One consumer; if it
    /// falls more than 4,096 batches behind, the oldest are dropped from this sequence (never from the log). It
    /// finishes when the store closes.
    public let peerUpdates: AsyncStream<[PeerUpdate]>

    private init(
        path: String,
        configuration: Configuration,
        files: StoreFiles,
        overlay: Overlay,
        writer: LogWriter,
        automaticLogouts: AsyncStream<[Logout]>,
        peerUpdates: AsyncStream<[PeerUpdate]>
    ) {
        self.automaticLogouts = automaticLogouts
        self.peerUpdates = peerUpdates
        self.path = path
        self.configuration = configuration
        self.files = files
        self.overlay = overlay
        self.writer = writer
    }

    deinit {
        writer.closeWithoutWaiting()
    }

    // MARK: - Opening

    /// Opens the store in directory `path`, creating it when it does not exist.
    ///
    /// After a crash, opening restores exactly the committed state: the users table as of its last
    /// checkpoint plus the events logged after it, replayed in memory.
    ///
    /// - Parameters:
    ///   - path: the store's directory; its parent must exist.
    ///   - configuration: the device ID, the portal group and the tuning of the store.
    ///   - logger: where the store logs (at `.info` and below, errors at `.error`).
    /// - Returns: the open store, ready for reads and writes.
    /// - Throws: ``SessionStoreError`` of kind ``SessionStoreError/Kind/deviceIDMismatch`` or
    ///   ``SessionStoreError/Kind/portalGroupMismatch`` when the store belongs to another device or group,
    ///   ``SessionStoreError/Kind/notAStore`` when `path` is something else,
    ///   ``SessionStoreError/Kind/unsupportedFormat`` when a newer Tandem wrote the store,
    ///   ``SessionStoreError/Kind/logGap``, ``SessionStoreError/Kind/corruptRecord`` or
    ///   ``SessionStoreError/Kind/corruptMetadata`` when the files are damaged, and
    ///   ``SessionStoreError/Kind/storage`` when the files cannot be opened or read.
    public static func open(
        at path: String,
        configuration: Configuration,
        logger: Logger = Logger(label: "tandem.store")
    ) throws(SessionStoreError) -> SessionStore {
        try prepareDirectory(path)
        let files: StoreFiles
        do {
            files = try StoreFiles(
                path: path,
                durability: configuration.durability,
                initialMapSize: configuration.initialMapSize,
                readOnly: false
            )
        } catch {
            throw SessionStoreError.storage(error, doing: "opening the store at \(path)")
        }
        let recovery = try Recovery(files: files, logger: logger)
        var identity = try recovery.establishIdentity(configuration: configuration)
        var overlay = Overlay()
        let recovered: LogWriter.Recovered
        do {
            recovered = try recovery.replay(into: overlay, identity: identity)
        } catch
            where configuration.onDamage == .recoverFromPeer && (error.kind == .corruptRecord || error.kind == .logGap)
        {
            // The log after the checkpoint cannot be replayed: empty the store, keep the logouts that can be
            // read, and recover the users from the peer.
            logger.error(
                "the log is damaged: the store is emptied, and recovers this device's users from the peer",
                metadata: ["tandem.error": "\(error)", "tandem.path": "\(path)"]
            )
            _ = try Wipe.perform(
                files: files,
                me: identity.deviceID,
                term: identity.term,
                keepThrough: 0,
                peers: Wipe.knownPeers(files)
            )
            identity = try recovery.establishIdentity(configuration: configuration)
            overlay = Overlay()
            recovered = try recovery.replay(into: overlay, identity: identity)
        }
        let (automaticLogouts, continuation) = AsyncStream.makeStream(
            of: [Logout].self,
            bufferingPolicy: .bufferingNewest(4096)
        )
        let (peerUpdates, updatesContinuation) = AsyncStream.makeStream(
            of: [PeerUpdate].self,
            bufferingPolicy: .bufferingNewest(4096)
        )
        let writer = LogWriter(
            files: files,
            overlay: overlay,
            configuration: configuration,
            logger: logger,
            recovered: recovered,
            automaticLogouts: continuation,
            peerUpdates: updatesContinuation
        )
        writer.start()
        logger.info(
            "session store open",
            metadata: [
                "tandem.path": "\(path)", "tandem.device_id": "\(identity.deviceID)",
                "tandem.users": "\(overlay.onlineCount.load(ordering: .relaxed))",
                "tandem.log.last_sequence": "\(recovered.lastSequence)",
                "tandem.checkpoint.sequence": "\(recovered.checkpointSequence)",
            ]
        )
        return SessionStore(
            path: path,
            configuration: configuration,
            files: files,
            overlay: overlay,
            writer: writer,
            automaticLogouts: automaticLogouts,
            peerUpdates: peerUpdates
        )
    }

    private static func prepareDirectory(_ path: String) throws(SessionStoreError) {
        var info = stat()
        if stat(path, &info) != 0 {
            guard mkdir(path, 0o755) == 0 else {
                let detail =
                    errno == ENOENT
                    ? "it does not exist and neither does its parent directory; create the parent first"
                    : "it does not exist and cannot be created: \(String(cString: strerror(errno)))"
                throw SessionStoreError(.notAStore(path: path, detail: detail))
            }
            return
        }
        guard (info.st_mode & S_IFMT) == S_IFDIR else {
            throw SessionStoreError(.notAStore(path: path, detail: "it is a file, not a directory"))
        }
        let hasLog = access(path + "/" + StoreLayout.logFile, F_OK) == 0
        let hasUsers = access(path + "/" + StoreLayout.usersFile, F_OK) == 0
        if hasLog != hasUsers {
            let missing = hasLog ? StoreLayout.usersFile : StoreLayout.logFile
            throw SessionStoreError(
                .notAStore(path: path, detail: "\(missing) is missing; restore the whole directory from a backup")
            )
        }
    }

    /// Closes the store: pending writes finish, everything in memory is checkpointed into the users table,
    /// and the store's threads stop. Later calls fail with ``SessionStoreError/Kind/closed``.
    public func close() async {
        await writer.close()
    }

    // MARK: - Identity

    /// This device's ID (R4): the one the store was opened with, or the new one after
    /// ``changeDeviceID(to:)``.
    public var deviceID: DeviceID { writer.shared.identity.withLock { $0.deviceID } }
    /// The portal group this store backs up (R5).
    public var portalGroup: PortalGroup { writer.shared.identity.withLock { $0.portalGroup } }
    /// The current term; promotion raises it.
    public var term: UInt32 { writer.shared.identity.withLock { $0.term } }

    // MARK: - Writes

    /// Logs a user in.
    ///
    /// - Parameter session: the new session; its ``Session/owner`` must be this device, and its
    ///   ``Session/generation`` is assigned by the store.
    /// - Returns: the session as stored, with its generation.
    /// - Throws: ``SessionStoreError`` of kind ``SessionStoreError/Kind/invalidSession`` (with the field),
    ///   ``SessionStoreError/Kind/foreignPortalGroup``, ``SessionStoreError/Kind/invalidArgument`` when the
    ///   session's owner is not this device, ``SessionStoreError/Kind/alreadyOnline``,
    ///   ``SessionStoreError/Kind/storage`` (nothing was stored) or ``SessionStoreError/Kind/closed``.
    @discardableResult
    public func login(_ session: Session) async throws(SessionStoreError) -> Session {
        if let refusal = refusal(of: session) { throw refusal }
        return try await writer.login(session).get()
    }

    /// Logs many users in with one call: one request to the writer and one resumption for all of them,
    /// which is how a controller keeps up with a burst of RADIUS Access-Accepts.
    ///
    /// Each session is checked and logged in as by ``login(_:)``; one refused session (invalid, or its
    /// address already online) does not stop the others. All that are accepted go into the same group
    /// commit.
    ///
    /// ```swift
    /// for (session, result) in zip(accepted, try await store.login(contentsOf: accepted)) {
    ///     if case .failure(let error) = result { print("\(session.ip): \(error)") }
    /// }
    /// ```
    ///
    /// - Parameter sessions: the new sessions.
    /// - Returns: for each session, in order, the session as stored or why it was refused.
    /// - Throws: ``SessionStoreError`` of kind ``SessionStoreError/Kind/storage`` when the commit failed
    ///   (then none was stored) or ``SessionStoreError/Kind/closed``.
    public func login(
        contentsOf sessions: [Session]
    ) async throws(SessionStoreError)
        -> [Result<Session, SessionStoreError>]
    {
        var results: [Result<Session, SessionStoreError>] = []
        results.reserveCapacity(sessions.count)
        var accepted: [Session] = []
        accepted.reserveCapacity(sessions.count)
        var positions: [Int] = []
        for (position, session) in sessions.enumerated() {
            if let refusal = refusal(of: session) {
                results.append(.failure(refusal))
            } else {
                results.append(.failure(SessionStoreError(.closed)))  // replaced below
                accepted.append(session)
                positions.append(position)
            }
        }
        guard !accepted.isEmpty else { return results }
        let stored = try await writer.loginBatch(accepted).get()
        for (position, result) in zip(positions, stored) { results[position] = result }
        return results
    }

    /// Logs many users off with one call; see ``login(contentsOf:)``.
    ///
    /// - Parameter logouts: the addresses of the online users, each with its reason.
    /// - Returns: for each address, in order, the logout as logged or why it was refused (not online).
    /// - Throws: ``SessionStoreError`` of kind ``SessionStoreError/Kind/storage`` when the commit failed
    ///   (then none was logged) or ``SessionStoreError/Kind/closed``.
    public func logout(
        contentsOf logouts: [(IPAddress, LogoutReason)]
    ) async throws(SessionStoreError)
        -> [Result<Logout, SessionStoreError>]
    {
        guard !logouts.isEmpty else { return [] }
        return try await writer.logoutBatch(logouts).get()
    }

    /// Why `session` cannot be logged in, found without asking the writer; `nil` when it may be.
    private func refusal(of session: Session) -> SessionStoreError? {
        do {
            try session.validate(statefulFailover: configuration.statefulFailover)
        } catch {
            return SessionStoreError(.invalidSession(error))
        }
        guard session.portalGroup == configuration.portalGroup else {
            return SessionStoreError(
                .foreignPortalGroup(session: session.portalGroup, store: configuration.portalGroup)
            )
        }
        return nil
    }

    /// Logs the user at `ip` off (R7), whichever way the logoff came.
    ///
    /// - Parameters:
    ///   - ip: the address of the online user.
    ///   - reason: who or what logged the user off; it is kept in the log.
    /// - Returns: the logout as logged.
    /// - Throws: ``SessionStoreError`` of kind ``SessionStoreError/Kind/notOnline``,
    ///   ``SessionStoreError/Kind/storage`` or ``SessionStoreError/Kind/closed``.
    @discardableResult
    public func logout(_ ip: IPAddress, reason: LogoutReason) async throws(SessionStoreError) -> Logout {
        try await loggedLogout(ip, reason: reason).logout
    }

    /// Logs a user out (see ``logout(_:reason:)``), and returns the sequence of the logout's record too.
    package func loggedLogout(_ ip: IPAddress, reason: LogoutReason) async throws(SessionStoreError) -> LoggedLogout {
        try await writer.logout(ip, reason: reason).get()
    }

    /// Changes an online session: its authorization and timeouts (a RADIUS CoA, a re-authentication), its
    /// accounting state (an accounting interim report) or its last activity.
    ///
    /// The change is logged and replicated like a login, on either device of a pair: an update made on the
    /// device that holds the backup copy (a CoA sent to the backup source IP, R9) reaches the owner, whose
    /// controller hears of it on ``peerUpdates``. A device that takes the user over gets the session as the
    /// last update left it.
    ///
    /// ```swift
    /// var granted = session.authorization
    /// granted.acl = .name("guests")
    /// let now = try await store.update(.changeOfAuthorization(session.ip, granted, sessionTimeout: 3600))
    /// ```
    ///
    /// - Parameter change: what changes, and for which session.
    /// - Returns: the session as it is after the change.
    /// - Throws: ``SessionStoreError`` of kind ``SessionStoreError/Kind/notOnline`` when no session is online at
    ///   the address (or not the one of `change.generation`: a change that arrives after the logout stores
    ///   nothing), ``SessionStoreError/Kind/invalidSession`` naming a field that breaks its rule,
    ///   ``SessionStoreError/Kind/invalidArgument`` when the change sets nothing,
    ///   ``SessionStoreError/Kind/storage`` (nothing was stored) or ``SessionStoreError/Kind/closed``.
    @discardableResult
    public func update(_ change: SessionUpdate) async throws(SessionStoreError) -> Session {
        try await loggedUpdate(change).session
    }

    /// Changes an online session (see ``update(_:)``), and returns the sequence of the update's record too.
    package func loggedUpdate(_ change: SessionUpdate) async throws(SessionStoreError) -> LoggedUpdate {
        if let refusal = Self.refusal(of: change) { throw refusal }
        return try await writer.update(change).get()
    }

    /// Changes many online sessions with one call: one request to the writer and one commit for all of them,
    /// which is how a controller sends an accounting round for a million users without a million round trips.
    ///
    /// Each change is checked and made as by ``update(_:)``; one refused change does not stop the others.
    ///
    /// ```swift
    /// let round = users.map { SessionUpdate.accountingInterim($0.ip, $0.counters, lastActivity: $0.seen) }
    /// for (change, result) in zip(round, try await store.update(contentsOf: round)) {
    ///     if case .failure(let error) = result { print("\(change.ip): \(error)") }
    /// }
    /// ```
    ///
    /// - Parameter changes: the changes.
    /// - Returns: for each change, in order, the session after it or why it was refused.
    /// - Throws: ``SessionStoreError`` of kind ``SessionStoreError/Kind/storage`` when the commit failed (then
    ///   none was stored) or ``SessionStoreError/Kind/closed``.
    public func update(
        contentsOf changes: [SessionUpdate]
    ) async throws(SessionStoreError) -> [Result<Session, SessionStoreError>] {
        var results: [Result<Session, SessionStoreError>] = []
        results.reserveCapacity(changes.count)
        var accepted: [SessionUpdate] = []
        accepted.reserveCapacity(changes.count)
        var positions: [Int] = []
        for (position, change) in changes.enumerated() {
            if let refusal = Self.refusal(of: change) {
                results.append(.failure(refusal))
            } else {
                results.append(.failure(SessionStoreError(.closed)))  // replaced below
                accepted.append(change)
                positions.append(position)
            }
        }
        guard !accepted.isEmpty else { return results }
        let stored = try await writer.updateBatch(accepted).get()
        for (position, result) in zip(positions, stored) { results[position] = result }
        return results
    }

    /// Why `change` cannot be made, found without asking the writer; `nil` when it may be.
    private static func refusal(of change: SessionUpdate) -> SessionStoreError? {
        guard change.changesSomething else {
            return SessionStoreError(
                .invalidArgument(
                    "the update of \(change.ip) changes nothing; set the authorization, a timeout, the accounting "
                        + "state or the last activity"
                )
            )
        }
        if let authorization = change.authorization {
            do {
                try authorization.validate()
            } catch {
                return SessionStoreError(.invalidSession(error))
            }
        }
        return nil
    }

    /// Logs out every session whose session-timeout deadline is at or before `now`, with reason
    /// ``LogoutReason/sessionTimeout``. The store also does this by itself every
    /// ``Configuration/expiryInterval``, from the time it has read the deadlines of the sessions on disk after
    /// opening (about 0.5 s for 1,000,000 users on a two-core machine); a call of this method waits for them.
    ///
    /// - Parameter now: the time to compare deadlines with.
    /// - Returns: the logouts logged.
    /// - Throws: ``SessionStoreError`` of kind ``SessionStoreError/Kind/storage`` (nothing was logged out) or
    ///   ``SessionStoreError/Kind/closed``.
    @discardableResult
    public func expireSessions(asOf now: Timestamp = .now) async throws(SessionStoreError) -> [Logout] {
        // The deadlines of the sessions on disk are read into memory after the store opens.
        await overlay.tableIndexes.whenBuilt()
        return try await writer.expire(now).get()
    }

    /// Changes this device's ID (R4). Every online user is logged off through logged events (reason
    /// ``LogoutReason/deviceIDChange``), followed by a device-ID change event, all in one commit.
    ///
    /// Save the controller's configuration and restart the device afterwards (R11), opening the store with
    /// the new ID.
    ///
    /// - Parameter newID: the new device ID.
    /// - Returns: how many users were logged off.
    /// - Throws: ``SessionStoreError`` of kind ``SessionStoreError/Kind/sameDeviceID`` when `newID` is the
    ///   current ID, ``SessionStoreError/Kind/storage`` (nothing changed: no user was logged off) or
    ///   ``SessionStoreError/Kind/closed``.
    @discardableResult
    public func changeDeviceID(to newID: DeviceID) async throws(SessionStoreError) -> Int {
        try await writer.changeDeviceID(to: newID).get()
    }

    /// Writes everything committed so far into the users table on disk.
    ///
    /// A checkpoint that fails (a full disk, for example) is retried until it succeeds, so this call waits
    /// meanwhile; the changes stay in memory and in the log.
    ///
    /// - Returns: the log position the users table is checkpointed through.
    /// - Throws: ``SessionStoreError`` of kind ``SessionStoreError/Kind/closed``, or
    ///   ``SessionStoreError/Kind/storage`` when the checkpoint failed for good while the store closed.
    @discardableResult
    public func checkpoint() async throws(SessionStoreError) -> UInt64 {
        try await writer.checkpoint().get()
    }

    // MARK: - Lookups

    /// The number of online users.
    public var count: Int { overlay.onlineCount.load(ordering: .relaxed) }

    /// The online session at `ip`, or `nil`.
    ///
    /// Reads memory and a read transaction of the users table; it never waits for a commit.
    ///
    /// - Parameter ip: the user's address.
    /// - Returns: the session, with its generation, or `nil` when no online user holds `ip`.
    /// - Throws: ``SessionStoreError`` of kind ``SessionStoreError/Kind/storage`` when the users table cannot be
    ///   read, or ``SessionStoreError/Kind/corruptRecord`` when the stored session is damaged.
    public func session(for ip: IPAddress) throws(SessionStoreError) -> Session? {
        // A miss in memory means the address last changed in a checkpoint that committed before this
        // moment, which the read transaction opened next sees.
        if let entry = overlay.entry(for: ip) { return entry.session(at: ip) }
        do {
            return try files.usersEnvironment.read { txn in try files.baseSession(ip, in: txn) }
        } catch {
            throw SessionStoreError.storage(error, doing: "reading the users table")
        }
    }

    /// The online sessions with MAC address `mac`, in address order.
    ///
    /// The indexes of the sessions on disk are kept in memory, built when the store opens (about 0.5 s for
    /// 1,000,000 users on a two-core machine); a call made before then waits for them.
    ///
    /// - Parameter mac: the MAC address of the user's device.
    /// - Returns: the sessions, empty when no online user has `mac`.
    /// - Throws: ``SessionStoreError`` of kind ``SessionStoreError/Kind/storage`` when the users table cannot be
    ///   read, or ``SessionStoreError/Kind/corruptRecord`` when a stored session is damaged.
    public func sessions(withMAC mac: MACAddress) throws(SessionStoreError) -> [Session] {
        try indexedLookup(
            onDisk: .mac(mac),
            inMemory: { $0.candidates(mac: mac) },
            matches: { $0.mac == mac }
        )
    }

    /// The online sessions of user `userName`, in address order.
    ///
    /// Like ``sessions(withMAC:)``, a call made before the store has built its indexes after opening waits
    /// for them.
    ///
    /// - Parameter userName: the user name, compared byte for byte.
    /// - Returns: the sessions, empty when the user is not online.
    /// - Throws: ``SessionStoreError`` of kind ``SessionStoreError/Kind/storage`` when the users table cannot be
    ///   read, or ``SessionStoreError/Kind/corruptRecord`` when a stored session is damaged.
    public func sessions(withUserName userName: String) throws(SessionStoreError) -> [Session] {
        try indexedLookup(
            onDisk: .userName(userName),
            inMemory: { $0.candidates(userName: userName) },
            matches: { $0.userName == userName }
        )
    }

    /// The sessions among the candidates that `matches` accepts: those of the sessions on disk, which
    /// ``TableIndexes`` keeps, and those of the changes in memory.
    ///
    /// A checkpoint changes the indexed entries of only the addresses in its frozen change set, which a reader
    /// takes from memory until the set is dropped; the lookup is retried when a set was dropped meanwhile.
    private func indexedLookup(
        onDisk key: TableIndexes.Key,
        inMemory candidates: (borrowing ChangeSet) -> [IPAddress],
        matches: (Session) -> Bool
    ) throws(SessionStoreError) -> [Session] {
        do {
            while true {
                let droppedBefore = overlay.withLock { _, _, _, dropped in dropped }
                let found: [Session]? = try files.usersEnvironment.read { txn in
                    let fromDisk = try overlay.tableIndexes.candidates(key)
                    // Candidates and their in-memory entries at one instant; retried if a checkpoint was
                    // dropped since the read transaction began, so memory and disk fit together.
                    let memory: (Set<IPAddress>, [IPAddress: StoredEntry])? = overlay.withLock {
                        active,
                        frozen,
                        _,
                        dropped in
                        guard dropped == droppedBefore else { return nil }
                        var all = Set(fromDisk)
                        all.formUnion(candidates(active))
                        if let frozen { all.formUnion(candidates(frozen)) }
                        var entries: [IPAddress: StoredEntry] = [:]
                        for ip in all {
                            if let entry = active.entries[ip] ?? frozen?.entries[ip] { entries[ip] = entry }
                        }
                        return (all, entries)
                    }
                    guard let (all, entries) = memory else { return nil }
                    var sessions: [Session] = []
                    for ip in all.sorted() {
                        let session = try entries[ip].map { $0.session(at: ip) } ?? files.baseSession(ip, in: txn)
                        if let session, matches(session) { sessions.append(session) }
                    }
                    return sessions
                }
                if let found { return found }
            }
        } catch {
            throw SessionStoreError.storage(error, doing: "reading the users table")
        }
    }

    /// Calls `body` with every online session, in address order, as of one instant.
    ///
    /// The walk reads a snapshot: writes go on meanwhile, unseen by it.
    ///
    /// The walk holds a read transaction of the users table for its whole length: keep `body` short.
    ///
    /// - Parameter body: called once per session; a throw stops the walk and is rethrown.
    /// - Throws: what `body` throws; ``SessionStoreError`` of kind ``SessionStoreError/Kind/corruptRecord`` when
    ///   a stored session is damaged; `LMDBError` when the users table cannot be read.
    public func forEachSession(_ body: (Session) throws -> Void) throws {
        try forEachSession(where: { _, _ in true }, body)
    }

    /// Calls `body` with every online session that `include` accepts, in address order, as of one instant.
    ///
    /// `include` sees a session's owner and the term of its generation, read from the stored value without
    /// decoding the rest of it: only the sessions it accepts are decoded. The handover after a takeover walks
    /// this way, with ``Takeovers/effectiveOwner(owner:term:)``.
    ///
    /// - Parameters:
    ///   - include: whether a session of this owner and generation term is wanted.
    ///   - body: called once per wanted session; a throw stops the walk and is rethrown.
    /// - Throws: what ``forEachSession(_:)`` throws.
    public func forEachSession(
        where include: (_ owner: DeviceID, _ term: UInt32) -> Bool,
        _ body: (Session) throws -> Void
    ) throws {
        do {
            try walkSessions(include, body)
        } catch let error as LMDBError {
            throw SessionStoreError.storage(error, doing: "reading the users table")
        }
    }

    /// Hands every online session that `include` accepts to `body` in batches of at most `batchSize`, as of
    /// one instant, decoded on two threads: the calling one and one of the store's, `tandem-decode`. The
    /// handover after a takeover walks this way.
    ///
    /// The calling thread walks the users table and the changes in memory in address order, reads each
    /// session's owner and term (as ``forEachSession(where:_:)`` does) and gathers the stored bytes of the
    /// sessions `include` accepts. Each full batch goes to the other thread, unless a batch already waits
    /// there: then the calling thread decodes it itself. The sessions of a batch are in address order; the
    /// batches come in no set order, and `body` may run on both threads at once.
    ///
    /// ```swift
    /// let handedOver = Locked(0)
    /// try store.forEachSessionBatch(where: { owner, _ in owner == peer }, batchSize: 16_384) { batch in
    ///     handedOver.withLock { $0 += batch.count }
    ///     continuation.yield(batch)
    /// }
    /// ```
    ///
    /// - Parameters:
    ///   - include: whether a session of this owner and generation term is wanted.
    ///   - batchSize: the most sessions of one batch, at least 1.
    ///   - body: called once per batch, never with an empty one.
    /// - Throws: ``SessionStoreError`` of kind ``SessionStoreError/Kind/corruptRecord`` when a stored session
    ///   is damaged (the batches handed over before it stay handed over), of kind
    ///   ``SessionStoreError/Kind/storage`` when the users table cannot be read.
    public func forEachSessionBatch(
        where include: (_ owner: DeviceID, _ term: UInt32) -> Bool,
        batchSize: Int,
        _ body: @escaping @Sendable ([Session]) -> Void
    ) throws {
        precondition(batchSize > 0, "a batch holds at least one session")
        let decoder = BatchDecoder(deliver: body)
        var gathered = StoredSessions(capacity: batchSize)
        do {
            try walkStoredSessions(include) { value, ip in
                gathered.append(value, ip: ip)
                guard gathered.count == batchSize else { return }
                if let failure = decoder.failed { throw failure }
                if let left = decoder.offer(gathered) { body(try left.decoded()) }
                gathered = StoredSessions(capacity: batchSize)
            }
            if gathered.count > 0 { body(try gathered.decoded()) }
        } catch {
            _ = decoder.finish()
            if let error = error as? LMDBError {
                throw SessionStoreError.storage(error, doing: "reading the users table")
            }
            throw error
        }
        if let failure = decoder.finish() { throw failure }
    }

    private func walkSessions(
        _ include: (_ owner: DeviceID, _ term: UInt32) -> Bool,
        _ body: (Session) throws -> Void
    ) throws {
        try walkStoredSessions(include) { value, ip in try body(try decodeStoredSession(value, ip: ip)) }
    }

    /// Calls `accepted` with the stored value of every online session that `include` accepts, in address order,
    /// as of one instant: the users table read in one transaction, overlaid with the changes in memory.
    private func walkStoredSessions(
        _ include: (_ owner: DeviceID, _ term: UInt32) -> Bool,
        _ accepted: (UnsafeRawBufferPointer, IPAddress) throws -> Void
    ) throws {
        // A session's owner and term are read from the value first: `accepted` sees only those `include` takes.
        func visit(_ value: UnsafeRawBufferPointer, ip: IPAddress) throws {
            let subject = try peekStoredSessionOwner(value, ip: ip)
            if include(subject.owner, subject.generation.term) { try accepted(value, ip) }
        }
        func visit(_ entry: StoredEntry, ip: IPAddress) throws {
            if case .online(let value) = entry { try value.withUnsafeBytes { try visit($0, ip: ip) } }
        }
        while true {
            let (active, frozen, handedOff) = overlay.withLock { active, frozen, handedOff, _ in
                (copy active, copy frozen, handedOff)
            }
            let done: Bool = try files.usersEnvironment.read { txn in
                // The snapshot holds at most the checkpoint of `frozen`; retry if a newer one started before it.
                guard overlay.withLock({ _, _, handed, _ in handed }) == handedOff else { return false }
                var memory: [(IPAddress, StoredEntry)] = []
                memory.reserveCapacity(active.count + (frozen?.count ?? 0))
                for (ip, entry) in active.entries { memory.append((ip, entry)) }
                if let frozen {
                    for (ip, entry) in frozen.entries where !active.contains(ip) { memory.append((ip, entry)) }
                }
                memory.sort { $0.0 < $1.0 }
                var next = 0
                try txn.withCursor(files.users) { cursor in
                    var entry = try cursor.move(.first)
                    while let (key, value) = entry {
                        let ip = IPAddress(bytes: key)
                        while next < memory.count, memory[next].0 < ip {
                            try visit(memory[next].1, ip: memory[next].0)
                            next += 1
                        }
                        if next < memory.count, memory[next].0 == ip {
                            try visit(memory[next].1, ip: ip)
                            next += 1
                        } else {
                            try visit(value, ip: ip)
                        }
                        entry = try cursor.move(.next)
                    }
                }
                while next < memory.count {
                    try visit(memory[next].1, ip: memory[next].0)
                    next += 1
                }
                return true
            }
            if done { return }
        }
    }

    /// The online sessions whose RADIUS NAS IP is `nasIP`, in address order: the users of a backup source IP
    /// (R9), which must not be deleted from the configuration while any uses it (R11).
    ///
    /// ```swift
    /// let users = try store.sessions(withNASIP: backupSourceIP)
    /// guard users.isEmpty else { throw ConfigurationError("\(users.count) online users use \(backupSourceIP)") }
    /// ```
    ///
    /// It reads every session (as ``forEachSession(_:)`` does): a configuration check, not a per-packet one.
    ///
    /// - Parameter nasIP: the NAS IP.
    /// - Returns: the sessions, empty when no online user has it.
    /// - Throws: what ``forEachSession(_:)`` throws.
    public func sessions(withNASIP nasIP: IPAddress) throws -> [Session] {
        var sessions: [Session] = []
        try forEachSession { if $0.radius.nasIP == nasIP { sessions.append($0) } }
        return sessions
    }

    /// Every online session, in address order (a convenience over ``forEachSession(_:)``).
    ///
    /// - Returns: the sessions online at one instant.
    /// - Throws: what ``forEachSession(_:)`` throws.
    public func allSessions() throws -> [Session] {
        var sessions: [Session] = []
        sessions.reserveCapacity(count)
        try forEachSession { sessions.append($0) }
        return sessions
    }

    // MARK: - The log

    /// Calls `body` with each log record from sequence `first` through `last`, in order, from a snapshot of
    /// the log.
    ///
    /// - Parameters:
    ///   - first: the first sequence wanted; `nil` (the default) starts at the first record the log still
    ///     holds (see ``LogStatus/firstRetainedSequence``).
    ///   - last: the last sequence wanted.
    ///   - body: called once per record; return `false` to stop.
    /// - Throws: what `body` throws; ``SessionStoreError`` of kind ``SessionStoreError/Kind/logTruncated`` when
    ///   `first` was logged but is no longer in the log (truncated behind a checkpoint), of kind
    ///   ``SessionStoreError/Kind/corruptRecord`` when an entry is damaged, and of kind
    ///   ``SessionStoreError/Kind/storage`` when the log cannot be read.
    public func forEachLogRecord(
        from first: UInt64? = nil,
        through last: UInt64 = .max,
        _ body: (LogRecord) throws -> Bool
    ) throws {
        let logged = writer.shared.status.withLock { $0.lastSequence }
        do {
            try files.logEnvironment.read { txn in
                try txn.withCursor(files.log) { cursor in
                    var entry = try withUnsafeBytes(of: StoreLayout.sequenceKey(first ?? 0)) {
                        try cursor.seek(atLeast: $0)
                    }
                    if let first, first <= logged {
                        let found = entry.flatMap { StoreLayout.decodeSequenceKey($0.key) }
                        if found != first {
                            throw SessionStoreError(.logTruncated(requested: first, firstRetained: found ?? logged + 1))
                        }
                    }
                    while let (key, value) = entry {
                        let record = try decodeLogEntry(key: key, value: value)
                        guard record.sequence <= last, try body(record) else { return }
                        entry = try cursor.move(.next)
                    }
                }
            }
        } catch let error as LMDBError {
            throw SessionStoreError.storage(error, doing: "reading the log")
        }
    }

    /// Keeps log records from sequence `first` on until ``releaseLog(_:)``, for a reader such as a peer
    /// that has not yet acknowledged them. Holds survive restarts. Past
    /// ``Configuration/logQuotaBytes`` a hold is dropped loudly and listed in ``LogStatus/droppedHolds``.
    ///
    /// - Parameters:
    ///   - name: the holder's name; a second hold of the same name moves it.
    ///   - first: the first sequence to keep.
    /// - Throws: ``SessionStoreError`` of kind ``SessionStoreError/Kind/logTruncated`` when the log no longer
    ///   holds `first`, ``SessionStoreError/Kind/storage`` or ``SessionStoreError/Kind/closed``.
    public func holdLog(_ name: String, from first: UInt64) async throws(SessionStoreError) {
        try await writer.hold(name, from: first).get()
    }

    /// Releases a hold taken with ``holdLog(_:from:)``; the log behind the checkpoint is then truncated.
    ///
    /// - Parameter name: the holder's name.
    /// - Throws: ``SessionStoreError`` of kind ``SessionStoreError/Kind/storage`` or
    ///   ``SessionStoreError/Kind/closed``.
    public func releaseLog(_ name: String) async throws(SessionStoreError) {
        try await writer.release(name).get()
    }

    /// Where the log stands.
    public var logStatus: LogStatus {
        let state = writer.shared.status.withLock { $0 }
        let bytes = files.retainedLogBytes()
        return LogStatus(
            lastSequence: state.lastSequence,
            checkpointSequence: state.checkpointSequence,
            firstRetainedSequence: state.firstRetained,
            holds: state.holds,
            droppedHolds: state.droppedHolds,
            logBytes: bytes,
            quotaBytes: configuration.logQuotaBytes,
            changesInMemory: state.changesInMemory,
            peerApplied: state.applied,
            checkpointFailure: writer.checkpointFailure
        )
    }

    /// The bytes the store's files take on disk.
    public var diskUsage: DiskUsage {
        func size(_ file: String) -> Int {
            var info = stat()
            return stat(path + "/" + file, &info) == 0 ? Int(info.st_blocks) * 512 : 0
        }
        return DiskUsage(logBytes: size(StoreLayout.logFile), usersBytes: size(StoreLayout.usersFile))
    }

    /// Writes a compacted, consistent copy of the store into directory `destination`, which must not
    /// exist. The copy opens as a store of its own (a backup, or a copy for `tandem log` to inspect).
    ///
    /// - Parameter destination: the directory to create.
    /// - Throws: ``SessionStoreError`` of kind ``SessionStoreError/Kind/invalidArgument`` when `destination`
    ///   cannot be created (it exists, for example), ``SessionStoreError/Kind/storage`` when the copy fails, or
    ///   ``SessionStoreError/Kind/closed``.
    public func copy(to destination: String) async throws(SessionStoreError) {
        guard mkdir(destination, 0o755) == 0 else {
            throw SessionStoreError(
                .invalidArgument("cannot create \(destination): \(String(cString: strerror(errno)))")
            )
        }
        // Hold the log after the checkpoint as the writer sees it when placing the hold, so that the log
        // copied after the users table still continues it.
        let holdName = "copy-\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
        try await writer.hold(holdName, from: nil).get()
        do {
            try files.usersEnvironment.copy(to: destination + "/" + StoreLayout.usersFile, compact: true)
            try files.logEnvironment.copy(to: destination + "/" + StoreLayout.logFile, compact: true)
        } catch {
            try? await releaseLog(holdName)
            throw SessionStoreError.storage(error, doing: "copying the store to \(destination)")
        }
        try await releaseLog(holdName)
    }
}

/// Where a store's log stands.
public struct LogStatus: Sendable, Hashable {
    /// The sequence of the last event logged (0 when none was).
    public var lastSequence: UInt64
    /// The sequence the users table on disk is checkpointed through.
    public var checkpointSequence: UInt64
    /// The first sequence still in the log, or `nil` when the log holds nothing.
    public var firstRetainedSequence: UInt64?
    /// The holds keeping the log, by holder: the first sequence each needs.
    public var holds: [String: UInt64]
    /// Holds dropped because the log passed its quota: their holders must resynchronize in full.
    public var droppedHolds: [String: UInt64]
    /// The bytes the retained log takes.
    public var logBytes: Int
    /// The most log kept for holders.
    public var quotaBytes: Int
    /// The changed users held in memory, not yet checkpointed into the users table, as of the last commit.
    public var changesInMemory: Int
    /// How far this device has applied each peer's stream: the peer's sequence it acknowledges.
    public var peerApplied: [DeviceID: UInt64]
    /// Why checkpoints into the users table are failing (a full disk, say), while they retry: the changes
    /// stay in memory and in the log meanwhile. `nil` once one commits.
    public var checkpointFailure: String?
}

/// The bytes a store's files take on disk.
public struct DiskUsage: Sendable, Hashable {
    /// The log file.
    public var logBytes: Int
    /// The users table file.
    public var usersBytes: Int
    /// Both files.
    public var totalBytes: Int { logBytes + usersBytes }
}
