import CLMDB

/// A position in one database, lent to the body of ``TransactionProtocol/withCursor(_:_:)``.
///
/// Move it with ``move(_:)`` and the `seek` methods; each returns the entry it lands on, or `nil`
/// when there is none. The entry's buffers point into the memory map, without copying: they are
/// valid only inside the enclosing `withCursor` body, and in a write transaction only until the
/// database is next modified.
///
/// ```swift
/// try env.read { txn in
///     try txn.withCursor(log) { cursor in
///         var entry = try cursor.seek(atLeast: start)
///         while let (key, value) = entry {
///             handle(key, value)
///             entry = try cursor.move(.next)
///         }
///     }
/// }
/// ```
public struct Cursor: ~Copyable {
    /// A key and value the cursor is on; both valid only inside the enclosing `withCursor` body
    /// (and, in a write transaction, until the database is next modified).
    public typealias Entry = (key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer)

    /// Where ``Cursor/move(_:)`` goes, as LMDB's `MDB_cursor_op`.
    public enum Position: Sendable, Hashable {
        /// The first entry (`MDB_FIRST`).
        case first
        /// The last entry (`MDB_LAST`).
        case last
        /// The next entry, the next value of the same key included (`MDB_NEXT`); from an
        /// unpositioned cursor, the first entry.
        case next
        /// The previous entry (`MDB_PREV`); from an unpositioned cursor, the last entry.
        case previous
        /// The first value of the next key (`MDB_NEXT_NODUP`).
        case nextNoDuplicate
        /// The last value of the previous key (`MDB_PREV_NODUP`).
        case previousNoDuplicate
        /// The next value of the current key, `nil` after its last (`MDB_NEXT_DUP`);
        /// ``DatabaseFlags/duplicateSort`` only.
        case nextDuplicate
        /// The previous value of the current key (`MDB_PREV_DUP`); ``DatabaseFlags/duplicateSort``
        /// only.
        case previousDuplicate
        /// The first value of the current key (`MDB_FIRST_DUP`); ``DatabaseFlags/duplicateSort`` only.
        case firstDuplicate
        /// The last value of the current key (`MDB_LAST_DUP`); ``DatabaseFlags/duplicateSort`` only.
        case lastDuplicate
        /// The entry the cursor is on (`MDB_GET_CURRENT`).
        case current

        var operation: MDB_cursor_op {
            switch self {
            case .first: MDB_FIRST
            case .last: MDB_LAST
            case .next: MDB_NEXT
            case .previous: MDB_PREV
            case .nextNoDuplicate: MDB_NEXT_NODUP
            case .previousNoDuplicate: MDB_PREV_NODUP
            case .nextDuplicate: MDB_NEXT_DUP
            case .previousDuplicate: MDB_PREV_DUP
            case .firstDuplicate: MDB_FIRST_DUP
            case .lastDuplicate: MDB_LAST_DUP
            case .current: MDB_GET_CURRENT
            }
        }

        /// Operations after which LMDB leaves the key untouched, so the key is fetched separately.
        var returnsKey: Bool {
            self != .firstDuplicate && self != .lastDuplicate
        }
    }

    let handle: OpaquePointer

    init(handle: OpaquePointer) {
        self.handle = handle
    }

    deinit {
        mdb_cursor_close(handle)
    }

    /// Closes the cursor (`mdb_cursor_close`).
    consuming func close() {
        let handle = self.handle
        discard self
        mdb_cursor_close(handle)
    }

