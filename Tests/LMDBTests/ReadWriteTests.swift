import Foundation
import LMDB
import Testing

@Suite("Reading and writing")
struct ReadWriteTests {
    struct Boom: Error, Equatable {}

    @Test func putGetDeleteRoundTrip() throws {
        try withTemporaryDirectory { dir in
            let env = try Environment(path: dir + "/data.mdb")
            let db = try env.openDatabase("kv", flags: .create)
            let written = try env.write { txn in try txn.put(bytes("alpha"), bytes("one"), in: db) }
            #expect(written)

            #expect(try env.read { txn in try txn.value(forKey: bytes("alpha"), in: db) } == bytes("one"))

            try env.write { txn in try txn.put(bytes("alpha"), bytes("two"), in: db) }
            #expect(try env.read { txn in try txn.value(forKey: bytes("alpha"), in: db) } == bytes("two"))

            let deleted = try env.write { txn in
                try bytes("alpha").withUnsafeBytes { try txn.delete(key: $0, in: db) }
            }
            #expect(deleted)
            let deletedAgain = try env.write { txn in
                try bytes("alpha").withUnsafeBytes { try txn.delete(key: $0, in: db) }
            }
            #expect(!deletedAgain)
            #expect(try env.read { txn in try txn.value(forKey: bytes("alpha"), in: db) } == nil)
        }
    }

    @Test func notFoundIsNilNotAnError() throws {
        try withTemporaryDirectory { dir in
            let env = try Environment(path: dir + "/data.mdb")
            let db = try env.openDatabase(nil)
            let found = try env.read { txn in
                try bytes("missing").withUnsafeBytes { key in
                    try txn.withValue(forKey: key, in: db) { $0 == nil }
                }
            }
            #expect(found)
            #expect(try env.read { txn in try txn.value(forKey: bytes("missing"), in: db) } == nil)
        }
    }

    @Test func withValueLendsTheMappedBytes() throws {
        try withTemporaryDirectory { dir in
            let env = try Environment(path: dir + "/data.mdb")
            let db = try env.openDatabase("kv", flags: .create)
            let value = [UInt8](repeating: 0xAB, count: 10_000)
            try env.write { txn in try txn.put(bytes("big"), value, in: db) }
            let (matches, address) = try env.read { txn in
                try bytes("big").withUnsafeBytes { key in
                    try txn.withValue(forKey: key, in: db) { buffer in
                        (buffer.map { $0.elementsEqual(value) } ?? false, buffer?.baseAddress)
                    }
                }
            }
            #expect(matches)
            // Zero-copy: the value lies inside the environment's memory map, not in a Swift array.
            let mapStart = address.map { UInt(bitPattern: $0) } ?? 0
            #expect(mapStart != 0)
            #expect(value.withUnsafeBytes { UInt(bitPattern: $0.baseAddress!) } != mapStart)
        }
    }

