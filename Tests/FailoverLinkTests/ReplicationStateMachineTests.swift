import SessionStore
import Testing

@testable import FailoverLink

/// The replication rules of the link, without sockets or a clock: what a stream request leads to, what the
/// stream sender does next, what applying the peer's stream leads to, and what digests lead to.
@Suite("Replication state machine")
struct ReplicationStateMachineTests {
    /// This device is 1, the peer 2; this log's history.
    static let history: UInt64 = 0xABCD
    static let t0 = ContinuousClock.now

    static func standing(term: UInt32 = 3, takeoverOfPeer: Takeover? = nil) -> ReplicationStateMachine.Standing {
        .init(deviceID: 1, term: term, history: history, takeoverOfPeer: takeoverOfPeer)
    }

    static func request(
        term: UInt32 = 3,
        applied: UInt64 = 100,
        appliedHistory: UInt64 = history,
        adoptedYouAt: UInt32 = 0,
        recovering: Bool = false
    ) -> StreamRequest {
        StreamRequest(
            term: term,
            history: 0x77,
            applied: LogPosition(history: appliedHistory, sequence: applied),
            adoptedYouAt: adoptedYouAt,
            recovering: recovering
        )
    }

    static let quiet = ReplicationStateMachine.SenderFacts(
        installing: false,
        recovering: false,
        recoveredPosition: nil,
        recoveryHold: nil
    )

    /// A machine whose connection took `request` and whose sender started on a log that ends at `lastLogged`.
    static func streaming(
        _ request: StreamRequest = request(),
        lastLogged: UInt64 = 500
    ) -> (ReplicationStateMachine, holdFrom: UInt64?) {
        var machine = ReplicationStateMachine()
        machine.connectionStarted(peer: 2, installsBase: 0)
        _ = machine.streamRequested(request, standing: standing())
        guard case .resume(let holdFrom) = machine.senderStarts(lastLogged: lastLogged, now: t0) else {
            return (machine, nil)
        }
        return (machine, holdFrom)
    }

    // MARK: The stream request

