/// Flags of one put, as passed to `mdb_put` and `mdb_cursor_put`; raw values are LMDB's `MDB_*`
/// constants.
public struct WriteFlags: OptionSet, Sendable, Hashable {
    /// The `MDB_*` bits.
    public let rawValue: UInt32

    /// Wraps `MDB_*` write flag bits.
    ///
    /// - Parameter rawValue: A bitwise OR of `MDB_*` write flags.
    public init(rawValue: UInt32) {
        self.rawValue = rawValue
    }

    /// `MDB_NOOVERWRITE`: write only if the key is absent; the put then returns `false` when it
    /// was present.
    public static let noOverwrite = WriteFlags(rawValue: 0x10)
    /// `MDB_NODUPDATA`: in a ``DatabaseFlags/duplicateSort`` database, write only if this exact
    /// key/value pair is absent; the put then returns `false` when it was present.
    public static let noDuplicateData = WriteFlags(rawValue: 0x20)
    /// `MDB_CURRENT`: with a cursor, replace the value at the cursor's position; the key must be the
    /// same.
    public static let current = WriteFlags(rawValue: 0x40)
    /// `MDB_RESERVE`: reserve space for the value and return it for the caller to fill; see
    /// ``WriteTransaction/reserve(key:count:in:flags:_:)``.
    public static let reserve = WriteFlags(rawValue: 0x10000)
    /// `MDB_APPEND`: the key sorts after every key already stored; LMDB appends without searching.
    /// The fast path for append-only logs. A key that does not sort last fails with
    /// ``LMDBError/Code/keyExists``.
    public static let append = WriteFlags(rawValue: 0x20000)
    /// `MDB_APPENDDUP`: like ``append`` for the values of one key in a
    /// ``DatabaseFlags/duplicateSort`` database.
    public static let appendDuplicate = WriteFlags(rawValue: 0x40000)
}
