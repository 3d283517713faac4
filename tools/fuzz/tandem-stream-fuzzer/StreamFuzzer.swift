import Dispatch
import FailoverLink
import FuzzerDriver
import Locking
import Logging
import NIOCore
import SessionStore

#if canImport(Glibc)
import Glibc
#endif

// A libFuzzer target for the replication stream of a hostile but authenticated peer: the bytes are frames that
// passed the link's sealing, decoded by `PeerWork` and the replication messages, and applied to a real store of
// device 2 as device 1's stream. Build and run it with tools/fuzz-stream.sh. Built without FUZZING (see Package.swift), it is a
// corpus replayer (`tandem-stream-fuzzer FILES...`) and writes its own seeds (`--write-seeds DIR`).
//
// The input is a sequence of frames `[type u8][length u16 big-endian][payload]`, at most `maximumFrames`; a frame
// cut short ends it. Bit 7 of the type byte asks the harness to recompute the CRC-32C that ends each unit of a
// records or snapshot-sessions payload, so that mutations reach the fields behind the checksum; the frame's type
// is the byte without that bit. (A peer that passed the sealing can send any checksum it likes.)
//
// Each input starts from the same state, so that an input that fails fails again alone: unless the input before
// left the store as it found it, the store is reset as a demotion resets it (empty, term 1, no takeovers, the
// peer's stream at 0, recovering its users from the peer, as a new store is) and made whole by an empty
// snapshot. A takeover of device 2 the stream reports resets it too, at the takeover's term, as the connection
// does. Every `reopenEvery` inputs a new store replaces it.
//
// Each input is checked for:
// 1. no crash, trap or AddressSanitizer report in decoding or applying;
// 2. a frame whose decode or apply throws changes nothing (count, last sequence, digest, term, takeovers, the
//    peer's position and history, the install state), and throws a `LinkError` or `SessionStoreError` of a kind
//    that names bad input;
// 3. every session the store serves is valid, is what a lookup of its address returns, and is among those a
//    lookup of its MAC address and of its user name return (all sessions when the store is small, otherwise
//    those the input touched and a full walk every `fullWalkEvery` inputs);
// 4. an applied records batch returns a position at least the one before (a snapshot's begin resets it to 0,
//    its end sets it), and the store reports that position and the batch's history for the peer, in its
//    latest digest point too;
// 5. a decoded frame encodes back to the same payload (the formats have one encoding of each value);
// 6. when device 2 restarts (a local action, below) and when the store is replaced, it is closed and opened
//    again, and stands where it stood: the same sessions, digest, positions, term and takeovers.

// MARK: - The harness

/// This device, the peer whose stream the input is, and the history of the peer's log the batches claim.
private let me: DeviceID = 2
private let peer: DeviceID = 1
private let peerHistory: UInt64 = 0x5EED_0F_7A4D_E401

/// At most this many frames of an input are applied.
private let maximumFrames = 64
/// A fresh store replaces the current one after this many inputs, or once it holds `reopenAtCount` sessions.
private let reopenEvery = 1_000
private let reopenAtCount = 2_000
/// Every session is checked after each input while the store holds at most `fullWalkLimit`; beyond, every
/// `fullWalkEvery` inputs.
private let fullWalkLimit = 256
private let fullWalkEvery = 64

/// The store under test and what the harness expects of it.
private struct Harness: Sendable {
    var store: SessionStore
    var directory: String
    var inputs = 0
    /// The position the peer's stream is applied through, by the results the store returned.
    var position: UInt64 = 0
    /// The store as the last reset left it; an input that left it so needs no reset before the next.
    var clean: StoreState?
}

/// The harness between inputs; libFuzzer calls in on one thread, and each input takes it out and puts it back.
private let current = Locked<Harness?>(nil)

