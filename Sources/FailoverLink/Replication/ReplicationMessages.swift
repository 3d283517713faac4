import NIOCore
import SessionStore

// The payloads of the replication frames (types 16 to 25), all big-endian. Each decoder checks every
// length and rejects bytes left over, so a malformed frame fails the connection and stores nothing.

/// Where a device stands, sent first on each connection: its term and its log's history ID; how far it has
/// applied the receiver's stream, and in which history of the receiver's log (the receiver streams from
/// there when that is its current history, and sends a snapshot otherwise); and the term at which it took
/// the receiver's users over (0 when it never did). A device that lost its users (a new store, a demotion,
/// a repaired damage) asks to *recover*: the receiver then sends a snapshot of every session it holds, this
/// device's users included, and the stream after it in full.
package struct StreamRequest: Sendable, Hashable {
    var term: UInt32
    var history: UInt64
    var applied: LogPosition
    var adoptedYouAt: UInt32
    var recovering = false

    static let size = 33

    package func frame() -> Frame {
        var buffer = ByteBuffer()
        buffer.writeInteger(term)
        buffer.writeInteger(history)
        buffer.writeInteger(applied.sequence)
        buffer.writeInteger(applied.history)
        buffer.writeInteger(adoptedYouAt)
        buffer.writeInteger(UInt8(recovering ? 1 : 0))
        return Frame(type: .streamRequest, payload: buffer)
    }

    package static func decode(_ payload: ByteBuffer) throws(LinkError) -> StreamRequest {
        var buffer = payload
        guard let term = buffer.readInteger(as: UInt32.self), let history = buffer.readInteger(as: UInt64.self),
            let applied = buffer.readInteger(as: UInt64.self),
            let appliedHistory = buffer.readInteger(as: UInt64.self),
            let adopted = buffer.readInteger(as: UInt32.self), let flags = buffer.readInteger(as: UInt8.self),
            buffer.readableBytes == 0
        else {
            throw LinkError(.malformed("a stream request of \(payload.readableBytes) bytes, expected \(size)"))
        }
        guard flags & ~1 == 0 else { throw LinkError(.malformed("a stream request with unknown flags \(flags)")) }
        return StreamRequest(
            term: term,
            history: history,
            applied: LogPosition(history: appliedHistory, sequence: applied),
            adoptedYouAt: adopted,
            recovering: flags & 1 != 0
        )
    }
}

/// A sequence number alone: an ack, or the end of a snapshot.
package struct SequenceMessage: Sendable, Hashable {
    var sequence: UInt64

    func frame(_ type: FrameType) -> Frame {
        var buffer = ByteBuffer()
        buffer.writeInteger(sequence)
        return Frame(type: type, payload: buffer)
    }

    package static func decode(_ payload: ByteBuffer, _ type: FrameType) throws(LinkError) -> UInt64 {
        var buffer = payload
        guard let sequence = buffer.readInteger(as: UInt64.self), buffer.readableBytes == 0 else {
            throw LinkError(.malformed("a \(type) frame of \(payload.readableBytes) bytes, expected 8"))
        }
        return sequence
    }
}

/// Records of the sender's log: the sequence the stream is complete through, then the records as
/// `SessionStore.readStream` frames them.
package enum RecordsMessage {
    package static func frame(through: UInt64, records: [UInt8]) -> Frame {
        var buffer = ByteBuffer()
        buffer.reserveCapacity(8 + records.count)
        buffer.writeInteger(through)
        buffer.writeBytes(records)
        return Frame(type: .records, payload: buffer)
    }

    package static func decode(_ payload: ByteBuffer) throws -> (through: UInt64, records: [LogRecord]) {
        var buffer = payload
        guard let through = buffer.readInteger(as: UInt64.self) else {
            throw LinkError(.malformed("a records frame without its sequence"))
        }
        let records = try buffer.withUnsafeReadableBytes { bytes throws(SessionStoreError) in
            try SessionStore.decodeStream(bytes)
        }
        return (through, records)
    }
}

/// The start of a snapshot: whether it holds every session the sender holds (for a recovering receiver),
/// only the sender's users, or none because the receiver keeps its copy of them (the sender recovered from
/// it), then the sender's takeovers, so that the receiver knows who owns what.
package enum SnapshotBeginMessage {
    package static func frame(takeovers: [Takeover], everything: Bool = false, keep: Bool = false) -> Frame {
        var buffer = ByteBuffer()
        buffer.writeInteger(UInt8((everything ? 1 : 0) | (keep ? 2 : 0)))
        buffer.writeInteger(UInt8(takeovers.count))
        for takeover in takeovers {
            buffer.writeInteger(takeover.from.rawValue)
            buffer.writeInteger(takeover.to.rawValue)
            buffer.writeInteger(takeover.term)
        }
        return Frame(type: .snapshotBegin, payload: buffer)
    }

    package static func decode(
        _ payload: ByteBuffer
    ) throws(LinkError) -> (takeovers: [Takeover], everything: Bool, keep: Bool) {
        var buffer = payload
        guard let flags = buffer.readInteger(as: UInt8.self), flags & ~3 == 0, flags != 3,
            let count = buffer.readInteger(as: UInt8.self), buffer.readableBytes == Int(count) * 6
        else {
            throw LinkError(.malformed("a snapshot-begin frame of \(payload.readableBytes) bytes"))
        }
        var takeovers: [Takeover] = []
        for _ in 0..<count {
            guard let from = DeviceID(rawValue: buffer.readInteger(as: UInt8.self)!),
                let to = DeviceID(rawValue: buffer.readInteger(as: UInt8.self)!)
            else { throw LinkError(.malformed("device ID 0 in a snapshot-begin frame")) }
            takeovers.append(Takeover(from: from, to: to, term: buffer.readInteger(as: UInt32.self)!))
        }
        return (takeovers, flags & 1 != 0, flags & 2 != 0)
    }
}

