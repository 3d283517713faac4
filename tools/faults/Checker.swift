/// The rules the history is held to against what the two stores hold: the promise that nothing acknowledged
/// is lost and that no logged-out user comes back.
///
/// A user number is logged in at most once in a run, so a user that was logged out has no business being
/// online again, whatever the order the two devices learnt things in.
struct Checker {
    struct Violation: Sendable, CustomStringConvertible {
        var rule: String
        var detail: String
        var description: String { "\(rule): \(detail)" }
    }

    /// What one device's store held: the online users, by number.
    typealias Table = Set<Int>

    /// What the history says of one user.
    enum Expectation {
        /// Logged out (acknowledged, or committed but not replicated in time): online nowhere.
        case offline(History.Operation)
        /// An acknowledged login and no logout tried: online on both devices; the rule it falls under.
        case online(History.Operation, rule: String)
        /// Nothing certain (a login or logout without an answer, or refused).
        case either
    }

    static let replicatedRule = "every write acknowledged as replicated survives"
    static let localRule = "every write acknowledged as local survives unless its device's demotion discarded it"

    let operations: [History.Operation]
    /// Per device, the demotions it reported: each discarded its own events after `keptThrough`.
    var demotions: [UInt8: [(at: ContinuousClock.Instant, keptThrough: UInt64)]]
    /// Per device, its stores replaced by new ones: each lost its own events after `keptThrough`, its
    /// logouts too (a demotion or a repair logs those again).
    var replacements: [UInt8: [(at: ContinuousClock.Instant, keptThrough: UInt64)]] = [:]

    /// What the history says of user `number`, from its operations `ops`.
    func expectation(_ ops: [History.Operation]) -> Expectation {
        let loggedOut = ops.first { operation in
            guard operation.kind == .logout else { return false }
            switch operation.outcome {
            case .ok: return true
            // Committed but not replicated in time, or discarded by a demotion, which logs a logout again.
            case .failed(let kind): return kind == "not-replicated" || kind == "discarded" || kind == "stopped"
            default: return false
            }
        }
        if let loggedOut {
            if let sequence = loggedOut.sequence,
                replacements[loggedOut.device, default: []].contains(where: {
                    $0.at >= loggedOut.invoked && $0.keptThrough < sequence
                })
            {
                return .either  // its store was replaced before the peer had it
            }
            return .offline(loggedOut)
        }
        guard !ops.contains(where: { $0.kind == .logout }),
            let login = ops.first(where: { $0.kind == .login }), case .ok(let sequence) = login.outcome
        else { return .either }
        if login.durability == .local, let sequence,
            demotions[login.device, default: []].contains(where: { $0.at >= login.invoked && $0.keptThrough < sequence }
            )
        {
            return .either  // discarded by a demotion, which reported it
        }
        return .online(login, rule: login.durability == .replicated ? Self.replicatedRule : Self.localRule)
    }

    private func check(
        _ tables: [UInt8: Table],
        users: some Sequence<(Int, [History.Operation])>,
        offlineRule: String
    ) -> [Violation] {
        var violations: [Violation] = []
        for (number, ops) in users {
            switch expectation(ops) {
            case .offline(let logout):
                for (device, table) in tables.sorted(by: { $0.key < $1.key }) where table.contains(number) {
                    violations.append(
                        Violation(
                            rule: offlineRule,
                            detail: "user \(number) was logged out on device \(logout.device) (\(logout.durability)) "
                                + "and is online on device \(device)"
                        )
                    )
                }
            case .online(let login, let rule):
                for (device, table) in tables.sorted(by: { $0.key < $1.key }) where !table.contains(number) {
                    violations.append(
                        Violation(
                            rule: rule,
                            detail: "user \(number), logged in on device \(login.device) as \(login.durability), "
                                + "is missing on device \(device)"
                        )
                    )
                }
            case .either:
                break
            }
        }
        return violations
    }

    /// The rules at the end of a round, with both devices running and reporting synchronization.
    func checkFinal(_ tables: [UInt8: Table]) -> [Violation] {
        let byUser = Dictionary(grouping: operations, by: \.number)
        var violations = check(
            tables,
            users: byUser.map { ($0.key, $0.value) },
            offlineRule: "no logged-out user comes back"
        )
        let everyone = tables.values.reduce(into: Set<Int>()) { $0.formUnion($1) }
        for number in everyone.subtracting(byUser.keys).sorted().prefix(20) {
            violations.append(
                Violation(rule: "no user appears from nowhere", detail: "user \(number) was never logged in")
            )
        }
        if let one = tables[1], let two = tables[2], one != two {
            violations.append(
                Violation(
                    rule: "the tables converge",
                    detail: "\(one.subtracting(two).count) users only on device 1, \(two.subtracting(one).count) only "
                        + "on device 2 (e.g. \(Array(one.symmetricDifference(two).sorted().prefix(5))))"
                )
            )
        }
        return violations
    }

    /// The rules the moment a device reports synchronization while the load goes on, for every user that no
    /// operation touched since `quietSince`: the history's expectations hold on both devices, and the two
    /// tables agree.
    func checkConverged(_ tables: [UInt8: Table], quietSince: ContinuousClock.Instant) -> [Violation] {
        let byUser = Dictionary(grouping: operations, by: \.number)
        let quiet = byUser.filter { _, ops in
            ops.allSatisfy { $0.invoked < quietSince && ($0.completed.map { $0 < quietSince } ?? false) }
        }
        var violations = check(
            tables,
            users: quiet.map { ($0.key, $0.value) },
            offlineRule: "no logged-out user is online once synchronization is reported"
        )
        let touched = Set(byUser.keys).subtracting(quiet.keys)
        if let one = tables[1]?.subtracting(touched), let two = tables[2]?.subtracting(touched), one != two {
            violations.append(
                Violation(
                    rule: "a pair that reports synchronization holds the same users",
                    detail: "\(one.subtracting(two).count) quiet users only on device 1, "
                        + "\(two.subtracting(one).count) only on device 2 (e.g. "
                        + "\(Array(one.symmetricDifference(two).sorted().prefix(5))))"
                )
            )
        }
        return violations
    }
}