func exercise(_ bytes: UnsafeRawBufferPointer) {
    let frames = parseFrames(bytes)
    // Taken out in the closure's capture, not into a local: a local may hold a store the input closed until
    // this function returns, past the check below.
    var harness = blocking { [before = current.withLock { $0.take() } ?? freshHarness()] in
        await run(frames, on: before)
    }
    harness.inputs += 1
    // Replaced after the input, not before the next: a store that fails to open again fails on the input
    // that left it so.
    if harness.inputs >= reopenEvery || harness.store.count > reopenAtCount {
        retire(harness)
        harness = freshHarness()
    }
    current.withLock { $0 = harness }
    checkClosedStoresReleased()
}

/// The stores an input closed, held weakly: none may outlive the input. One that something still held would be
/// freed later, on another thread; when libFuzzer exits meanwhile, LeakSanitizer stops the world halfway through
/// that free and reports the store's weak-reference side table as leaked.
private let closedStores = Locked<[ClosedStore]>([])

private struct ClosedStore: Sendable {
    weak var store: SessionStore?
    let path: String
}

private func noteClosed(_ store: SessionStore) {
    closedStores.withLock { $0.append(ClosedStore(store: store, path: store.path)) }
}

private func checkClosedStoresReleased() {
    let held = closedStores.withLock { stores in
        defer { stores.removeAll() }
        return stores.filter { $0.store != nil }.map(\.path)
    }
    check(held.isEmpty, "the stores closed at \(held) are still held once the input is done")
}

/// Splits the input into frames, slices of one buffer; see the comment at the top of the file.
func parseFrames(_ bytes: UnsafeRawBufferPointer) -> [Frame] {
    var whole = ByteBuffer(bytes: bytes)
    var found: [(type: FrameType, offset: Int, length: Int)] = []
    var offset = 0
    while found.count < maximumFrames, bytes.count - offset >= 3 {
        let typeByte = bytes[offset]
        let length = Int(bytes[offset + 1]) << 8 | Int(bytes[offset + 2])
        offset += 3
        guard length <= bytes.count - offset else { break }
        let type = FrameType(rawValue: typeByte & 0x7F)
        if typeByte & 0x80 != 0 {
            whole.withUnsafeMutableReadableBytes { [offset] all in
                resealUnits(UnsafeMutableRawBufferPointer(rebasing: all[offset..<offset + length]), type: type)
            }
        }
        found.append((type, offset, length))
        offset += length
    }
    // Sliced once every checksum is rewritten, so that no write copies the buffer.
    return found.map { Frame(type: $0.type, payload: whole.getSlice(at: $0.offset, length: $0.length)!) }
}

/// Rewrites the CRC-32C at the end of each length-framed unit of a records or snapshot-sessions payload, as far
/// as the framing holds.
private func resealUnits(_ bytes: UnsafeMutableRawBufferPointer, type: FrameType) {
    let skip: Int  // before the first length: the records' sequence; before each unit: a session's address
    let first: Int
    switch type {
    case .records: (first, skip) = (8, 0)
    case .snapshotSessions: (first, skip) = (0, 16)
    default: return
    }
    var offset = first
    while bytes.count - offset >= skip + 4 {
        offset += skip
        let length = Int(UInt32(bigEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self)))
        offset += 4
        guard length <= bytes.count - offset else { return }
        if length >= 4 {
            let crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + length - 4]))
            bytes.storeBytes(of: crc.littleEndian, toByteOffset: offset + length - 4, as: UInt32.self)
        }
        offset += length
    }
}

/// Runs the frames of one input through the decoders and the store, checking the invariants after each.
private func run(_ frames: [Frame], on start: Harness) async -> Harness {
    var harness = start
    if StoreState(harness.store) != harness.clean {
        await reset(harness.store, term: 1)
        harness.clean = StoreState(harness.store)
    }
    harness.position = 0
    var touched: [IPAddress] = []
    for frame in frames {
        if frame.type == localAction {
            await act(frame.payload, &harness, touched: &touched)
        } else {
            await receive(frame, &harness, touched: &touched)
        }
    }
    let store = harness.store  // a restart replaced it
    checkSessions(store, touched: touched, full: store.count <= fullWalkLimit || harness.inputs % fullWalkEvery == 0)
    return harness
}

