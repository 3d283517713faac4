import SessionStore
import Testing

@testable import FailoverLink

/// The rules that decide when the pair is in synchronization, without sockets: the comparison of two digest
/// points and the state of one connection's verification.
@Suite("Digest comparison and verification rules")
struct VerificationTests {
    static let history: UInt64 = 0xABCD

    static func point(
        through: UInt64 = 50,
        applied: UInt64 = 40,
        value: UInt64 = 7,
        ownThrough: UInt64 = 30,
        installs: UInt64 = 0,
        whole: Bool = true
    ) -> DigestHistory.Point {
        DigestHistory.Point(
            through: through,
            applied: [2: applied],
            appliedHistory: [2: 99],
            value: value,
            ownThrough: ownThrough,
            installs: installs,
            whole: whole
        )
    }

    static func peer(
        appliedOfYou: UInt64 = 35,
        history: UInt64 = history,
        value: UInt64 = 7,
        installed: UInt32 = 0
    )
        -> DigestMessage
    {
        DigestMessage(
            through: 40,
            appliedOfYou: appliedOfYou,
            appliedHistoryOfYou: history,
            value: value,
            installedOfYou: installed
        )
    }

    /// A history holding `point`, with own changes of `deltas` (sequence, change) before it.
    static func digests(_ point: DigestHistory.Point, own deltas: [(UInt64, UInt64)] = []) -> DigestHistory {
        var history = DigestHistory()
        history.noteChanges(
            own: deltas.map { DigestHistory.OwnDelta(sequence: $0.0, ip: IPAddress(ipv4: UInt32($0.0)), delta: $0.1) },
            touchedByPeer: []
        )
        history.append(point)
        return history
    }

    static func compare(_ peer: DigestMessage, _ history: DigestHistory, sent: UInt32 = 0) -> DigestComparison {
        DigestComparison.compare(peer, with: history, peer: 2, history: Self.history, snapshotsSent: sent)
    }

    @Test("points that hold the same changes are compared: equal digests match, different ones differ")
    func comparable() {
        let mine = Self.point(applied: 40, ownThrough: 30)
        let history = Self.digests(mine)
        #expect(Self.compare(Self.peer(), history) == .equal(mine))
        #expect(Self.compare(Self.peer(value: 8), history) == .differ(mine))
    }

    @Test(
        "a point that holds records of this device's users from the peer's snapshot is compared only once the peer has applied them"
    )
    func returnedRecords() {
        var returned = Self.point(ownThrough: 30)
        returned.returnedThrough = 45
        let history = Self.digests(returned)
        #expect(Self.compare(Self.peer(appliedOfYou: 44), history) == .inconclusive)
        #expect(Self.compare(Self.peer(appliedOfYou: 45), history) == .equal(returned))
        #expect(Self.compare(Self.peer(appliedOfYou: 45, value: 8), history) == .differ(returned))
    }

    @Test("own changes the peer had not seen are taken back out of this device's digest before comparing")
    func ownChangesTakenOut() {
        // The peer had this device's stream through 35; changes 36 and 38 came after.
        let mine = Self.point(applied: 40, value: 7 &+ 100 &+ 5, ownThrough: 38)
        let history = Self.digests(mine, own: [(20, 1), (36, 100), (38, 5)])
        #expect(Self.compare(Self.peer(appliedOfYou: 35), history) == .equal(mine))
        #expect(Self.compare(Self.peer(appliedOfYou: 36), history) == .differ(mine))
        // A change a peer's event touched since cannot be taken out: no comparison.
        var touched = history
        touched.noteChanges(own: [], touchedByPeer: [IPAddress(ipv4: 38)])
        #expect(Self.compare(Self.peer(appliedOfYou: 35), touched) == .inconclusive)
    }

