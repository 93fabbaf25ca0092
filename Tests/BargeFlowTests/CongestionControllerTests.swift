import BargeFlow
import Testing

/// The controller driven by a mock clock: milliseconds are written as `ms(…)`.
struct CongestionControllerTests {
    private func ms(_ v: Double) -> UInt64 { UInt64(v * 1_000_000) }
    /// The figures below are written for this target, whatever the default.
    private let target: UInt64 = 15_000_000

    private func controller(_ mode: CongestionMode, _ change: (inout CongestionController.Parameters) -> Void = { _ in }) -> CongestionController {
        var p = CongestionController.Parameters()
        p.target = target
        change(&p)
        return CongestionController(mode: mode, parameters: p)
    }

    /// A controller past slow start (at 25 ms RTT, so its first slowdown is due 50 ms later), with
    /// a 10 ms base delay measured.
    private func settled(_ mode: CongestionMode = .fair, at now: UInt64 = 1_000_000_000, gap: UInt64? = nil,
                         segment: Double? = nil) -> CongestionController {
        var c = controller(mode) { p in
            if let gap { p.minimumSlowdownGap = gap }
            if let segment { p.segment = segment }
        }
        c.observe(rtt: ms(10), least: ms(10), now: now)
        c.observe(rtt: ms(10 + 15), now: now)
        c.acked(64 << 10, limited: true, now: now)  // ¾ target exceeded: slow start ends
        c.observe(rtt: ms(10), now: now)
        return c
    }

    @Test func slowStartDoublesPerWindowAckedUntilTheDelayNearsTheTarget() {
        var c = controller(.fair)
        c.observe(rtt: ms(20), least: ms(20), now: 0)
        let start = c.window
        c.acked(Int(start), limited: true, now: ms(20))
        #expect(c.window == 2 * start)
        #expect(c.phase == .slowStart)
        // A lane with less to send than its window does not grow it.
        c.acked(1 << 20, limited: false, now: ms(40))
        #expect(c.window == 2 * start)
        c.observe(rtt: ms(20 + 12), now: ms(60))  // 12 ms > ¾ of 15 ms
        c.acked(1 << 20, limited: true, now: ms(60))
        #expect(c.phase == .avoidance)
    }

    @Test func belowTheTargetTheWindowGrowsByAboutOneSegmentPerRoundTrip() {
        var c = settled(segment: 64 * 1024)  // small against the window, so one RTT's growth is near linear
        let before = c.window
        var now: UInt64 = 1_001_000_000
        c.observe(rtt: ms(10 + 5), now: ms(1000))  // 5 ms of queue: between ¼ and all of the target
        // One window's worth of acks (one RTT).
        var acked = 0.0
        while acked < before {
            c.acked(64 << 10, limited: true, now: now)
            acked += 64 * 1024
            now += ms(1)
        }
        let grown = c.window - before
        let expected = 64 * 1024 * (1 - 5.0 / 15)
        #expect(grown > 0.9 * expected && grown < 1.1 * expected, "\(grown)")
        // With the queue empty, it grows by the bytes acked (as in slow start).
        c.observe(rtt: ms(10), now: now)
        let at = c.window
        c.acked(1 << 20, limited: true, now: now)
        #expect(c.window == at + Double(1 << 20))
    }

    @Test func aboveTheTargetTheWindowShrinksOncePerRoundTripAndAtMostByHalf() {
        var c = settled()
        let before = c.window
        // 20 ms of queueing against a 15 ms target: a cut of a third.
        c.observe(rtt: ms(30), now: ms(1010))
        c.acked(64 << 10, limited: true, now: ms(1010))
        #expect(abs(c.window - before * (1 - (20.0 / 15 - 1))) < 1)
        #expect(c.queueingDelay == ms(20))
        // Again within the same RTT: no second cut.
        let once = c.window
        c.acked(64 << 10, limited: true, now: ms(1020))
        #expect(c.window == once)
        // A huge delay halves it, no more.
        var d = settled()
        let full = d.window
        d.observe(rtt: ms(500), now: ms(1010))
        d.acked(64 << 10, limited: true, now: ms(1010))
        #expect(d.window == full / 2)
    }

