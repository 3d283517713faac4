/// Flags of a database, as passed to `mdb_dbi_open`; raw values are LMDB's `MDB_*` constants.
///
/// All but ``create`` are stored in the database when it is created and must be given the same way
/// every time it is opened.
public struct DatabaseFlags: OptionSet, Sendable, Hashable {
    /// The `MDB_*` bits.
    public let rawValue: UInt32

    /// Wraps `MDB_*` database flag bits.
    ///
    /// - Parameter rawValue: A bitwise OR of `MDB_*` database flags.
    public init(rawValue: UInt32) {
        self.rawValue = rawValue
    }

    /// `MDB_REVERSEKEY`: compare keys as strings read from the end to the beginning.
    public static let reverseKey = DatabaseFlags(rawValue: 0x02)
    /// `MDB_DUPSORT`: a key may hold several values, kept sorted.
    public static let duplicateSort = DatabaseFlags(rawValue: 0x04)
    /// `MDB_INTEGERKEY`: keys are native-endian `UInt32` or `UInt` (all of one size), compared as
    /// integers.
    public static let integerKey = DatabaseFlags(rawValue: 0x08)
    /// `MDB_DUPFIXED`: with ``duplicateSort``, all values have the same size.
    public static let duplicateFixed = DatabaseFlags(rawValue: 0x10)
    /// `MDB_INTEGERDUP`: with ``duplicateSort``, values are native-endian integers, like
    /// ``integerKey`` keys.
    public static let integerDuplicate = DatabaseFlags(rawValue: 0x20)
    /// `MDB_REVERSEDUP`: with ``duplicateSort``, compare values from the end to the beginning.
    public static let reverseDuplicate = DatabaseFlags(rawValue: 0x40)
    /// `MDB_CREATE`: create the named database if it does not exist (ignored in a read-only
    /// environment). Not stored in the database.
    public static let create = DatabaseFlags(rawValue: 0x40000)
}
