import CLMDB

/// The single write transaction of the environment, lent to the body of ``Environment/write(_:)``.
///
/// ``Environment/write(_:)`` commits it when the body returns and aborts it when the body throws.
/// It reads its own writes. Its read API is in ``TransactionProtocol``.
public struct WriteTransaction: ~Copyable, TransactionProtocol {
    /// The LMDB transaction (`MDB_txn *`). Valid only inside the body; never commit or abort it.
    public let handle: OpaquePointer

    init(handle: OpaquePointer) {
        self.handle = handle
    }

    deinit {
        mdb_txn_abort(handle)
    }

    /// Discards every change (`mdb_txn_abort`).
    consuming func abort() {
        let handle = self.handle
        discard self
        mdb_txn_abort(handle)
    }

    /// Commits (`mdb_txn_commit`). LMDB frees the transaction whether the commit succeeds or fails,
    /// so it is never aborted afterwards.
    ///
    /// - Returns: The return code.
    consuming func commit() -> Int32 {
        let handle = self.handle
        discard self
        return mdb_txn_commit(handle)
    }
}

@available(*, unavailable, message: "a transaction belongs to the thread running its body")
extension WriteTransaction: Sendable {}

extension WriteTransaction {
    /// Stores a value under a key (`mdb_put`).
    ///
    /// Without flags it replaces any value the key had (or, in a ``DatabaseFlags/duplicateSort``
    /// database, adds the value to the key's values).
    ///
    /// - Parameters:
    ///   - key: The key's bytes; 1 to ``Environment/maxKeySize`` bytes.
    ///   - value: The value's bytes.
    ///   - db: The database.
    ///   - flags: ``WriteFlags/noOverwrite``, ``WriteFlags/noDuplicateData``, ``WriteFlags/append``,
    ///     ``WriteFlags/appendDuplicate``; not ``WriteFlags/reserve`` (use
    ///     ``reserve(key:count:in:flags:_:)``).
    /// - Returns: `true` when written; `false` when ``WriteFlags/noOverwrite`` or
    ///   ``WriteFlags/noDuplicateData`` found the key (or pair) already there.
    /// - Throws: ``LMDBError``; ``LMDBError/Code/keyExists`` for an ``WriteFlags/append`` whose key
    ///   does not sort last, ``LMDBError/Code/invalidArgument`` for ``WriteFlags/reserve``.
    @discardableResult
    public func put(
        key: UnsafeRawBufferPointer,
        value: UnsafeRawBufferPointer,
        in db: Database,
        flags: WriteFlags = []
    ) throws(LMDBError) -> Bool {
        guard !flags.contains(.reserve) else { throw WriteFlags.reserveNeedsFill("mdb_put") }
        var keyValue = MDB_val(key)
        var dataValue = MDB_val(value)
        let rc = mdb_put(handle, db.handle, &keyValue, &dataValue, flags.rawValue)
        if rc == MDB_KEYEXIST && flags.reportsExistingAsFalse { return false }
        try check(rc, "mdb_put", transaction: handle)
        return true
    }

    /// Stores a value under a key (`mdb_put`); see ``put(key:value:in:flags:)``.
    ///
    /// - Parameters:
    ///   - key: The key's bytes.
    ///   - value: The value's bytes.
    ///   - db: The database.
    ///   - flags: Write flags.
    /// - Returns: `true` when written; `false` when ``WriteFlags/noOverwrite`` or
    ///   ``WriteFlags/noDuplicateData`` found it already there.
    /// - Throws: ``LMDBError``.
    @discardableResult
    public func put(
        _ key: [UInt8],
        _ value: [UInt8],
        in db: Database,
        flags: WriteFlags = []
    ) throws(LMDBError) -> Bool {
        try key.withUnsafeBufferPointer { (key) throws(LMDBError) -> Bool in
            try value.withUnsafeBufferPointer { (value) throws(LMDBError) -> Bool in
                try put(key: UnsafeRawBufferPointer(key), value: UnsafeRawBufferPointer(value), in: db, flags: flags)
            }
        }
    }

