import NIOCore
import SessionStore

/// Replication over one negotiated connection to the peer: four tasks that move bytes and call the store, and
/// ask the node's ``ReplicationStateMachine`` what to do.
///
/// - The reader takes the peer's frames: its stream request, acknowledgements, digest requests and matches,
///   resync requests, and the stream and snapshot frames it decodes and queues for the applier.
/// - The applier commits what the reader queued, all the frames waiting at once in one commit, and
///   acknowledges it.
/// - The sender streams this device's log to the peer: a snapshot first when the peer needs one, then the
///   records as they commit, with a digest point when the peer asked for one.
/// - The digest requester asks the peer for digest points.
///
/// The connection ends when the reader's stream ends and the applier has committed everything the reader
/// received, or at the first failure of any of them (a demotion ends it on purpose).
struct ReplicationConnection: Sendable {
    let context: ReplicationContext
    let link: LinkConnection

    private var peer: DeviceID { link.peer.deviceID }
    private var store: SessionStore { context.store }
    private var configuration: FailoverNode.Configuration { context.configuration }

    /// The tasks of a connection.
    private enum Role: Sendable { case reader, applier, sender, digests }

    func run() async {
        let id = context.machine.withLock { machine in
            machine.connectionStarted(peer: peer, installsBase: store.snapshotInstalls)
            return machine.connectionID
        }
        defer { context.machine.withLock { $0.connectionEnded(id) } }
        do {
            try await link.channel.executeThenClose { inbound, outbound in
                let request = StreamRequest(
                    term: store.term,
                    history: store.historyID,
                    applied: store.peerPosition(peer),
                    adoptedYouAt: store.takeovers.byDevice[peer].flatMap { $0.to == store.deviceID ? $0.term : nil }
                        ?? 0,
                    recovering: store.isRecovering
                )
                try await outbound.write(request.frame())
                let queue = ApplyQueue()
                let (started, start) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
                try await withThrowingTaskGroup(of: Role.self) { group in
                    group.addTask {
                        try await receive(inbound, outbound, queue: queue, start: start)
                        return .reader
                    }
                    group.addTask {
                        try await apply(outbound, queue: queue)
                        return .applier
                    }
                    group.addTask {
                        // The sender starts once the peer's stream request came.
                        for await _ in started { break }
                        try await send(outbound)
                        return .sender
                    }
                    group.addTask {
                        try await requestDigests(outbound)
                        return .digests
                    }
                    // The connection ends when the applier has committed everything the reader received
                    // before the peer went away, or at the first failure.
                    while let finished = try await group.next(), finished == .reader {}
                    group.cancelAll()
                }
            }
        } catch is CancellationError {
        } catch {
            context.logger.info("replication connection ended", metadata: ["tandem.error": "\(error)"])
        }
    }

    // MARK: - The reader

    /// Reads the peer's frames. Stream and snapshot frames are decoded here and queued for ``apply``; the
    /// others are handled at once.
    private func receive(
        _ inbound: NIOAsyncChannelInboundStream<Frame>,
        _ outbound: NIOAsyncChannelOutboundWriter<Frame>,
        queue: ApplyQueue,
        start: AsyncStream<Void>.Continuation
    ) async throws {
        for try await frame in inbound {
            try Task.checkCancellation()
            switch frame.type {
            case .streamRequest:
                let request = try StreamRequest.decode(frame.payload)
                context.peer.withLock { $0.term = request.term }
                let standing = ReplicationStateMachine.Standing(
                    deviceID: store.deviceID,
                    term: store.term,
                    history: store.historyID,
                    takeoverOfPeer: store.takeovers.byDevice[peer]
                )
                switch context.machine.withLock({ $0.streamRequested(request, standing: standing) }) {
                case .demote(let term, let keepThrough):
                    try await context.demote(term: term, keepThrough: keepThrough, peer: peer)
                case .stream(let acknowledged):
                    context.acks.reset(to: acknowledged)
                    context.lag.clearPending()
                    start.yield()
                }
            case .records, .snapshotBegin, .snapshotSessions, .snapshotEnd, .digest:
                if let work = try PeerWork.decode(frame) { await queue.push(work) }
            case .ack:
                let sequence = try SequenceMessage.decode(frame.payload, .ack)
                context.acks.acknowledge(sequence)
                context.machine.withLock { $0.acknowledged(sequence) }
                for sample in context.lag.acknowledged(sequence, at: .now) { context.lagTimer.record(duration: sample) }
            case .digestRequest:
                guard frame.payload.readableBytes == 0 else {
                    throw LinkError(.malformed("a digest request with a payload"))
                }
                context.machine.withLock { $0.peerRequestedDigest() }
                context.commits.poke()
            case .digestMatch:
                let message = try DigestMatchMessage.decode(frame.payload)
                let installs = store.snapshotInstalls
                let installing = store.isInstallingSnapshot
                if context.machine.withLock({ $0.peerMatched(message, installs: installs, installing: installing) }) {
                    context.announceSynchronized(through: message.atYour, peerThrough: message.through)
                }
            case .resyncRequest:
                guard frame.payload.readableBytes == 0 else {
                    throw LinkError(.malformed("a resync request with a payload"))
                }
                context.forceSnapshot()
            default:
                throw LinkError(.protocolViolation("a \(frame.type) frame after negotiation"))
            }
        }
        // The connection closed: what was received is still committed before the connection ends.
        await queue.push(.finish)
    }