    @Test func writeThatThrowsRollsBackAndRethrowsTheBodysError() throws {
        try withTemporaryDirectory { dir in
            let env = try Environment(path: dir + "/data.mdb")
            let db = try env.openDatabase("kv", flags: .create)
            try env.write { txn in try txn.put(bytes("kept"), bytes("1"), in: db) }

            #expect(throws: Boom()) {
                try env.write { txn in
                    try txn.put(bytes("lost"), bytes("2"), in: db)
                    try txn.put(bytes("kept"), bytes("changed"), in: db)
                    throw Boom()
                }
            }
            let (lost, kept) = try env.read { txn in
                (try txn.value(forKey: bytes("lost"), in: db), try txn.value(forKey: bytes("kept"), in: db))
            }
            #expect(lost == nil)
            #expect(kept == bytes("1"))
        }
    }

    @Test func noOverwriteReportsExistingKeyAsFalse() throws {
        try withTemporaryDirectory { dir in
            let env = try Environment(path: dir + "/data.mdb")
            let db = try env.openDatabase("kv", flags: .create)
            let results = try env.write { txn in
                [
                    try txn.put(bytes("k"), bytes("first"), in: db, flags: .noOverwrite),
                    try txn.put(bytes("k"), bytes("second"), in: db, flags: .noOverwrite),
                ]
            }
            #expect(results == [true, false])
            #expect(try env.read { txn in try txn.value(forKey: bytes("k"), in: db) } == bytes("first"))
        }
    }

    @Test func appendTakesKeysInOrderAndRefusesOthersWithKeyExists() throws {
        try withTemporaryDirectory { dir in
            let env = try Environment(path: dir + "/log.mdb", configuration: fastConfiguration())
            let log = try env.openDatabase("log", flags: .create)
            let payload = [UInt8](repeating: 7, count: 200)

            try env.write { txn in
                try txn.withCursor(log) { cursor in
                    for sequence in UInt64(0)..<5_000 {
                        try bigEndianKey(sequence).withUnsafeBytes { key in
                            try payload.withUnsafeBytes { value in
                                _ = try cursor.put(key: key, value: value, flags: .append)
                            }
                        }
                    }
                }
                // Through the transaction as well as through a cursor.
                try txn.put(bigEndianKey(5_000), payload, in: log, flags: .append)
            }

            let cursorError = #expect(throws: LMDBError.self) {
                try env.write { txn in
                    try txn.withCursor(log) { cursor in
                        try bigEndianKey(42).withUnsafeBytes { key in
                            try payload.withUnsafeBytes { value in
                                _ = try cursor.put(key: key, value: value, flags: .append)
                            }
                        }
                    }
                }
            }
            #expect(cursorError?.code == .keyExists)
            let putError = #expect(throws: LMDBError.self) {
                try env.write { txn in try txn.put(bigEndianKey(5_000), payload, in: log, flags: .append) }
            }
            #expect(putError?.code == .keyExists)

            let (entries, first, last) = try env.read { txn in
                let entries = try txn.statistics(log).entries
                let (first, last) = try txn.withCursor(log) { cursor in
                    (
                        try cursor.move(.first).map { decodeBigEndian($0.key) },
                        try cursor.move(.last).map { decodeBigEndian($0.key) }
                    )
                }
                return (entries, first, last)
            }
            #expect(entries == 5_001)
            #expect(first == 0)
            #expect(last == 5_000)
        }
    }

    @Test func reserveStoresWhatTheFillClosureWrote() throws {
        try withTemporaryDirectory { dir in
            let env = try Environment(path: dir + "/data.mdb")
            let db = try env.openDatabase("kv", flags: .create)
            let filled = try env.write { txn in
                try bytes("reserved").withUnsafeBytes { key in
                    try txn.reserve(key: key, count: 64, in: db) { buffer in
                        for index in buffer.indices { buffer[index] = UInt8(index) }
                    }
                }
            }
            #expect(filled)
            let value = try env.read { txn in try txn.value(forKey: bytes("reserved"), in: db) }
            #expect(value == (0..<64).map { UInt8($0) })

            let refused = try env.write { txn in
                try bytes("reserved").withUnsafeBytes { key in
                    try txn.reserve(key: key, count: 8, in: db, flags: .noOverwrite) { _ in
                        Issue.record("fill must not run for an existing key")
                    }
                }
            }
            #expect(!refused)
        }
    }

    @Test func clearEmptiesTheDatabase() throws {
        try withTemporaryDirectory { dir in
            let env = try Environment(path: dir + "/data.mdb")
            let db = try env.openDatabase("kv", flags: .create)
            try env.write { txn in
                for index in UInt64(0)..<100 { try txn.put(bigEndianKey(index), bytes("v"), in: db) }
            }
            try env.write { txn in try txn.clear(db) }
            #expect(try env.read { txn in try txn.statistics(db).entries } == 0)
        }
    }

    @Test func readsNestInsideWritesButWritesDoNotNest() throws {
        try withTemporaryDirectory { dir in
            let env = try Environment(path: dir + "/data.mdb")
            let db = try env.openDatabase("kv", flags: .create)
            try env.write { txn in try txn.put(bytes("k"), bytes("old"), in: db) }
            let seen = try env.write { txn in
                try txn.put(bytes("k"), bytes("new"), in: db)
                // A nested read sees the last commit, not the open write transaction.
                return try env.read { inner in try inner.value(forKey: bytes("k"), in: db) }
            }
            #expect(seen == bytes("old"))

            let nested = #expect(throws: LMDBError.self) {
                try env.read { _ in try env.write { txn in try txn.put(bytes("k"), bytes("x"), in: db) } }
            }
            #expect(nested?.code == .wouldDeadlock)
            #expect(try env.read { txn in try txn.value(forKey: bytes("k"), in: db) } == bytes("new"))
        }
    }

    /// Read helpers are written once for both kinds of transaction.
    private func entries(_ db: Database, in txn: borrowing some TransactionProtocol & ~Copyable) throws -> Int {
        try txn.statistics(db).entries
    }

    @Test func readHelpersServeBothKindsOfTransaction() throws {
        try withTemporaryDirectory { dir in
            let env = try Environment(path: dir + "/data.mdb")
            let db = try env.openDatabase("kv", flags: .create)
            let inWrite = try env.write { txn in
                try txn.put(bytes("k"), bytes("v"), in: db)
                return try entries(db, in: txn)
            }
            let inRead = try env.read { txn in try entries(db, in: txn) }
            #expect(inWrite == 1)
            #expect(inRead == 1)
        }
    }

    @Test func emptyKeyIsABadValueSize() throws {
        try withTemporaryDirectory { dir in
            let env = try Environment(path: dir + "/data.mdb")
            let db = try env.openDatabase(nil)
            let error = #expect(throws: LMDBError.self) {
                try env.write { txn in try txn.put([], bytes("v"), in: db) }
            }
            #expect(error?.code == .badValueSize)
            #expect(error?.operation == "mdb_put")
        }
    }

    @Test func transactionIDsAdvanceWithCommits() throws {
        try withTemporaryDirectory { dir in
            let env = try Environment(path: dir + "/data.mdb")
            let db = try env.openDatabase("kv", flags: .create)
            let before = try env.read { txn in txn.id }
            let writing = try env.write { txn in
                try txn.put(bytes("k"), bytes("v"), in: db)
                return txn.id
            }
            let after = try env.read { txn in txn.id }
            #expect(writing == before + 1)
            #expect(after == writing)
            #expect(env.info().lastTransactionID == after)
        }
    }
}