/// Decodes one frame of the peer's stream and applies what it holds, as the connection does.
private func receive(_ frame: Frame, _ harness: inout Harness, touched: inout [IPAddress]) async {
    let store = harness.store
    let before = StoreState(store)
    let work: PeerWork?
    do {
        work = try PeerWork.decode(frame)
    } catch {
        expectInputError(error, "decoding a \(frame.type) frame")
        expectUnchanged(store, before, "decoding a \(frame.type) frame failed")
        trace("\(frame.type): not decoded: \(error)")
        return
    }
    guard let work else {
        decodeOther(frame)
        return
    }
    expectRoundTrip(work, frame)
    guard let batch = work.batch(origin: peer, history: peerHistory) else {
        if case .digest(let point) = work { lookUpDigest(point, in: store) }
        return
    }
    touched.append(contentsOf: addresses(of: work))
    let applied: PeerApplied
    do {
        applied = try await store.applyPeer(batch)
    } catch {
        expectInputError(error, "applying a \(frame.type) frame")
        expectUnchanged(store, before, "applying a \(frame.type) frame failed")
        trace("\(frame.type): not applied: \(error)")
        return
    }
    trace(
        "\(frame.type): applied through \(applied.through)\(applied.takeover.map { ", takeover \($0)" } ?? ""); "
            + "\(store.count) sessions, last sequence \(store.lastLoggedSequence), term \(store.term): "
            + allSessions(of: store).map { "\($0.ip) of \($0.owner) at \($0.generation)" }.joined(separator: ", ")
    )
    switch work {
    case .records:
        check(
            applied.through >= harness.position,
            "a records batch applied through \(applied.through), after \(harness.position) before: the peer's "
                + "position went backwards"
        )
        if let takeover = applied.takeover {
            check(
                takeover.from == me && takeover.term > before.term,
                "a takeover \(takeover) reported to device \(me) of term \(before.term)"
            )
        }
    case .snapshotBegin:
        check(applied.through == 0, "a snapshot's begin returned position \(applied.through), not 0")
    case .snapshotSessions:
        check(
            applied.through == harness.position,
            "snapshot sessions moved the peer's position from \(harness.position) to \(applied.through)"
        )
    case .snapshotEnd(let end):
        check(
            applied.through == end.position,
            "a snapshot ending at \(end.position) returned position \(applied.through)"
        )
    case .digest, .finish:
        break
    }
    harness.position = applied.through
    let reported = store.peerPosition(peer)
    let (position, history) = (reported.sequence, reported.history)
    check(
        position == applied.through,
        "the store reports the peer's stream applied through \(position), but the batch returned \(applied.through)"
    )
    switch work {
    case .records, .snapshotEnd:
        check(history == peerHistory, "the store reports the peer's history \(history), not \(peerHistory)")
    default:
        break
    }
    switch work {
    case .records, .snapshotBegin, .snapshotEnd:
        // These move the peer's position, so their commit notes a digest point at it.
        let point = store.digestHistory.latest
        check(
            point?.through == store.lastLoggedSequence && point?.applied[peer] ?? 0 == applied.through,
            "after a batch applied through \(applied.through) at sequence \(store.lastLoggedSequence), the "
                + "latest digest point is \(String(describing: point))"
        )
    default:
        break
    }
    if let takeover = applied.takeover {
        // As the connection does: this device steps down, and the peer's snapshot rebuilds it.
        await reset(store, term: takeover.term, installing: true)
        harness.position = 0
    }
}

// MARK: - Local actions

/// A frame of this type is none of the peer's: its payload `[action][argument]` makes the harness act between
/// the peer's frames as device 2's controller does, or build a frame of the peer's about device 2's own users,
/// whose generations only the store knows:
/// - 0: log in device 2's user `argument`; 1: log it out;
/// - 2: the peer logs that user out (R7), in a records frame after the position;
/// - 3: the peer sends back what device 2 streams to it, in a records frame after the position;
/// - 4: device 2 takes the peer's users over, past the peer's term `argument`;
/// - 5: the peer takes device 2's users over, `argument` terms above device 2's, in a records frame;
/// - 6: the peer sends, as snapshot sessions, the sessions device 2's own logins in its log hold;
/// - 7: device 2 restarts: its store is closed and opened again, and must stand where it stood;
/// - 8: the store checkpoints (the configuration leaves it no timer, so that an input runs the same way each
///   time), and the lookups that follow read the users table on disk under what memory holds.
let localAction = FrameType(rawValue: 0x7F)