    // MARK: - The applier

    /// Applies what the reader queued: all the stream frames waiting at once in one commit, then one ack.
    private func apply(_ outbound: NIOAsyncChannelOutboundWriter<Frame>, queue: ApplyQueue) async throws {
        func batch(_ work: PeerWork) -> PeerBatch {
            // The peer's stream request, which names its history, comes before any of its stream.
            work.batch(origin: peer, history: context.machine.withLock { $0.peerHistory })!
        }
        while !Task.isCancelled {
            var work = await queue.takeAll()[...]
            while let first = work.popFirst() {
                switch first {
                case .finish:
                    return
                case .records(var through, var records):
                    while case .records(let nextThrough, let more) = work.first {
                        records += more
                        through = nextThrough
                        work.removeFirst()
                    }
                    let result = try await context.apply(batch(.records(through: through, records)))
                    let next = context.machine.withLock {
                        $0.recordsApplied(through: result.through, takeover: result.takeover)
                    }
                    switch next {
                    case .demote(let term, let keepThrough):
                        try await context.demote(term: term, keepThrough: keepThrough, peer: peer)
                    case .acknowledge(let through):
                        try await outbound.write(SequenceMessage(sequence: through).frame(.ack))
                    }
                case .snapshotBegin:
                    context.machine.withLock { $0.snapshotBegan() }
                    _ = try await context.apply(batch(first))
                case .snapshotSessions(var sessions):
                    while case .snapshotSessions(let more) = work.first {
                        sessions.append(contentsOf: more)
                        work.removeFirst()
                    }
                    _ = try await context.apply(batch(.snapshotSessions(sessions)))
                    context.machine.withLock { $0.snapshotSessionsInstalled(sessions.count) }
                case .snapshotEnd(let end):
                    let result = try await context.apply(batch(first))
                    try await outbound.write(SequenceMessage(sequence: result.through).frame(.ack))
                    // The copy is compared with the peer's table as soon as it is whole: ask for a point now.
                    let sessions = context.machine.withLock { $0.snapshotInstalled(now: .now) }
                    try await outbound.write(Frame(type: .digestRequest, payload: ByteBuffer()))
                    context.logger.info(
                        "copy of the peer's users rebuilt from its snapshot",
                        metadata: ["tandem.sessions": "\(sessions)", "tandem.position": "\(end.position)"]
                    )
                    context.events.yield(.snapshotReceived(sessions: sessions, position: end.position))
                case .digest(let point):
                    try await compare(point, outbound)
                }
            }
        }
        throw CancellationError()
    }

    // MARK: - The sender

