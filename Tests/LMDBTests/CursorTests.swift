import LMDB
import Testing

@Suite("Cursors")
struct CursorTests {
    /// Keys 0, 2, 4, ..., 198 with the key's decimal text as value.
    private func evenKeys(_ env: Environment) throws -> Database {
        let db = try env.openDatabase("even", flags: .create)
        try env.write { txn in
            for key in stride(from: UInt64(0), to: 200, by: 2) {
                try txn.put(bigEndianKey(key), bytes(String(key)), in: db)
            }
        }
        return db
    }

    @Test func iteratesForwardAndBackward() throws {
        try withTemporaryDirectory { dir in
            let env = try Environment(path: dir + "/data.mdb")
            let db = try evenKeys(env)
            let (forward, backward) = try env.read { txn in
                try txn.withCursor(db) { cursor in
                    var forward: [UInt64] = []
                    var entry = try cursor.move(.first)
                    while let (key, value) = entry {
                        #expect(string(value) == String(decodeBigEndian(key)))
                        forward.append(decodeBigEndian(key))
                        entry = try cursor.move(.next)
                    }
                    var backward: [UInt64] = []
                    entry = try cursor.move(.last)
                    while let (key, _) = entry {
                        backward.append(decodeBigEndian(key))
                        entry = try cursor.move(.previous)
                    }
                    return (forward, backward)
                }
            }
            let expected = Array(stride(from: UInt64(0), to: 200, by: 2))
            #expect(forward == expected)
            #expect(backward == expected.reversed())
        }
    }

    @Test func seeksToAKeyOrTheNextOne() throws {
        try withTemporaryDirectory { dir in
            let env = try Environment(path: dir + "/data.mdb")
            let db = try evenKeys(env)
            try env.read { txn in
                try txn.withCursor(db) { cursor in
                    let atLeast51 = try bigEndianKey(51).withUnsafeBytes { try cursor.seek(atLeast: $0) }
                    #expect(atLeast51.map { decodeBigEndian($0.key) } == 52)
                    #expect(try cursor.move(.next).map { decodeBigEndian($0.key) } == 54)
                    let atLeast52 = try bigEndianKey(52).withUnsafeBytes { try cursor.seek(atLeast: $0) }
                    #expect(atLeast52.map { decodeBigEndian($0.key) } == 52)
                    let pastEnd = try bigEndianKey(199).withUnsafeBytes { try cursor.seek(atLeast: $0) }
                    #expect(pastEnd == nil)
                    let exactMiss = try bigEndianKey(51).withUnsafeBytes { try cursor.seek(exactly: $0) }
                    #expect(exactMiss == nil)
                    let exactHit = try bigEndianKey(100).withUnsafeBytes { try cursor.seek(exactly: $0) }
                    #expect(exactHit.map { string($0.value) } == "100")
                }
            }
        }
    }

    @Test func emptyDatabaseHasNoFirstEntry() throws {
        try withTemporaryDirectory { dir in
            let env = try Environment(path: dir + "/data.mdb")
            let db = try env.openDatabase("empty", flags: .create)
            let first = try env.read { txn in try txn.withCursor(db) { try $0.move(.first) == nil } }
            #expect(first)
        }
    }

    @Test func duplicateSortKeepsSeveralValuesPerKey() throws {
        try withTemporaryDirectory { dir in
            let env = try Environment(path: dir + "/data.mdb")
            let db = try env.openDatabase("index", flags: [.create, .duplicateSort])
            #expect(db.flags == .duplicateSort)
            try env.write { txn in
                for value in ["3", "1", "2"] { try txn.put(bytes("a"), bytes(value), in: db) }
                try txn.put(bytes("b"), bytes("x"), in: db)
                #expect(try !txn.put(bytes("a"), bytes("2"), in: db, flags: .noDuplicateData))
            }

            let (count, values, next) = try env.read { txn in
                try txn.withCursor(db) { cursor in
                    _ = try bytes("a").withUnsafeBytes { try cursor.seek(exactly: $0) }
                    let count = try cursor.duplicateCount()
                    var values = [try cursor.move(.current).map { string($0.value) } ?? "?"]
                    while let (key, value) = try cursor.move(.nextDuplicate) {
                        #expect(string(key) == "a")
                        values.append(string(value))
                    }
                    let next = try cursor.move(.nextNoDuplicate).map { string($0.key) + "=" + string($0.value) }
                    return (count, values, next)
                }
            }
            #expect(count == 3)
            #expect(values == ["1", "2", "3"])
            #expect(next == "b=x")

            let deleted = try env.write { txn in
                try bytes("a").withUnsafeBytes { key in
                    try bytes("2").withUnsafeBytes { value in
                        [
                            try txn.delete(key: key, value: value, in: db),
                            try txn.delete(key: key, value: value, in: db),
                        ]
                    }
                }
            }
            #expect(deleted == [true, false])

            let (remaining, atLeast15, firstDuplicate) = try env.read { txn in
                try txn.withCursor(db) { cursor in
                    _ = try bytes("a").withUnsafeBytes { try cursor.seek(exactly: $0) }
                    let remaining = try cursor.duplicateCount()
                    let atLeast15 = try bytes("a").withUnsafeBytes { key in
                        try bytes("15").withUnsafeBytes { value in
                            try cursor.seek(key: key, atLeastValue: value).map {
                                string($0.key) + "=" + string($0.value)
                            }
                        }
                    }
                    let firstDuplicate = try cursor.move(.firstDuplicate).map {
                        string($0.key) + "=" + string($0.value)
                    }
                    return (remaining, atLeast15, firstDuplicate)
                }
            }
            #expect(remaining == 2)
            #expect(atLeast15 == "a=3")
            #expect(firstDuplicate == "a=1")
        }
    }

