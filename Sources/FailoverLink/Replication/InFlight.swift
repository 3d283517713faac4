import SessionStore
import Synchronization

/// One operation at a time: `begin()` is `false` while one is in flight.
final class InFlight: Sendable {
    private let flag = Atomic<Bool>(false)

    func begin() -> Bool {
        flag.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged
    }
    func end() { flag.store(false, ordering: .releasing) }
    var busy: Bool { flag.load(ordering: .acquiring) }
}