private func act(_ payload: ByteBuffer, _ harness: inout Harness, touched: inout [IPAddress]) async {
    let store = harness.store
    guard let action = payload.getInteger(at: payload.readerIndex, as: UInt8.self) else { return }
    let argument = payload.getInteger(at: payload.readerIndex + 1, as: UInt8.self) ?? 0
    let user = ownUser(argument)
    let before = StoreState(store)
    do throws(SessionStoreError) {
        switch action % 9 {
        case 0:
            touched.append(user.ip)
            let stored = try await store.login(user)
            trace("local: logged in \(stored.ip) at \(stored.generation)")
        case 1:
            touched.append(user.ip)
            _ = try await store.logout(user.ip, reason: .user)
            trace("local: logged out \(user.ip)")
        case 2:
            guard let session = try store.session(for: user.ip) else { return }
            let logout = LogRecord(
                sequence: harness.position &+ 1,
                term: store.term,
                origin: peer,
                time: .now,
                event: .logout(Logout(ending: session, reason: .deleteUser))
            )
            await receive(recordsFrame(through: harness.position &+ 1, [logout]), &harness, touched: &touched)
        case 3:
            await receive(echo(store, after: harness.position), &harness, touched: &touched)
        case 4:
            let promotion = try await store.promote(over: peer, peerTerm: UInt32(argument))
            trace("local: promoted to term \(promotion.term)")
        case 5:
            let (term, overflow) = store.term.addingReportingOverflow(1 + UInt32(argument))
            guard !overflow else { return }
            let takeover = LogRecord(
                sequence: harness.position &+ 1,
                term: term,
                origin: peer,
                time: .now,
                event: .takeover(from: me, to: peer, term: term)
            )
            await receive(recordsFrame(through: harness.position &+ 1, [takeover]), &harness, touched: &touched)
        case 6:
            await receive(snapshotFrame(ownLogins(store)), &harness, touched: &touched)
        case 7:
            harness.store = await reopen(store)
            trace("local: restarted")
        default:
            let position = try await store.checkpoint()
            trace("local: checkpointed through \(position)")
        }
    } catch {
        check(
            [.alreadyOnline, .notOnline, .invalidArgument].contains(error.kind),
            "a local action \(action % 9) threw a store error of kind \(error.kind): \(error)"
        )
        expectUnchanged(store, before, "a local action \(action % 9) failed")
        trace("local: action \(action % 9) refused: \(error)")
    }
}

/// Device 2's user `number`: valid, of portal group "campus".
func ownUser(_ number: UInt8) -> Session {
    Session(
        ip: IPAddress(ipv4: 0x0A00_0200 | UInt32(number)),
        mac: MACAddress(rawValue: 0x0600_0000_0200 | UInt64(number)),
        userName: "own\(number)",
        vlan: UInt16(number) + 1,
        accessInterface: "GigabitEthernet2/0/\(number % 48 + 1)",
        portalGroup: "campus",
        authenticationMode: number % 2 == 0 ? .direct : .crossSubnet,
        owner: me,
        sessionTimeout: number % 3 == 0 ? 3600 : 0,
        idleTimeout: 300,
        radius: RADIUSAttributes(acctSessionID: "own-\(number)", classAttribute: [number])
    )
}

