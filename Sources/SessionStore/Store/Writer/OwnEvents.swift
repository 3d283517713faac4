import LMDB

// The requests for this device's own events: each holds its arguments, its staging step and its outcome.
//
// `@unchecked Sendable` invariant of each: its outcome is touched only on the writer thread once the request is
// queued (by `stage`, `fail` and `answer`); its arguments never change.

extension LogWriter {
    final class LoginRequest: StagedRequest, @unchecked Sendable {
        private let session: Session
        private var outcome: Outcome<Session>
        init(_ session: Session, _ reply: consuming Reply<Session>) {
            self.session = session
            outcome = Outcome(reply)
        }
        func stage(_ state: WriterState, _ txn: borrowing ReadTransaction) {
            outcome.set(Result { () throws(SessionStoreError) in try Self.stage(session, on: state, txn: txn) })
        }
        func fail(_ error: SessionStoreError) { outcome.fail(error) }
        func answer() { outcome.answer() }

        /// Logs `session` in: this device must own it, and no session may be online at its address.
        static func stage(
            _ session: Session,
            on state: WriterState,
            txn: borrowing ReadTransaction
        ) throws(SessionStoreError) -> Session {
            let origin = state.origin
            guard session.owner == origin else {
                throw SessionStoreError(
                    .invalidArgument(
                        "owner: the session is owned by device \(session.owner), but this store is device \(origin); "
                            + "log users in on the device that owns them"
                    )
                )
            }
            if let current = try state.resolve(session.ip, txn: txn) {
                throw SessionStoreError(.alreadyOnline(session.ip, userName: current.userName))
            }
            let sequence = state.nextSequence()
            let term = state.term
            var stored = session
            stored.generation = Generation(term: term, sequence: sequence)
            stored.revisions = .zero
            state.appendRecord { buffer in
                RecordCodec.encodeLogin(
                    stored,
                    sequence: sequence,
                    term: term,
                    origin: origin,
                    time: .now,
                    into: &buffer
                )
            }
            state.stage(stored.ip, .online(stored), replacing: nil)
            state.addDeadline(of: stored)
            return stored
        }
    }

    final class LoginBatchRequest: StagedRequest, @unchecked Sendable {
        private let sessions: [Session]
        private var outcome: Outcome<[Result<Session, SessionStoreError>]>
        init(_ sessions: [Session], _ reply: consuming Reply<[Result<Session, SessionStoreError>]>) {
            self.sessions = sessions
            outcome = Outcome(reply)
        }
        func stage(_ state: WriterState, _ txn: borrowing ReadTransaction) {
            var results: [Result<Session, SessionStoreError>] = []
            results.reserveCapacity(sessions.count)
            for session in sessions {
                results.append(
                    Result { () throws(SessionStoreError) in try LoginRequest.stage(session, on: state, txn: txn) }
                )
            }
            outcome.set(.success(results))
        }
        func fail(_ error: SessionStoreError) { outcome.fail(error) }
        func answer() { outcome.answer() }
    }

    final class LogoutBatchRequest: StagedRequest, @unchecked Sendable {
        private let logouts: [(IPAddress, LogoutReason)]
        private var outcome: Outcome<[Result<Logout, SessionStoreError>]>
        init(_ logouts: [(IPAddress, LogoutReason)], _ reply: consuming Reply<[Result<Logout, SessionStoreError>]>) {
            self.logouts = logouts
            outcome = Outcome(reply)
        }
        func stage(_ state: WriterState, _ txn: borrowing ReadTransaction) {
            var results: [Result<Logout, SessionStoreError>] = []
            results.reserveCapacity(logouts.count)
            let now = Timestamp.now
            for (ip, reason) in logouts {
                results.append(
                    Result { () throws(SessionStoreError) in
                        guard let logout = try state.stageLogout(at: ip, reason: reason, time: now, txn: txn) else {
                            throw SessionStoreError(.notOnline(ip))
                        }
                        return logout
                    }
                )
            }
            outcome.set(.success(results))
        }
        func fail(_ error: SessionStoreError) { outcome.fail(error) }
        func answer() { outcome.answer() }
    }

    final class LogoutRequest: StagedRequest, @unchecked Sendable {
        private let ip: IPAddress
        private let reason: LogoutReason
        private var outcome: Outcome<LoggedLogout>
        init(_ ip: IPAddress, _ reason: LogoutReason, _ reply: consuming Reply<LoggedLogout>) {
            self.ip = ip
            self.reason = reason
            outcome = Outcome(reply)
        }
        func stage(_ state: WriterState, _ txn: borrowing ReadTransaction) {
            outcome.set(
                Result { () throws(SessionStoreError) in
                    guard let logout = try state.stageLogout(at: ip, reason: reason, time: .now, txn: txn) else {
                        throw SessionStoreError(.notOnline(ip))
                    }
                    return LoggedLogout(logout: logout, sequence: state.sequence)
                }
            )
        }
        func fail(_ error: SessionStoreError) { outcome.fail(error) }
        func answer() { outcome.answer() }
    }

    final class ExpiryRequest: StagedRequest, @unchecked Sendable {
        private let now: Timestamp
        private var outcome: Outcome<[Logout]>
        init(_ now: Timestamp, _ reply: consuming Reply<[Logout]>) {
            self.now = now
            outcome = Outcome(reply)
        }
        func stage(_ state: WriterState, _ txn: borrowing ReadTransaction) {
            outcome.set(
                Result { () throws(SessionStoreError) in try Self.stage(now, limit: .max, on: state, txn: txn) }
            )
        }
        func fail(_ error: SessionStoreError) { outcome.fail(error) }
        func answer() { outcome.answer() }

