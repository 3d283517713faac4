import Foundation
import Synchronization

/// Every operation of a run and its answer, and every fault, in the order they happened; written to a file as
/// JSON lines as they come, so that a run that stops half-way leaves its history.
final class History: @unchecked Sendable {
    // `@unchecked Sendable`: all state is guarded by `lock`.
    enum Kind: String, Sendable { case login, logout }
    enum Durability: String, Sendable { case local, replicated }

    enum Outcome: Sendable, Equatable {
        /// Acknowledged; for a login, the sequence of its record in its device's log.
        case ok(sequence: UInt64?)
        /// Refused or not replicated in time, with the error's kind (`not-replicated`, `not-online`, ...).
        case failed(kind: String)
        /// No answer: the device died first.
        case unknown
    }

    struct Operation: Sendable {
        var id: Int
        var device: UInt8
        var kind: Kind
        var number: Int
        var durability: Durability
        var invoked: ContinuousClock.Instant
        var completed: ContinuousClock.Instant?
        var outcome: Outcome?
        /// The sequence of the event's record in its device's log, when the answer named it.
        var sequence: UInt64?
    }

    /// A fault injected, or something the run observed that the checker needs (a demotion, a repair).
    struct Note: Sendable {
        var at: ContinuousClock.Instant
        var device: UInt8?
        var what: String
        var fields: [String: String]
    }

    private let lock = NSLock()
    private var operations: [Operation] = []
    /// The operation waiting for an answer, by device, kind and user number.
    private var pending: [String: Int] = [:]
    private var notes: [Note] = []
    private let file: FileHandle?
    let started = ContinuousClock.now

    init(path: String) {
        _ = FileManager.default.createFile(atPath: path, contents: nil)
        file = FileHandle(forWritingAtPath: path)
    }

    deinit { try? file?.close() }

    private static func key(_ device: UInt8, _ kind: Kind, _ number: Int) -> String { "\(device)/\(kind)/\(number)" }

    /// Records that an operation was sent.
    @discardableResult
    func invoke(_ kind: Kind, _ number: Int, on device: UInt8, _ durability: Durability) -> Int {
        let now = ContinuousClock.now
        let id = lock.withLock { () -> Int in
            let id = operations.count
            operations.append(
                Operation(id: id, device: device, kind: kind, number: number, durability: durability, invoked: now)
            )
            pending[Self.key(device, kind, number)] = id
            return id
        }
        write([
            "op": "\(id)", "event": "invoke", "device": "\(device)", "kind": kind.rawValue, "number": "\(number)",
            "durability": durability.rawValue,
        ])
        return id
    }

    /// Records the answer to the operation of `kind` on user `number` that `device` was sent.
    func complete(_ kind: Kind, _ number: Int, on device: UInt8, _ outcome: Outcome, sequence: UInt64? = nil) {
        let now = ContinuousClock.now
        let id = lock.withLock { () -> Int? in
            guard let id = pending.removeValue(forKey: Self.key(device, kind, number)) else { return nil }
            operations[id].completed = now
            operations[id].outcome = outcome
            if case .ok(let logged?) = outcome {
                operations[id].sequence = logged
            } else {
                operations[id].sequence = sequence
            }
            return id
        }
        guard let id else { return }
        var fields = ["op": "\(id)", "event": "complete"]
        switch outcome {
        case .ok(let sequence):
            fields["outcome"] = "ok"
            if let sequence { fields["sequence"] = "\(sequence)" }
        case .failed(let kind):
            fields["outcome"] = "failed"
            fields["error"] = kind
        case .unknown:
            fields["outcome"] = "unknown"
        }
        write(fields)
    }

    /// Every operation still waiting on `device` gets no answer: the device died.
    func abandon(on device: UInt8) {
        let ids = lock.withLock { pending.filter { $0.value >= 0 && operations[$0.value].device == device } }
        for (_, id) in ids {
            let operation = lock.withLock { operations[id] }
            complete(operation.kind, operation.number, on: device, .unknown)
        }
    }

    /// How many operations wait for an answer on `device`.
    func inFlight(on device: UInt8) -> Int {
        lock.withLock { pending.values.filter { operations[$0].device == device }.count }
    }

    func note(_ what: String, device: UInt8? = nil, _ fields: [String: String] = [:]) {
        let note = Note(at: .now, device: device, what: what, fields: fields)
        lock.withLock { notes.append(note) }
        var line = fields
        line["event"] = what
        if let device { line["device"] = "\(device)" }
        write(line)
    }

    var allOperations: [Operation] { lock.withLock { operations } }
    var allNotes: [Note] { lock.withLock { notes } }

    private func write(_ fields: [String: String]) {
        var object = fields
        object["t"] = String(format: "%.6f", (ContinuousClock.now - started).seconds)
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) else { return }
        lock.withLock {
            file?.write(data)
            file?.write(Data("\n".utf8))
        }
    }
}

extension Duration {
    var seconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}