/// The records frame of the peer's that sends back, after `position`, every record device 2 streams to it.
private func echo(_ store: SessionStore, after position: UInt64) -> Frame {
    var bytes: [UInt8] = []
    let first = store.logStatus.firstRetainedSequence ?? store.lastLoggedSequence + 1
    do {
        guard case .records = try store.readStream(after: first - 1, for: peer, maxBytes: 32 << 10, into: &bytes) else {
            return recordsFrame(through: position, [])
        }
        let records = try bytes.withUnsafeBytes { raw throws(SessionStoreError) in try SessionStore.decodeStream(raw) }
        var sequence = position
        let echoed = records.map { record in
            sequence &+= 1
            return LogRecord(
                sequence: sequence,
                term: record.term,
                origin: record.origin,
                time: record.time,
                event: record.event
            )
        }
        return recordsFrame(through: sequence, echoed)
    } catch {
        fatalError("stream fuzzer: reading the stream device 2 sends failed: \(error)")
    }
}

/// The sessions of device 2's own logins that its log still holds, as they were logged in.
private func ownLogins(_ store: SessionStore) -> [Session] {
    var sessions: [Session] = []
    do {
        try store.forEachLogRecord { record in
            if record.origin == me, case .login(let session) = record.event { sessions.append(session) }
            return sessions.count < 64
        }
    } catch {
        fatalError("stream fuzzer: reading device 2's log failed: \(error)")
    }
    return sessions
}

/// A records frame as the sender frames `SessionStore.readStream`'s batch.
func recordsFrame(through: UInt64, _ records: [LogRecord]) -> Frame {
    var bytes: [UInt8] = []
    var unit: [UInt8] = []
    for record in records {
        unit.removeAll(keepingCapacity: true)
        RecordCodec.encode(record, into: &unit)
        withUnsafeBytes(of: UInt32(unit.count).bigEndian) { bytes.append(contentsOf: $0) }
        bytes.append(contentsOf: unit)
    }
    return RecordsMessage.frame(through: through, records: bytes)
}

/// The frames of the stream that are not `PeerWork`, decoded as the connection's reader decodes them.
private func decodeOther(_ frame: Frame) {
    do {
        switch frame.type {
        case .streamRequest:
            let request = try StreamRequest.decode(frame.payload)
            check(request.frame() == frame, "a stream request does not encode back to its payload")
        case .ack:
            _ = try SequenceMessage.decode(frame.payload, .ack)
            check(frame.payload.readableBytes == 8, "an ack of \(frame.payload.readableBytes) bytes was accepted")
        case .digestMatch:
            let match = try DigestMatchMessage.decode(frame.payload)
            check(match.frame() == frame, "a digest match does not encode back to its payload")
        default:
            break
        }
    } catch {
        expectInputError(error, "decoding a \(frame.type) frame")
    }
}

/// What the connection looks up for a digest point of the peer: its own points to compare it with.
private func lookUpDigest(_ point: DigestMessage, in store: SessionStore) {
    let history = store.digestHistory
    _ = history.latest(through: point.appliedOfYou)
    if let mine = history.first(applying: peer, through: point.through) {
        _ = history.value(of: mine, withOwnThrough: point.appliedOfYou)
    }
}

// MARK: - Invariants

/// A failed check: libFuzzer reports the crash, and the message says which invariant broke.
private func check(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fatalError("stream fuzzer: \(message())") }
}

/// What a failed frame must leave as it was.
private struct StoreState: Equatable, Sendable {
    var count: Int
    var lastSequence: UInt64
    var digest: UInt64?
    var term: UInt32
    var takeovers: Takeovers
    var peerApplied: UInt64
    var peerHistory: UInt64
    var installing: Bool
    var installs: UInt64
    var recovering: Bool

    init(_ store: SessionStore) {
        count = store.count
        lastSequence = store.lastLoggedSequence  // what `logStatus.lastSequence` reports, without its LMDB read
        digest = store.digestHistory.latest?.value
        term = store.term
        takeovers = store.takeovers
        let applied = store.peerPosition(peer)
        (peerApplied, peerHistory) = (applied.sequence, applied.history)
        installing = store.isInstallingSnapshot
        installs = store.snapshotInstalls
        recovering = store.isRecovering
    }
}

private func expectUnchanged(_ store: SessionStore, _ before: StoreState, _ what: String) {
    let after = StoreState(store)
    check(after == before, "\(what), yet the store changed: before \(before), after \(after)")
}

