import Foundation
import LMDB
import Testing

@Suite("Opening, configuring and copying environments")
struct EnvironmentTests {
    @Test(arguments: [Environment.Durability.syncEveryCommit, .noMetaSync, .noSync])
    func durabilityOptionsOpenAndPersist(_ durability: Environment.Durability) throws {
        try withTemporaryDirectory { dir in
            var configuration = Environment.Configuration()
            configuration.durability = durability
            let path = dir + "/data.mdb"
            do {
                let env = try Environment(path: path, configuration: configuration)
                let db = try env.openDatabase("kv", flags: .create)
                try env.write { txn in try txn.put(bytes("k"), bytes("v"), in: db) }
                try env.sync()
                #expect(env.flags.contains(.noSync) == (durability == .noSync))
                #expect(env.flags.contains(.noMetaSync) == (durability == .noMetaSync))
                #expect(env.flags.isSuperset(of: [.noTLS, .noSubdirectory, .noReadAhead]))
            }
            // The path is the data file; the lock file sits beside it.
            #expect(FileManager.default.fileExists(atPath: path))
            #expect(FileManager.default.fileExists(atPath: path + "-lock"))
            let reopened = try Environment(path: path, configuration: configuration)
            let db = try reopened.openDatabase("kv")
            #expect(try reopened.read { txn in try txn.value(forKey: bytes("k"), in: db) } == bytes("v"))
        }
    }

    @Test func directoryLayoutKeepsDataAndLockInTheDirectory() throws {
        try withTemporaryDirectory { dir in
            var configuration = Environment.Configuration()
            configuration.isDirectory = true
            let env = try Environment(path: dir, configuration: configuration)
            let db = try env.openDatabase(nil)
            try env.write { txn in try txn.put(bytes("k"), bytes("v"), in: db) }
            #expect(FileManager.default.fileExists(atPath: dir + "/data.mdb"))
            #expect(FileManager.default.fileExists(atPath: dir + "/lock.mdb"))
            #expect(!env.flags.contains(.noSubdirectory))
        }
    }

