#if !FUZZING
import FailoverLink
import NIOCore
import SessionStore

#if canImport(Glibc)
import Glibc
#endif

/// The seeds of tools/fuzz/seeds/stream, written by `tandem-stream-fuzzer --write-seeds DIR`: streams of device 1
/// as device 2 receives them, valid frame by frame, built with the encoders the link itself uses, so that the
/// fuzzer starts from inputs that reach the store. The checked-in files but `updates` were written before the
/// record format's version 2 and hold version 1 units: they are kept as they are, so that the fuzzer starts
/// from the previous format too (write new ones elsewhere and copy only what is new).
enum Seeds {
    static func write(to directory: String) throws {
        for (name, seed) in all {
            try seed.checkFrames(name)
            let path = directory + "/" + name
            guard let file = fopen(path, "wb") else { throw ReplayError(path: path) }
            defer { fclose(file) }
            guard fwrite(seed.bytes, 1, seed.bytes.count, file) == seed.bytes.count else {
                throw ReplayError(path: path)
            }
            print("wrote \(path) (\(seed.bytes.count) bytes)")
        }
    }

    static var all: [(String, Seed)] {
        [
            ("snapshot-then-stream", snapshotThenStream),
            ("records", records),
            ("own-records-back", ownRecordsBack),
            ("takeover-of-receiver", takeoverOfReceiver),
            ("absurd-positions", absurdPositions),
            ("third-device", thirdDevice),
            ("control-frames", controlFrames),
            ("unsealed", unsealed),
            ("edge-sessions", edgeSessions),
            ("replays", replays),
            ("recovery", recovery),
            ("own-users", ownUsers),
            ("promotion", promotion),
            ("updates", updates),
        ]
    }

    /// A snapshot of device 1's users (with device 3's, which device 1 took over), then the stream after it and
    /// a digest point.
    static var snapshotThenStream: Seed {
        var seed = Seed()
        seed.add(SnapshotBeginMessage.frame(takeovers: [Takeover(from: 3, to: 1, term: 2)]))
        seed.add(
            snapshotFrame([
                session(1, owner: 1, term: 1, sequence: 1),
                session(2, owner: 1, term: 1, sequence: 2),
                session(3, owner: 3, term: 1, sequence: 5),
                session(4, owner: 1, term: 2, sequence: 3, timeout: 3600),
            ])
        )
        seed.add(snapshotEnd(position: 4, wholeFrom: 6))
        seed.add(local(8))
        let (fifth, _) = login(5, sequence: 5)
        seed.add(recordsFrame(through: 6, [fifth, logout(session(1, owner: 1, term: 1, sequence: 1), sequence: 6)]))
        seed.add(digest(through: 6, appliedOfYou: 0, appliedHistoryOfYou: 0, value: 0, installedOfYou: 0))
        return seed
    }

    /// Updates of device 1's users, every part: one of a user online, one repeated, one of an older revision,
    /// one of a generation never logged in, and one after the user's logout.
    static var updates: Seed {
        var seed = Seed()
        let (first, firstSession) = login(21, sequence: 1)
        let (second, secondSession) = login(22, sequence: 2)
        func update(_ session: Session, _ revision: UInt64, generation: Generation? = nil) -> Event {
            .update(
                Update(
                    ip: session.ip,
                    owner: session.owner,
                    generation: generation ?? session.generation,
                    revision: Revision(term: 1, sequence: revision, device: 1),
                    reason: .changeOfAuthorization,
                    authorization: .init(
                        authorization: Authorization(
                            acl: .name("guests"),
                            userProfile: "visitor",
                            inboundCAR: .init(cir: 2_000, cbs: 64_000),
                            outboundCAR: .init(cir: 10_000),
                            vpnInstance: "vpn1",
                            filterID: "f1",
                            accountingInterval: 600
                        ),
                        sessionTimeout: 3_600,
                        idleTimeout: 300
                    ),
                    accounting: AccountingState(
                        inputOctets: 5 << 32,
                        outputOctets: 9,
                        reportedAt: .init(microsecondsSinceEpoch: 1)
                    ),
                    lastActivity: .init(microsecondsSinceEpoch: 2)
                )
            )
        }
        seed.add(
            recordsFrame(
                through: 7,
                [
                    first, second,
                    record(3, update(firstSession, 3)),
                    record(4, update(firstSession, 3)),
                    record(5, update(secondSession, 1)),
                    record(6, update(secondSession, 6, generation: Generation(term: 1, sequence: 99))),
                    logout(secondSession, sequence: 7),
                ]
            )
        )
        seed.add(recordsFrame(through: 8, [record(8, update(secondSession, 8))]))
        return seed
    }