    /// Moves the cursor.
    ///
    /// - Parameter position: Where to go.
    /// - Returns: The entry there, or `nil` when there is none (`MDB_NOTFOUND`: past either end,
    ///   an empty database, or no further value of the key).
    /// - Throws: ``LMDBError``; ``LMDBError/Code/invalidArgument`` for a relative move of an
    ///   unpositioned cursor, ``LMDBError/Code/incompatible`` for a duplicate move in a database
    ///   without ``DatabaseFlags/duplicateSort``.
    public mutating func move(_ position: Position) throws(LMDBError) -> Entry? {
        var key = MDB_val()
        var value = MDB_val()
        guard try get(&key, &value, position.operation, "mdb_cursor_get(\(position))") else { return nil }
        if !position.returnsKey {
            return try get(&key, &value, MDB_GET_CURRENT, "mdb_cursor_get(current)")
                ? (key.buffer, value.buffer) : nil
        }
        return (key.buffer, value.buffer)
    }

    /// Moves to the first key equal to or greater than `key` (`MDB_SET_RANGE`).
    ///
    /// - Parameter key: The key to look for.
    /// - Returns: The entry there (its first value, for duplicates), or `nil` when every key is
    ///   smaller.
    /// - Throws: ``LMDBError``.
    public mutating func seek(atLeast key: UnsafeRawBufferPointer) throws(LMDBError) -> Entry? {
        var keyValue = MDB_val(key)
        var value = MDB_val()
        guard try get(&keyValue, &value, MDB_SET_RANGE, "mdb_cursor_get(seek atLeast)") else { return nil }
        return (keyValue.buffer, value.buffer)
    }

    /// Moves to `key` itself (`MDB_SET_KEY`).
    ///
    /// - Parameter key: The key to look for.
    /// - Returns: The entry (its first value, for duplicates), or `nil` when the key is absent.
    /// - Throws: ``LMDBError``.
    public mutating func seek(exactly key: UnsafeRawBufferPointer) throws(LMDBError) -> Entry? {
        var keyValue = MDB_val(key)
        var value = MDB_val()
        guard try get(&keyValue, &value, MDB_SET_KEY, "mdb_cursor_get(seek exactly)") else { return nil }
        return (keyValue.buffer, value.buffer)
    }

    /// Moves to the first value equal to or greater than `value` among the values of `key`
    /// (`MDB_GET_BOTH_RANGE`); ``DatabaseFlags/duplicateSort`` only.
    ///
    /// - Parameters:
    ///   - key: The key, matched exactly.
    ///   - value: The smallest value wanted.
    /// - Returns: The entry, or `nil` when the key is absent or all its values are smaller.
    /// - Throws: ``LMDBError``.
    public mutating func seek(
        key: UnsafeRawBufferPointer,
        atLeastValue value: UnsafeRawBufferPointer
    ) throws(LMDBError) -> Entry? {
        try seekPair(key, value, MDB_GET_BOTH_RANGE, "mdb_cursor_get(seek key atLeastValue)")
    }

    /// Moves to the exact pair `key`, `value` (`MDB_GET_BOTH`); ``DatabaseFlags/duplicateSort`` only.
    ///
    /// - Parameters:
    ///   - key: The key, matched exactly.
    ///   - value: The value, matched exactly.
    /// - Returns: The entry, or `nil` when the pair is absent.
    /// - Throws: ``LMDBError``.
    public mutating func seek(
        key: UnsafeRawBufferPointer,
        value: UnsafeRawBufferPointer
    ) throws(LMDBError) -> Entry? {
        try seekPair(key, value, MDB_GET_BOTH, "mdb_cursor_get(seek key value)")
    }

    /// The number of values of the key the cursor is on (`mdb_cursor_count`).
    ///
    /// - Returns: The count; at least 1.
    /// - Throws: ``LMDBError``; ``LMDBError/Code/incompatible`` in a database without
    ///   ``DatabaseFlags/duplicateSort``, ``LMDBError/Code/invalidArgument`` for an unpositioned
    ///   cursor.
    public func duplicateCount() throws(LMDBError) -> Int {
        var count = 0
        try check(mdb_cursor_count(handle, &count), "mdb_cursor_count")
        return count
    }

