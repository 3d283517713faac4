import LMDB

/// The on-disk layout: two LMDB environments in one directory, so that checkpoints into the users table
/// never hold the log's write lock.
///
/// `log.mdb`: `log` (big-endian sequence → encoded ``LogRecord``) and `meta` (format version, device ID,
/// portal group, term, last sequence, and the holds and dropped holds).
/// `users.mdb`: `users` (16-byte address → session value) and `meta` (the checkpoint position; `applied:` keys
/// are reserved for the per-origin positions applied). The indexes by MAC address, user name and deadline are
/// kept in memory (``TableIndexes``); the `by-mac`, `by-user` and `by-deadline` indexes of earlier stores are
/// emptied when a writer opens them.
///
/// Every `meta` value is 8 bytes, a big-endian `UInt64`, except the portal group's UTF-8 name. The catalog's
/// OnDiskFormat article describes all of it.
package enum StoreLayout {
    /// The on-disk format this build writes and reads.
    /// 2: sessions carry authorization, accounting and activity, and the log holds updates (record format 2).
    /// A store of format 1 opens, and is marked format 2 on its first open by a writer.
    package static let formatVersion: UInt32 = 2
    package static let logFile = "log.mdb"
    package static let usersFile = "users.mdb"
    /// Indexes that stores kept on disk before their lookups moved to memory.
    static let retiredIndexes = ["by-mac", "by-user", "by-deadline"]
    /// The most users one checkpoint transaction writes. A larger checkpoint commits several and records its
    /// position with the last: a crash in between leaves the users table past its position at some addresses,
    /// which the log after the position, replayed, leaves as they are (`tandem log verify` accepts them).
    package static let checkpointTransactionSize = 16_384

    package enum MetaKey {
        package static let format = "format"
        static let deviceID = "device-id"
        static let portalGroup = "portal-group"
        static let term = "term"
        package static let lastSequence = "last-sequence"
        package static let checkpointSequence = "checkpoint-sequence"
        package static let holdPrefix = "hold:"
        package static let droppedHoldPrefix = "dropped-hold:"
        package static let appliedPrefix = "applied:"
        static let adoptedPrefix = "adopted:"
        static let appliedHistoryPrefix = "applied-history:"
        static let installingPrefix = "installing:"
        static let recovering = "recovering"
        static let recoveredFromPrefix = "recovered-from:"
        static let history = "history"
    }

    package static func sequenceKey(_ sequence: UInt64) -> UInt64 { sequence.bigEndian }

    package static func decodeSequenceKey(_ key: UnsafeRawBufferPointer) -> UInt64? {
        guard key.count == 8 else { return nil }
        return UInt64(bigEndian: key.loadUnaligned(as: UInt64.self))
    }

    /// A deadline index key: the deadline as big-endian offset binary, so that earlier times (negative
    /// ones too) sort first. The index's values are the addresses due at that time.
}

/// Typed access to small metadata values.
extension TransactionProtocol where Self: ~Copyable {
    package func metaUInt64(_ key: String, in db: Database) throws -> UInt64? {
        var key = key
        return try key.withUTF8 { keyBytes in
            try withValue(forKey: UnsafeRawBufferPointer(keyBytes), in: db) { value -> UInt64? in
                guard let value else { return nil }
                guard value.count == 8 else {
                    throw SessionStoreError(
                        .corruptMetadata(
                            key: String(decoding: keyBytes, as: UTF8.self),
                            detail: "expected 8 bytes, found \(value.count)"
                        )
                    )
                }
                return UInt64(bigEndian: value.loadUnaligned(as: UInt64.self))
            }
        }
    }

    func metaString(_ key: String, in db: Database) throws -> String? {
        try value(forKey: Array(key.utf8), in: db).map { String(decoding: $0, as: UTF8.self) }
    }

    /// Every `prefix…` key with its 8-byte value.
    package func metaUInt64s(prefix: String, in db: Database) throws -> [(String, UInt64)] {
        let prefixBytes = Array(prefix.utf8)
        return try withCursor(db) { cursor in
            var found: [(String, UInt64)] = []
            var entry = try prefixBytes.withUnsafeBytes { try cursor.seek(atLeast: $0) }
            while let (key, value) = entry, key.starts(with: prefixBytes) {
                let name = String(decoding: key.dropFirst(prefixBytes.count), as: UTF8.self)
                guard value.count == 8 else {
                    throw SessionStoreError(.corruptMetadata(key: prefix + name, detail: "expected 8 bytes"))
                }
                found.append((name, UInt64(bigEndian: value.loadUnaligned(as: UInt64.self))))
                entry = try cursor.move(.next)
            }
            return found
        }
    }
}

extension WriteTransaction {
    func putMeta(_ key: String, _ value: UInt64, in db: Database) throws {
        _ = try put(Array(key.utf8), withUnsafeBytes(of: value.bigEndian) { Array($0) }, in: db)
    }

    func putMeta(_ key: String, _ value: String, in db: Database) throws {
        _ = try put(Array(key.utf8), Array(value.utf8), in: db)
    }

    func deleteMeta(_ key: String, in db: Database) throws {
        _ = try Array(key.utf8).withUnsafeBytes { try delete(key: $0, in: db) }
    }
}
