import Locking

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A thread of the store's own, joined when the store closes: once, however many callers ask, since joining a
/// thread that was already joined is undefined behaviour.
final class StoreThread: Sendable {
    private final class Box {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }

    private let thread: pthread_t
    /// Whether the thread was joined; held while it is joined, so that a second caller waits for the first.
    private let joined = Locked(false)

    /// Starts `body` on a new thread named `name` (at most 15 bytes, as `top -H` and `/proc/…/task/…/comm` show it).
    /// Returns once the thread carries its name, so that whoever lists the threads next sees it.
    init(name: String, _ body: @escaping @Sendable () -> Void) {
        precondition(name.utf8.count <= 15, "a thread name takes at most 15 bytes: \(name)")
        #if os(Linux)
        let named = UnsafeMutablePointer<sem_t>.allocate(capacity: 1)
        sem_init(named, 0, 0)
        defer {
            sem_destroy(named)
            named.deallocate()
        }
        let namedAddress = Int(bitPattern: named)
        #endif
        let box = Unmanaged.passRetained(
            Box {
                Self.nameCurrentThread(name)
                #if os(Linux)
                sem_post(UnsafeMutablePointer<sem_t>(bitPattern: namedAddress)!)
                #endif
                body()
            }
        ).toOpaque()
        var thread = pthread_t()
        let rc = pthread_create(
            &thread,
            nil,
            { raw in
                let box = Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue()
                box.body()
                return nil
            },
            box
        )
        precondition(rc == 0, "pthread_create failed: \(rc)")
        #if os(Linux)
        while sem_wait(named) != 0 {}  // interrupted by a signal: wait again
        #endif
        self.thread = thread
    }

    /// Names the calling thread (Linux; glibc's `pthread_setname_np` is not visible to Swift, and `prctl` is
    /// variadic). A failure leaves the inherited name; only tools such as `top -H` and `ps -L` read it.
    private static func nameCurrentThread(_ name: String) {
        #if os(Linux)
        let fd = open("/proc/thread-self/comm", O_WRONLY)
        guard fd >= 0 else { return }
        _ = name.utf8CString.withUnsafeBufferPointer { write(fd, $0.baseAddress, $0.count - 1) }
        close(fd)
        #endif
    }

    /// Waits for the thread to finish. The first call joins it; the others wait for that join, or return at
    /// once after it.
    func join() {
        joined.withLock { joined in
            guard !joined else { return }
            pthread_join(thread, nil)
            joined = true
        }
    }
}

/// The monotonic clock, in nanoseconds: the writer's timers and policies run on it.
func monotonicNanoseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
}
