import Foundation
import NIOCore
import SessionStore
import Testing

@testable import FailoverLink

/// Reproductions of what tools/fuzz-stream.sh found, each as small as it goes: frames of a hostile but
/// authenticated peer, decoded and applied to device 2's store as the connection does.
@Suite("Findings of the stream fuzzer")
struct StreamFuzzFindingsTests {
    /// Device 2's store in a directory of its own, removed afterwards; `body` may close it and open it again.
    static func withStore(_ body: (_ open: () throws -> SessionStore) async throws -> Void) async throws {
        let directory = NSTemporaryDirectory() + "tandem-stream-finding-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var configuration = SessionStore.Configuration(deviceID: 2, portalGroup: "campus")
        configuration.durability = .noSync
        configuration.expiryInterval = nil
        configuration.initialMapSize = 16 << 20
        try await body { try SessionStore.open(at: directory, configuration: configuration) }
    }

    /// Decodes `frame` as the connection's reader does and applies it as device 1's stream.
    static func apply(_ frame: Frame, to store: SessionStore) async throws -> PeerApplied {
        let work = try #require(try PeerWork.decode(frame))
        return try await store.applyPeer(try #require(work.batch(origin: 1, history: 7)))
    }

    static func recordsFrame(through: UInt64, _ records: [LogRecord]) -> Frame {
        var bytes: [UInt8] = []
        for record in records {
            var unit: [UInt8] = []
            RecordCodec.encode(record, into: &unit)
            withUnsafeBytes(of: UInt32(unit.count).bigEndian) { bytes.append(contentsOf: $0) }
            bytes.append(contentsOf: unit)
        }
        return RecordsMessage.frame(through: through, records: bytes)
    }

    /// Takeovers of device 3 the peer sends: one in effect, then one it covers (an older term, or the same
    /// term to another device).
    static let coveredTakeovers: [[Takeover]] = [
        [Takeover(from: 3, to: 1, term: 5), Takeover(from: 3, to: 2, term: 2)],
        [Takeover(from: 3, to: 9, term: 3), Takeover(from: 3, to: 1, term: 3)],
    ]

    @Test(
        "a snapshot's takeover that an earlier one covers does not replace it on disk",
        arguments: coveredTakeovers
    )
    func coveredTakeoverInSnapshot(_ takeovers: [Takeover]) async throws {
        try await Self.withStore { open in
            var store = try open()
            _ = try await Self.apply(SnapshotBeginMessage.frame(takeovers: takeovers), to: store)
            #expect(store.takeovers.byDevice[3] == takeovers[0])
            await store.close()
            store = try open()
            #expect(store.takeovers.byDevice[3] == takeovers[0])
            await store.close()
        }
    }

    @Test(
        "a takeover record that an earlier one covers does not replace it on disk",
        arguments: coveredTakeovers
    )
    func coveredTakeoverInStream(_ takeovers: [Takeover]) async throws {
        try await Self.withStore { open in
            var store = try open()
            let records = takeovers.enumerated().map { index, takeover in
                LogRecord(
                    sequence: UInt64(index + 1),
                    term: takeover.term,
                    origin: 1,
                    time: .now,
                    event: .takeover(from: takeover.from, to: takeover.to, term: takeover.term)
                )
            }
            _ = try await Self.apply(Self.recordsFrame(through: 2, records), to: store)
            #expect(store.takeovers.byDevice[3] == takeovers[0])
            await store.close()
            store = try open()
            #expect(store.takeovers.byDevice[3] == takeovers[0])
            await store.close()
        }
    }

    @Test("a promotion over the peer that a known takeover of its users covers does not replace that one on disk")
    func coveredPromotion() async throws {
        try await Self.withStore { open in
            var store = try open()
            // The peer streams a takeover of its own users by device 3 at a term far above this device's.
            let byThird = Takeover(from: 1, to: 3, term: .max)
            let record = LogRecord(
                sequence: 1,
                term: 1,
                origin: 1,
                time: .now,
                event: .takeover(from: 1, to: 3, term: .max)
            )
            _ = try await Self.apply(Self.recordsFrame(through: 1, [record]), to: store)
            #expect(store.takeovers.byDevice[1] == byThird)
            // This device then promotes itself over device 1, at a lower term: the known takeover stays.
            _ = try await store.promote(over: 1, peerTerm: 200)
            #expect(store.takeovers.byDevice[1] == byThird)
            await store.close()
            store = try open()
            #expect(store.takeovers.byDevice[1] == byThird)
            await store.close()
        }
    }
}
