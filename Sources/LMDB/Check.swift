import CLMDB

/// The one place where LMDB return codes become errors.
///
/// Every C call's return code goes through here. Success costs one compare; the operation's name is
/// only built when the call failed.
///
/// - Parameters:
///   - rc: The C return code.
///   - operation: The failing operation's name, evaluated only on failure.
///   - transaction: The write transaction the call ran in, if any. A `MDB_MAP_FULL` there is noted
///     on the environment so that ``Environment/write(_:)`` grows the map and runs the body again,
///     even if the body catches the error.
/// - Throws: ``LMDBError`` when `rc` is not `MDB_SUCCESS`.
@inline(__always)
func check(
    _ rc: Int32,
    _ operation: @autoclosure () -> String,
    transaction: OpaquePointer? = nil
) throws(LMDBError) {
    if rc == MDB_SUCCESS { return }
    throw makeError(rc, operation(), transaction: transaction)
}

@inline(never)
private func makeError(_ rc: Int32, _ operation: String, transaction: OpaquePointer?) -> LMDBError {
    if rc == MDB_MAP_FULL, let transaction {
        Environment.noteMapFull(in: transaction)
    }
    return LMDBError(code: .init(rawValue: rc), operation: operation)
}
