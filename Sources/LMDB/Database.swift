/// A handle to one database (a B-tree of key/value pairs) in an ``Environment``.
///
/// Obtain it from ``Environment/openDatabase(_:flags:)``; it stays valid for the life of the
/// environment and may be passed freely between threads. It belongs to the environment that opened
/// it: using it with another environment is an error.
public struct Database: Sendable, Hashable {
    /// LMDB's handle (`MDB_dbi`).
    public let handle: UInt32
    /// The database's name, or `nil` for the unnamed main database.
    public let name: String?
    /// The flags stored in the database (never ``DatabaseFlags/create``).
    public let flags: DatabaseFlags
}

/// The shape of one database's B-tree, from `mdb_stat`.
public struct DatabaseStatistics: Sendable, Hashable {
    /// The page size in bytes.
    public var pageSize: Int
    /// The depth of the B-tree.
    public var depth: Int
    /// The number of internal (branch) pages.
    public var branchPages: Int
    /// The number of leaf pages.
    public var leafPages: Int
    /// The number of overflow pages (values larger than about half a page).
    public var overflowPages: Int
    /// The number of key/value pairs (each duplicate counted).
    public var entries: Int
}
