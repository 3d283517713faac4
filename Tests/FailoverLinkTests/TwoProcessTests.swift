import Foundation
import Inspection
import SessionStore
import Synchronization
import TestSupport
import Testing

@testable import FailoverLink

/// A `tandem node` process; its output lines are collected as they come.
final class NodeChild: @unchecked Sendable {
    // `@unchecked Sendable`: `lines` is guarded by `lock`; the rest is set in `init`.
    let process = Process()
    private let input = Pipe()
    private let output = Pipe()
    private let lock = NSLock()
    private var lines: [String] = []
    private var acks = Set<Int>()
    private var logouts = Set<Int>()
    private var updateAcks = Set<Int>()

    init(id: Int, pair: Pair, extra: [String] = []) throws {
        process.executableURL = tandemExecutable()
        process.arguments =
            [
                "node", "--path", pair.path(UInt8(id)), "--device-id", "\(id)", "--portal-group", "campus",
                "--listen", "127.0.0.\(id):\(pair.port)", "--peer", "127.0.0.\(id == 1 ? 2 : 1):\(pair.port)",
                "--secret-file", pair.directory + "/secret",
            ] + extra
        process.standardInput = input
        process.standardOutput = output
        try process.run()
        Thread { [self] in
            let handle = output.fileHandleForReading
            var pending = Data()
            while true {
                let chunk = handle.availableData
                if chunk.isEmpty { return }
                pending.append(chunk)
                while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                    let line = String(decoding: pending[pending.startIndex..<newline], as: UTF8.self)
                    pending.removeSubrange(pending.startIndex...newline)
                    lock.withLock {
                        if line.hasPrefix("ack "), let number = Int(line.dropFirst(4)) {
                            acks.insert(number)
                        } else if line.hasPrefix("uack "), let number = Int(line.dropFirst(5)) {
                            updateAcks.insert(number)
                        } else if line.hasPrefix("login-ok ") || line.hasPrefix("logout-ok "),
                            let field = line.split(separator: " ").first(where: { $0.hasPrefix("number=") }),
                            let number = Int(field.dropFirst(7))
                        {
                            if line.hasPrefix("login-ok ") { acks.insert(number) } else { _ = logouts.insert(number) }
                        } else {
                            lines.append(line)
                        }
                    }
                }
            }
        }.start()
    }

    func send(_ line: String) throws {
        try input.fileHandleForWriting.write(contentsOf: Data((line + "\n").utf8))
    }

    var acknowledged: Set<Int> { lock.withLock { acks } }

    /// The users whose update of an update storm was acknowledged.
    var acknowledgedUpdates: Set<Int> { lock.withLock { updateAcks } }

    /// The users whose logout was acknowledged.
    var loggedOut: Set<Int> { lock.withLock { logouts } }

    /// Whether the device's last status said synchronization.
    func synchronized() async -> Bool {
        guard (try? send("status")) != nil else { return false }
        try? await Task.sleep(for: .milliseconds(100))
        return lastLine(startingWith: "status")?.contains("synchronized=yes") == true
    }

    func lastLine(startingWith prefix: String) -> String? {
        lock.withLock { lines.last { $0.hasPrefix(prefix) } }
    }

    /// Every line so far that starts with `prefix`, in order.
    func lines(startingWith prefix: String) -> [String] {
        lock.withLock { lines.filter { $0.hasPrefix(prefix) } }
    }

    func kill() {
        if process.isRunning { Foundation.kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }
}

@Suite("Two device processes over loopback", .serialized)
struct TwoProcessTests {
    /// Runs `body` with a pair's directory holding the secret file both processes read, and tears the pair
    /// down after it, also when it throws.
    static func withPairAndSecret(_ body: (Pair) async throws -> Void) async throws {
        try await Pair.run { pair in
            _ = FileManager.default.createFile(
                atPath: pair.directory + "/secret",
                contents: Data("a secret of the pair, 32 bytes!!".utf8),
                attributes: [.posixPermissions: 0o600]
            )
            try await body(pair)
        }
    }

    /// Whether both processes report synchronization within 30 s.
    static func synchronized(_ one: NodeChild, _ two: NodeChild) async -> Bool {
        for _ in 0..<300 {
            let first = await one.synchronized()
            if await two.synchronized(), first { return true }
        }
        return false
    }