    /// Logins and logouts of device 1's users, an empty batch, a batch behind the position, and a takeover of
    /// device 3 by device 1.
    static var records: Seed {
        var seed = Seed()
        let (first, firstSession) = login(11, sequence: 1)
        let (second, _) = login(12, sequence: 2)
        seed.add(recordsFrame(through: 3, [first, second, logout(firstSession, sequence: 3)]))
        let (third, _) = login(13, sequence: 4)
        seed.add(recordsFrame(through: 5, [third]))
        seed.add(recordsFrame(through: 5, []))
        seed.add(recordsFrame(through: 2, []))
        seed.add(recordsFrame(through: 9, [record(9, term: 2, .takeover(from: 3, to: 1, term: 2))]))
        return seed
    }

    /// Device 2's own events sent back: a login of device 2's user and a logout of it, which matter once device 1
    /// took device 2's users over (the snapshot's begin says it did).
    static var ownRecordsBack: Seed {
        var seed = Seed()
        seed.add(SnapshotBeginMessage.frame(takeovers: [Takeover(from: 2, to: 1, term: 3)]))
        seed.add(snapshotEnd(position: 0, wholeFrom: 0))
        let own = session(21, owner: 2, term: 1, sequence: 1)
        let stale = session(22, owner: 2, term: 4, sequence: 2)
        seed.add(
            recordsFrame(
                through: 4,
                [
                    record(1, origin: 2, .login(own)), record(2, term: 4, origin: 2, .login(stale)),
                    record(3, origin: 2, .logout(Logout(ending: own, reason: .user))),
                    record(4, term: 4, origin: 2, .logout(Logout(ending: stale, reason: .idleTimeout))),
                ]
            )
        )
        return seed
    }

    /// Device 1 took device 2's users over at a high term: the stream stops at the takeover; the snapshot that
    /// follows brings device 1's users of that term.
    static var takeoverOfReceiver: Seed {
        var seed = Seed()
        let (first, _) = login(31, sequence: 1)
        let (third, _) = login(33, sequence: 3, term: 7)
        seed.add(recordsFrame(through: 3, [first, record(2, term: 7, .takeover(from: 2, to: 1, term: 7)), third]))
        seed.add(SnapshotBeginMessage.frame(takeovers: [Takeover(from: 2, to: 1, term: 7)]))
        seed.add(
            snapshotFrame([session(34, owner: 1, term: 7, sequence: 3), session(35, owner: 2, term: 6, sequence: 9)])
        )
        seed.add(snapshotEnd(position: 3, wholeFrom: 3))
        return seed
    }

    /// Positions, terms and generations at the top of their ranges.
    static var absurdPositions: Seed {
        var seed = Seed()
        let top = session(41, owner: 1, term: .max, sequence: .max)
        seed.add(recordsFrame(through: .max, [record(.max, term: .max, .login(top))]))
        seed.add(recordsFrame(through: .max - 1, []))
        seed.add(recordsFrame(through: .max, [record(.max, term: .max, .takeover(from: 2, to: 1, term: .max))]))
        seed.add(SnapshotBeginMessage.frame(takeovers: [Takeover(from: 1, to: 3, term: .max)]))
        seed.add(snapshotEnd(position: .max, wholeFrom: .max))
        seed.add(recordsFrame(through: .max, [record(.max, term: .max, .logout(Logout(ending: top, reason: .user)))]))
        return seed
    }

    /// Sessions owned by a third device: refused in the stream, accepted in a snapshot once device 1 took that
    /// device over, and takeovers of it.
    static var thirdDevice: Seed {
        var seed = Seed()
        let foreign = session(51, owner: 3, term: 8, sequence: 1)
        seed.add(recordsFrame(through: 1, [record(1, term: 8, .login(foreign))]))
        seed.add(
            SnapshotBeginMessage.frame(takeovers: [
                Takeover(from: 3, to: 1, term: 9), Takeover(from: 4, to: 3, term: 5),
            ])
        )
        seed.add(snapshotFrame([foreign, session(52, owner: 4, term: 4, sequence: 7)]))
        seed.add(local(7))
        seed.add(snapshotEnd(position: 5, wholeFrom: 8))
        seed.add(
            recordsFrame(
                through: 8,
                [
                    record(6, term: 9, .logout(Logout(ending: foreign, reason: .user))),
                    record(7, term: 10, .takeover(from: 3, to: 1, term: 10)),
                    record(8, term: 10, .deviceIDChanged(from: 1, to: 4)),
                ]
            )
        )
        seed.add(recordsFrame(through: 9, [record(9, term: 10, origin: 3, .takeover(from: 1, to: 3, term: 11))]))
        return seed
    }

