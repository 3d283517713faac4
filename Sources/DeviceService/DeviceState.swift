import FailoverLink
import SessionStore

extension FailoverNode {
    /// The online users by owner in effect, counted from the owner each stored session is read with: no
    /// session is decoded. What `tandem status` and the metrics report.
    func usersByOwner() -> [DeviceID: Int] {
        let takeovers = store.takeovers
        var byOwner: [DeviceID: Int] = [:]
        let count: (DeviceID, UInt32) -> Bool = { owner, term in
            byOwner[takeovers.effectiveOwner(owner: owner, term: term), default: 0] += 1
            return false
        }
        try? store.forEachSession(where: count, { _ in })
        return byOwner
    }

    /// Events logged here that the peer has not acknowledged.
    func lagEvents(lastSequence: UInt64) -> UInt64 {
        lastSequence - min(status.acknowledgedByPeer, lastSequence)
    }
}
