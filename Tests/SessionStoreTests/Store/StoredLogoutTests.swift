import LMDB
import Locking
import TestSupport
import Testing

@testable import SessionStore

/// A logout reads the session it ends from its stored bytes, in memory or in the users table, without
/// decoding it: what it logs and the digest it leaves must be those of the session decoded.
@Suite("Logouts read from the stored bytes")
struct StoredLogoutTests {
    @Test(
        "logouts of sessions on disk and in memory, with and without parts, one at a time and in a batch, log the sessions' fields and keep the digest a recount finds"
    )
    func logoutsFromStoredBytes() async throws {
        let directory = TemporaryDirectory()
        let store = try SessionStore.open(at: directory.path, configuration: .test())
        try await store.initializeDigest()
        var random = SeededGenerator(seed: 7)
        // Users 0..<40 are checkpointed to the users table; 40..<80 wait in memory. Every third has an
        // accounting report, every fourth a change of authorization, every fifth an activity.
        func add(_ numbers: Range<Int>) async throws -> [Session] {
            var online: [Session] = []
            for number in numbers {
                var session = try await store.login(testSession(number))
                if number % 3 == 0 {
                    session = try await store.update(
                        .accountingInterim(session.ip, randomAccounting(using: &random))
                    )
                }
                if number % 4 == 0 {
                    session = try await store.update(
                        .changeOfAuthorization(session.ip, randomAuthorization(using: &random), sessionTimeout: 600)
                    )
                }
                if number % 5 == 0 { session = try await store.update(.activity(session.ip, at: .now)) }
                online.append(session)
            }
            return online
        }
        let onDisk = try await add(0..<40)
        try await store.checkpoint()
        let inMemory = try await add(40..<80)
        let everyone = onDisk + inMemory
        #expect(everyone.contains { $0.hasParts } && everyone.contains { !$0.hasParts })

        // One at a time: half of each kind.
        for (index, session) in everyone.enumerated() where index % 2 == 0 {
            let logout = try await store.logout(session.ip, reason: .user)
            #expect(logout == Logout(ending: session, reason: .user))
        }
        // The rest in one batch, with an address that is no longer online among them.
        let rest = everyone.enumerated().filter { $0.offset % 2 == 1 }.map(\.element)
        let gone = everyone[0].ip
        let results = try await store.logout(contentsOf: rest.map { ($0.ip, .idleTimeout) } + [(gone, .user)])
        for (session, result) in zip(rest, results) {
            #expect(try result.get() == Logout(ending: session, reason: .idleTimeout))
        }
        #expect(throws: SessionStoreError.self) { try results.last!.get() }
        if case .failure(let error) = results.last! { #expect(error.kind == .notOnline) }
        #expect(store.count == 0)
        // The table is empty: the digest kept through the logouts is 0.
        let (kept, _) = try await closeAndRecount(store, at: directory.path, deviceID: 1)
        #expect(kept == 0)
    }

    @Test(
        "the peer's logouts end its copies on disk and in memory, with and without parts, only of the generation they name; one of this device's users is announced; the digest is the recount's"
    )
    func peerLogoutsFromStoredBytes() async throws {
        let directory = TemporaryDirectory()
        let store = try SessionStore.open(at: directory.path, configuration: .test(deviceID: 1))
        try await store.initializeDigest()
        var random = SeededGenerator(seed: 11)
        // Device 2's users, copied here: 0..<20 checkpointed, 20..<40 in memory; every third with parts.
        var peerSequence: UInt64 = 0
        var copies: [Session] = []
        func copy(_ numbers: Range<Int>) async throws {
            var records: [LogRecord] = []
            for number in numbers {
                peerSequence += 1
                var user = testSession(number, owner: 2)
                user.generation = Generation(term: 1, sequence: peerSequence)
                if number % 3 == 0 {
                    user.accounting = randomAccounting(using: &random)
                    user.revisions.accounting = Revision(term: 1, sequence: peerSequence, device: 2)
                }
                copies.append(user)
                records.append(LogRecord(sequence: peerSequence, term: 1, origin: 2, time: .now, event: .login(user)))
            }
            _ = try await store.applyPeer(.records(origin: 2, through: peerSequence, history: 9, records))
        }
        try await copy(0..<20)
        try await store.checkpoint()
        try await copy(20..<40)
        // One of this device's own users, which device 2 logs off (R7).
        let own = try await store.login(testSession(100))
        #expect(store.count == 41)

        func apply(_ events: [Event]) async throws {
            let records = events.map { event in
                peerSequence += 1
                return LogRecord(sequence: peerSequence, term: 1, origin: 2, time: .now, event: event)
            }
            _ = try await store.applyPeer(.records(origin: 2, through: peerSequence, history: 9, records))
        }
        // Logouts of an older generation of a copied user, on disk and in memory, end nothing; nor do logouts
        // of the right generation that name another owner.
        var older = [Logout(ending: copies[1], reason: .user), Logout(ending: copies[21], reason: .user)]
        for index in older.indices { older[index].generation = Generation(term: 1, sequence: 0) }
        var otherOwner = [Logout(ending: copies[2], reason: .user), Logout(ending: copies[22], reason: .user)]
        for index in otherOwner.indices { otherOwner[index].owner = 3 }
        try await apply((older + otherOwner).map { .logout($0) })
        #expect(store.count == 41)
        #expect(try store.session(for: copies[1].ip) == copies[1])
        #expect(try store.session(for: copies[21].ip) == copies[21])
        #expect(try store.session(for: copies[2].ip) == copies[2])
        #expect(try store.session(for: copies[22].ip) == copies[22])
        var logouts = copies.map { Event.logout(Logout(ending: $0, reason: .user)) }
        logouts.append(.logout(Logout(ending: own, reason: .deleteUser)))
        try await apply(logouts)
        #expect(store.count == 0)
        let announced = Locked<[Logout]>([])
        let listener = Task { [store] in
            for await batch in store.automaticLogouts { announced.withLock { $0 += batch } }
        }
        #expect(await eventually { announced.withLock { $0 }.contains { $0.ip == own.ip } })
        listener.cancel()
        #expect(announced.withLock { $0 }.filter { $0.ip == own.ip } == [Logout(ending: own, reason: .deleteUser)])
        #expect(!announced.withLock { $0 }.contains { $0.owner == 2 })
        let (_, count) = try await closeAndRecount(store, at: directory.path, deviceID: 1)
        #expect(count == 0)
    }

    @Test(
        "an address logged off twice in one batch is ended once; a session logged in and off in one batch of the peer's stream is ended from the staged session"
    )
    func logoutsOfStagedSessions() async throws {
        let directory = TemporaryDirectory()
        let store = try SessionStore.open(at: directory.path, configuration: .test(deviceID: 1))
        try await store.initializeDigest()
        let user = try await store.login(testSession(1))
        let results = try await store.logout(contentsOf: [(user.ip, .user), (user.ip, .deleteUser)])
        #expect(try results[0].get() == Logout(ending: user, reason: .user))
        if case .failure(let error) = results[1] { #expect(error.kind == .notOnline) } else { Issue.record() }
        // Device 2 logs a user in and out; both come in one batch of its stream.
        var copy = testSession(2, owner: 2)
        copy.generation = Generation(term: 1, sequence: 1)
        _ = try await store.applyPeer(
            .records(
                origin: 2,
                through: 2,
                history: 9,
                [
                    LogRecord(sequence: 1, term: 1, origin: 2, time: .now, event: .login(copy)),
                    LogRecord(
                        sequence: 2,
                        term: 1,
                        origin: 2,
                        time: .now,
                        event: .logout(Logout(ending: copy, reason: .user))
                    ),
                ]
            )
        )
        #expect(try store.session(for: copy.ip) == nil)
        #expect(store.count == 0)
        let (kept, count) = try await closeAndRecount(store, at: directory.path, deviceID: 1)
        #expect(kept == 0)
        #expect(count == 0)
    }

    @Test(
        "a logout of a stored session that is damaged, or whose checksum holds but whose user name breaks the rules, fails as a decode fails, naming the address, and logs nothing",
        arguments: [false, true]
    )
    func damagedStoredSession(checksumHolds: Bool) async throws {
        let directory = TemporaryDirectory()
        let users = (0..<3).map { testSession($0) }
        var stored: [Session] = []
        do {
            let store = try SessionStore.open(at: directory.path, configuration: .test())
            for user in users { stored.append(try await store.login(user)) }
            await store.close()
        }
        let environment = try Environment(path: directory.path + "/" + StoreLayout.usersFile)
        let table = try environment.openDatabase("users")
        let key = stored[1].ip.withUnsafeBytes { Array($0) }
        var value: [UInt8] = []
        if checksumHolds {
            var nameless = stored[1]
            nameless.userName = ""
            RecordCodec.encodeSessionValue(nameless, into: &value)
        } else {
            value = try #require(try environment.read { txn in try txn.value(forKey: key, in: table) })
            value[value.count / 2] ^= 0x40
        }
        try environment.write { txn in try txn.put(key, value, in: table) }

        let store = try SessionStore.open(at: directory.path, configuration: .test())
        let before = store.lastLoggedSequence
        let error = await #expect(throws: SessionStoreError.self) {
            try await store.logout(stored[1].ip, reason: .user)
        }
        #expect(error?.kind == .corruptRecord)
        #expect(error?.description.contains(stored[1].ip.description) == true)
        if checksumHolds { #expect(error?.description.contains("userName") == true) }
        #expect(store.lastLoggedSequence == before)
        // The others log off as ever.
        #expect(try await store.logout(stored[2].ip, reason: .user) == Logout(ending: stored[2], reason: .user))
        await store.close()
    }
}
