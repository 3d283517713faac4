import Foundation
import TestSupport
import Testing

@testable import SessionStore

/// A tmpfs of a chosen size mounted on a temporary directory, unmounted when released. Needs root.
final class SmallFileSystem {
    let directory = TemporaryDirectory()
    var path: String { directory.path }

    static var available: Bool {
        guard geteuid() == 0, let probe = try? SmallFileSystem(kibibytes: 64) else { return false }
        _ = probe
        return true
    }

    init(kibibytes: Int) throws {
        guard run("/bin/mount", "-t", "tmpfs", "-o", "size=\(kibibytes)k", "tmpfs", directory.path) else {
            throw CocoaError(.fileWriteNoPermission)
        }
    }

    func resize(kibibytes: Int) -> Bool {
        run("/bin/mount", "-o", "remount,size=\(kibibytes)k", directory.path)
    }

    deinit { _ = run("/bin/umount", "-l", directory.path) }
}

@discardableResult
private func run(_ arguments: String...) -> Bool {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: arguments[0])
    process.arguments = Array(arguments.dropFirst())
    process.standardError = FileHandle.nullDevice
    guard (try? process.run()) != nil else { return false }
    process.waitUntilExit()
    return process.terminationStatus == 0
}

@Suite("A full disk", .serialized)
struct FullDiskTests {
    @Test(
        "writes fail with a clear error, nothing acknowledged is lost, and the store reopens once there is space",
        .enabled(if: SmallFileSystem.available, "needs root to mount a small tmpfs")
    )
    func fullDisk() async throws {
        let disk = try SmallFileSystem(kibibytes: 1536)
        let path = disk.path + "/store"
        var configuration = SessionStore.Configuration.test()
        configuration.initialMapSize = 256 << 10
        configuration.checkpointThreshold = 500
        let store = try SessionStore.open(at: path, configuration: configuration)
        var acknowledged: [Session] = []
        var failure: SessionStoreError?
        for number in 0..<200_000 {
            do {
                acknowledged.append(try await store.login(testSession(number)))
            } catch {
                failure = error
                break
            }
        }
        let error = try #require(failure)
        #expect(error.kind == .storage)
        // ENOSPC from the write, or EIO when the kernel reports the failed write at the sync.
        #expect(
            error.description.contains("No space left on device") || error.description.contains("Input/output error")
        )
        #expect(error.description.contains("nothing of this operation was stored"))
        #expect(acknowledged.count > 100)
        #expect(store.count == acknowledged.count)
        for session in acknowledged { #expect(try store.session(for: session.ip) == session) }
        let batch = await #expect(throws: SessionStoreError.self) {
            try await store.login(contentsOf: (300_000..<300_100).map { testSession($0) })
        }
        #expect(batch?.kind == .storage)
        #expect(store.count == acknowledged.count)
        await store.close()  // returns even though its final checkpoint may not fit

        #expect(disk.resize(kibibytes: 64 << 10))
        let reopened = try SessionStore.open(at: path, configuration: configuration)
        #expect(reopened.count == acknowledged.count)
        #expect(try reopened.allSessions() == acknowledged.sorted { $0.ip < $1.ip })
        try await reopened.login(testSession(900_000))
        await reopened.close()
    }
}