    @Test(
        "no comparison when the peer's position counts in another history, before it installed every snapshot sent, or past what the history remembers"
    )
    func inconclusive() {
        let settled = Self.point()
        let history = Self.digests(settled)
        #expect(Self.compare(Self.peer(history: 5), history) == .inconclusive)
        #expect(Self.compare(Self.peer(), history, sent: 1) == .inconclusive)
        #expect(Self.compare(Self.peer(installed: 1), history, sent: 1) == .equal(settled))
        #expect(Self.compare(Self.peer(), DigestHistory()) == .inconclusive)
        // Position 0 is the same in every history: nothing of this device's.
        let fresh = Self.point(ownThrough: 0)
        #expect(Self.compare(Self.peer(appliedOfYou: 0, history: 0), Self.digests(fresh)) == .equal(fresh))
        // Own changes older than the ones kept cannot be taken out.
        let count = UInt64(DigestHistory.ownCapacity + 1)
        var forgetful = DigestHistory()
        forgetful.noteChanges(
            own: (1...count).map { DigestHistory.OwnDelta(sequence: $0, ip: IPAddress(ipv4: UInt32($0)), delta: 1) },
            touchedByPeer: []
        )
        forgetful.append(Self.point(through: count, ownThrough: count))
        #expect(Self.compare(Self.peer(appliedOfYou: 0), forgetful) == .inconclusive)
        #expect(Self.compare(Self.peer(appliedOfYou: 1), forgetful) != .inconclusive)
    }

    @Test(
        "over several turns of the ring of own changes, taking them out gives what a plain list of the newest gives, touched ones included"
    )
    func ownChangesRing() {
        // Commits of 1 to 4,000 own changes over 211 addresses, some touched by the peer's events after.
        let capacity = DigestHistory.ownCapacity
        var history = DigestHistory()
        var all: [DigestHistory.OwnDelta] = []
        var touched: Set<Int> = []  // indices in `all` of changes a peer's event touched since
        var sequence: UInt64 = 0
        var commit = 0
        while all.count < 3 * capacity + 17 {
            commit += 1
            let size = 1 + (commit * 7_919) % 4_000
            let changes = (0..<size).map { _ in
                sequence += 1
                return DigestHistory.OwnDelta(
                    sequence: sequence,
                    ip: IPAddress(ipv4: UInt32(sequence % 211)),
                    delta: sequence &* 0x9E37_79B9
                )
            }
            let hit = commit % 5 == 0 ? [IPAddress(ipv4: UInt32(commit % 211))] : []
            history.noteChanges(own: changes, touchedByPeer: hit)
            all += changes
            // The model: a peer's event touches the latest change of the address among the newest `capacity`.
            let kept = max(0, all.count - capacity)
            for ip in hit {
                if let index = all.indices.last(where: { all[$0].ip == ip }), index >= kept { touched.insert(index) }
            }
        }
        let kept = all.count - capacity
        let point = Self.point(through: sequence, applied: 0, value: 12_345, ownThrough: sequence)
        history.append(point)
        for ownThrough in [all[kept - 1].sequence, all[kept].sequence, sequence - 5_000, sequence - 1, sequence] {
            var expected: UInt64? = 12_345
            for index in (kept..<all.count).reversed() where all[index].sequence > ownThrough {
                if touched.contains(index) {
                    expected = nil
                    break
                }
                expected = expected.map { $0 &- all[index].delta }
            }
            #expect(history.value(of: point, withOwnThrough: ownThrough) == expected, "own through \(ownThrough)")
        }
        // Older than the newest `capacity` own changes: forgotten.
        #expect(history.value(of: point, withOwnThrough: all[kept - 2].sequence) == nil)
    }