    /// Stores a value under a key through the cursor (`mdb_cursor_put`), which leaves the cursor on
    /// the new entry. Only for a cursor of a ``WriteTransaction``.
    ///
    /// With ``WriteFlags/append`` this is the fastest way to add to an append-only log (keys in
    /// increasing order, such as big-endian sequence numbers).
    ///
    /// - Parameters:
    ///   - key: The key's bytes.
    ///   - value: The value's bytes.
    ///   - flags: ``WriteFlags/append``, ``WriteFlags/appendDuplicate``, ``WriteFlags/current``,
    ///     ``WriteFlags/noOverwrite``, ``WriteFlags/noDuplicateData``; not ``WriteFlags/reserve``.
    /// - Returns: `true` when written; `false` when ``WriteFlags/noOverwrite`` or
    ///   ``WriteFlags/noDuplicateData`` found it already there.
    /// - Throws: ``LMDBError``; ``LMDBError/Code/keyExists`` for an out-of-order append,
    ///   ``LMDBError/Code/permissionDenied`` for a cursor of a read transaction,
    ///   ``LMDBError/Code/invalidArgument`` for ``WriteFlags/reserve``.
    @discardableResult
    public mutating func put(
        key: UnsafeRawBufferPointer,
        value: UnsafeRawBufferPointer,
        flags: WriteFlags = []
    ) throws(LMDBError) -> Bool {
        guard !flags.contains(.reserve) else { throw WriteFlags.reserveNeedsFill("mdb_cursor_put") }
        var keyValue = MDB_val(key)
        var dataValue = MDB_val(value)
        let rc = mdb_cursor_put(handle, &keyValue, &dataValue, flags.rawValue)
        if rc == MDB_KEYEXIST && flags.reportsExistingAsFalse { return false }
        try check(rc, "mdb_cursor_put", transaction: mdb_cursor_txn(handle))
        return true
    }

    /// Deletes the entry the cursor is on (`mdb_cursor_del`); the cursor then stands where a
    /// ``Position/next`` move finds the following entry. Only for a cursor of a ``WriteTransaction``.
    ///
    /// - Parameter allDuplicates: In a ``DatabaseFlags/duplicateSort`` database, delete every value
    ///   of the current key rather than the current value only (`MDB_NODUPDATA`).
    /// - Throws: ``LMDBError``; ``LMDBError/Code/permissionDenied`` for a cursor of a read
    ///   transaction.
    public mutating func deleteCurrent(allDuplicates: Bool = false) throws(LMDBError) {
        let flags = allDuplicates ? WriteFlags.noDuplicateData.rawValue : 0
        try check(mdb_cursor_del(handle, flags), "mdb_cursor_del", transaction: mdb_cursor_txn(handle))
    }

    /// `mdb_cursor_get`, mapping "not found" to `false`.
    private func get(
        _ key: inout MDB_val,
        _ value: inout MDB_val,
        _ operation: MDB_cursor_op,
        _ name: @autoclosure () -> String
    ) throws(LMDBError) -> Bool {
        let rc = mdb_cursor_get(handle, &key, &value, operation)
        if rc == MDB_NOTFOUND { return false }
        try check(rc, name())
        return true
    }

    /// A `GET_BOTH` kind of seek; LMDB leaves the caller's key in place, so the stored key is
    /// fetched to keep the entry valid as long as the transaction.
    private func seekPair(
        _ key: UnsafeRawBufferPointer,
        _ value: UnsafeRawBufferPointer,
        _ operation: MDB_cursor_op,
        _ name: @autoclosure () -> String
    ) throws(LMDBError) -> Entry? {
        var keyValue = MDB_val(key)
        var dataValue = MDB_val(value)
        guard try get(&keyValue, &dataValue, operation, name()) else { return nil }
        guard try get(&keyValue, &dataValue, MDB_GET_CURRENT, "mdb_cursor_get(current)") else { return nil }
        return (keyValue.buffer, dataValue.buffer)
    }
}

@available(*, unavailable, message: "a cursor belongs to the thread running its transaction's body")
extension Cursor: Sendable {}