    /// The frames of the stream that are not records or snapshots, and a few that do not belong in it.
    static var controlFrames: Seed {
        var seed = Seed()
        var request = ByteBuffer()
        request.writeInteger(UInt32(1))
        request.writeInteger(UInt64(0x1234))
        request.writeInteger(UInt64(3))
        request.writeInteger(UInt64(0x5678))
        request.writeInteger(UInt32(0))
        request.writeInteger(UInt8(1))  // recovering
        seed.add(Frame(type: .streamRequest, payload: request))
        var ack = ByteBuffer()
        ack.writeInteger(UInt64(3))
        seed.add(Frame(type: .ack, payload: ack))
        seed.add(Frame(type: .digestRequest, payload: ByteBuffer()))
        seed.add(Frame(type: .resyncRequest, payload: ByteBuffer()))
        var match = ByteBuffer()
        match.writeInteger(UInt64(3))
        match.writeInteger(UInt64(5))
        match.writeInteger(UInt32(1))
        seed.add(Frame(type: .digestMatch, payload: match))
        seed.add(digest(through: 5, appliedOfYou: 3, appliedHistoryOfYou: 0x5678, value: 0xFEED, installedOfYou: 1))
        seed.add(Frame(type: .heartbeat, payload: ByteBuffer()))
        seed.add(Frame(type: FrameType(rawValue: 99), payload: ByteBuffer(bytes: [1, 2, 3])))
        return seed
    }

    /// Frames sent as they are, without the harness fixing their checksums: one sound, one damaged.
    static var unsealed: Seed {
        var seed = Seed()
        let (login61, _) = login(61, sequence: 1)
        seed.add(recordsFrame(through: 1, [login61]), sealed: false)
        var damaged = recordsFrame(through: 2, [login(62, sequence: 2).0])
        damaged.payload.setInteger(UInt8(0xFF), at: damaged.payload.writerIndex - 1)
        seed.add(damaged, sealed: false)
        return seed
    }

    /// Sessions at the edges of the rules: the longest fields, re-DHCP, another portal group, the ends of time.
    static var edgeSessions: Seed {
        var seed = Seed()
        var long = session(71, owner: 1, term: 1, sequence: 1, timeout: .max)
        long.userName = String(repeating: "u", count: 253)
        long.accessInterface = String(repeating: "I", count: 63)
        long.radius = RADIUSAttributes(
            nasIP: IPAddress(high: 0x2001_0DB8_0000_0000, low: 1),
            acctSessionID: String(repeating: "a", count: 253),
            classAttribute: Array(repeating: 0xC1, count: 253)
        )
        long.vlan = 4094
        var early = session(72, owner: 1, term: 1, sequence: 2, timeout: .max)
        early.loginTime = Timestamp(microsecondsSinceEpoch: .min)
        early.authenticationMode = .reDHCP
        var late = session(73, owner: 1, term: 1, sequence: 3, timeout: .max)
        late.loginTime = Timestamp(microsecondsSinceEpoch: .max)
        late.portalGroup = "lab"
        late.userName = "ünïcødé"
        seed.add(
            recordsFrame(through: 3, [record(1, .login(long)), record(2, .login(early)), record(3, .login(late))])
        )
        seed.add(SnapshotBeginMessage.frame(takeovers: []))
        seed.add(snapshotFrame([long, early, late]))
        seed.add(snapshotEnd(position: 3, wholeFrom: 3))
        return seed
    }

    /// The same events again, older generations, logouts of generations never logged in, and an address
    /// twice in one snapshot.
    static var replays: Seed {
        var seed = Seed()
        let (first, firstSession) = login(81, sequence: 1, term: 2)
        seed.add(recordsFrame(through: 1, [first]))
        seed.add(recordsFrame(through: 1, [first]))
        var older = firstSession
        older.generation = Generation(term: 1, sequence: 9)
        older.userName = "older"
        var wrong = firstSession
        wrong.generation = Generation(term: 2, sequence: 2)
        seed.add(
            recordsFrame(
                through: 4,
                [
                    record(2, term: 2, .login(older)),
                    record(3, term: 2, .logout(Logout(ending: wrong, reason: .user))),
                    record(4, term: 2, .logout(Logout(ending: firstSession, reason: .deleteUser))),
                ]
            )
        )
        seed.add(SnapshotBeginMessage.frame(takeovers: [Takeover(from: 1, to: 1, term: 3)]))
        seed.add(snapshotFrame([firstSession, older, firstSession]))
        seed.add(snapshotEnd(position: 2, wholeFrom: 4))
        seed.add(recordsFrame(through: 4, [first]))
        return seed
    }

