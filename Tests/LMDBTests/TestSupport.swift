import Foundation
import LMDB
import Locking
import Synchronization
import TestSupport

/// Runs `body` with a fresh directory, removed afterwards.
func withTemporaryDirectory<R>(_ body: (String) throws -> R) throws -> R {
    let directory = TemporaryDirectory(prefix: "lmdb-tests")
    return try withExtendedLifetime(directory) { try body(directory.path) }
}

/// The bytes of `value` in big-endian order: keys that sort numerically.
func bigEndianKey(_ value: UInt64) -> [UInt8] {
    withUnsafeBytes(of: value.bigEndian) { Array($0) }
}

/// Reads a big-endian `UInt64` key.
func decodeBigEndian(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
    UInt64(bigEndian: bytes.loadUnaligned(as: UInt64.self))
}

func bytes(_ string: String) -> [UInt8] {
    Array(string.utf8)
}

func string(_ buffer: UnsafeRawBufferPointer) -> String {
    String(decoding: buffer, as: UTF8.self)
}

/// A configuration that does not fsync, for tests that write a lot.
func fastConfiguration() -> Environment.Configuration {
    var configuration = Environment.Configuration()
    configuration.durability = .noSync
    return configuration
}

/// The size of a file in bytes.
func fileSize(_ path: String) throws -> Int {
    let attributes = try FileManager.default.attributesOfItem(atPath: path)
    return (attributes[.size] as? NSNumber)?.intValue ?? -1
}

/// Flags and counters shared with reader threads.
final class SharedState: Sendable {
    let stop = Atomic<Bool>(false)
    let reads = Atomic<Int>(0)
    let readers = Atomic<Int>(0)
    let failures = Locked<[String]>([])

    func fail(_ message: String) {
        failures.withLock { $0.append(message) }
    }
}
