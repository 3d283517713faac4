import SessionStore
import Synchronization

/// What the peer's stream request said: how far it had applied this device's stream, its log's history, and
/// whether it recovers its users from this device.
final class PeerPosition: Sendable {
    private let value = Atomic<UInt64>(0)
    private let peerHistory = Atomic<UInt64>(0)
    private let peerRecovering = Atomic<Bool>(false)
    var recovering: Bool {
        get { peerRecovering.load(ordering: .relaxed) }
        set { peerRecovering.store(newValue, ordering: .relaxed) }
    }
    var sequence: UInt64 {
        get { value.load(ordering: .relaxed) }
        set { value.store(newValue, ordering: .relaxed) }
    }
    var history: UInt64 {
        get { peerHistory.load(ordering: .relaxed) }
        set { peerHistory.store(newValue, ordering: .relaxed) }
    }
}