    /// Streams this device's log to the peer, as the state machine's sender steps say.
    private func send(_ outbound: NIOAsyncChannelOutboundWriter<Frame>) async throws {
        let holdName = SessionStore.holdName(forPeer: peer)
        var start = ReplicationStateMachine.SenderStart.wait
        while start == .wait {
            let lastLogged = store.lastLoggedSequence
            start = context.machine.withLock { $0.senderStarts(lastLogged: lastLogged, now: .now) }
            if start == .wait { try await Task.sleep(for: .milliseconds(5)) }
        }
        if case .resume(let holdFrom) = start {
            do {
                try await store.holdLog(holdName, from: holdFrom)
            } catch {
                guard error.kind == .logTruncated else { throw error }
                context.machine.withLock { $0.holdFailed() }
            }
        }
        var buffer: [UInt8] = []
        buffer.reserveCapacity(configuration.batchBytes + 4096)
        while !Task.isCancelled {
            let facts = ReplicationStateMachine.SenderFacts(
                installing: store.isInstallingSnapshot,
                recovering: store.isRecovering,
                recoveredPosition: store.recoveredPosition(from: peer),
                recoveryHold: store.holdPosition(SessionStore.recoveryHold)
            )
            switch context.machine.withLock({ $0.nextSenderStep(facts, now: .now) }) {
            case .pause:
                try await Task.sleep(for: .milliseconds(5))
            case .sendSnapshot(let everything, let keep, let damaged):
                let (position, everythingThrough) = try await sendSnapshot(
                    outbound,
                    holdName: holdName,
                    everything: everything,
                    keep: keep,
                    after: damaged
                )
                context.machine.withLock { $0.snapshotSent(position: position, everythingThrough: everythingThrough) }
            case .stream(let read, let holdWork):
                if let holdWork { startHoldWork(holdWork, holdName: holdName) }
                let pokes = context.commits.pokes
                buffer.removeAll(keepingCapacity: true)
                let result: ReplicationStateMachine.ReadResult
                switch try store.readStream(
                    after: read.after,
                    for: peer,
                    everythingThrough: read.everythingThrough,
                    sentBackAfter: read.sentBackAfter,
                    maxBytes: configuration.batchBytes,
                    into: &buffer
                ) {
                case .truncated: result = .truncated
                case .damaged(let sequence): result = .damaged(sequence)
                case .records(let through, _): result = .records(through: through)
                }
                let checkpoint = store.logStatus.checkpointSequence
                switch context.machine.withLock({ $0.read(result, checkpoint: checkpoint) }) {
                case .snapshot:
                    context.logger.warning(
                        "the log no longer holds what the peer needs (past its quota, or emptied): full resync",
                        metadata: ["tandem.peer.applied": "\(read.after)"]
                    )
                case .snapshotAfterDamage(let checkpointFirst):
                    if case .damaged(let sequence) = result {
                        context.logger.error(
                            """
                            record \(sequence) of this device's log is damaged and cannot be sent: the peer gets a \
                            snapshot taken after it (run `tandem log verify` on this store)
                            """,
                            metadata: ["tandem.sequence": "\(sequence)"]
                        )
                    }
                    // The snapshot must come from a table that holds the damaged record's change.
                    if checkpointFirst { _ = try await store.checkpoint() }
                case .send(let through):
                    try await outbound.write(RecordsMessage.frame(through: through, records: buffer))
                    _ = try await answerDigestRequest(outbound)
                case .caughtUp:
                    guard try await !answerDigestRequest(outbound) else { break }
                    // Caught up. A digest request waits for a point at a commit's end; the point is noted just
                    // after the commit, so look again shortly rather than at the next commit.
                    if context.machine.withLock({ $0.verification.peerRequested }) {
                        try await Task.sleep(for: .milliseconds(2))
                    } else {
                        await context.commits.wait(beyond: read.after, pokesSeen: pokes)
                    }
                }
            }
        }
        throw CancellationError()
    }

    /// Starts a change of the log's holds off the stream's path: moving a hold is a commit of its own, which
    /// the next batch must not wait for. It may outlive the connection; the next connection's sender waits
    /// for it.
    private func startHoldWork(_ work: ReplicationStateMachine.HoldWork, holdName: String) {
        let (store, peer, context) = (store, peer, context)
        Task {
            switch work {
            case .forgetRecovery: try? await store.forgetRecovery(from: peer)
            case .releaseRecoveryHold: try? await store.releaseLog(SessionStore.recoveryHold)
            case .moveHold(let from): try? await store.holdLog(holdName, from: from)
            }
            context.machine.withLock { $0.holdWorkEnded() }
        }
    }