/// Bad bytes must be reported as bad input: a malformed frame, a corrupt record, or an invalid argument.
private func expectInputError(_ error: any Error, _ what: String) {
    if let error = error as? LinkError {
        check(error.kind == .malformed, "\(what) threw a link error of kind \(error.kind): \(error)")
    } else if let error = error as? SessionStoreError {
        check(
            [.invalidArgument, .corruptRecord].contains(error.kind),
            "\(what) threw a store error of kind \(error.kind): \(error)"
        )
    } else {
        fatalError(
            "stream fuzzer: \(what) threw \(type(of: error)), neither a LinkError nor a SessionStoreError: \(error)"
        )
    }
}

/// A decoded frame encodes back to its payload.
private func expectRoundTrip(_ work: PeerWork, _ frame: Frame) {
    let encoded: Frame
    switch work {
    case .records(let through, let records):
        encoded = recordsFrame(through: through, records)
    case .snapshotBegin(let takeovers, let everything, let keep):
        encoded = SnapshotBeginMessage.frame(takeovers: takeovers, everything: everything, keep: keep)
    case .snapshotSessions(let sessions):
        encoded = snapshotFrame(sessions.sessions)
    case .snapshotEnd(let end):
        encoded = end.frame()
    case .digest(let point):
        encoded = point.frame()
    case .finish:
        return
    }
    // Units of the previous format version (1) decode and are encoded in the current one: such a frame's
    // bytes differ, and what it says must not.
    if encoded != frame, olderUnits(in: frame) {
        switch work {
        case .records(_, let records):
            let again = try? RecordsMessage.decode(encoded.payload).records
            check(again == records, "a records frame of version 1 units does not read back as it decoded")
        case .snapshotSessions(let sessions):
            let again = try? encoded.payload.withUnsafeReadableBytes { try SnapshotSessions(checking: $0).sessions }
            check(again == sessions.sessions, "a snapshot frame of version 1 units does not read back as it decoded")
        default:
            check(false, "a \(frame.type) frame does not encode back to its payload")
        }
        return
    }
    check(encoded == frame, "a \(frame.type) frame does not encode back to its payload")
}

/// Whether a records or snapshot-sessions frame holds a unit of format version 1.
private func olderUnits(in frame: Frame) -> Bool {
    var buffer = frame.payload
    let prefix: Int
    switch frame.type {
    case .records:
        guard buffer.readInteger(as: UInt64.self) != nil else { return false }
        prefix = 0
    case .snapshotSessions:
        prefix = 16
    default:
        return false
    }
    while buffer.readableBytes > 0 {
        guard buffer.readSlice(length: prefix) != nil, let length = buffer.readInteger(as: UInt32.self),
            let unit = buffer.readBytes(length: Int(length))
        else { return false }
        if unit.first == 1 { return true }
    }
    return false
}

/// A snapshot-sessions frame as `SessionStore.readSnapshot` lays its batch out.
func snapshotFrame(_ sessions: [Session]) -> Frame {
    var bytes: [UInt8] = []
    var unit: [UInt8] = []
    for session in sessions {
        session.ip.withUnsafeBytes { bytes.append(contentsOf: $0) }
        unit.removeAll(keepingCapacity: true)
        RecordCodec.encodeSessionValue(session, into: &unit)
        withUnsafeBytes(of: UInt32(unit.count).bigEndian) { bytes.append(contentsOf: $0) }
        bytes.append(contentsOf: unit)
    }
    return Frame(type: .snapshotSessions, payload: ByteBuffer(bytes: bytes))
}

/// The addresses the work changes.
private func addresses(of work: PeerWork) -> [IPAddress] {
    switch work {
    case .records(_, let records):
        records.compactMap { $0.event.address }
    case .snapshotSessions(let sessions):
        sessions.sessions.map(\.ip)
    case .snapshotBegin, .snapshotEnd, .digest, .finish:
        []
    }
}