    @Test func readOnlyEnvironmentReadsButRefusesWrites() throws {
        try withTemporaryDirectory { dir in
            let path = dir + "/data.mdb"
            do {
                let env = try Environment(path: path)
                let db = try env.openDatabase("kv", flags: .create)
                try env.write { txn in try txn.put(bytes("k"), bytes("v"), in: db) }
            }
            var configuration = Environment.Configuration()
            configuration.readOnly = true
            let env = try Environment(path: path, configuration: configuration)
            #expect(env.flags.contains(.readOnly))
            let db = try env.openDatabase("kv", flags: .create)  // `create` is ignored read-only
            #expect(try env.read { txn in try txn.value(forKey: bytes("k"), in: db) } == bytes("v"))

            let error = #expect(throws: LMDBError.self) {
                try env.write { txn in try txn.put(bytes("k"), bytes("w"), in: db) }
            }
            #expect(error?.code == .permissionDenied)
            #expect(error?.operation.contains(path) == true)
            #expect(error?.description.contains("read-only") == true)

            let missing = #expect(throws: LMDBError.self) { try env.openDatabase("absent", flags: .create) }
            #expect(missing?.code == .notFound)
            #expect(try env.read { txn in try txn.value(forKey: bytes("k"), in: db) } == bytes("v"))
        }
    }

    @Test func openingInAMissingDirectoryNamesThePath() throws {
        try withTemporaryDirectory { dir in
            let path = dir + "/missing/data.mdb"
            let error = #expect(throws: LMDBError.self) { try Environment(path: path) }
            #expect(error?.code == .noSuchFile)
            #expect(error?.operation == "mdb_env_open(\(path))")
            #expect(error?.message == String(cString: strerror(ENOENT)))
            #expect(
                error?.description.hasPrefix("mdb_env_open(\(path)): \(String(cString: strerror(ENOENT))) (code 2)")
                    == true
            )
        }
    }

    @Test func readOnlyOpeningOfAMissingFileFails() throws {
        try withTemporaryDirectory { dir in
            var configuration = Environment.Configuration()
            configuration.readOnly = true
            let error = #expect(throws: LMDBError.self) {
                try Environment(path: dir + "/absent.mdb", configuration: configuration)
            }
            #expect(error?.code == .noSuchFile)
        }
    }

    @Test func invalidConfigurationIsRefusedWithAClearError() throws {
        try withTemporaryDirectory { dir in
            var configuration = Environment.Configuration()
            configuration.maxReaders = 0
            let error = #expect(throws: LMDBError.self) {
                try Environment(path: dir + "/data.mdb", configuration: configuration)
            }
            #expect(error?.code == .invalidArgument)
            #expect(error?.operation.contains("maxReaders") == true)
            #expect(!FileManager.default.fileExists(atPath: dir + "/data.mdb"))
        }
    }

    @Test func errorsCarryLMDBsMessageAndAHint() {
        let full = LMDBError(code: .readersFull, operation: "mdb_txn_begin")
        #expect(full.message.hasPrefix("MDB_READERS_FULL"))
        #expect(full.description.contains("maxReaders"))
        let disk = LMDBError(code: .diskFull, operation: "mdb_txn_commit")
        #expect(disk.description.contains("(code \(ENOSPC))"))
        #expect(disk.description.contains("free space"))
        #expect(LMDBError.Code.mapFull.description == "mapFull")
    }

    @Test func databasesAreCachedByNameAndFlagsAreChecked() throws {
        try withTemporaryDirectory { dir in
            let env = try Environment(path: dir + "/data.mdb")
            let first = try env.openDatabase("index", flags: [.create, .duplicateSort])
            let again = try env.openDatabase("index", flags: .duplicateSort)
            #expect(first == again)
            #expect(first.name == "index")
            let mismatch = #expect(throws: LMDBError.self) { try env.openDatabase("index") }
            #expect(mismatch?.code == .incompatible)
            let absent = #expect(throws: LMDBError.self) { try env.openDatabase("absent") }
            #expect(absent?.code == .notFound)
            let main = try env.openDatabase(nil)
            #expect(main.name == nil)
            #expect(main != first)
        }
    }

    @Test func existingDatabaseOpenedWithOtherFlagsIsIncompatible() throws {
        try withTemporaryDirectory { dir in
            let path = dir + "/data.mdb"
            do {
                let env = try Environment(path: path)
                _ = try env.openDatabase("plain", flags: .create)
            }
            let env = try Environment(path: path)
            let error = #expect(throws: LMDBError.self) { try env.openDatabase("plain", flags: .duplicateSort) }
            #expect(error?.code == .incompatible)
            #expect(try env.openDatabase("plain").flags == [])
        }
    }

    @Test func tooManyDatabasesIsAClearError() throws {
        try withTemporaryDirectory { dir in
            var configuration = Environment.Configuration()
            configuration.maxDatabases = 1
            let env = try Environment(path: dir + "/data.mdb", configuration: configuration)
            _ = try env.openDatabase("one", flags: .create)
            let error = #expect(throws: LMDBError.self) { try env.openDatabase("two", flags: .create) }
            #expect(error?.code == .databasesFull)
        }
    }

    @Test(arguments: [true, false])
    func copyHoldsTheSameDataAndIsNotLarger(compact: Bool) throws {
        try withTemporaryDirectory { dir in
            let path = dir + "/data.mdb"
            let copyPath = dir + "/copy.mdb"
            let env = try Environment(path: path, configuration: fastConfiguration())
            let db = try env.openDatabase("kv", flags: .create)
            try env.write { txn in
                for index in UInt64(0)..<20_000 {
                    try txn.put(
                        bigEndianKey(index),
                        [UInt8](repeating: UInt8(truncatingIfNeeded: index), count: 100),
                        in: db
                    )
                }
            }
            // Free half the pages, so a compact copy has something to leave out.
            try env.write { txn in
                for index in UInt64(0)..<10_000 {
                    try bigEndianKey(index).withUnsafeBytes { _ = try txn.delete(key: $0, in: db) }
                }
            }
            try env.copy(to: copyPath, compact: compact)

            let copy = try Environment(path: copyPath, configuration: fastConfiguration())
            let copied = try copy.openDatabase("kv")
            let same = try env.read { original in
                try copy.read { duplicate in
                    try original.withCursor(db) { left in
                        try duplicate.withCursor(copied) { right in
                            var count = 0
                            while true {
                                let a = try left.move(.next)
                                let b = try right.move(.next)
                                guard let a, let b else { return a == nil && b == nil ? count : -1 }
                                guard a.key.elementsEqual(b.key), a.value.elementsEqual(b.value) else { return -1 }
                                count += 1
                            }
                        }
                    }
                }
            }
            #expect(same == 10_000)
            #expect(try fileSize(copyPath) <= fileSize(path))
            if compact { #expect(try fileSize(copyPath) < fileSize(path)) }

            let exists = #expect(throws: LMDBError.self) { try env.copy(to: copyPath, compact: compact) }
            #expect(exists?.code.rawValue == EEXIST)
            #expect(exists?.operation.contains(copyPath) == true)
        }
    }

    @Test func infoReportsTheMapAndReaders() throws {
        try withTemporaryDirectory { dir in
            var configuration = Environment.Configuration()
            configuration.maxReaders = 10
            configuration.initialMapSize = 10_000_000
            let env = try Environment(path: dir + "/data.mdb", configuration: configuration)
            let info = env.info()
            #expect(info.maxReaders == 10)
            #expect(info.pageSize > 0)
            #expect(info.mapSize >= 10_000_000 && info.mapSize % info.pageSize == 0)
            #expect(env.mapSize == info.mapSize)
            #expect(try env.clearStaleReaders() == 0)
            #expect(env.maxKeySize > 0)
        }
    }
}
