/// Sessions of a peer's users table as its snapshot sends them, kept encoded: each as its 16-byte address, a
/// 4-byte big-endian length and its users-table value, the layout of
/// ``SessionStore/readSnapshot(after:maxSessions:everything:into:)``.
///
/// Every value is checked when the batch is made, as a decode checks it; the store's writer then stores the
/// values as they came, without decoding them and encoding them again (see `PeerApply`).
package struct SnapshotSessions: Sendable {
    /// The batches, each in the layout above and checked.
    private var chunks: [[UInt8]] = []
    /// How many sessions they hold.
    package private(set) var count = 0

    /// Checks a snapshot batch as the peer sent it: every session's value is checked as a decode checks it
    /// (``RecordCodec/peekSessionValueFields(_:checkingRules:)``), without building a ``Session``.
    ///
    /// - Throws: ``SessionStoreError`` (`invalidArgument` for a batch cut short, `corruptRecord` naming the
    ///   address for a value that does not decode); nothing is kept then.
    package init(checking batch: UnsafeRawBufferPointer) throws(SessionStoreError) {
        var count = 0
        try Self.forEachValue(in: batch) { (ip, value) throws(SessionStoreError) in
            do throws(CorruptRecordError) {
                _ = try RecordCodec.peekSessionValueFields(value)
            } catch {
                throw SessionStoreError(.corruptRecord(error, location: "session \(ip) of a peer snapshot batch"))
            }
            count += 1
        }
        if count > 0 { chunks = [Array(batch)] }
        self.count = count
    }

    /// The batch of `sessions`, encoded as a snapshot sends them; validate them first.
    package init(_ sessions: [Session]) {
        var bytes: [UInt8] = []
        var value: [UInt8] = []
        for session in sessions {
            value.removeAll(keepingCapacity: true)
            RecordCodec.encodeSessionValue(session, into: &value)
            session.ip.withUnsafeBytes { bytes.append(contentsOf: $0) }
            withUnsafeBytes(of: UInt32(value.count).bigEndian) { bytes.append(contentsOf: $0) }
            bytes.append(contentsOf: value)
        }
        if !sessions.isEmpty { chunks = [bytes] }
        count = sessions.count
    }

    package var isEmpty: Bool { count == 0 }

    /// Adds the sessions of `other` after these.
    package mutating func append(contentsOf other: SnapshotSessions) {
        chunks += other.chunks
        count += other.count
    }

    /// The sessions, decoded.
    package var sessions: [Session] {
        var sessions: [Session] = []
        sessions.reserveCapacity(count)
        forEachValue { ip, value in
            // Checked when the batch was made.
            sessions.append(try! RecordCodec.decodeSessionValue(value, ip: ip))
        }
        return sessions
    }

    /// Calls `body` with the address and value of each session, in order.
    func forEachValue<E: Error>(_ body: (IPAddress, UnsafeRawBufferPointer) throws(E) -> Void) throws(E) {
        for chunk in chunks {
            var failure: E?
            chunk.withUnsafeBytes { bytes in
                // Checked when the batch was made: the layout holds.
                var offset = 0
                while offset < bytes.count {
                    let ip = IPAddress(bytes: UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + 16]))
                    let length = Int(
                        UInt32(bigEndian: bytes.loadUnaligned(fromByteOffset: offset + 16, as: UInt32.self))
                    )
                    offset += 20
                    do throws(E) {
                        try body(ip, UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + length]))
                    } catch {
                        failure = error
                        return
                    }
                    offset += length
                }
            }
            if let failure { throw failure }
        }
    }

    /// Calls `body` with the address and value of each session of a snapshot batch, checking its layout (not
    /// the values).
    private static func forEachValue(
        in bytes: UnsafeRawBufferPointer,
        _ body: (IPAddress, UnsafeRawBufferPointer) throws(SessionStoreError) -> Void
    ) throws(SessionStoreError) {
        var offset = 0
        while offset < bytes.count {
            guard bytes.count - offset >= 16 else {
                throw SessionStoreError(.invalidArgument("a peer snapshot batch ends inside an address"))
            }
            let ip = IPAddress(bytes: UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + 16]))
            offset += 16
            try body(ip, try SessionStore.framedUnit(bytes, at: &offset, what: "peer snapshot"))
        }
    }
}