/// Every session served is valid and is what a lookup of its address returns.
private func checkSessions(_ store: SessionStore, touched: [IPAddress], full: Bool) {
    func expectValid(_ session: Session) {
        do {
            try session.validate(statefulFailover: false)
        } catch {
            fatalError("stream fuzzer: the store serves an invalid session \(session): \(error)")
        }
    }
    do {
        for ip in touched {
            if let session = try store.session(for: ip) {
                check(session.ip == ip, "a lookup of \(ip) returned the session of \(session.ip)")
                expectValid(session)
            }
        }
        guard full else { return }
        let sessions = try store.allSessions()
        check(sessions.count == store.count, "the store counts \(store.count) sessions and serves \(sessions.count)")
        for session in sessions {
            expectValid(session)
            let found = try store.session(for: session.ip)
            check(found == session, "the walk serves \(session), a lookup of its address \(String(describing: found))")
            check(
                try store.sessions(withMAC: session.mac).contains(session),
                "the walk serves \(session), a lookup of its MAC address does not"
            )
            check(
                try store.sessions(withUserName: session.userName).contains(session),
                "the walk serves \(session), a lookup of its user name does not"
            )
        }
    } catch {
        fatalError("stream fuzzer: reading the store failed: \(error)")
    }
}

/// With `TANDEM_FUZZ_TRACE` set, the replayer prints what became of each frame.
private let tracing = getenv("TANDEM_FUZZ_TRACE") != nil

private func trace(_ message: @autoclosure () -> String) {
    if tracing { print("  " + message()) }
}

// MARK: - Stores

/// Empties the store, as a demotion does, and takes term `term`; unless `installing`, an empty snapshot of the
/// peer then makes the store whole, as a new store of a pair stands before its first connection.
private func reset(_ store: SessionStore, term: UInt32, installing: Bool = false) async {
    do {
        _ = try await store.resetForResync(
            term: term,
            keepThrough: store.lastLoggedSequence,
            from: peer,
            holdName: "peer-\(peer)"
        )
        if !installing {
            _ = try await store.applyPeer(
                .snapshotEnd(origin: peer, position: 0, wholeFrom: 0, history: peerHistory)
            )
        }
    } catch {
        fatalError("stream fuzzer: resetting the store failed: \(error)")
    }
}

private func freshHarness() -> Harness {
    // On tmpfs when there is one: the users table syncs each commit whatever the store's durability, and a
    // reset commits to it on most inputs.
    _ = removalAtExit
    let parent = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp"
    var template = Array("\(parent)/tandem-stream-fuzz-XXXXXX".utf8CString)
    let directory = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
    let store = openStore(at: directory + "/store")
    blocking {
        do {
            try await store.initializeDigest()
        } catch {
            fatalError("stream fuzzer: the digest of a new store failed: \(error)")
        }
    }
    return Harness(store: store, directory: directory)
}

private func openStore(at path: String) -> SessionStore {
    var configuration = SessionStore.Configuration(deviceID: me, portalGroup: "campus")
    configuration.durability = .noSync
    configuration.expiryInterval = nil
    configuration.initialMapSize = 16 << 20
    // Checkpoints when an input asks (local action 8) and on close, never on a timer: the same input then runs
    // the same way each time, and a reset never waits for a checkpoint behind the harness's back.
    configuration.checkpointInterval = .seconds(86_400)
    var logger = Logger(label: "tandem.stream-fuzzer")
    logger.logLevel = .critical  // the store's notices on each open and takeover would drown libFuzzer's output
    do {
        return try SessionStore.open(at: path, configuration: configuration, logger: logger)
    } catch {
        fatalError("stream fuzzer: opening the store at \(path) failed: \(error)")
    }
}

/// Closes the store, checks that it opens again with the same sessions and digest, and removes it.
private func retire(_ harness: Harness) {
    let store = harness.store
    blocking {
        let reopened = await reopen(store)
        await reopened.close()
        noteClosed(reopened)
    }
    removeTree(harness.directory)
}

