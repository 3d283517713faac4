import Foundation
import LMDB
import Synchronization

/// Runs `body` with a fresh directory made by `mkdtemp`, removed afterwards.
func withTemporaryDirectory<R>(_ body: (String) throws -> R) throws -> R {
    var template = Array((NSTemporaryDirectory() + "/lmdb-tests-XXXXXX").utf8CString)
    let path = template.withUnsafeMutableBufferPointer { buffer -> String? in
        guard let result = mkdtemp(buffer.baseAddress!) else { return nil }
        return String(cString: result)
    }
    guard let path else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
    defer { try? FileManager.default.removeItem(atPath: path) }
    return try body(path)
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
    let failures = Mutex<[String]>([])

    func fail(_ message: String) {
        failures.withLock { $0.append(message) }
    }
}