    @Test(
        "SIGKILL of the active device during a login storm: every login acknowledged as replicated is on the promoted standby"
    )
    func sigkillDuringReplicatedStorm() async throws {
        try await Self.withPairAndSecret { pair in
            let active = try NodeChild(id: 1, pair: pair)
            let standby = try NodeChild(id: 2, pair: pair)
            defer {
                active.kill()
                standby.kill()
            }
            try #require(await Self.synchronized(active, standby), "the two processes never synchronized")
            try active.send("storm 0 1000000 replicated 64")
            #expect(await eventually(within: .seconds(60)) { active.acknowledged.count >= 5_000 })
            active.kill()
            let acknowledged = active.acknowledged
            #expect(active.process.terminationReason == .uncaughtSignal)

            try standby.send("promote")
            #expect(await eventually(within: .seconds(30)) { standby.lastLine(startingWith: "promoted") != nil })
            let promoted = try #require(standby.lastLine(startingWith: "promoted"))
            #expect(promoted.contains("term=2"))
            try standby.send("quit")
            standby.process.waitUntilExit()
            #expect(standby.process.terminationStatus == 0)

            let store = try SessionStore.open(
                at: pair.path(2),
                configuration: .init(deviceID: 2, portalGroup: "campus")
            )
            var missing = 0
            for number in acknowledged
            where try store.session(for: IPAddress(ipv4: 0x0A00_0000 | UInt32(number))) == nil {
                missing += 1
            }
            #expect(missing == 0, "logins acknowledged as replicated are missing on the promoted device")
            #expect(store.count >= acknowledged.count)
            // Device 2 owns them in effect now.
            let one = try #require(try store.session(for: IPAddress(ipv4: 0x0A00_0000 | UInt32(acknowledged.first!))))
            #expect(store.effectiveOwner(of: one) == 2)
            await store.close()
        }
    }

    @Test(
        "SIGKILL of the active device during an accounting round: every update acknowledged as replicated is on the promoted standby"
    )
    func sigkillDuringReplicatedUpdates() async throws {
        try await Self.withPairAndSecret { pair in
            let active = try NodeChild(id: 1, pair: pair)
            let standby = try NodeChild(id: 2, pair: pair)
            defer {
                active.kill()
                standby.kill()
            }
            try #require(await Self.synchronized(active, standby), "the two processes never synchronized")
            let users = 20_000
            try active.send("storm 0 \(users) replicated 64")
            #expect(await eventually(within: .seconds(120)) { active.lastLine(startingWith: "storm-done") != nil })
            try active.send("update-storm 0 \(users) replicated 64")
            #expect(await eventually(within: .seconds(60)) { active.acknowledgedUpdates.count >= 3_000 })
            active.kill()
            let acknowledged = active.acknowledgedUpdates
            #expect(acknowledged.count < users, "the round ended before the kill; the test proves nothing")

            try standby.send("promote")
            #expect(await eventually(within: .seconds(30)) { standby.lastLine(startingWith: "promoted") != nil })
            try standby.send("quit")
            standby.process.waitUntilExit()
            #expect(standby.process.terminationStatus == 0)

            let store = try SessionStore.open(
                at: pair.path(2),
                configuration: .init(deviceID: 2, portalGroup: "campus")
            )
            // Every user is still online (the storm's logins were all acknowledged as replicated before the round),
            // and every acknowledged report is on it.
            var missing = 0
            for number in 0..<users {
                let session = try #require(try store.session(for: IPAddress(ipv4: 0x0A00_0000 | UInt32(number))))
                if acknowledged.contains(number), session.accounting.inputOctets != UInt64(number) << 32 | 0xACC7 {
                    missing += 1
                }
            }
            #expect(missing == 0, "updates acknowledged as replicated are missing on the promoted device")
            await store.close()

            // The killed device's own store, reopened: it replays its log past the checkpoint, updates included,
            // and holds every update it acknowledged.
            let killedStore = try SessionStore.open(
                at: pair.path(1),
                configuration: .init(deviceID: 1, portalGroup: "campus")
            )
            var lost = 0
            for number in acknowledged {
                let session = try killedStore.session(for: IPAddress(ipv4: 0x0A00_0000 | UInt32(number)))
                if session?.accounting.inputOctets != UInt64(number) << 32 | 0xACC7 { lost += 1 }
            }
            #expect(lost == 0, "acknowledged updates are missing from the killed device's store after its restart")
            await killedStore.close()
        }
    }