    @Test("a peer with a position in this history resumes after it, and its acknowledgements count from there")
    func resumesFromAPosition() {
        var machine = ReplicationStateMachine()
        machine.connectionStarted(peer: 2, installsBase: 0)
        #expect(!machine.senderMayStart)
        #expect(
            machine.streamRequested(Self.request(applied: 100), standing: Self.standing()) == .stream(acknowledged: 100)
        )
        #expect(machine.senderMayStart)
        #expect(machine.senderStarts(lastLogged: 500, now: Self.t0) == .resume(holdFrom: 101))
        let step = machine.nextSenderStep(Self.quiet, now: Self.t0)
        #expect(step == .stream(.init(after: 100, everythingThrough: 0, sentBackAfter: 0), holdWork: nil))
    }

    @Test(
        "a position in another history, none, or one past the log's end gets a snapshot, and nothing counts as acknowledged",
        arguments: [
            (UInt64(100), UInt64(0x1234)),  // another history of this log
            (UInt64(0), history),  // nothing of this device's yet
            (UInt64(900), history),  // past the end of a log of 500
        ] as [(UInt64, UInt64)]
    )
    func snapshotFirst(applied: UInt64, history: UInt64) {
        var machine = ReplicationStateMachine()
        machine.connectionStarted(peer: 2, installsBase: 0)
        let action = machine.streamRequested(
            Self.request(applied: applied, appliedHistory: history),
            standing: Self.standing()
        )
        #expect(action == .stream(acknowledged: history == Self.history ? applied : 0))
        #expect(machine.senderStarts(lastLogged: 500, now: Self.t0) == .snapshotFirst)
        #expect(
            machine.nextSenderStep(Self.quiet, now: Self.t0) == .sendSnapshot(everything: false, keep: false, after: 0)
        )
    }

    @Test("a recovering peer gets a snapshot of everything, whatever its position")
    func recoveringPeer() {
        var (machine, holdFrom) = Self.streaming(Self.request(applied: 100, recovering: true))
        #expect(holdFrom == nil)
        #expect(machine.peerRecovering)
        #expect(
            machine.nextSenderStep(Self.quiet, now: Self.t0) == .sendSnapshot(everything: true, keep: false, after: 0)
        )
        machine.snapshotSent(position: 480, everythingThrough: 500)
        #expect(
            machine.nextSenderStep(Self.quiet, now: Self.t0)
                == .stream(.init(after: 480, everythingThrough: 500, sentBackAfter: 0), holdWork: nil)
        )
    }

    @Test("a higher term at the peer makes this device step down, keeping what the peer applied of its log")
    func higherTermDemotes() {
        var machine = ReplicationStateMachine()
        machine.connectionStarted(peer: 2, installsBase: 0)
        #expect(
            machine.streamRequested(Self.request(term: 4, applied: 100), standing: Self.standing(term: 3))
                == .demote(term: 4, keepThrough: 100)
        )
        #expect(!machine.senderMayStart)
        #expect(
            machine.streamRequested(
                Self.request(term: 4, applied: 100, appliedHistory: 0x1234),
                standing: Self.standing(term: 3)
            ) == .demote(term: 4, keepThrough: 0)
        )
    }

    @Test("split brain at equal terms: the device with the higher ID steps down, the lower one streams")
    func splitBrain() {
        let mine = Takeover(from: 2, to: 1, term: 5)
        let request = Self.request(term: 5, adoptedYouAt: 5)
        // This device (1) has the lower ID: it wins.
        #expect(
            !ReplicationStateMachine.mustDemote(
                for: request,
                standing: Self.standing(term: 5, takeoverOfPeer: mine),
                peer: 2
            )
        )
        // Seen from device 3 against peer 2: the peer's ID is lower, so device 3 steps down.
        let standing3 = ReplicationStateMachine.Standing(
            deviceID: 3,
            term: 5,
            history: Self.history,
            takeoverOfPeer: Takeover(from: 2, to: 3, term: 5)
        )
        #expect(ReplicationStateMachine.mustDemote(for: request, standing: standing3, peer: 2))
        // Equal terms without a takeover of each other: no one steps down.
        #expect(!ReplicationStateMachine.mustDemote(for: Self.request(term: 5), standing: standing3, peer: 2))
        #expect(!ReplicationStateMachine.mustDemote(for: Self.request(term: 4), standing: standing3, peer: 2))
    }

    // MARK: The sender

    @Test("no snapshot leaves while this device installs the peer's or recovers its own, unless the peer recovers too")
    func snapshotWaits() {
        let busy = [
            ReplicationStateMachine.SenderFacts(
                installing: true,
                recovering: false,
                recoveredPosition: nil,
                recoveryHold: nil
            ),
            ReplicationStateMachine.SenderFacts(
                installing: false,
                recovering: true,
                recoveredPosition: nil,
                recoveryHold: nil
            ),
        ]
        for facts in busy {
            var (machine, _) = Self.streaming(Self.request(applied: 0))
            #expect(machine.nextSenderStep(facts, now: Self.t0) == .pause)
            #expect(machine.verification.catchUp(installing: false) == .comparingDigests)
            var (recovering, _) = Self.streaming(Self.request(applied: 0, recovering: true))
            #expect(
                recovering.nextSenderStep(facts, now: Self.t0) == .sendSnapshot(everything: true, keep: false, after: 0)
            )
        }
    }

    @Test("the first snapshot to a peer this device recovered from keeps the peer's copy; later ones list the users")
    func keepingSnapshot() {
        let recovered = ReplicationStateMachine.SenderFacts(
            installing: false,
            recovering: false,
            recoveredPosition: 300,
            recoveryHold: nil
        )
        var (machine, _) = Self.streaming(Self.request(applied: 0))
        #expect(
            machine.nextSenderStep(recovered, now: Self.t0) == .sendSnapshot(everything: false, keep: true, after: 0)
        )
        #expect(machine.verification.catchUp(installing: false) == .sendingSnapshot)
        machine.snapshotSent(position: 280, everythingThrough: 0)
        #expect(machine.snapshotsSent == 1)
        // The stream after a keeping snapshot sends back none of the peer's own records through the recovery.
        guard case .stream(let read, _) = machine.nextSenderStep(recovered, now: Self.t0) else {
            Issue.record("expected a read of the stream")
            return
        }
        #expect(read == .init(after: 280, everythingThrough: 0, sentBackAfter: 300))
        machine.forceSnapshot()
        #expect(
            machine.nextSenderStep(recovered, now: Self.t0) == .sendSnapshot(everything: false, keep: false, after: 0)
        )
    }

    @Test("a snapshot asked for while no connection runs is the first thing the next connection's sender sends")
    func forcedSnapshotWaitsForTheSender() {
        var machine = ReplicationStateMachine()
        machine.forceSnapshot()
        machine.connectionStarted(peer: 2, installsBase: 0)
        _ = machine.streamRequested(Self.request(applied: 100), standing: Self.standing())
        #expect(machine.senderStarts(lastLogged: 500, now: Self.t0) == .resume(holdFrom: 101))
        #expect(
            machine.nextSenderStep(Self.quiet, now: Self.t0) == .sendSnapshot(everything: false, keep: false, after: 0)
        )
        machine.snapshotSent(position: 400, everythingThrough: 0)
        guard case .stream = machine.nextSenderStep(Self.quiet, now: Self.t0) else {
            Issue.record("a forced snapshot was sent twice")
            return
        }
    }

    @Test("the hold follows the acknowledgements at most every 100 ms, never past the stream, one change at a time")
    func holdFollowsAcknowledgements() {
        var (machine, holdFrom) = Self.streaming(Self.request(applied: 100))
        #expect(holdFrom == 101)
        #expect(machine.read(.records(through: 200), checkpoint: 0) == .send(through: 200))
        machine.acknowledged(150)
        // Too soon after the start.
        guard case .stream(_, nil) = machine.nextSenderStep(Self.quiet, now: Self.t0.advanced(by: .milliseconds(50)))
        else {
            Issue.record("the hold moved before 100 ms")
            return
        }
        let later = Self.t0.advanced(by: .milliseconds(100))
        #expect(
            machine.nextSenderStep(Self.quiet, now: later)
                == .stream(.init(after: 200, everythingThrough: 0, sentBackAfter: 0), holdWork: .moveHold(from: 151))
        )
        // Acknowledged past the stream's position: the hold stops at what the stream still has to send.
        machine.acknowledged(400)
        let muchLater = later.advanced(by: .seconds(1))
        guard case .stream(_, nil) = machine.nextSenderStep(Self.quiet, now: muchLater) else {
            Issue.record("a second hold change started while the first ran")
            return
        }
        machine.holdWorkEnded()
        guard case .stream(_, .moveHold(from: 201)) = machine.nextSenderStep(Self.quiet, now: muchLater) else {
            Issue.record("the hold did not move to the stream's position")
            return
        }
    }

    @Test("a recovery is forgotten once the peer has what followed it, and its hold goes once this device recovered")
    func recoveryHolds() {
        var (machine, _) = Self.streaming(Self.request(applied: 100))
        let recoveredAt = ReplicationStateMachine.SenderFacts(
            installing: false,
            recovering: false,
            recoveredPosition: 120,
            recoveryHold: nil
        )
        guard case .stream(_, nil) = machine.nextSenderStep(recoveredAt, now: Self.t0) else {
            Issue.record("a recovery was forgotten before the peer had what followed it")
            return
        }
        machine.acknowledged(120)
        guard case .stream(_, .forgetRecovery) = machine.nextSenderStep(recoveredAt, now: Self.t0) else {
            Issue.record("the recovery was not forgotten")
            return
        }
        machine.holdWorkEnded()
        let held = ReplicationStateMachine.SenderFacts(
            installing: false,
            recovering: true,
            recoveredPosition: nil,
            recoveryHold: 90
        )
        guard case .stream(_, nil) = machine.nextSenderStep(held, now: Self.t0) else {
            Issue.record("the recovery's hold went while this device still recovers")
            return
        }
        var recovered = held
        recovered.recovering = false
        guard case .stream(_, .releaseRecoveryHold) = machine.nextSenderStep(recovered, now: Self.t0) else {
            Issue.record("the recovery's hold stayed")
            return
        }
    }

    @Test("a hold change an earlier connection started lands before the next connection's sender places its hold")
    func holdWorkOutlivesItsConnection() {
        var (machine, _) = Self.streaming(Self.request(applied: 100))
        #expect(machine.read(.records(through: 300), checkpoint: 0) == .send(through: 300))
        machine.acknowledged(300)
        let later = Self.t0.advanced(by: .seconds(1))
        guard case .stream(_, .moveHold(from: 301)) = machine.nextSenderStep(Self.quiet, now: later) else {
            Issue.record("the hold did not follow the acknowledgements")
            return
        }
        machine.connectionEnded(machine.connectionID)
        // The peer comes back with a new store: it needs a snapshot, streamed from the checkpoint on.
        machine.connectionStarted(peer: 2, installsBase: 0)
        _ = machine.streamRequested(
            Self.request(applied: 0, appliedHistory: 0, recovering: true),
            standing: Self.standing()
        )
        #expect(machine.holdWorkRunning)
        #expect(machine.senderStarts(lastLogged: 300, now: later) == .wait)
        #expect(machine.nextSenderStep(Self.quiet, now: later) == .pause)
        machine.holdWorkEnded()
        #expect(machine.senderStarts(lastLogged: 300, now: later) == .snapshotFirst)
        #expect(
            machine.nextSenderStep(Self.quiet, now: later) == .sendSnapshot(everything: true, keep: false, after: 0)
        )
    }

    @Test(
        "a peer that recovers gets snapshots of everything until it acknowledges the end of one, whatever asks for the next"
    )
    func everythingUntilRecovered() {
        var (machine, _) = Self.streaming(Self.request(applied: 0, appliedHistory: 0, recovering: true))
        #expect(
            machine.nextSenderStep(Self.quiet, now: Self.t0) == .sendSnapshot(everything: true, keep: false, after: 0)
        )
        machine.snapshotSent(position: 94, everythingThrough: 110)
        machine.acknowledged(94)  // the snapshot's end: its copy is not whole before 110
        #expect(machine.read(.records(through: 100), checkpoint: 100) == .send(through: 100))
        // The log lost what the stream needed before the peer had it: everything again, not this device's
        // users alone, which would end the peer's recovery without its own users.
        #expect(machine.read(.truncated, checkpoint: 110) == .snapshot)
        #expect(
            machine.nextSenderStep(Self.quiet, now: Self.t0) == .sendSnapshot(everything: true, keep: false, after: 0)
        )
        machine.snapshotSent(position: 110, everythingThrough: 120)
        // So does a resync the peer asks for, and a damaged record.
        machine.forceSnapshot()
        #expect(
            machine.nextSenderStep(Self.quiet, now: Self.t0) == .sendSnapshot(everything: true, keep: false, after: 0)
        )
        machine.snapshotSent(position: 115, everythingThrough: 125)
        #expect(machine.read(.damaged(116), checkpoint: 120) == .snapshotAfterDamage(checkpointFirst: false))
        #expect(
            machine.nextSenderStep(Self.quiet, now: Self.t0)
                == .sendSnapshot(everything: true, keep: false, after: 116)
        )
        machine.snapshotSent(position: 120, everythingThrough: 130)
        #expect(
            machine.nextSenderStep(Self.quiet, now: Self.t0)
                == .stream(.init(after: 120, everythingThrough: 130, sentBackAfter: 0), holdWork: nil)
        )
        // The stream carried the records that complete the install: the peer may have recovered, and would
        // refuse a snapshot of everything. A snapshot asked for now waits for its acknowledgement.
        #expect(machine.read(.records(through: 135), checkpoint: 130) == .send(through: 135))
        machine.forceSnapshot()
        #expect(machine.nextSenderStep(Self.quiet, now: Self.t0) == .pause)
        machine.acknowledged(129)
        #expect(machine.nextSenderStep(Self.quiet, now: Self.t0) == .pause)
        // Acknowledged through the end of the last one: the peer has recovered, and a snapshot is of this
        // device's users again.
        machine.acknowledged(130)
        #expect(
            machine.nextSenderStep(Self.quiet, now: Self.t0)
                == .sendSnapshot(everything: false, keep: false, after: 116)
        )
    }

    @Test(
        "a snapshot of everything whose end is where the log ends completes the recovery; the request's position counts for nothing"
    )
    func everythingEndingAtTheLogsEnd() {
        // The recovering peer's request names a position as far as this log goes: it counts for nothing.
        var (machine, _) = Self.streaming(Self.request(applied: 500, recovering: true))
        #expect(machine.acknowledged == 500)
        _ = machine.nextSenderStep(Self.quiet, now: Self.t0)
        machine.snapshotSent(position: 500, everythingThrough: 500)
        machine.forceSnapshot()
        #expect(machine.nextSenderStep(Self.quiet, now: Self.t0) == .pause)
        machine.acknowledged(500)  // the snapshot's end, which completed the install
        #expect(
            machine.nextSenderStep(Self.quiet, now: Self.t0) == .sendSnapshot(everything: false, keep: false, after: 0)
        )
    }

    @Test("a truncated log means a snapshot; a damaged record a snapshot from a table that holds it, streamed after it")
    func truncatedAndDamaged() {
        var (machine, _) = Self.streaming(Self.request(applied: 100))
        #expect(machine.read(.records(through: 100), checkpoint: 0) == .caughtUp)
        #expect(machine.read(.truncated, checkpoint: 0) == .snapshot)
        #expect(
            machine.nextSenderStep(Self.quiet, now: Self.t0) == .sendSnapshot(everything: false, keep: false, after: 0)
        )
        machine.snapshotSent(position: 300, everythingThrough: 0)
        #expect(machine.read(.damaged(320), checkpoint: 310) == .snapshotAfterDamage(checkpointFirst: true))
        #expect(machine.read(.damaged(305), checkpoint: 310) == .snapshotAfterDamage(checkpointFirst: false))
        #expect(
            machine.nextSenderStep(Self.quiet, now: Self.t0)
                == .sendSnapshot(everything: false, keep: false, after: 320)
        )
    }

    // MARK: Applying the peer's stream

    @Test(
        "applied records are acknowledged; a takeover of this device's users makes it step down, keeping what the peer has"
    )
    func afterApply() {
        var (machine, _) = Self.streaming(Self.request(applied: 100))
        #expect(machine.recordsApplied(through: 42, takeover: nil) == .acknowledge(42))
        let takeover = Takeover(from: 1, to: 2, term: 9)
        #expect(
            machine.recordsApplied(through: 41, takeover: takeover) == .demote(term: 9, keepThrough: 100)
        )
        machine.acknowledged(180)
        #expect(
            machine.recordsApplied(through: 41, takeover: takeover) == .demote(term: 9, keepThrough: 180)
        )
    }

    @Test("an installed snapshot counts its sessions and asks for a digest point at once")
    func snapshotInstalled() {
        var (machine, _) = Self.streaming()
        machine.snapshotBegan()
        machine.snapshotSessionsInstalled(4096)
        machine.snapshotSessionsInstalled(10)
        #expect(machine.snapshotInstalled(now: Self.t0) == 4106)
        #expect(machine.snapshotsReceived == 1)
        #expect(machine.verification.requestedAt == Self.t0)
    }

    // MARK: Digests

    static func point(through: UInt64, installs: UInt64 = 0, whole: Bool = true) -> DigestHistory.Point {
        DigestHistory.Point(
            through: through,
            applied: [2: 40],
            appliedHistory: [2: 0x77],
            value: 7,
            ownThrough: through,
            installs: installs,
            whole: whole
        )
    }

    @Test("a digest point goes to the peer only when it asked, at the sender's position, from a whole table")
    func digestPointToSend() {
        var (machine, _) = Self.streaming(Self.request(applied: 100))
        #expect(machine.read(.records(through: 150), checkpoint: 0) == .send(through: 150))
        #expect(machine.digestPointToSend(installing: false, point: Self.point(through: 150)) == nil)
        machine.peerRequestedDigest()
        #expect(machine.digestPointToSend(installing: true, point: Self.point(through: 150)) == nil)
        #expect(machine.digestPointToSend(installing: false, point: Self.point(through: 150, whole: false)) == nil)
        #expect(machine.digestPointToSend(installing: false, point: Self.point(through: 149)) == nil)
        let message = machine.digestPointToSend(installing: false, point: Self.point(through: 150))
        #expect(
            message
                == DigestMessage(through: 150, appliedOfYou: 40, appliedHistoryOfYou: 0x77, value: 7, installedOfYou: 0)
        )
        #expect(!machine.verification.peerRequested)
        // The peer's match of that point verifies the connection, once.
        let match = DigestMatchMessage(atYour: 150, through: 40, installedOfYou: 0)
        #expect(machine.peerMatched(match, installs: 0, installing: true) == false)
        #expect(machine.peerMatched(match, installs: 1, installing: false) == false)
        #expect(machine.peerMatched(match, installs: 0, installing: false) == true)
        #expect(machine.peerMatched(match, installs: 0, installing: false) == false)
        #expect(machine.catchUp(installing: false) == nil)
    }

    /// A digest history with one whole point of this device at sequence 60, having applied the peer through 40.
    static var digests: DigestHistory {
        var history = DigestHistory()
        history.append(point(through: 60))
        return history
    }

    /// Compares the peer's point of digest `value` with ``digests`` on `machine`.
    static func compare(
        _ machine: inout ReplicationStateMachine,
        value: UInt64,
        installing: Bool = false,
        at now: ContinuousClock.Instant = t0
    ) -> ReplicationStateMachine.ComparisonAction {
        machine.compare(
            peerPoint(value: value),
            history: digests,
            logHistory: history,
            installing: installing,
            now: now
        )
    }

    static func peerPoint(value: UInt64) -> DigestMessage {
        DigestMessage(through: 40, appliedOfYou: 60, appliedHistoryOfYou: history, value: value, installedOfYou: 0)
    }

    @Test(
        "equal tables are reported to the peer and verify the connection; different ones ask for a resync at most every 5 s"
    )
    func comparisons() {
        var (machine, _) = Self.streaming()
        #expect(machine.digestRequestDelay(now: Self.t0, interval: .seconds(1)) == nil)
        #expect(machine.digestRequestDelay(now: Self.t0, interval: .seconds(1)) != nil)
        let equal = Self.compare(&machine, value: 7)
        #expect(equal == .match(DigestMatchMessage(atYour: 40, through: 60, installedOfYou: 0), synchronized: true))
        #expect(machine.catchUp(installing: false) == nil)
        #expect(machine.catchUp(installing: true) == .receivingSnapshot)
        let again = Self.compare(&machine, value: 7)
        #expect(again == .match(DigestMatchMessage(atYour: 40, through: 60, installedOfYou: 0), synchronized: false))
        #expect(
            Self.compare(&machine, value: 7, installing: true) == .nothing
        )
        #expect(machine.digestsCompared == 2)

        let differ = Self.compare(&machine, value: 8)
        #expect(differ == .mismatch(Self.point(through: 60), resync: true))
        #expect(machine.catchUp(installing: false) == .comparingDigests)
        let soon = Self.t0.advanced(by: .seconds(4))
        #expect(
            Self.compare(&machine, value: 8, at: soon) == .mismatch(Self.point(through: 60), resync: false)
        )
        let later = Self.t0.advanced(by: .seconds(5))
        #expect(
            Self.compare(&machine, value: 8, at: later) == .mismatch(Self.point(through: 60), resync: true)
        )
        #expect(machine.digestMismatches == 3)
        #expect(machine.digestsCompared == 5)
    }

    @Test("without a running connection nothing is known of the tables, whatever the last one found")
    func connectionEnds() {
        var (machine, _) = Self.streaming()
        _ = Self.compare(&machine, value: 7)
        #expect(machine.catchUp(installing: false) == nil)
        let id = machine.connectionID
        machine.connectionEnded(id + 1)  // not the current one
        #expect(machine.catchUp(installing: false) == nil)
        machine.connectionEnded(id)
        #expect(machine.catchUp(installing: false) == .comparingDigests)
        machine.connectionStarted(peer: 2, installsBase: 0)
        #expect(machine.catchUp(installing: false) == .comparingDigests)
        #expect(machine.connectionID == id + 1)
        #expect(machine.digestsCompared == 1)
    }
}