    @Test func aFairLaneThatKnowsItsDeliveryRateCutsTheBytesQueuedBeyondTheTarget() {
        // 20 ms of queueing against 15 ms at 50 MB/s: 5 ms of it, 250 kB, is beyond the target.
        var fair = settled()
        fair.observe(deliveryRate: 50e6)
        for _ in 0..<20 { fair.acked(1 << 20, limited: true, now: ms(1001)) }  // a window of several MB
        let before = fair.window
        fair.observe(rtt: ms(30), now: ms(1010))
        fair.acked(64 << 10, limited: true, now: ms(1010))
        #expect(abs(fair.window - (before - 250_000)) < 1, "\(before) → \(fair.window)")
        // A scavenger keeps LEDBAT++'s cut: the fraction the delay is above the target, a third.
        var scavenger = settled(.scavenger)
        scavenger.observe(deliveryRate: 50e6)
        let full = scavenger.window
        scavenger.observe(rtt: ms(30), now: ms(1010))
        scavenger.acked(64 << 10, limited: true, now: ms(1010))
        #expect(abs(scavenger.window - full * 2 / 3) < 1)
        // However large the excess, a cut takes at most half.
        var huge = settled()
        huge.observe(deliveryRate: 50e6)
        let whole = huge.window
        huge.observe(rtt: ms(500), now: ms(1010))
        huge.acked(64 << 10, limited: true, now: ms(1010))
        #expect(huge.window == whole / 2)
    }

    @Test func aLossHalvesAScavengersWindowOncePerRoundTrip() {
        var c = settled(.scavenger)
        for _ in 0..<20 { c.acked(1 << 20, limited: true, now: ms(1001)) }
        let before = c.window
        c.lost(now: ms(1020))
        #expect(c.window == before / 2)
        c.lost(now: ms(1021))  // the same loss event
        #expect(c.window == before / 2)
        c.lost(now: ms(1020 + 11))
        #expect(c.window == max(before / 4, c.parameters.minimumWindow))
    }

    /// A fair lane leaves losses to its sockets' own TCP: its window stays, and a queue above the
    /// target still cuts it within the round trip (a loss does not count as that RTT's cut).
    @Test func aLossLeavesAFairWindowAlone() {
        var c = settled()
        c.observe(deliveryRate: 50e6)
        for _ in 0..<20 { c.acked(1 << 20, limited: true, now: ms(1001)) }
        let before = c.window
        c.lost(now: ms(1020))
        c.lost(now: ms(1040))
        #expect(c.window == before)
        c.observe(rtt: ms(10 + 45), now: ms(1041))
        c.acked(64 << 10, limited: true, now: ms(1041))
        #expect(c.window < before)
        // A loss in the first slow start leaves it too: the queue ends slow start.
        var fresh = controller(.fair)
        fresh.observe(rtt: ms(10), least: ms(10), now: 0)
        fresh.lost(now: ms(5))
        #expect(fresh.window == fresh.parameters.initialWindow(.fair) && fresh.phase == .slowStart)
    }

    /// A fair lane whose sockets give their least RTT never slows down: the kernel measures its
    /// base delay. Without it (ack RTTs only), it slows down `minimumSlowdownGap` after slow
    /// start, holds the minimum for two RTTs, then returns to its window at once rather than
    /// slow-starting back from the minimum (which left a long path nearly idle for seven RTTs).
    @Test func aFairLaneSlowsDownOnlyWithoutTheKernelsLeastRTTAndThenReturnsAtOnce() {
        var kernel = settled(.fair, at: 0, gap: 0)
        for t in stride(from: 51.0, to: 20_000, by: 500) {
            kernel.acked(64 << 10, limited: true, now: ms(t))
            #expect(kernel.phase == .avoidance)
        }
        var c = controller(.fair) { $0.minimumSlowdownGap = 0 }
        c.observe(rtt: ms(10), now: 0)
        c.observe(rtt: ms(10 + 15), now: 0)
        c.acked(64 << 10, limited: true, now: 0)  // ¾ target exceeded: slow start ends
        c.observe(rtt: ms(10), now: 0)
        for _ in 0..<8 { c.acked(1 << 20, limited: true, now: ms(5)) }
        c.acked(64 << 10, limited: true, now: ms(49))
        #expect(c.phase == .avoidance)
        c.acked(64 << 10, limited: true, now: ms(51))  // two RTTs (25 ms when slow start ended) after it
        #expect(c.phase == .slowdown(until: ms(51) + ms(20)))
        let before = c.threshold
        c.acked(1 << 20, limited: true, now: ms(60))
        #expect(c.window == c.parameters.minimumWindow)
        c.acked(64 << 10, limited: true, now: ms(72))
        #expect(c.phase == .avoidance)
        #expect(c.window == before)
    }

