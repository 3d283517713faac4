import CLMDB

/// What read and write transactions have in common: reading.
///
/// Both ``ReadTransaction`` and ``WriteTransaction`` conform, so read helpers can be written once:
///
/// ```swift
/// func count(_ db: Database, in txn: borrowing some TransactionProtocol & ~Copyable) throws -> Int {
///     try txn.statistics(db).entries
/// }
/// ```
///
/// A transaction is only valid inside the body of ``Environment/read(_:)`` or
/// ``Environment/write(_:)`` that received it, and only on that thread.
public protocol TransactionProtocol: ~Copyable {
    /// The LMDB transaction (`MDB_txn *`), for calls this wrapper does not cover. Valid only inside
    /// the transaction's body; never commit or abort it yourself.
    var handle: OpaquePointer { get }
}

extension TransactionProtocol where Self: ~Copyable {
    /// Looks a key up and lends its value to `body` without copying.
    ///
    /// The buffer points into the memory map: it is valid only inside `body`, and in a write
    /// transaction only until the database is next modified. Copy what must outlive it.
    ///
    /// - Parameters:
    ///   - key: The key's bytes.
    ///   - db: The database to search.
    ///   - body: Receives the value, or `nil` when the key is absent.
    /// - Returns: What `body` returns.
    /// - Throws: ``LMDBError`` from `mdb_get` (for example ``LMDBError/Code/badValueSize`` for an
    ///   empty key), or what `body` throws.
    public func withValue<R>(
        forKey key: UnsafeRawBufferPointer,
        in db: Database,
        _ body: (UnsafeRawBufferPointer?) throws -> R
    ) throws -> R {
        try body(lookUp(handle, db, key))
    }

    /// Looks a key up and returns a copy of its value.
    ///
    /// - Parameters:
    ///   - key: The key's bytes.
    ///   - db: The database to search.
    /// - Returns: The value, or `nil` when the key is absent.
    /// - Throws: ``LMDBError`` from `mdb_get`.
    public func value(forKey key: [UInt8], in db: Database) throws(LMDBError) -> [UInt8]? {
        let txn = handle
        return try key.withUnsafeBufferPointer { (key) throws(LMDBError) -> [UInt8]? in
            try lookUp(txn, db, UnsafeRawBufferPointer(key)).map { [UInt8]($0) }
        }
    }

    /// The shape of a database's B-tree as this transaction sees it, with its number of entries.
    ///
    /// - Parameter db: The database.
    /// - Returns: Its statistics (`mdb_stat`).
    /// - Throws: ``LMDBError`` from `mdb_stat`.
    public func statistics(_ db: Database) throws(LMDBError) -> DatabaseStatistics {
        var stat = MDB_stat()
        try check(mdb_stat(handle, db.handle, &stat), "mdb_stat(\(db.name ?? "main"))")
        return DatabaseStatistics(stat)
    }

    /// Opens a cursor on a database for the duration of `body`, and closes it afterwards.
    ///
    /// A cursor of a ``WriteTransaction`` can also write (``Cursor/put(key:value:flags:)``,
    /// ``Cursor/deleteCurrent(allDuplicates:)``); one of a ``ReadTransaction`` cannot.
    ///
    /// - Parameters:
    ///   - db: The database to walk.
    ///   - body: Receives the unpositioned cursor.
    /// - Returns: What `body` returns.
    /// - Throws: ``LMDBError`` from `mdb_cursor_open`, or what `body` throws.
    public func withCursor<R>(_ db: Database, _ body: (inout Cursor) throws -> R) throws -> R {
        var cursorHandle: OpaquePointer?
        try check(mdb_cursor_open(handle, db.handle, &cursorHandle), "mdb_cursor_open(\(db.name ?? "main"))")
        var cursor = Cursor(handle: cursorHandle!)
        let outcome = Result { () throws -> R in try body(&cursor) }
        cursor.close()
        return try outcome.get()
    }

    /// The transaction's ID (`mdb_txn_id`): the ID of the snapshot a read transaction sees, or the
    /// ID a write transaction will commit as.
    public var id: Int {
        Int(mdb_txn_id(handle))
    }
}

/// `mdb_get`, mapping "not found" to `nil`. The buffer is valid as long as the transaction, unless
/// the transaction modifies the database.
@inline(__always)
func lookUp(
    _ txn: OpaquePointer,
    _ db: Database,
    _ key: UnsafeRawBufferPointer
) throws(LMDBError) -> UnsafeRawBufferPointer? {
    var keyValue = MDB_val(key)
    var value = MDB_val()
    let rc = mdb_get(txn, db.handle, &keyValue, &value)
    if rc == MDB_NOTFOUND { return nil }
    try check(rc, "mdb_get")
    return value.buffer
}