/// The end of a snapshot: the sender's sequence it stood at (the stream goes on after it), the sequence from
/// which the receiver's copy is whole again (the snapshot was read in several transactions, the last of them
/// at that sequence), and, for a snapshot of everything, the sequence through which the stream after it
/// carries every record of the sender's log, the receiver's own changes included (0 otherwise).
package struct SnapshotEndMessage: Sendable, Hashable {
    package var position: UInt64
    package var wholeFrom: UInt64
    package var everythingThrough: UInt64 = 0

    static let size = 24

    /// The end of a snapshot whose stream goes on after `position`, when the sender's log ended at
    /// `lastLogged` (after the last read of its tables, which stood at checkpoints no later than that).
    ///
    /// The receiver's copy is whole only from `lastLogged` on, however early the tables read stood: a table
    /// read at a checkpoint that lags can still hold users the receiver had logged off (R7) and forgotten
    /// since (a restart), and the records that end them again (the receiver's own logouts, sent back) lie
    /// between the checkpoint and `lastLogged`. Until the receiver has applied them, its table holds changes
    /// the sender's does not, and no digest point of it is compared. After a snapshot of `everything`, the
    /// stream carries every record through `lastLogged`.
    package static func closing(
        position: UInt64,
        lastLogged: UInt64,
        everything: Bool
    ) -> SnapshotEndMessage {
        SnapshotEndMessage(
            position: position,
            wholeFrom: max(position, lastLogged),
            everythingThrough: everything ? max(lastLogged, position) : 0
        )
    }

    package func frame() -> Frame {
        var buffer = ByteBuffer()
        buffer.writeInteger(position)
        buffer.writeInteger(wholeFrom)
        buffer.writeInteger(everythingThrough)
        return Frame(type: .snapshotEnd, payload: buffer)
    }

    static func decode(_ payload: ByteBuffer) throws(LinkError) -> SnapshotEndMessage {
        var buffer = payload
        guard let position = buffer.readInteger(as: UInt64.self), let wholeFrom = buffer.readInteger(as: UInt64.self),
            let everything = buffer.readInteger(as: UInt64.self), buffer.readableBytes == 0
        else {
            throw LinkError(.malformed("a snapshot-end frame of \(payload.readableBytes) bytes, expected \(size)"))
        }
        return SnapshotEndMessage(position: position, wholeFrom: wholeFrom, everythingThrough: everything)
    }
}

/// A digest point of the sender, sent in its stream right after the records through `through`, in answer
/// to a digest request: the digest of its users table as it stood at its sequence `through`, how far it had
/// applied the receiver's stream then (and in which history of the receiver's log), and how many of the
/// receiver's snapshots it had installed on this connection.
package struct DigestMessage: Sendable, Hashable {
    package var through: UInt64
    package var appliedOfYou: UInt64
    package var appliedHistoryOfYou: UInt64
    package var value: UInt64
    package var installedOfYou: UInt32

    static let size = 36

    package func frame() -> Frame {
        var buffer = ByteBuffer()
        buffer.writeInteger(through)
        buffer.writeInteger(appliedOfYou)
        buffer.writeInteger(appliedHistoryOfYou)
        buffer.writeInteger(value)
        buffer.writeInteger(installedOfYou)
        return Frame(type: .digest, payload: buffer)
    }

    static func decode(_ payload: ByteBuffer) throws(LinkError) -> DigestMessage {
        var buffer = payload
        guard let through = buffer.readInteger(as: UInt64.self),
            let applied = buffer.readInteger(as: UInt64.self),
            let history = buffer.readInteger(as: UInt64.self),
            let value = buffer.readInteger(as: UInt64.self),
            let installed = buffer.readInteger(as: UInt32.self), buffer.readableBytes == 0
        else {
            throw LinkError(.malformed("a digest frame of \(payload.readableBytes) bytes, expected \(size)"))
        }
        return DigestMessage(
            through: through,
            appliedOfYou: applied,
            appliedHistoryOfYou: history,
            value: value,
            installedOfYou: installed
        )
    }
}

/// The sender compared its users table, as it stood at its sequence `through`, with the receiver's digest
/// point at the receiver's sequence `atYour` and found them equal, having installed `installedOfYou` of the
/// receiver's snapshots on this connection.
package struct DigestMatchMessage: Sendable, Hashable {
    var atYour: UInt64
    var through: UInt64
    var installedOfYou: UInt32

    static let size = 20

    package func frame() -> Frame {
        var buffer = ByteBuffer()
        buffer.writeInteger(atYour)
        buffer.writeInteger(through)
        buffer.writeInteger(installedOfYou)
        return Frame(type: .digestMatch, payload: buffer)
    }

    package static func decode(_ payload: ByteBuffer) throws(LinkError) -> DigestMatchMessage {
        var buffer = payload
        guard let atYour = buffer.readInteger(as: UInt64.self), let through = buffer.readInteger(as: UInt64.self),
            let installed = buffer.readInteger(as: UInt32.self), buffer.readableBytes == 0
        else {
            throw LinkError(.malformed("a digest-match frame of \(payload.readableBytes) bytes, expected \(size)"))
        }
        return DigestMatchMessage(atYour: atYour, through: through, installedOfYou: installed)
    }
}
