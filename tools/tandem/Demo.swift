import ArgumentParser
import Foundation
import Logging
import SessionStore

/// The single-device demonstration: users log in, the store is closed and reopened, and they are all back.
struct Demo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Log users in, close and reopen the store, and show them back, with timings.",
        discussion: """
            Example:
              tandem demo --users 200000
              tandem demo --path /tmp/demo-store --keep
            """
    )

    @Option(help: "The store's directory (default: a new temporary directory, removed afterwards).")
    var path: String?

    @Option(help: "How many users to log in.")
    var users: Int = 200_000

    @Option(help: "How many concurrent callers log users in.")
    var concurrency: Int = 256

    @Flag(help: "Keep the store afterwards.")
    var keep = false

    func run() async throws {
        let directory =
            path
            ?? FileManager.default.temporaryDirectory
            .appendingPathComponent("tandem-demo-\(getpid())").path
        defer { if !keep && path == nil { try? FileManager.default.removeItem(atPath: directory) } }
        var configuration = SessionStore.Configuration(deviceID: 1, portalGroup: "campus")
        configuration.durability = .syncEveryCommit
        print("Tandem demo: \(users) users, \(concurrency) concurrent callers, every commit synced to disk")
        print("store: \(directory)")

        var logger = Logger(label: "tandem.demo")
        logger.logLevel = .warning
        var clock = ContinuousClock.now
        var store = try SessionStore.open(at: directory, configuration: configuration, logger: logger)
        let already = store.count
        print(row("opened", ContinuousClock.now - clock, "\(already) users online"))

        clock = ContinuousClock.now
        let next = ManagedCounter(0)
        let total = users
        let opened = store
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<concurrency {
                group.addTask {
                    while true {
                        let number = next.next()
                        guard number < total else { return }
                        let session = StormSession.make(number: number, portalGroup: "campus", owner: 1)
                        if try opened.session(for: session.ip) == nil { try await opened.login(session) }
                    }
                }
            }
            try await group.waitForAll()
        }
        let loginTime = ContinuousClock.now - clock
        print(row("logged in", loginTime, "\(store.count) online, \(rate(users, loginTime)) logins/s"))

        clock = ContinuousClock.now
        await store.close()
        print(
            row(
                "closed (checkpointed)",
                ContinuousClock.now - clock,
                "\(store.diskUsage.totalBytes / 1024) KiB on disk"
            )
        )

        clock = ContinuousClock.now
        store = try SessionStore.open(at: directory, configuration: configuration, logger: logger)
        print(row("reopened", ContinuousClock.now - clock, "\(store.count) users online"))

        clock = ContinuousClock.now
        var found = 0
        for number in 0..<users where try store.session(for: StormSession.address(number)) != nil { found += 1 }
        let lookupTime = ContinuousClock.now - clock
        print(
            row("looked every user up", lookupTime, "\(found) of \(users) found, \(rate(users, lookupTime)) lookups/s")
        )

        let sample = try store.sessions(withUserName: "user\(users / 2)")
        for session in sample {
            print(
                "  \(session.ip)  \(session.mac)  vlan \(session.vlan)  \(session.accessInterface)  "
                    + "\(session.userName)  owner \(session.owner)  login \(session.loginTime)"
            )
        }
        await store.close()
        if found != users { throw ValidationFailure("only \(found) of \(users) users came back") }
        print("every user came back")
    }

    private func row(_ what: String, _ duration: Duration, _ detail: String) -> String {
        let ms = Double(duration.components.seconds) * 1000 + Double(duration.components.attoseconds) / 1e15
        return "  " + what.padding(toLength: 24, withPad: " ", startingAt: 0)
            + String(format: "%9.1f ms   ", ms) + detail
    }

    private func rate(_ count: Int, _ duration: Duration) -> String {
        let seconds = Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
        return String(format: "%.0f", Double(count) / max(seconds, 1e-9))
    }
}

struct ValidationFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
