/// When the writer next logs off the sessions whose timeout passed (reason `session-timeout`): every
/// `interval` nanoseconds of the monotonic clock, or never when there is no interval. Pure: the writer
/// passes the time.
struct ExpirySchedule: Sendable, Equatable {
    /// The time between two expiry runs, in nanoseconds; `nil`: no expiry runs on a timer.
    let interval: UInt64?
    /// When the next run is due.
    private(set) var next: UInt64

    init(interval: UInt64?, now: UInt64) {
        self.interval = interval
        self.next = now &+ (interval ?? 0)
    }

    /// When the writer must wake for the next run, if it runs on a timer.
    var wake: UInt64? { interval == nil ? nil : next }

    /// Whether a run is due at `now`; when it is, the next one is scheduled an interval after `now` (a late
    /// run does not bunch up the ones after it).
    mutating func take(now: UInt64) -> Bool {
        guard let interval, now >= next else { return false }
        next = now &+ interval
        return true
    }
}
