import CLMDB

/// A read-only snapshot of the environment, lent to the body of ``Environment/read(_:)``.
///
/// It sees the data as of the last commit before it began, whatever writers do meanwhile. It is
/// aborted (which releases its reader slot) when the body returns or throws. Its read API is in
/// ``TransactionProtocol``.
public struct ReadTransaction: ~Copyable, TransactionProtocol {
    /// The LMDB transaction (`MDB_txn *`). Valid only inside the body; never commit or abort it.
    public let handle: OpaquePointer

    init(handle: OpaquePointer) {
        self.handle = handle
    }

    deinit {
        mdb_txn_abort(handle)
    }

    /// Ends the transaction (`mdb_txn_abort`).
    consuming func abort() {
        let handle = self.handle
        discard self
        mdb_txn_abort(handle)
    }

    /// Commits the transaction (`mdb_txn_commit`), which keeps the database handles it opened.
    /// LMDB frees the transaction whatever the outcome.
    ///
    /// - Returns: The return code.
    consuming func commit() -> Int32 {
        let handle = self.handle
        discard self
        return mdb_txn_commit(handle)
    }
}

@available(*, unavailable, message: "a transaction belongs to the thread running its body")
extension ReadTransaction: Sendable {}