    /// This device recovers its users from the peer, as a new store does: a snapshot of everything the peer
    /// holds, this device's users included, then the stream in full through where the snapshot ended, this
    /// device's own events included; once whole, the store has recovered, and is refused a second snapshot of
    /// everything but takes the usual one.
    static var recovery: Seed {
        var seed = Seed()
        seed.add(SnapshotBeginMessage.frame(takeovers: [Takeover(from: 3, to: 1, term: 2)], everything: true))
        let own = session(91, owner: 2, term: 1, sequence: 4)
        seed.add(snapshotFrame([session(90, owner: 1, term: 1, sequence: 3), own]))
        seed.add(snapshotFrame([session(92, owner: 3, term: 1, sequence: 2)]))
        seed.add(snapshotEnd(position: 5, wholeFrom: 5, everythingThrough: 7))
        let ownLater = session(93, owner: 2, term: 1, sequence: 6)
        let (login94, _) = login(94, sequence: 8)
        seed.add(
            recordsFrame(
                through: 8,
                [
                    record(6, origin: 2, .login(ownLater)),
                    record(7, origin: 2, .logout(Logout(ending: own, reason: .user))), login94,
                ]
            )
        )
        seed.add(SnapshotBeginMessage.frame(takeovers: [], everything: true))
        seed.add(SnapshotBeginMessage.frame(takeovers: []))
        seed.add(snapshotFrame([session(95, owner: 1, term: 1, sequence: 9)]))
        seed.add(snapshotEnd(position: 9, wholeFrom: 9))
        return seed
    }

    /// Device 2 has users of its own: one logged out there, one the peer logs out (R7), one the peer's newer
    /// login replaces; the peer sends back what concerns them; device 2, recovering, installs a snapshot of
    /// everything that brings its users back as they were, the one logged out included, which is logged out
    /// again once the install is whole; then the peer takes device 2 over.
    static var ownUsers: Seed {
        var seed = Seed()
        for number: UInt8 in 1...4 { seed.add(local(0, number)) }
        seed.add(local(1, 3))
        seed.add(local(2, 2))
        var newer = session(4, owner: 1, term: 2, sequence: 1)
        newer.ip = ownUser(4).ip
        seed.add(recordsFrame(through: 2, [record(2, term: 2, .login(newer))]))  // the peer's logout was its 1
        seed.add(local(3))
        seed.add(local(7))
        seed.add(SnapshotBeginMessage.frame(takeovers: [], everything: true))
        seed.add(local(6))
        seed.add(local(8))
        seed.add(snapshotFrame([session(101, owner: 1, term: 2, sequence: 2)]))
        seed.add(snapshotEnd(position: 10, wholeFrom: 10))
        seed.add(recordsFrame(through: 11, [login(102, sequence: 11, term: 2).0]))
        seed.add(local(5, 1))
        return seed
    }

    /// Device 2 takes device 1's users over; the peer's stream from before it knew goes on, a takeover of
    /// device 2 at a lower term included; then the peer takes device 2 over past its term.
    static var promotion: Seed {
        var seed = Seed()
        seed.add(local(0, 7))
        let (early, earlySession) = login(111, sequence: 1)
        seed.add(recordsFrame(through: 1, [early]))
        seed.add(local(4, 3))
        seed.add(
            recordsFrame(
                through: 4,
                [
                    record(2, term: 3, .takeover(from: 2, to: 1, term: 3)),
                    record(3, term: 3, .logout(Logout(ending: earlySession, reason: .user))),
                    login(112, sequence: 4, term: 3).0,
                ]
            )
        )
        seed.add(local(3))
        seed.add(local(7))
        seed.add(local(5, 0))
        return seed
    }

    // MARK: Building blocks

    /// Device 1's login of its user `number` as record `sequence` of its log.
    static func login(_ number: Int, sequence: UInt64, term: UInt32 = 1) -> (LogRecord, Session) {
        let stored = session(number, owner: 1, term: term, sequence: sequence)
        return (record(sequence, term: term, .login(stored)), stored)
    }

    static func logout(_ session: Session, sequence: UInt64) -> LogRecord {
        record(sequence, term: session.generation.term, .logout(Logout(ending: session, reason: .user)))
    }

