import CLMDB

extension MDB_val {
    /// A view of `buffer` for LMDB, without copying.
    @inline(__always)
    init(_ buffer: UnsafeRawBufferPointer) {
        self.init(mv_size: buffer.count, mv_data: UnsafeMutableRawPointer(mutating: buffer.baseAddress))
    }

    /// The bytes LMDB points at; valid while the transaction that produced them lives and does not
    /// modify them.
    @inline(__always)
    var buffer: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: mv_data, count: mv_size)
    }
}

extension DatabaseStatistics {
    init(_ stat: MDB_stat) {
        self.init(
            pageSize: Int(stat.ms_psize),
            depth: Int(stat.ms_depth),
            branchPages: Int(stat.ms_branch_pages),
            leafPages: Int(stat.ms_leaf_pages),
            overflowPages: Int(stat.ms_overflow_pages),
            entries: Int(stat.ms_entries)
        )
    }
}