    @Test(
        "the killed active restarted at once after the failover: both devices hold every acknowledged login and none of the users logged out"
    )
    func quickRestartAfterFailover() async throws {
        try await Self.withPairAndSecret { pair in
            var active = try NodeChild(id: 1, pair: pair)
            let standby = try NodeChild(id: 2, pair: pair)
            defer {
                active.kill()
                standby.kill()
            }
            try #require(await Self.synchronized(active, standby), "the two processes never synchronized")
            // Logins and logouts run concurrently on the node, each answered with its user's number.
            let first = active
            let logins = Thread {
                for number in 0..<100_000 { try? first.send("login \(number) replicated") }
            }
            logins.start()
            #expect(await eventually(within: .seconds(60)) { active.acknowledged.count >= 3_000 })
            // Some of the acknowledged users log out just before the active device dies.
            let leaving = Set(active.acknowledged.sorted().prefix(300))
            for number in leaving.sorted() { try active.send("logout \(number) user replicated") }
            #expect(await eventually(within: .seconds(30)) { active.loggedOut.count >= 100 })
            active.kill()
            let acknowledged = active.acknowledged
            let loggedOut = active.loggedOut

            try standby.send("promote")
            #expect(await eventually(within: .seconds(30)) { standby.lastLine(startingWith: "promoted") != nil })
            // Restarted at once, as a supervisor would: it steps down and recovers from the promoted device.
            active = try NodeChild(id: 1, pair: pair)
            try #require(await Self.synchronized(active, standby), "the pair did not return to synchronization")
            try active.send("quit")
            try standby.send("quit")
            active.process.waitUntilExit()
            standby.process.waitUntilExit()

            for id: UInt8 in [1, 2] {
                let online = Set(try StoreReader(path: pair.path(id)).onlineSessions().map(\.ip))
                let missing = acknowledged.subtracting(leaving).filter {
                    !online.contains(IPAddress(ipv4: 0x0A00_0000 | UInt32($0)))
                }
                #expect(missing.isEmpty, "device \(id) lacks \(missing.count) acknowledged logins")
                let back = loggedOut.filter { online.contains(IPAddress(ipv4: 0x0A00_0000 | UInt32($0))) }
                #expect(back.isEmpty, "\(back.count) logged-out users are online on device \(id)")
            }
        }
    }

    @Test(
        "SIGTERM during a replicated login storm: the device closes the link (its peer goes to independence because the connection closed), closes its store and exits 0; the store reopens with every acknowledged login"
    )
    func sigtermClosesCleanly() async throws {
        try await Self.withPairAndSecret { pair in
            let active = try NodeChild(id: 1, pair: pair)
            let standby = try NodeChild(id: 2, pair: pair)
            defer {
                active.kill()
                standby.kill()
            }
            try #require(await Self.synchronized(active, standby), "the two processes never synchronized")
            try active.send("storm 0 1000000 replicated 64")
            #expect(await eventually(within: .seconds(60)) { active.acknowledged.count >= 2_000 })

            let statesBefore = standby.lines(startingWith: "state").count
            Foundation.kill(active.process.processIdentifier, SIGTERM)
            #expect(await eventually(within: .seconds(30)) { !active.process.isRunning })
            active.process.waitUntilExit()
            #expect(active.process.terminationReason == .exit)
            #expect(active.process.terminationStatus == 0)
            #expect(active.lastLine(startingWith: "closed") != nil)
            let acknowledged = active.acknowledged

            // The peer saw the connection close: no link to the peer, never a link lost (silence or a reset).
            #expect(
                await eventually {
                    standby.lastLine(startingWith: "state")?.contains("independence_(no_link_to_the_peer)") == true
                }
            )
            let states = standby.lines(startingWith: "state").dropFirst(statesBefore)
            #expect(states.allSatisfy { !$0.contains("link_lost") }, "the standby saw: \(Array(states))")
            try standby.send("quit")
            standby.process.waitUntilExit()
            #expect(standby.process.terminationStatus == 0)

            // The store was closed with a checkpoint of everything, and holds every acknowledged login.
            let positions = try StoreReader(path: pair.path(1)).positions()
            #expect(positions.checkpointSequence == positions.lastSequence)
            let store = try SessionStore.open(
                at: pair.path(1),
                configuration: .init(deviceID: 1, portalGroup: "campus")
            )
            var missing = 0
            for number in acknowledged
            where try store.session(for: IPAddress(ipv4: 0x0A00_0000 | UInt32(number))) == nil {
                missing += 1
            }
            #expect(
                missing == 0,
                "\(missing) of \(acknowledged.count) acknowledged logins are missing after the restart"
            )
            await store.close()
        }
    }
}