    @Test func aScavengersSlowdownDropsToTheMinimumThenSlowStartsBackAndTheNextComesNineLengthsLater() {
        var c = settled(.scavenger, at: 0, gap: 0)  // the first slowdown is due at 50 ms
        for _ in 0..<8 { c.acked(1 << 20, limited: true, now: ms(5)) }
        c.acked(64 << 10, limited: true, now: ms(49))
        #expect(c.phase == .avoidance)
        c.acked(64 << 10, limited: true, now: ms(51))
        #expect(c.window == c.parameters.minimumWindow)
        #expect(c.phase == .slowdown(until: ms(51) + ms(20)))
        let before = c.threshold
        #expect(before > 1_400_000)
        // Held for two RTTs (20 ms here), whatever is acked.
        c.acked(1 << 20, limited: true, now: ms(60))
        #expect(c.window == c.parameters.minimumWindow)
        // The queue drained: a lower base delay is seen.
        c.observe(rtt: ms(8), least: ms(8), now: ms(70))
        #expect(c.baseDelay == ms(8))
        // Then slow start back up to the window before it.
        var now = ms(72)
        while c.phase != .avoidance {
            c.acked(Int(c.window), limited: true, now: now)
            now += ms(8)
        }
        #expect(c.window == before)
        let length = now - ms(8) - ms(51)
        // No slowdown until nine lengths later.
        c.acked(64 << 10, limited: true, now: now - ms(8) + 8 * length)
        #expect(c.phase == .avoidance)
        c.acked(64 << 10, limited: true, now: now - ms(8) + 9 * length + 1)
        #expect(c.window == c.parameters.minimumWindow)
    }

    @Test func aFairLanesFirstSlowdownWaitsTheMinimumGapAScavengersComesTwoRoundTripsAfterSlowStart() {
        var fair = controller(.fair)  // ack RTTs only: no kernel least RTT
        fair.observe(rtt: ms(10), now: 0)
        fair.observe(rtt: ms(10 + 15), now: 0)
        fair.acked(64 << 10, limited: true, now: 0)
        fair.observe(rtt: ms(10), now: 0)
        fair.acked(64 << 10, limited: true, now: ms(51))
        #expect(fair.phase == .avoidance)
        fair.acked(64 << 10, limited: true, now: ms(7999))
        #expect(fair.phase == .avoidance)
        fair.acked(64 << 10, limited: true, now: ms(8001))
        #expect(fair.window == fair.parameters.minimumWindow)
        var scavenger = settled(.scavenger, at: 0)
        scavenger.acked(64 << 10, limited: true, now: ms(49))
        #expect(scavenger.phase == .avoidance)
        scavenger.acked(64 << 10, limited: true, now: ms(51))
        #expect(scavenger.window == scavenger.parameters.minimumWindow)
    }

    @Test func slowdownsAreAtLeastTheMinimumGapApart() {
        var c = settled(.scavenger, at: 0)
        c.acked(64 << 10, limited: true, now: ms(51))
        guard case .slowdown = c.phase else { Issue.record("no slowdown"); return }
        var now = ms(72)
        while c.phase != .avoidance {
            c.acked(Int(c.window), limited: true, now: now)
            now += ms(8)
        }
        let ended = now - ms(8)
        let gap = c.parameters.minimumSlowdownGap / 1_000_000
        #expect(gap == 8000)
        c.acked(64 << 10, limited: true, now: ended + ms(Double(gap - 1)))
        #expect(c.phase == .avoidance)
        c.acked(64 << 10, limited: true, now: ended + ms(Double(gap + 1)))
        #expect(c.window == c.parameters.minimumWindow)
    }

    @Test func theBaseDelayIsTheLeastOverTenOneMinuteBuckets() {
        var c = controller(.fair)
        let minute: UInt64 = 60_000_000_000
        c.observe(rtt: ms(30), least: ms(5), now: 0)
        for m in 1...9 { c.observe(rtt: ms(30), least: ms(20), now: UInt64(m) * minute) }
        #expect(c.baseDelay == ms(5))
        c.observe(rtt: ms(30), least: ms(20), now: 10 * minute)  // the first bucket is now too old
        #expect(c.baseDelay == ms(20))
        #expect(c.queueingDelay == ms(10))
    }

    @Test func scavengerGainShrinksOnShortPathsAndFairKeepsTheKernelWindow() {
        var s = controller(.scavenger)
        s.observe(rtt: ms(1), least: ms(1), now: 0)
        #expect(s.gain == 1.0 / 16)
        var f = controller(.fair)
        f.observe(rtt: ms(1), least: ms(1), now: 0)
        #expect(f.gain == 1)
        // Fair never drops below the kernel's own windows; scavenger does.
        f.observe(kernelWindow: 3_000_000)
        s.observe(kernelWindow: 3_000_000)
        for i in 0..<40 {
            f.observe(rtt: ms(61), now: ms(Double(10 + 100 * i)))
            s.observe(rtt: ms(61), now: ms(Double(10 + 100 * i)))
            f.acked(1 << 20, limited: true, now: ms(Double(10 + 100 * i)))
            s.acked(1 << 20, limited: true, now: ms(Double(10 + 100 * i)))
        }
        #expect(f.window == 3_000_000)
        #expect(s.window == s.parameters.minimumWindow)
    }

