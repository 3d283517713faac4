extension Environment {
    /// The state of an environment's map and lock table, from `mdb_env_info` and `mdb_env_stat`.
    public struct Info: Sendable, Hashable {
        /// The current size of the memory map in bytes: the most data the file can hold before the
        /// map grows again.
        public var mapSize: Int
        /// The highest page number in use; `(lastPageNumber + 1) * pageSize` bytes of the map hold
        /// data or free pages.
        public var lastPageNumber: Int
        /// The ID of the last committed transaction.
        public var lastTransactionID: Int
        /// The number of reader slots in the lock file.
        public var maxReaders: Int
        /// The number of reader slots used so far (slots of finished readers included until reused).
        public var numberOfReaders: Int
        /// The database page size in bytes.
        public var pageSize: Int

        /// Bytes of the map in use, `(lastPageNumber + 1) * pageSize`.
        public var usedSize: Int { (lastPageNumber + 1) * pageSize }
    }
}