    /// Sends a snapshot of this device's users (of every session it holds, for `everything`), and returns the
    /// position the stream goes on after, never before `damaged` (a damaged record of the log the snapshot's
    /// table already holds), and the sequence through which that stream must carry every record.
    private func sendSnapshot(
        _ outbound: NIOAsyncChannelOutboundWriter<Frame>,
        holdName: String,
        everything: Bool,
        keep: Bool,
        after damaged: UInt64
    ) async throws -> (position: UInt64, everythingThrough: UInt64) {
        let heldFrom = try await store.holdAfterCheckpoint(holdName)
        try await outbound.write(
            SnapshotBeginMessage.frame(
                takeovers: Array(store.takeovers.byDevice.values),
                everything: everything,
                keep: keep
            )
        )
        var after: IPAddress?
        var checkpoint: UInt64?
        var sessions = 0
        var buffer: [UInt8] = []
        if keep { checkpoint = store.logStatus.checkpointSequence }
        while !keep {
            try Task.checkCancellation()
            buffer.removeAll(keepingCapacity: true)
            let read = try store.readSnapshot(
                after: after,
                maxSessions: configuration.snapshotBatch,
                everything: everything,
                into: &buffer
            )
            if checkpoint == nil { checkpoint = read.checkpoint }
            if read.count > 0 {
                var payload = ByteBuffer()
                payload.writeBytes(buffer)
                try await outbound.write(Frame(type: .snapshotSessions, payload: payload))
            }
            sessions += read.count
            after = read.last
            if after == nil { break }
        }
        // The stream goes on from the checkpoint of the first read, or from an earlier hold: a demotion holds
        // the logouts it logged again there, and a device that recovered its own events since it began to.
        let recovery = store.holdPosition(SessionStore.recoveryHold) ?? .max
        let position = max(min(checkpoint ?? 0, heldFrom - 1, recovery - 1), damaged)
        let end = SnapshotEndMessage.closing(
            position: position,
            lastLogged: store.lastLoggedSequence,
            everything: everything
        )
        try await outbound.write(end.frame())
        context.snapshotCounter.increment()
        context.logger.info(
            "snapshot of this device's users sent to the peer",
            metadata: ["tandem.sessions": "\(sessions)", "tandem.position": "\(position)"]
        )
        context.events.yield(.snapshotSent(sessions: sessions, position: position))
        return (position, end.everythingThrough)
    }

    // MARK: - Digests

    /// Asks the peer for a digest point whenever the state machine says.
    private func requestDigests(_ outbound: NIOAsyncChannelOutboundWriter<Frame>) async throws {
        let interval = configuration.digestInterval
        while !Task.isCancelled {
            if let delay = context.machine.withLock({ $0.digestRequestDelay(now: .now, interval: interval) }) {
                try await Task.sleep(for: delay)
                continue
            }
            try await outbound.write(Frame(type: .digestRequest, payload: ByteBuffer()))
        }
    }

    /// Sends the digest point at the sender's position when the peer asked for one and this device's table
    /// stood there whole; returns whether it did.
    private func answerDigestRequest(_ outbound: NIOAsyncChannelOutboundWriter<Frame>) async throws -> Bool {
        let (requested, position) = context.machine.withLock { ($0.verification.peerRequested, $0.senderPosition) }
        guard requested else { return false }
        let installing = store.isInstallingSnapshot
        let point = installing ? nil : store.withDigestHistory { $0.latest(through: position) }
        guard let message = context.machine.withLock({ $0.digestPointToSend(installing: installing, point: point) })
        else { return false }
        try await outbound.write(message.frame())
        return true
    }

    /// Compares this device's table with the peer's digest point, which arrived after every record through
    /// it was applied here.
    private func compare(_ peerPoint: DigestMessage, _ outbound: NIOAsyncChannelOutboundWriter<Frame>) async throws {
        let installing = store.isInstallingSnapshot
        let logHistory = store.historyID
        // Compared under the digests' lock (taken inside the machine's; the writer takes the digests' alone). While
        // a snapshot is being installed, the comparison reads no history.
        let action = context.machine.withLock { machine in
            store.withDigestHistory { history in
                machine.compare(peerPoint, history: history, logHistory: logHistory, installing: installing, now: .now)
            }
        }
        switch action {
        case .nothing:
            return
        case .match(let message, let synchronized):
            try await outbound.write(message.frame())
            if synchronized { context.announceSynchronized(through: message.through, peerThrough: peerPoint.through) }
        case .mismatch(let mine, let resync):
            context.mismatchCounter.increment()
            context.logger.error(
                "the users table differs from the peer's at the same positions: both resynchronize",
                metadata: [
                    "tandem.sequence": "\(mine.through)", "tandem.peer.sequence": "\(peerPoint.through)",
                    "tandem.digest": "\(mine.value)", "tandem.peer.digest": "\(peerPoint.value)",
                    "tandem.own_through": "\(mine.ownThrough)", "tandem.peer.applied": "\(peerPoint.appliedOfYou)",
                    "tandem.installs": "\(mine.installs)",
                ]
            )
            guard resync else { return }
            context.events.yield(.digestMismatch(through: mine.through, peerThrough: peerPoint.through))
            try await outbound.write(Frame(type: .resyncRequest, payload: ByteBuffer()))
            context.forceSnapshot()
        }
    }
}
