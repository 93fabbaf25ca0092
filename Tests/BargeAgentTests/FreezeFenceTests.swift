import BargeAgent
import NIOConcurrencyHelpers
import Testing

/// The agent's fence against its own freezes (`FreezeFence`), on a clock the test moves.
struct FreezeFenceTests {
    final class Clock: Sendable {
        let now = NIOLockedValueBox<UInt64>(1_000_000_000)
        func advance(ms: UInt64) { now.withLockedValue { $0 += ms * 1_000_000 } }
        var read: @Sendable () -> UInt64 { { [now] in now.withLockedValue { $0 } } }
    }

    /// A fence registered with a coordinator whose agent timeout is 2 s and heartbeats 200 ms
    /// apart (the process tests' settings), on a clock the test moves.
    func registered() -> (Clock, FreezeFence) {
        let clock = Clock()
        let fence = FreezeFence(clock: clock.read)
        register(fence)
        return (clock, fence)
    }

    func register(_ fence: FreezeFence) {
        fence.registered(timeout: .seconds(2), interval: .milliseconds(200))
    }

    func failure(_ ticket: FreezeFence.Ticket) -> UnitFailure? {
        do throws(UnitFailure) {
            try ticket.check()
            return nil
        } catch {
            return error
        }
    }

    @Test func theLimitIsTheTimeoutLessOneIntervalAndAtLeastHalfTheTimeout() {
        #expect(FreezeFence.State.limit(timeout: 15_000, interval: 1_000) == 14_000)
        #expect(FreezeFence.State.limit(timeout: 2_000, interval: 200) == 1_800)
        #expect(FreezeFence.State.limit(timeout: 2_000, interval: 5_000) == 1_000)
        #expect(FreezeFence.State.limit(timeout: 0, interval: 1_000) == 0)
    }

    @Test func beatsOnTimeNeverFenceAUnit() {
        let (clock, fence) = registered()
        let ticket = fence.ticket()
        for _ in 0..<100 {
            clock.advance(ms: 1_700)  // late beats, each under the limit of 1.8 s
            fence.beat()
            #expect(failure(ticket) == nil)
        }
    }

    @Test func aUnitThatRanAcrossAFreezeStopsWithARetryableFailureAndALaterUnitDoesNot() throws {
        let (clock, fence) = registered()
        let before = fence.ticket()
        clock.advance(ms: 20_000)  // stopped for 20 s
        // The unit's own check wakes before the heartbeat loop, and sees the gap.
        let seen = try #require(failure(before))
        #expect(seen.retryable)
        fence.beat()  // the loop wakes next: the same freeze, not another
        let after = fence.ticket()
        #expect(failure(after) == nil)
        #expect(failure(before) != nil, "the fence is for good: later beats do not let the old unit go on")
        clock.advance(ms: 100)
        fence.beat()
        #expect(failure(after) == nil)
    }

    @Test func theHeartbeatLoopWakingFirstFencesAsWell() {
        let (clock, fence) = registered()
        let ticket = fence.ticket()
        clock.advance(ms: 5_000)
        fence.beat()
        #expect(failure(ticket) != nil)
    }

    @Test func aReconnectionLongerThanTheTimeoutIsAFreezeAndAShortOneIsNot() {
        let (clock, fence) = registered()
        let first = fence.ticket()
        clock.advance(ms: 500)  // the connection dropped and came back quickly: no beats meanwhile
        register(fence)
        #expect(failure(first) == nil)
        clock.advance(ms: 3_000)
        register(fence)
        #expect(failure(first) != nil)
    }

    /// The assignment was read only after the freeze, before the timer or any check saw it: the
    /// coordinator may have sent it before it took the agent for down, so the unit is fenced.
    @Test func aUnitStartedAfterAFreezeNobodySawYetIsFenced() {
        let (clock, fence) = registered()
        clock.advance(ms: 10_000)
        let stale = fence.ticket()
        #expect(failure(stale) != nil)
        // Registered again: units assigned from now on run.
        register(fence)
        #expect(failure(fence.ticket()) == nil)
    }

    /// The coordinator's refusal of a heartbeat (marked down) fences every running unit, though
    /// this agent's clock saw no gap (a paused VM's may not).
    @Test func theCoordinatorsWordFencesWithoutAGap() {
        let (clock, fence) = registered()
        let running = fence.ticket()
        clock.advance(ms: 100)
        fence.markedDown()
        #expect(failure(running) != nil)
        register(fence)
        #expect(failure(fence.ticket()) == nil)
    }

    @Test func noCoordinatorNoFence() {
        let clock = Clock()
        let fence = FreezeFence(clock: clock.read)
        let ticket = fence.ticket()
        clock.advance(ms: 3_600_000)
        fence.beat()
        #expect(failure(ticket) == nil)
    }
}