    @Test func cursorOfAWriteTransactionDeletesWhereItStands() throws {
        try withTemporaryDirectory { dir in
            let env = try Environment(path: dir + "/data.mdb")
            let db = try evenKeys(env)
            try env.write { txn in
                try txn.withCursor(db) { cursor in
                    var entry = try cursor.move(.first)
                    while let (key, _) = entry {
                        if decodeBigEndian(key) % 4 == 0 {
                            try cursor.deleteCurrent()
                            entry = try cursor.move(.next)
                        } else {
                            entry = try cursor.move(.next)
                        }
                    }
                }
            }
            let keys = try env.read { txn in
                try txn.withCursor(db) { cursor in
                    var keys: [UInt64] = []
                    while let (key, _) = try cursor.move(.next) { keys.append(decodeBigEndian(key)) }
                    return keys
                }
            }
            #expect(keys == Array(stride(from: UInt64(2), to: 200, by: 4)))
        }
    }

    /// The pattern of a checkpoint: keys in order through one cursor, each sought; one found is replaced where the
    /// cursor stands by a value of another size, or deleted there; one absent is inserted.
    @Test func cursorOfAWriteTransactionReplacesWithOtherSizesAndInsertsInKeyOrder() throws {
        try withTemporaryDirectory { dir in
            let env = try Environment(path: dir + "/data.mdb", configuration: fastConfiguration())
            let db = try env.openDatabase("table", flags: .create)
            try env.write { txn in
                for key in stride(from: UInt64(0), to: 3_000, by: 2) {
                    // Every tenth on overflow pages of its own, as a value larger than half a page is.
                    let value = key % 20 == 0 ? [UInt8](repeating: 7, count: 6_000) : bytes("v\(key)")
                    try txn.put(bigEndianKey(key), value, in: db)
                }
            }
            // Every key from 0 to 2,999: an even one (present) grows to 300 or 5,000 bytes, shrinks to 1 or is
            // deleted; an odd one (absent) is inserted.
            func expected(_ key: UInt64) -> [UInt8]? {
                guard key % 2 == 0 else { return bytes("new \(key)") }
                switch key % 6 {
                case 0: return [UInt8](repeating: UInt8(truncatingIfNeeded: key), count: key % 12 == 0 ? 5_000 : 300)
                case 2: return [UInt8(truncatingIfNeeded: key)]
                default: return nil
                }
            }
            try env.write { txn in
                try txn.withCursor(db) { cursor in
                    for key in UInt64(0)..<3_000 {
                        let keyBytes = bigEndianKey(key)
                        try keyBytes.withUnsafeBytes { keyBuffer in
                            let found = try cursor.seek(exactly: keyBuffer)
                            #expect((found != nil) == (key % 2 == 0), "key \(key)")
                            if found != nil, let value = expected(key) {
                                _ = try value.withUnsafeBytes {
                                    try cursor.put(key: keyBuffer, value: $0, flags: .current)
                                }
                            } else if found != nil {
                                try cursor.deleteCurrent()
                            } else if let value = expected(key) {
                                _ = try value.withUnsafeBytes { try cursor.put(key: keyBuffer, value: $0) }
                            }
                        }
                    }
                }
            }
            let stored = try env.read { txn in
                try txn.withCursor(db) { cursor in
                    var stored: [UInt64: [UInt8]] = [:]
                    while let (key, value) = try cursor.move(.next) { stored[decodeBigEndian(key)] = Array(value) }
                    return stored
                }
            }
            let wanted = Dictionary(
                uniqueKeysWithValues: (UInt64(0)..<3_000).compactMap { key in expected(key).map { (key, $0) } }
            )
            #expect(stored.count == wanted.count)
            #expect(stored == wanted)
        }
    }

    @Test func cursorOfAReadTransactionCannotWrite() throws {
        try withTemporaryDirectory { dir in
            let env = try Environment(path: dir + "/data.mdb")
            let db = try evenKeys(env)
            let error = #expect(throws: LMDBError.self) {
                try env.read { txn in
                    try txn.withCursor(db) { cursor in
                        try bytes("k").withUnsafeBytes { key in
                            _ = try cursor.put(key: key, value: key)
                        }
                    }
                }
            }
            #expect(error?.code == .permissionDenied)
        }
    }

    @Test func duplicateCountNeedsDuplicateSort() throws {
        try withTemporaryDirectory { dir in
            let env = try Environment(path: dir + "/data.mdb")
            let db = try evenKeys(env)
            let error = #expect(throws: LMDBError.self) {
                try env.read { txn in
                    try txn.withCursor(db) { cursor in
                        _ = try cursor.move(.first)
                        return try cursor.duplicateCount()
                    }
                }
            }
            #expect(error?.code == .incompatible)
        }
    }
}