        /// Logs off, with the session-timeout reason, up to `limit` sessions whose deadline is past at `now`:
        /// those not checkpointed yet from the writer's deadlines, the others from the deadline index of the
        /// sessions on disk, once it is built (``SessionStore/expireSessions(asOf:)`` waits for it).
        static func stage(
            _ now: Timestamp,
            limit: Int,
            on state: WriterState,
            txn: borrowing ReadTransaction
        ) throws(SessionStoreError) -> [Logout] {
            var expired: [Logout] = []
            // The peer's copies that are due stay due: this device expires them once it takes them over.
            var copies: [DeadlineHeap.Item] = []
            defer { for item in copies { state.putBackDeadline(item) } }
            while expired.count < limit, let top = state.takeDueDeadline(now: now) {
                if try expire(top.ip, generation: top.generation, now: now, on: state, txn: txn, into: &expired)
                    == .peerCopy
                {
                    copies.append(top)
                }
            }
            let due = state.overlay.tableIndexes.dueIfBuilt(asOf: now, limit: max(limit - expired.count, 0))
            for ip in due where expired.count < limit {
                _ = try expire(ip, generation: nil, now: now, on: state, txn: txn, into: &expired)
            }
            return expired
        }

        /// What ``expire(_:generation:now:on:txn:into:)`` found at an address.
        private enum Expiry {
            case expired
            /// A session past its deadline that the peer owns in effect.
            case peerCopy
            /// No session of that generation past its deadline.
            case none
        }

        private static func expire(
            _ ip: IPAddress,
            generation: Generation?,
            now: Timestamp,
            on state: WriterState,
            txn: borrowing ReadTransaction,
            into expired: inout [Logout]
        ) throws(SessionStoreError) -> Expiry {
            // Each device expires the sessions it owns in effect; the peer's copies end with the peer's logouts.
            // The session is read from its stored bytes, as a logout request reads it.
            let found = try state.withStoredSession(at: ip, txn: txn) { value throws(SessionStoreError) -> Expiry in
                let fields = try peekStoredSessionFields(value, ip: ip)
                guard let deadline = fields.deadline, deadline <= now,
                    generation == nil || generation == fields.generation
                else { return .none }
                guard state.takeovers.effectiveOwner(owner: fields.owner, term: fields.generation.term) == state.origin
                else { return .peerCopy }
                expired.append(state.stageLogout(of: fields, at: ip, reason: .sessionTimeout, time: now))
                return .expired
            }
            return found ?? .none
        }
    }

    final class DeviceIDRequest: StagedRequest, @unchecked Sendable {
        private let newID: DeviceID
        private var outcome: Outcome<Int>
        init(_ newID: DeviceID, _ reply: consuming Reply<Int>) {
            self.newID = newID
            outcome = Outcome(reply)
        }
        func stage(_ state: WriterState, _ txn: borrowing ReadTransaction) {
            outcome.set(Result { () throws(SessionStoreError) in try stageChange(on: state, txn: txn) })
        }
        func fail(_ error: SessionStoreError) { outcome.fail(error) }
        func answer() { outcome.answer() }

        /// Logs every online user off (R4), then logs the change of ID; returns how many were logged off.
        private func stageChange(
            on state: WriterState,
            txn: borrowing ReadTransaction
        ) throws(SessionStoreError)
            -> Int
        {
            guard newID != state.origin else { throw SessionStoreError(.sameDeviceID(newID)) }
            let online = try state.onlineSessions(txn: txn)
            let now = Timestamp.now
            for session in online { _ = state.stageLogout(session, reason: .deviceIDChange, time: now) }
            _ = state.nextSequence()
            state.emit(.deviceIDChanged(from: state.origin, to: newID), time: now)
            state.changeOrigin(to: newID)
            state.logger.info(
                "device ID changed; every online user was logged off",
                metadata: ["tandem.device_id": "\(newID)", "tandem.logged_off": "\(online.count)"]
            )
            return online.count
        }
    }

    /// A change of the log's metadata alone: a hold, its release, the end of a recovery.
    final class MetaRequest: StagedRequest, @unchecked Sendable {
        enum Change {
            /// Keeps the log from a position on; `nil`: after the checkpoint, or where the hold already is.
            case hold(String, UInt64?)
            case release(String)
            case forgetRecovery(DeviceID)
        }
        private let change: Change
        private var outcome: Outcome<Void>
        init(_ change: Change, _ reply: consuming Reply<Void>) {
            self.change = change
            outcome = Outcome(reply)
        }
        func stage(_ state: WriterState, _ txn: borrowing ReadTransaction) {
            outcome.set(
                Result { () throws(SessionStoreError) in
                    switch change {
                    case .hold(let name, let requested): try Self.stageHold(name, from: requested, on: state)
                    case .release(let name): state.stageMeta(.release(name))
                    case .forgetRecovery(let peer): state.stageMeta(.forgetRecovery(peer))
                    }
                }
            )
        }
        func fail(_ error: SessionStoreError) { outcome.fail(error) }
        func answer() { outcome.answer() }

        /// Keeps the log for `name` from `requested` on, or, for `nil`, from after the checkpoint (or from where
        /// the hold already is if that is earlier and still in the log: a reset keeps its logouts there).
        private static func stageHold(
            _ name: String,
            from requested: UInt64?,
            on state: WriterState
        ) throws(SessionStoreError) {
            let available = state.firstRetained ?? (state.lastSequence + 1)
            var position = requested ?? state.checkpointSequence + 1
            if requested == nil, let held = state.holds[name], held >= available {
                position = min(held, position)
            }
            if position < available {
                throw SessionStoreError(.logTruncated(requested: position, firstRetained: available))
            }
            state.stageMeta(.hold(name, position))
        }
    }
}
