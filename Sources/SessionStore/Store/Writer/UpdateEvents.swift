import LMDB

// The requests for updates of online sessions, on either device of a pair (R7, R9): each holds its arguments,
// its staging step and its outcome, like the requests for logins and logouts.
//
// `@unchecked Sendable` invariant of each: its outcome is touched only on the writer thread once the request is
// queued (by `stage`, `fail` and `answer`); its arguments never change.

/// An update as logged: the session after it, and the sequence of its record.
package struct LoggedUpdate: Sendable {
    package var session: Session
    package var sequence: UInt64
}

extension LogWriter {
    final class UpdateRequest: StagedRequest, @unchecked Sendable {
        private let change: SessionUpdate
        private var outcome: Outcome<LoggedUpdate>
        init(_ change: SessionUpdate, _ reply: consuming Reply<LoggedUpdate>) {
            self.change = change
            outcome = Outcome(reply)
        }
        func stage(_ state: WriterState, _ txn: borrowing ReadTransaction) {
            outcome.set(
                Result { () throws(SessionStoreError) in
                    let session = try Self.stage(change, on: state, txn: txn)
                    return LoggedUpdate(session: session, sequence: state.sequence)
                }
            )
        }
        func fail(_ error: SessionStoreError) { outcome.fail(error) }
        func answer() { outcome.answer() }

        /// Logs `change` of the session online at its address, and stages the session it leaves. The session
        /// may be this device's or the peer's (a CoA or accounting report handled by the device holding the
        /// backup copy): the update reaches the other device as any event does.
        static func stage(
            _ change: SessionUpdate,
            on state: WriterState,
            txn: borrowing ReadTransaction
        ) throws(SessionStoreError) -> Session {
            guard let current = try state.resolve(change.ip, txn: txn),
                change.generation == nil || change.generation == current.generation
            else {
                throw SessionStoreError(.notOnline(change.ip))
            }
            let sequence = state.nextSequence()
            let origin = state.origin
            var update = Update(
                ip: change.ip,
                owner: current.owner,
                generation: current.generation,
                revision: Self.revision(above: current.revisions, term: state.term, sequence: sequence, origin: origin),
                reason: change.reason,
                accounting: change.accounting,
                lastActivity: change.lastActivity
            )
            if change.changesAuthorization {
                update.authorization = Update.AuthorizationPart(
                    authorization: change.authorization ?? current.authorization,
                    sessionTimeout: change.sessionTimeout ?? current.sessionTimeout,
                    idleTimeout: change.idleTimeout ?? current.idleTimeout
                )
            }
            let updated = update.applied(to: current)
            state.emit(.update(update), time: .now)
            state.stage(change.ip, .online(updated), replacing: current)
            if updated.deadline != current.deadline { state.addDeadline(of: updated) }
            return updated
        }

        /// The revision of an update logged at `sequence` of term `term` by `origin`: that, unless a part of the
        /// session holds a revision as high already (the peer's, numbered in its own log), then one above the
        /// highest, so that the update always takes effect.
        static func revision(
            above revisions: Session.Revisions,
            term: UInt32,
            sequence: UInt64,
            origin: DeviceID
        ) -> Revision {
            let own = Revision(term: term, sequence: sequence, device: origin.rawValue)
            let highest = max(revisions.authorization, revisions.accounting, revisions.activity)
            guard own <= highest else { return own }
            return Revision(term: highest.term, sequence: highest.sequence + 1, device: origin.rawValue)
        }
    }

    final class UpdateBatchRequest: StagedRequest, @unchecked Sendable {
        private let changes: [SessionUpdate]
        private var outcome: Outcome<[Result<Session, SessionStoreError>]>
        init(_ changes: [SessionUpdate], _ reply: consuming Reply<[Result<Session, SessionStoreError>]>) {
            self.changes = changes
            outcome = Outcome(reply)
        }
        func stage(_ state: WriterState, _ txn: borrowing ReadTransaction) {
            var results: [Result<Session, SessionStoreError>] = []
            results.reserveCapacity(changes.count)
            for change in changes {
                results.append(
                    Result { () throws(SessionStoreError) in try UpdateRequest.stage(change, on: state, txn: txn) }
                )
            }
            outcome.set(.success(results))
        }
        func fail(_ error: SessionStoreError) { outcome.fail(error) }
        func answer() { outcome.answer() }
    }
}
