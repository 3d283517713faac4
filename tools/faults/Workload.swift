import Foundation
import Synchronization

/// The load of a run on both devices: logins of new users (each number used once in a run) and logouts of
/// online users, of either device's users on either device (R7), some acknowledged locally and some only once
/// the peer has them. Every operation goes into the history with its answer.
final class Workload: @unchecked Sendable {
    // `@unchecked Sendable`: the mutable state is guarded by `lock`; the rest is set in `init`.
    private let history: History
    private let devices: [UInt8: Device]
    private let lock = NSLock()
    private var generator: SeededGenerator
    private var nextNumber: [UInt8: Int] = [1: 1_000_000, 2: 2_000_000]
    /// Users whose login was acknowledged and that no logout was sent for: the candidates for a logout.
    private var online: [Int] = []
    private var enabled: Set<UInt8> = [1, 2]
    private var tasks: [Task<Void, Never>] = []
    private let rate: Int
    private let replicatedShare: Double

    /// - Parameters:
    ///   - rate: operations per second on each device.
    ///   - replicatedShare: the share of operations acknowledged only once the peer has them.
    init(history: History, devices: [UInt8: Device], seed: UInt64, rate: Int, replicatedShare: Double = 0.5) {
        self.history = history
        self.devices = devices
        self.generator = SeededGenerator(seed: seed)
        self.rate = rate
        self.replicatedShare = replicatedShare
        for device in devices.values { device.onLine { [weak self] device, line in self?.answer(device, line) } }
    }

    /// The answers to logins and logouts.
    private func answer(_ device: Device, _ line: NodeLine) {
        guard let kind = History.Kind(rawValue: String(line.type.prefix { $0 != "-" })),
            let number = line["number"].flatMap({ Int($0) })
        else { return }
        let sequence = line["sequence"].flatMap { UInt64($0) }
        if line.type.hasSuffix("-ok") {
            // A logout's sequence is kept beside its outcome, so that logouts compare equal whatever it is.
            history.complete(
                kind,
                number,
                on: device.id,
                .ok(sequence: kind == .login ? sequence : nil),
                sequence: sequence
            )
            if kind == .login { lock.withLock { online.append(number) } }
        } else if line.type.hasSuffix("-failed") {
            history.complete(kind, number, on: device.id, .failed(kind: line["kind"] ?? "other"), sequence: sequence)
        }
    }

    /// Starts the steady load on both devices.
    func start() {
        for id in devices.keys.sorted() {
            let task = Task { [self] in
                let interval = Duration.seconds(1.0 / Double(max(rate, 1)))
                while !Task.isCancelled {
                    try? await Task.sleep(for: interval)
                    step(on: id)
                }
            }
            lock.withLock { tasks.append(task) }
        }
    }

    /// Stops sending and waits (up to 5 s) for the answers still due.
    func stop() async {
        let running = lock.withLock { () -> [Task<Void, Never>] in
            defer { tasks.removeAll() }
            return tasks
        }
        for task in running { task.cancel() }
        for task in running { await task.value }
        await settle()
    }

    /// Waits (up to `limit`) until no operation waits for an answer on a running device.
    func settle(within limit: Duration = .seconds(5)) async {
        let deadline = ContinuousClock.now + limit
        while ContinuousClock.now < deadline {
            if devices.values.allSatisfy({ !$0.isRunning || history.inFlight(on: $0.id) == 0 }) { return }
            try? await Task.sleep(for: .milliseconds(10))
        }
    }

    /// Stops or restarts the load on one device (while it is down, say).
    func setEnabled(_ device: UInt8, _ on: Bool) {
        lock.withLock { if on { enabled.insert(device) } else { enabled.remove(device) } }
    }

    /// The device died: what it was asked is unanswered.
    func died(_ device: UInt8) { history.abandon(on: device) }

    private func step(on id: UInt8) {
        guard let device = devices[id], device.isRunning else { return }
        enum Choice {
            case login(Int, History.Durability)
            case logout(Int, History.Durability)
        }
        let choice = lock.withLock { () -> Choice? in
            guard enabled.contains(id) else { return nil }
            let durability: History.Durability = generator.chance(replicatedShare) ? .replicated : .local
            if !online.isEmpty && generator.chance(0.4) {
                let index = Int.random(in: 0..<online.count, using: &generator)
                online.swapAt(index, online.count - 1)
                return .logout(online.removeLast(), durability)
            }
            let number = nextNumber[id]!
            nextNumber[id] = number + 1
            return .login(number, durability)
        }
        switch choice {
        case .login(let number, let durability):
            history.invoke(.login, number, on: id, durability)
            if !device.send("login \(number) \(durability.rawValue)") {
                history.complete(.login, number, on: id, .unknown)
            }
        case .logout(let number, let durability):
            history.invoke(.logout, number, on: id, durability)
            if !device.send("logout \(number) user \(durability.rawValue)") {
                history.complete(.logout, number, on: id, .unknown)
            }
        case nil:
            break
        }
    }

    /// A burst of `count` logins on one device, sent at once (the node runs up to 1,024 at a time).
    func storm(on id: UInt8, count: Int, _ durability: History.Durability) {
        guard let device = devices[id] else { return }
        let first = lock.withLock { () -> Int in
            let first = nextNumber[id]!
            nextNumber[id] = first + count
            return first
        }
        for number in first..<first + count {
            history.invoke(.login, number, on: id, durability)
            if !device.send("login \(number) \(durability.rawValue)") {
                history.complete(.login, number, on: id, .unknown)
            }
        }
    }
}