/// Closes the store and opens it again, as a restart of device 2 does, and checks that it stands where it
/// stood: the same sessions, digest, positions, term and takeovers.
private func reopen(_ store: SessionStore) async -> SessionStore {
    let sessions = allSessions(of: store)
    let closed = StoreState(store)
    await store.close()
    noteClosed(store)
    let reopened = openStore(at: store.path)
    do {
        try await reopened.initializeDigest()
    } catch {
        fatalError("stream fuzzer: the digest of the store opened again failed: \(error)")
    }
    var opened = StoreState(reopened)
    // `installs` counts from the opening; a store that kept no digest point has none to compare.
    opened.installs = closed.installs
    if closed.digest == nil { opened.digest = nil }
    check(opened == closed, "the store closed at \(closed) opened again at \(opened)")
    let again = allSessions(of: reopened)
    check(again == sessions, "the store opened again serves \(again.count) sessions, not its \(sessions.count)")
    return reopened
}

private func allSessions(of store: SessionStore) -> [Session] {
    do {
        return try store.allSessions()
    } catch {
        fatalError("stream fuzzer: reading the store failed: \(error)")
    }
}

/// libFuzzer ends with `exit` once its runs are done: the store's directory goes then (a crash leaves it).
private let removalAtExit: Void = {
    atexit {
        if let directory = current.withLock({ $0?.directory }) { removeTree(directory) }
    }
}()

private func removeTree(_ path: String) {
    if let directory = opendir(path) {
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name == "." || name == ".." { continue }
            let child = path + "/" + name
            if entry.pointee.d_type == UInt8(DT_DIR) { removeTree(child) } else { unlink(child) }
        }
        closedir(directory)
    }
    rmdir(path)
}

/// Runs `body` on a task and blocks the calling thread until it is done. libFuzzer calls a synchronous function;
/// the store's writer runs on a thread of its own and the task on the cooperative pool, so blocking this thread
/// holds up neither. The task takes `body` from a box instead of capturing it: a task frees what it captured
/// only after it ends, on its own thread, so a captured store closed by `body` would be freed after this
/// function returns (see `closedStores`).
@discardableResult
private func blocking<T: Sendable>(_ body: @escaping @Sendable () async -> T) -> T {
    let result = ResultBox<T>()
    let work = Locked<(@Sendable () async -> T)?>(body)
    let done = DispatchSemaphore(value: 0)
    Task {
        let value = await work.withLock { $0.take()! }()
        result.value.withLock { $0 = value }
        done.signal()
    }
    done.wait()
    return result.value.withLock { $0.take()! }
}

private final class ResultBox<T: Sendable>: Sendable {
    let value = Locked<T?>(nil)
}

// MARK: - Entry points

#if FUZZING
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzStream(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    exercise(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}

/// The entry point: libFuzzer's driver (see `runLibFuzzer`).
@main
enum FuzzerEntry {
    static func main() {
        runLibFuzzer { data, size in
            guard let data else { return 0 }
            return fuzzStream(data, size)
        }
    }
}
#else
@main
enum CorpusReplayer {
    static func main() throws {
        let arguments = CommandLine.arguments.dropFirst()
        if arguments.first == "--write-seeds" {
            guard let directory = arguments.dropFirst().first else { throw UsageError() }
            try Seeds.write(to: directory)
            return
        }
        for path in arguments {
            let bytes = try readFile(path)
            bytes.withUnsafeBytes { exercise($0) }
            print("ok \(path) (\(bytes.count) bytes)")
        }
        if let harness = current.withLock({ $0.take() }) { retire(harness) }
        checkClosedStoresReleased()
    }

    static func readFile(_ path: String) throws -> [UInt8] {
        guard let file = fopen(path, "rb") else { throw ReplayError(path: path) }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = fread(&chunk, 1, chunk.count, file)
            if count <= 0 { break }
            bytes.append(contentsOf: chunk[0..<count])
        }
        return bytes
    }
}

struct ReplayError: Error, CustomStringConvertible {
    let path: String
    var description: String { "cannot read \(path)" }
}

struct UsageError: Error, CustomStringConvertible {
    var description: String { "usage: tandem-stream-fuzzer --write-seeds DIRECTORY | tandem-stream-fuzzer FILES..." }
}
#endif
