import SessionStore

/// Whether one connection's two users tables are known to agree, and when to ask the peer for a digest
/// point to find out: the rules, without sockets or a clock of their own.
///
/// A connection starts unverified; receiving or sending a snapshot makes it unverified again. It is verified
/// when a comparison at matching positions made after that finds the tables equal, whichever device made it.
/// While unverified, a device asks again soon after each answer; once verified, every `interval`.
struct VerificationState: Sendable {
    /// The tables were found equal since the connection began or the last snapshot.
    private(set) var verified = false
    /// This device is sending a snapshot.
    private(set) var sendingSnapshot = false
    /// Snapshots this device sent on this connection.
    private(set) var snapshotsSent: UInt32 = 0
    /// When this device's digest request went out, while it waits for the peer's point.
    private(set) var requestedAt: ContinuousClock.Instant?
    /// When this device last had an answer (or gave up waiting for one).
    private(set) var answeredAt: ContinuousClock.Instant?
    /// The peer waits for a digest point in this device's stream.
    var peerRequested = false
    /// The last digest point this device sent: its sequence and the snapshot installs it came after.
    private(set) var pointSent: (through: UInt64, installs: UInt64)?

    /// How soon an unverified device asks again after an answer that settled nothing.
    static let retryDelay: Duration = .milliseconds(20)
    /// How long a request may go unanswered before it is sent again.
    static let answerTimeout: Duration = .seconds(1)

    /// How long to wait before the next digest request; `nil`: send it now.
    func requestDelay(now: ContinuousClock.Instant, interval: Duration) -> Duration? {
        if let requestedAt {
            let waited = requestedAt.duration(to: now)
            return waited >= Self.answerTimeout ? nil : min(Self.answerTimeout - waited, .milliseconds(10))
        }
        guard let answeredAt else { return nil }
        let pause = verified ? interval : Self.retryDelay
        let since = answeredAt.duration(to: now)
        return since >= pause ? nil : pause - since
    }

    mutating func requested(at now: ContinuousClock.Instant) { requestedAt = now }

    /// The peer's point arrived and was compared (or could not be).
    mutating func answered(at now: ContinuousClock.Instant) {
        requestedAt = nil
        answeredAt = now
    }

    /// A comparison found the tables equal; `true` when that made the connection verified.
    mutating func matched() -> Bool {
        defer { verified = true }
        return !verified
    }

    /// A difference was found, or a snapshot of the peer's users began here.
    mutating func unverify() { verified = false }

    mutating func beginSnapshot() {
        sendingSnapshot = true
        snapshotsSent += 1
        verified = false
    }

    mutating func endSnapshot() { sendingSnapshot = false }

    mutating func sentPoint(through: UInt64, installs: UInt64) {
        pointSent = (through, installs)
        peerRequested = false
    }

    /// Whether the peer's report that the tables matched at this device's point `atYour` verifies the
    /// connection: the point is the last one sent, no snapshot of the peer's began here since
    /// (`installs`), and the peer had installed every snapshot this device sent.
    func acceptsPeerMatch(atYour: UInt64, installedOfYou: UInt32, installs: UInt64) -> Bool {
        guard let pointSent else { return false }
        return pointSent.through == atYour && pointSent.installs == installs && installedOfYou == snapshotsSent
    }

    /// What the pair still does before it is in synchronization; `nil` when nothing.
    func catchUp(installing: Bool) -> CatchUp? {
        if installing { return .receivingSnapshot }
        if sendingSnapshot { return .sendingSnapshot }
        return verified ? nil : .comparingDigests
    }
}

/// The comparison of this device's users table with the peer's digest point.
enum DigestComparison: Sendable, Equatable {
    /// The tables held the same changes at the two points, and their digests are equal.
    case equal(DigestHistory.Point)
    /// The tables held the same changes at the two points, and their digests differ.
    case differ(DigestHistory.Point)
    /// No point of this device matches the peer's: nothing is known.
    case inconclusive

    /// Compares the peer's point with this device's first whole point after its latest snapshot install at
    /// which it had applied the peer's stream through the peer's point, without this device's own changes
    /// that had not reached the peer by then.
    ///
    /// - Parameters:
    ///   - peerPoint: the peer's digest point.
    ///   - digests: this device's digest history.
    ///   - peer: the peer's device ID.
    ///   - history: this device's log history.
    ///   - snapshotsSent: this device's snapshots to the peer on this connection.
    static func compare(
        _ peerPoint: DigestMessage,
        with digests: DigestHistory,
        peer: DeviceID,
        history: UInt64,
        snapshotsSent: UInt32
    ) -> DigestComparison {
        // The peer's point must come after it installed every snapshot this device sent, and count its
        // position in this device's current history (any history, at position 0).
        guard peerPoint.installedOfYou == snapshotsSent,
            peerPoint.appliedHistoryOfYou == history || peerPoint.appliedOfYou == 0,
            let mine = digests.first(applying: peer, through: peerPoint.through),
            let value = digests.value(of: mine, withOwnThrough: peerPoint.appliedOfYou)
        else { return .inconclusive }
        return value == peerPoint.value ? .equal(mine) : .differ(mine)
    }
}
