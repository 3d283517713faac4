import Foundation
import TestSupport
import Testing

@testable import SessionStore

@Suite("Crash recovery", .serialized)
struct CrashTests {
    @Test(
        "SIGKILL during a login storm: every acknowledged login is back, no logged-out user comes back",
        arguments: [3_000, 25_000]
    )
    func sigkillDuringLoginStorm(acknowledgementsBeforeKill: Int) async throws {
        let directory = TemporaryDirectory()
        let path = directory.child("store")
        let process = Process()
        process.executableURL = tandemExecutable()
        process.arguments = [
            "storm", "--path", path, "--portal-group", "campus", "--users", "2000000", "--concurrency", "64",
            "--durability", "sync",
        ]
        let output = Pipe()
        process.standardOutput = output
        try process.run()

        var logins = Set<IPAddress>()
        var logouts = Set<IPAddress>()
        var pending = Data()
        var killed = false
        let handle = output.fileHandleForReading
        while true {
            let chunk = handle.availableData
            if chunk.isEmpty { break }  // EOF: the process is gone and every line it wrote was read
            pending.append(chunk)
            while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: pending[pending.startIndex..<newline], as: UTF8.self)
                pending.removeSubrange(pending.startIndex...newline)
                let parts = line.split(separator: " ")
                guard parts.count == 2, let ip = IPAddress(parts[1]) else { continue }
                if parts[0] == "login" { logins.insert(ip) } else { logouts.insert(ip) }
            }
            if !killed && logins.count >= acknowledgementsBeforeKill {
                kill(process.processIdentifier, SIGKILL)
                killed = true
            }
        }
        process.waitUntilExit()
        #expect(process.terminationReason == .uncaughtSignal)
        #expect(process.terminationStatus == SIGKILL)
        #expect(logins.count >= acknowledgementsBeforeKill)

        let store = try SessionStore.open(at: path, configuration: .test())
        var missing = 0
        var resurrected = 0
        for ip in logins {
            let number = Int(ip.ipv4! - 0x0A00_0000)
            let present = try store.session(for: ip) != nil
            if logouts.contains(ip) {
                if present { resurrected += 1 }
            } else if number % 3 != 0 {  // every third user's logout may have committed unacknowledged
                if !present { missing += 1 }
            }
        }
        #expect(missing == 0, "acknowledged logins lost")
        #expect(resurrected == 0, "logged-out users came back")
        // The reopened store is consistent with its own log and goes on.
        let all = try store.allSessions()
        #expect(all.count == store.count)
        try await store.login(testSession(3_000_000))
        await store.close()
    }
}
