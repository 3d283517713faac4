import Dispatch
import Foundation
import LMDB
import Testing

@Suite("The map grows by itself")
struct MapGrowthTests {
    static let countKey = bytes("count")

    /// A value of `size` bytes: `index` repeated as native 8-byte words.
    static func pattern(_ index: UInt64, _ size: Int) -> [UInt8] {
        [UInt64](repeating: index, count: size / 8).withUnsafeBytes { Array($0) }
    }

    /// Writes `count` records of `size` bytes, keys `first...`, each value the key repeated as
    /// 8-byte words, and stores the new total under `countKey`, all in one transaction.
    static func append(
        _ env: Environment,
        data: Database,
        meta: Database,
        from first: UInt64,
        count: Int,
        size: Int,
        runs: inout Int
    ) throws {
        try env.write { txn in
            runs += 1
            for index in first..<first + UInt64(count) {
                _ = try bigEndianKey(index).withUnsafeBytes { key in
                    try txn.reserve(key: key, count: size, in: data, flags: .append) { buffer in
                        pattern(index, size).withUnsafeBytes { buffer.copyMemory(from: $0) }
                    }
                }
            }
            try txn.put(countKey, bigEndianKey(first + UInt64(count)), in: meta)
        }
    }

    /// Checks in one snapshot that the record count, the number of entries and the last record
    /// agree.
    static func checkSnapshot(_ env: Environment, data: Database, meta: Database) throws -> String? {
        try env.read { txn in
            guard let stored = try txn.value(forKey: countKey, in: meta) else {
                return try txn.statistics(data).entries == 0 ? nil : "entries without a count"
            }
            let total = stored.withUnsafeBytes { decodeBigEndian($0) }
            let entries = try txn.statistics(data).entries
            guard entries == Int(total) else { return "count \(total) but \(entries) entries" }
            guard total > 0 else { return nil }
            return try txn.withCursor(data) { cursor in
                guard let (key, value) = try cursor.move(.last) else { return "no last entry" }
                let index = decodeBigEndian(key)
                guard index == total - 1 else { return "last key \(index), expected \(total - 1)" }
                guard value.elementsEqual(Self.pattern(index, value.count)) else { return "last value damaged" }
                return nil
            }
        }
    }

    @Test func writesFiftyMegabytesFromA64KiBMapWhileReadersRead() throws {
        try withTemporaryDirectory { dir in
            var configuration = fastConfiguration()
            configuration.initialMapSize = 64 * 1024
            let env = try Environment(path: dir + "/grow.mdb", configuration: configuration)
            let initialMapSize = env.mapSize
            #expect(initialMapSize == 64 * 1024)
            let data = try env.openDatabase("data", flags: .create)
            let meta = try env.openDatabase("meta", flags: .create)

            let shared = SharedState()
            let group = DispatchGroup()
            // Dedicated threads, so both readers really run beside the writer.
            for _ in 0..<2 {
                group.enter()
                Thread {
                    defer { group.leave() }
                    shared.readers.add(1, ordering: .relaxed)
                    while !shared.stop.load(ordering: .relaxed) {
                        do {
                            if let problem = try Self.checkSnapshot(env, data: data, meta: meta) {
                                shared.fail(problem)
                            }
                            shared.reads.add(1, ordering: .relaxed)
                        } catch {
                            shared.fail("\(error)")
                        }
                    }
                }.start()
            }
            while shared.readers.load(ordering: .relaxed) < 2 { usleep(100) }

            var runs = 0
            var next: UInt64 = 0
            // 25 MB in 5 large transactions of 5 MB (4 KiB values: overflow pages).
            for _ in 0..<5 {
                try Self.append(env, data: data, meta: meta, from: next, count: 1_280, size: 4_096, runs: &runs)
                next += 1_280
            }
            let largeRuns = runs
            // 25 MB in 2,500 small transactions of 10 KiB (1 KiB values).
            for _ in 0..<2_500 {
                try Self.append(env, data: data, meta: meta, from: next, count: 10, size: 1_024, runs: &runs)
                next += 10
            }

            shared.stop.store(true, ordering: .relaxed)
            group.wait()

            #expect(shared.failures.withLock { $0 } == [])
            #expect(shared.reads.load(ordering: .relaxed) > 0)
            // The large transactions outgrew the map and ran again after it doubled.
            #expect(largeRuns > 5)
            let info = env.info()
            #expect(info.mapSize > 50_000_000)
            #expect(info.mapSize > initialMapSize)
            #expect(info.usedSize <= info.mapSize)

            // Everything reads back.
            let (checked, damaged) = try env.read { txn in
                try txn.withCursor(data) { cursor in
                    var checked: UInt64 = 0
                    var damaged = 0
                    while let (key, value) = try cursor.move(.next) {
                        let index = decodeBigEndian(key)
                        let expectedSize = index < 6_400 ? 4_096 : 1_024
                        let intact =
                            index == checked && value.count == expectedSize
                            && Self.pattern(index, expectedSize).withUnsafeBytes {
                                memcmp($0.baseAddress!, value.baseAddress!, expectedSize) == 0
                            }
                        if !intact { damaged += 1 }
                        checked += 1
                    }
                    return (checked, damaged)
                }
            }
            #expect(checked == next)
            #expect(damaged == 0)
            #expect(try Self.checkSnapshot(env, data: data, meta: meta) == nil)
        }
    }

    @Test func aBodyThatSwallowsMapFullStillRunsAgainInALargerMap() throws {
        try withTemporaryDirectory { dir in
            var configuration = fastConfiguration()
            configuration.initialMapSize = 64 * 1024
            let env = try Environment(path: dir + "/swallow.mdb", configuration: configuration)
            let db = try env.openDatabase(nil)
            let value = [UInt8](repeating: 1, count: 1_000_000)
            var caught: [LMDBError.Code] = []
            var runs = 0
            let stored = try env.write { txn in
                runs += 1
                do throws(LMDBError) {
                    try txn.put(bytes("big"), value, in: db)
                    return true
                } catch {
                    caught.append(error.code)
                    return false
                }
            }
            #expect(stored)
            #expect(runs == caught.count + 1)
            #expect(!caught.isEmpty && caught.allSatisfy { $0 == .mapFull })
            #expect(try env.read { txn in try txn.value(forKey: bytes("big"), in: db) } == value)
        }
    }

    @Test func aSingleValueLargerThanTheMapIsWritten() throws {
        try withTemporaryDirectory { dir in
            var configuration = fastConfiguration()
            configuration.initialMapSize = 64 * 1024
            let env = try Environment(path: dir + "/big.mdb", configuration: configuration)
            let db = try env.openDatabase(nil)
            let value = [UInt8](repeating: 0x5A, count: 3_000_000)
            try env.write { txn in try txn.put(bytes("big"), value, in: db) }
            #expect(try env.read { txn in try txn.value(forKey: bytes("big"), in: db) } == value)
            #expect(env.mapSize >= 3_000_000)
        }
    }
}
