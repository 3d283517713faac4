import TestSupport
import Testing

@testable import FailoverLink

/// The waits of `replicated` writes, without sockets: each ends once, by acknowledgement, deadline,
/// demotion, stop or cancellation, and deadlines are met by a loop that sleeps until the earliest one.
@Suite("Acknowledgement waits")
struct AckTrackerTests {
    @Test("a wait ends acknowledged when the peer's acknowledgement covers it, at once when it already did")
    func acknowledged() async {
        let acks = AckTracker()
        acks.acknowledge(5)
        #expect(await acks.wait(for: 5, timeout: .seconds(60)) == .acknowledged)
        let waiting = Task { await acks.wait(for: 9, timeout: .seconds(60)) }
        #expect(await eventually { acks.waiting == 1 })
        acks.acknowledge(8)
        #expect(acks.waiting == 1)
        acks.acknowledge(9)
        #expect(await waiting.value == .acknowledged)
        #expect(acks.waiting == 0)
    }

    @Test("an acknowledgement ends exactly the waits it covers, whatever order they came in, cancelled ones among them")
    func acknowledgementsInAnyOrder() async {
        let acks = AckTracker()
        var generator = SystemRandomNumberGenerator()
        func start(_ sequences: [UInt64]) -> [(UInt64, Task<AckTracker.Outcome, Never>)] {
            sequences.shuffled(using: &generator).map { sequence in
                (sequence, Task { await acks.wait(for: sequence, timeout: .seconds(600)) })
            }
        }
        let first = start(Array(1...2_000))
        #expect(await eventually { acks.waiting == 2_000 })
        // Three in four end cancelled; their entries stay behind until the next waits clear them out.
        for (sequence, task) in first where sequence % 4 != 0 { task.cancel() }
        #expect(await eventually { acks.waiting == 500 })
        let second = start(Array(2_001...3_000))
        #expect(await eventually { acks.waiting == 1_500 })
        acks.acknowledge(1_000)
        #expect(acks.waiting == 1_250)
        acks.acknowledge(2_500)
        #expect(acks.waiting == 500)
        acks.reset(to: 3_000)
        #expect(acks.waiting == 0)
        for (sequence, task) in first + second {
            let expected: AckTracker.Outcome = sequence <= 2_000 && sequence % 4 != 0 ? .cancelled : .acknowledged
            #expect(await task.value == expected, "the wait for \(sequence)")
        }
    }

    @Test("deadlines are met in their order, an earlier one coming while the loop sleeps for a later one included")
    func deadlines() async {
        let acks = AckTracker()
        let expiry = Task { await acks.expireWhenDue() }
        let late = Task { await acks.wait(for: 1, timeout: .seconds(600)) }
        #expect(await eventually { acks.waiting == 1 })
        // The loop now sleeps until the late deadline; this wait's deadline comes first and wakes it.
        #expect(await acks.wait(for: 2, timeout: .milliseconds(50)) == .timedOut)
        #expect(acks.waiting == 1)
        acks.acknowledge(1)
        #expect(await late.value == .acknowledged)
        expiry.cancel()
        await expiry.value
    }

    @Test("a cancelled task's wait ends cancelled at once, whether it was waiting already or not yet")
    func cancellation() async {
        let acks = AckTracker()
        let waiting = Task { await acks.wait(for: 1, timeout: .seconds(600)) }
        #expect(await eventually { acks.waiting == 1 })
        waiting.cancel()
        #expect(await waiting.value == .cancelled)
        #expect(acks.waiting == 0)
        let early = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            return await acks.wait(for: 1, timeout: .seconds(600))
        }
        #expect(await early.value == .cancelled)
        #expect(acks.waiting == 0)
    }

    @Test("stopping ends every wait, and every later one, stopped")
    func stop() async {
        let acks = AckTracker()
        let waiting = Task { await acks.wait(for: 3, timeout: .seconds(600)) }
        #expect(await eventually { acks.waiting == 1 })
        acks.stop()
        #expect(await waiting.value == .stopped)
        #expect(await acks.wait(for: 4, timeout: .seconds(600)) == .stopped)
    }
}