    /// Reserves `count` bytes for a key's value and lets `fill` write them in place (`MDB_RESERVE`),
    /// which saves building the value elsewhere and copying it.
    ///
    /// `fill` must write every byte. If it throws, the reserved bytes are unspecified: let the error
    /// leave the write body so the transaction rolls back. Not allowed in a
    /// ``DatabaseFlags/duplicateSort`` database.
    ///
    /// - Parameters:
    ///   - key: The key's bytes.
    ///   - count: The value's size in bytes.
    ///   - db: The database.
    ///   - flags: Write flags; ``WriteFlags/reserve`` is added.
    ///   - fill: Writes the value into the reserved bytes, which are valid only during the call.
    /// - Returns: `true` when reserved and filled; `false` when ``WriteFlags/noOverwrite`` found the
    ///   key already there (`fill` is then not called).
    /// - Throws: ``LMDBError`` (``LMDBError/Code/invalidArgument`` for a negative count), or what
    ///   `fill` throws.
    @discardableResult
    public func reserve(
        key: UnsafeRawBufferPointer,
        count: Int,
        in db: Database,
        flags: WriteFlags = [],
        _ fill: (UnsafeMutableRawBufferPointer) throws -> Void
    ) throws -> Bool {
        guard count >= 0 else {
            throw LMDBError(code: .invalidArgument, operation: "mdb_put(reserve, count: \(count))")
        }
        var keyValue = MDB_val(key)
        var dataValue = MDB_val(mv_size: count, mv_data: nil)
        let allFlags = flags.union(.reserve)
        let rc = mdb_put(handle, db.handle, &keyValue, &dataValue, allFlags.rawValue)
        if rc == MDB_KEYEXIST && flags.reportsExistingAsFalse { return false }
        try check(rc, "mdb_put(reserve)", transaction: handle)
        try fill(UnsafeMutableRawBufferPointer(start: dataValue.mv_data, count: count))
        return true
    }

    /// Deletes a key with all its values (`mdb_del`).
    ///
    /// - Parameters:
    ///   - key: The key's bytes.
    ///   - db: The database.
    /// - Returns: `true` when deleted, `false` when the key was absent.
    /// - Throws: ``LMDBError``.
    @discardableResult
    public func delete(key: UnsafeRawBufferPointer, in db: Database) throws(LMDBError) -> Bool {
        var keyValue = MDB_val(key)
        let rc = mdb_del(handle, db.handle, &keyValue, nil)
        if rc == MDB_NOTFOUND { return false }
        try check(rc, "mdb_del", transaction: handle)
        return true
    }

    /// Deletes one value of a key in a ``DatabaseFlags/duplicateSort`` database (`mdb_del` with
    /// data). In other databases the value is ignored and the key is deleted.
    ///
    /// - Parameters:
    ///   - key: The key's bytes.
    ///   - value: The value to remove from the key's values.
    ///   - db: The database.
    /// - Returns: `true` when deleted, `false` when the pair was absent.
    /// - Throws: ``LMDBError``.
    @discardableResult
    public func delete(
        key: UnsafeRawBufferPointer,
        value: UnsafeRawBufferPointer,
        in db: Database
    ) throws(LMDBError) -> Bool {
        var keyValue = MDB_val(key)
        var dataValue = MDB_val(value)
        let rc = mdb_del(handle, db.handle, &keyValue, &dataValue)
        if rc == MDB_NOTFOUND { return false }
        try check(rc, "mdb_del", transaction: handle)
        return true
    }

    /// Deletes every entry of a database and keeps the database (`mdb_drop(dbi, 0)`).
    ///
    /// - Parameter db: The database to empty.
    /// - Throws: ``LMDBError``.
    public func clear(_ db: Database) throws(LMDBError) {
        try check(mdb_drop(handle, db.handle, 0), "mdb_drop(\(db.name ?? "main"))", transaction: handle)
    }
}

extension WriteFlags {
    /// The error for ``reserve`` given to a put that copies a value: LMDB would leave the value
    /// unwritten.
    static func reserveNeedsFill(_ operation: String) -> LMDBError {
        LMDBError(code: .invalidArgument, operation: "\(operation) with .reserve: use WriteTransaction.reserve")
    }

    /// Whether `MDB_KEYEXIST` is an ordinary answer ("already there") rather than an error: with
    /// ``noOverwrite`` or ``noDuplicateData``, but not with an append, where it means "out of order".
    var reportsExistingAsFalse: Bool {
        !isDisjoint(with: [.noOverwrite, .noDuplicateData]) && isDisjoint(with: [.append, .appendDuplicate])
    }
}