    /// A closed loop against a fluid model of a 400 Mbit/s bottleneck with a 1 ms path and a deep
    /// queue: the controller fills the link and holds the queue near its target.
    @Test(arguments: [CongestionMode.fair, .scavenger])
    func aloneOnALinkItFillsItAndKeepsTheQueueNearTheTarget(mode: CongestionMode) {
        let link = 50_000_000.0, base = ms(1)
        var c = controller(mode)
        var queue = 0.0, delivered = 0.0
        var delays: [UInt64] = []
        let step = ms(1)
        var now: UInt64 = 0
        c.observe(rtt: base, least: base, now: 0)
        while now < 30_000_000_000 {
            now += step
            let rtt = base + UInt64(queue / link * 1e9)
            c.observe(rtt: rtt, least: base, now: now)
            let offered = (c.rate ?? link) * 1e-3
            queue += offered
            let out = min(queue, link * 1e-3)
            queue -= out
            if now > 10_000_000_000 {
                delivered += out
                delays.append(rtt - base)
            }
            c.acked(Int(out), limited: true, now: now)
        }
        let utilization = delivered / (link * 20)
        delays.sort()
        let median = delays[delays.count / 2]
        #expect(utilization >= 0.9, "\(utilization)")
        #expect(median <= ms(25), "\(Double(median) / 1e6) ms")
    }

    /// A settled scavenger after 14 s behind a TCP flow's 60 ms queue, a chunk acked each 70 ms;
    /// and the time then.
    private func behindAFlow() -> (CongestionController, UInt64) {
        var c = settled(.scavenger)
        var now = ms(1001)
        for _ in 0..<200 {
            c.observe(rtt: ms(10 + 60), now: now)
            c.acked(1 << 20, limited: true, now: now)
            now += ms(70)
        }
        return (c, now)
    }

    /// Against a TCP flow that keeps a 60 ms queue full, a scavenger lane shrinks to its minimum:
    /// at that RTT it asks for under 5% of 400 Mbit/s.
    @Test func aScavengerLaneYieldsToAQueueItDidNotBuild() {
        var (c, now) = behindAFlow()
        #expect(c.window == c.parameters.minimumWindow)
        #expect((c.rate ?? .infinity) < 0.05 * 50_000_000, "\(c.rate ?? -1)")
        // The flow ends and the queue drains: the lane grows back.
        var t = now
        while c.window < 8 * c.parameters.minimumWindow && t < now + 3_000_000_000 {
            c.observe(rtt: ms(10), now: t)
            c.acked(1 << 20, limited: true, now: t)
            t += ms(10)
        }
        #expect(c.window >= 8 * c.parameters.minimumWindow)
    }

    /// A scavenger shrunk to its minimum behind a TCP flow sends one chunk at a time. Once the
    /// flow ends and the queue drains, it grows at gain 1 (a chunk's worth per chunk acked), not at
    /// its own gain (a third on this 10 ms path, 1/16 on a short one): four chunks' worth of window
    /// after four chunks acked, where a third took eighteen (with a slowdown among them).
    /// While a queue shows (a quarter of the target or more), growth is still at its gain.
    @Test func aScavengerTakesAnEmptiedLinkBackAtGainOneButGrowsAtItsGainWhileAQueueShows() {
        var (c, now) = behindAFlow()
        #expect(c.gain == 1.0 / 3)  // ⌈2 × 15 / 10⌉
        #expect(c.window == c.parameters.minimumWindow)
        var acks = 0
        while c.window < 4 * 1_048_576, acks < 100 {
            c.observe(rtt: ms(10 + 1), now: now)
            c.acked(1 << 20, limited: true, now: now)
            acks += 1
            now += ms(21)
        }
        #expect(acks <= 4, "\(acks) chunks acked before four were in flight")
        // With 5 ms of queue (a third of the target), a segment per RTT at the scavenger's gain,
        // less as the queue nears the target (before its first slowdown, two RTTs in).
        var q = settled(.scavenger)
        let before = q.window
        q.observe(rtt: ms(10 + 5), now: ms(1001))
        q.acked(1 << 20, limited: true, now: ms(1001))
        let expected = q.gain * q.parameters.segment * 1_048_576 / before * (1 - 5.0 / 15)
        #expect(abs((q.window - before) - expected) < 1, "\(q.window - before) against \(expected)")
    }

    @Test func offDoesNothing() {
        var c = controller(.off)
        c.observe(rtt: ms(100), least: ms(1), now: 0)
        c.acked(1 << 20, limited: true, now: ms(10))
        c.lost(now: ms(20))
        #expect(c.window == c.parameters.initialWindow)
        #expect(c.rate == nil)
        #expect(CongestionMode(code: CongestionMode.scavenger.code) == .scavenger)
        #expect(CongestionMode(code: 9) == nil)
    }
}