    static func record(_ sequence: UInt64, term: UInt32 = 1, origin: DeviceID = 1, _ event: Event) -> LogRecord {
        LogRecord(
            sequence: sequence,
            term: term,
            origin: origin,
            time: Timestamp(microsecondsSinceEpoch: 1_780_000_000_000_000 + Int64(truncatingIfNeeded: sequence)),
            event: event
        )
    }

    /// A valid session of portal group "campus", numbered so that its fields differ from the others'.
    static func session(
        _ number: Int,
        owner: DeviceID,
        term: UInt32,
        sequence: UInt64,
        timeout: UInt32 = 0
    ) -> Session {
        Session(
            ip: number % 3 == 0
                ? IPAddress(high: 0x2001_0DB8_0000_0000, low: UInt64(number))
                : IPAddress(ipv4: 0x0A00_0000 | UInt32(number)),
            mac: MACAddress(rawValue: 0x0200_0000_0000 | UInt64(number)),
            userName: "user\(number)",
            vlan: UInt16(1 + number % 4000),
            accessInterface: "GigabitEthernet1/0/\(1 + number % 48)",
            portalGroup: "campus",
            authenticationMode: number % 2 == 0 ? .direct : .crossSubnet,
            owner: owner,
            loginTime: Timestamp(microsecondsSinceEpoch: 1_780_000_000_000_000 + Int64(number)),
            sessionTimeout: timeout,
            idleTimeout: 600,
            radius: RADIUSAttributes(
                nasIP: number % 2 == 0 ? IPAddress(ipv4: 0xC0A8_0101) : nil,
                acctSessionID: "acct-\(number)",
                classAttribute: Array("class-\(number)".utf8)
            ),
            generation: Generation(term: term, sequence: sequence)
        )
    }

    /// A local action of the harness (see `localAction`).
    static func local(_ action: UInt8, _ argument: UInt8 = 0) -> Frame {
        Frame(type: localAction, payload: ByteBuffer(bytes: [action, argument]))
    }

    static func snapshotEnd(position: UInt64, wholeFrom: UInt64, everythingThrough: UInt64 = 0) -> Frame {
        var payload = ByteBuffer()
        payload.writeInteger(position)
        payload.writeInteger(wholeFrom)
        payload.writeInteger(everythingThrough)  // 0 but after a snapshot of everything
        return Frame(type: .snapshotEnd, payload: payload)
    }

    static func digest(
        through: UInt64,
        appliedOfYou: UInt64,
        appliedHistoryOfYou: UInt64,
        value: UInt64,
        installedOfYou: UInt32
    ) -> Frame {
        var payload = ByteBuffer()
        payload.writeInteger(through)
        payload.writeInteger(appliedOfYou)
        payload.writeInteger(appliedHistoryOfYou)
        payload.writeInteger(value)
        payload.writeInteger(installedOfYou)
        return Frame(type: .digest, payload: payload)
    }
}

/// A fuzzer input: frames `[type u8][length u16 big-endian][payload]`.
struct Seed {
    var bytes: [UInt8] = []
    var frames: [Frame] = []

    /// Checks that every frame decodes as the connection decodes it, so that a seed never falls behind the wire
    /// format (the damaged one of `unsealed` aside).
    func checkFrames(_ name: String) throws {
        for (index, frame) in frames.enumerated() {
            do {
                switch frame.type {
                case .streamRequest: _ = try StreamRequest.decode(frame.payload)
                case .ack: _ = try SequenceMessage.decode(frame.payload, .ack)
                case .digestMatch: _ = try DigestMatchMessage.decode(frame.payload)
                default: _ = try PeerWork.decode(frame)
                }
            } catch {
                if name == "unsealed" && index == 1 { continue }
                throw SeedError(description: "frame \(index + 1) of seed \(name), a \(frame.type), fails: \(error)")
            }
        }
    }

    /// Appends a frame; `sealed` sets bit 7 of a records or snapshot-sessions frame's type, so that the harness
    /// recomputes its units' checksums after a mutation.
    mutating func add(_ frame: Frame, sealed: Bool = true) {
        let hasUnits = frame.type == .records || frame.type == .snapshotSessions
        bytes.append(frame.type.rawValue | (sealed && hasUnits ? 0x80 : 0))
        let length = UInt16(frame.payload.readableBytes)
        bytes.append(UInt8(length >> 8))
        bytes.append(UInt8(length & 0xFF))
        bytes.append(contentsOf: frame.payload.readableBytesView)
        frames.append(frame)
    }
}

struct SeedError: Error, CustomStringConvertible {
    var description: String
}
#endif
