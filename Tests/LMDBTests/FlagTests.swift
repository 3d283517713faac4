import CLMDB
import Foundation
import LMDB
import Testing

@Suite("Flags and codes equal LMDB's macros")
struct FlagTests {
    @Test func environmentFlags() {
        #expect(Environment.Flags.noSubdirectory.rawValue == UInt32(MDB_NOSUBDIR))
        #expect(Environment.Flags.readOnly.rawValue == UInt32(MDB_RDONLY))
        #expect(Environment.Flags.writeMap.rawValue == UInt32(MDB_WRITEMAP))
        #expect(Environment.Flags.noMetaSync.rawValue == UInt32(MDB_NOMETASYNC))
        #expect(Environment.Flags.noSync.rawValue == UInt32(MDB_NOSYNC))
        #expect(Environment.Flags.mapAsync.rawValue == UInt32(MDB_MAPASYNC))
        #expect(Environment.Flags.noTLS.rawValue == UInt32(MDB_NOTLS))
        #expect(Environment.Flags.noLock.rawValue == UInt32(MDB_NOLOCK))
        #expect(Environment.Flags.noReadAhead.rawValue == UInt32(MDB_NORDAHEAD))
        #expect(Environment.Flags.noMemoryInit.rawValue == UInt32(MDB_NOMEMINIT))
    }

    @Test func databaseFlags() {
        #expect(DatabaseFlags.reverseKey.rawValue == UInt32(MDB_REVERSEKEY))
        #expect(DatabaseFlags.duplicateSort.rawValue == UInt32(MDB_DUPSORT))
        #expect(DatabaseFlags.integerKey.rawValue == UInt32(MDB_INTEGERKEY))
        #expect(DatabaseFlags.duplicateFixed.rawValue == UInt32(MDB_DUPFIXED))
        #expect(DatabaseFlags.integerDuplicate.rawValue == UInt32(MDB_INTEGERDUP))
        #expect(DatabaseFlags.reverseDuplicate.rawValue == UInt32(MDB_REVERSEDUP))
        #expect(DatabaseFlags.create.rawValue == UInt32(MDB_CREATE))
    }

    @Test func writeFlags() {
        #expect(WriteFlags.noOverwrite.rawValue == UInt32(MDB_NOOVERWRITE))
        #expect(WriteFlags.noDuplicateData.rawValue == UInt32(MDB_NODUPDATA))
        #expect(WriteFlags.current.rawValue == UInt32(MDB_CURRENT))
        #expect(WriteFlags.reserve.rawValue == UInt32(MDB_RESERVE))
        #expect(WriteFlags.append.rawValue == UInt32(MDB_APPEND))
        #expect(WriteFlags.appendDuplicate.rawValue == UInt32(MDB_APPENDDUP))
    }

    @Test func errorCodes() {
        let pairs: [(LMDBError.Code, Int32)] = [
            (.keyExists, MDB_KEYEXIST), (.notFound, MDB_NOTFOUND), (.pageNotFound, MDB_PAGE_NOTFOUND),
            (.corrupted, MDB_CORRUPTED), (.panic, MDB_PANIC), (.versionMismatch, MDB_VERSION_MISMATCH),
            (.invalid, MDB_INVALID), (.mapFull, MDB_MAP_FULL), (.databasesFull, MDB_DBS_FULL),
            (.readersFull, MDB_READERS_FULL), (.tlsFull, MDB_TLS_FULL), (.transactionFull, MDB_TXN_FULL),
            (.cursorFull, MDB_CURSOR_FULL), (.pageFull, MDB_PAGE_FULL), (.mapResized, MDB_MAP_RESIZED),
            (.incompatible, MDB_INCOMPATIBLE), (.badReaderSlot, MDB_BAD_RSLOT), (.badTransaction, MDB_BAD_TXN),
            (.badValueSize, MDB_BAD_VALSIZE), (.badDBI, MDB_BAD_DBI),
            (.diskFull, ENOSPC), (.permissionDenied, EACCES), (.noSuchFile, ENOENT),
            (.invalidArgument, EINVAL), (.quotaExceeded, EDQUOT), (.readOnlyFileSystem, EROFS),
            (.wouldDeadlock, EDEADLK),
        ]
        for (code, macro) in pairs {
            #expect(code.rawValue == macro, "\(code)")
        }
    }
}