    @Test(
        "own changes made before the store was opened or emptied, whose digest changes it never knew, are not taken out: no comparison until the peer has them"
    )
    func ownChangesBeforeOpen() {
        // Opened at sequence 30 (own changes 21...30 unknown), then own changes 36 and 38.
        let mine = Self.point(applied: 40, value: 7 &+ 100 &+ 5, ownThrough: 38)
        var history = Self.digests(mine, own: [(36, 100), (38, 5)])
        history.forgetOwnChanges(through: 30)
        #expect(Self.compare(Self.peer(appliedOfYou: 25), history) == .inconclusive)
        #expect(Self.compare(Self.peer(appliedOfYou: 35), history) == .equal(mine))
        #expect(Self.compare(Self.peer(appliedOfYou: 36), history) == .differ(mine))
    }

    @Test(
        "this device's point for a comparison is the first whole one after its latest install that applied the peer's position"
    )
    func firstWholePoint() {
        var history = DigestHistory()
        history.append(Self.point(through: 10, applied: 40, installs: 0))
        history.append(Self.point(through: 11, applied: 0, installs: 1, whole: false))
        history.append(Self.point(through: 12, applied: 40, installs: 1, whole: false))
        history.append(Self.point(through: 13, applied: 40, installs: 1))
        history.append(Self.point(through: 14, applied: 40, installs: 1))
        #expect(history.first(applying: 2, through: 40)?.through == 13)
        #expect(history.first(applying: 2, through: 41) == nil)
        #expect(history.latest(through: 12)?.whole == false)
    }

    @Test("the ring of points keeps the newest and finds the latest point at a sequence")
    func ring() {
        var history = DigestHistory()
        for index in 0..<(DigestHistory.capacity + 10) {
            history.append(Self.point(through: UInt64(index / 2), value: UInt64(index)))
        }
        #expect(history.chronological.count == DigestHistory.capacity)
        #expect(history.chronological.first?.value == 10)
        #expect(history.latest?.value == UInt64(DigestHistory.capacity + 9))
        // Two points stand at each sequence; the later one is the latest.
        #expect(history.latest(through: 100)?.value == 201)
    }

    @Test(
        "a connection asks at once, again soon after an answer that settled nothing, and every interval once verified"
    )
    func requestTiming() {
        let start = ContinuousClock.now
        var state = VerificationState()
        #expect(state.requestDelay(now: start, interval: .seconds(1)) == nil)
        state.requested(at: start)
        #expect(state.requestDelay(now: start + .milliseconds(5), interval: .seconds(1)) == .milliseconds(10))
        #expect(state.requestDelay(now: start + .seconds(1), interval: .seconds(1)) == nil)  // unanswered: again
        state.answered(at: start)
        #expect(state.requestDelay(now: start + .milliseconds(5), interval: .seconds(1)) == .milliseconds(15))
        #expect(state.requestDelay(now: start + .milliseconds(20), interval: .seconds(1)) == nil)
        let first = state.matched()
        let again = state.matched()
        #expect(first && !again)
        #expect(state.requestDelay(now: start + .milliseconds(500), interval: .seconds(1)) == .milliseconds(500))
    }

    @Test("snapshots unverify; the peer's match counts only for the last point sent, after every snapshot sent")
    func snapshotsAndPeerMatches() {
        var state = VerificationState()
        #expect(state.catchUp(installing: false) == .comparingDigests)
        #expect(state.catchUp(installing: true) == .receivingSnapshot)
        _ = state.matched()
        #expect(state.catchUp(installing: false) == nil)
        state.beginSnapshot()
        #expect(state.catchUp(installing: false) == .sendingSnapshot)
        state.endSnapshot()
        #expect(state.catchUp(installing: false) == .comparingDigests)
        state.peerRequested = true
        state.sentPoint(through: 80, installs: 2)
        #expect(!state.peerRequested)
        #expect(state.acceptsPeerMatch(atYour: 80, installedOfYou: 1, installs: 2))
        #expect(!state.acceptsPeerMatch(atYour: 79, installedOfYou: 1, installs: 2))
        #expect(!state.acceptsPeerMatch(atYour: 80, installedOfYou: 0, installs: 2))
        #expect(!state.acceptsPeerMatch(atYour: 80, installedOfYou: 1, installs: 3))
    }
}
