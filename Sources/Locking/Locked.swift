#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A value guarded by a lock, with `Mutex`'s shape: the value is reached only inside ``withLock(_:)``.
///
/// The lock is a `pthread_mutex_t`, which ThreadSanitizer sees. The standard library's `Mutex` locks with a
/// futex inside the standard library, which is not instrumented on Linux, so ThreadSanitizer reports every
/// access that a `Mutex` guards as a race; with this lock, a report is a real race.
///
/// `@unchecked Sendable` invariant: `value` is read and written only between `pthread_mutex_lock` and
/// `pthread_mutex_unlock` of `mutex`, which lives at a stable heap address for the object's whole life; the
/// value goes in and comes out as `sending`, as with `Mutex`.
public final class Locked<Value: ~Copyable>: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private var value: Value

    /// A lock guarding `initialValue`.
    public init(_ initialValue: consuming sending Value) {
        value = initialValue
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    /// Runs `body` with the lock held and the value lent to it.
    /// - Parameter body: what to do with the value; it must not escape it.
    /// - Returns: what `body` returns.
    /// - Throws: what `body` throws; the lock is released either way.
    public func withLock<Result: ~Copyable, E: Error>(
        _ body: (inout sending Value) throws(E) -> sending Result
    ) throws(E) -> sending Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }
}
