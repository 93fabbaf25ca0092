@testable import BargeAgent
import BargeBench
import BargeFlow
import BargeWire
import Foundation
import Testing

struct LaneFlowTests {
    final class Clock: @unchecked Sendable {
        private let lock = NSLock()
        private var t: UInt64 = 1_000_000_000
        var now: UInt64 { lock.withLock { t } }
        func advance(_ ns: UInt64) { lock.withLock { t += ns } }
    }

    /// The window holds back a chunk that would overfill it (except the first), until an ack.
    @Test func aChunkWaitsForRoomInTheWindow() async throws {
        let clock = Clock()
        let lane = LaneFlow(mode: .fair, clock: { clock.now })
        let window = Int(lane.controller.window)  // 1 MiB to start with
        let first = await lane.acquire(window - 1000)
        let waiting = Task { await lane.acquire(4000) }
        try await Task.sleep(for: .milliseconds(100))
        #expect(!waiting.isCancelled)
        let sample = TCPSample(rtt: 2_000_000, minRTT: 1_000_000, window: 500_000, retransmits: 0)
        clock.advance(2_000_000)
        lane.release(window - 1000, sentAt: first, sample: sample, stream: ObjectIdentifier(self as AnyObject))
        _ = await waiting.value
        #expect(lane.figures.rttMicros == 2000 && lane.figures.queueMicros == 1000)
        // A first chunk larger than the window still goes.
        let other = LaneFlow(mode: .scavenger, clock: { clock.now })
        _ = await other.acquire(8 << 20)
    }

    @Test func theSocketsRetransmissionsCountAsALoss() async {
        let clock = Clock()
        let lane = LaneFlow(mode: .scavenger, clock: { clock.now })
        let stream = ObjectIdentifier(NSObject())
        for retransmits: UInt32 in [0, 0, 3] {
            let at = await lane.acquire(1 << 16)
            clock.advance(1_000_000)
            lane.release(1 << 16, sentAt: at, sample: TCPSample(rtt: 1_000_000, minRTT: 1_000_000, window: 0, retransmits: retransmits), stream: stream)
            clock.advance(10_000_000)
        }
        #expect(lane.controller.window < lane.controller.parameters.initialWindow(.scavenger))
    }

    /// A `fair` lane's floor is what its sockets' TCP would keep in flight: a loss-based
    /// socket's congestion window, but a BBR socket's model of the path (its rate times its least
    /// RTT), not its window, which BBR holds at up to three times that. The window a BBR socket
    /// kept in its startup was the floor before, so the lane could never shrink below it
    /// whatever queue it saw (through the delay test bed at 100 ms: 64 MB of window for a path
    /// that queues 25 MB, and a sixth of what was sent retransmitted).
    @Test func aFairLanesFloorIsWhatItsSocketsAimToKeepInFlight() async {
        let clock = Clock()
        let stream = ObjectIdentifier(NSObject())
        let bbr = TCPSample.BBRModel(rate: 100_000_000, minRTT: 10_000_000)  // 1 MB in flight at 10 ms
        for (model, floor) in [(bbr, 1_000_000.0), (nil, 64_000_000.0)] as [(TCPSample.BBRModel?, Double)] {
            let lane = LaneFlow(mode: .fair, clock: { clock.now })
            let at = await lane.acquire(1 << 20)
            clock.advance(60_000_000)
            // A queue of 50 ms over the 10 ms base: well past the target.
            lane.release(1 << 20, sentAt: at, sample: TCPSample(rtt: 60_000_000, minRTT: 10_000_000, window: 64_000_000, retransmits: 0, bbr: model),
                         stream: stream)
            #expect(lane.controller.kernelWindow == floor)
            #expect(lane.controller.window >= floor)
            if model != nil { #expect(lane.controller.window < 64_000_000, "the BBR socket's window held the lane up") }
        }
    }

    /// Over real loopback sockets: the lane reads TCP_INFO after each ack (so it knows the RTT and
    /// the kernel's window), and its figures are those of the transfer.
    @Test func aUnitOverLoopbackFeedsTheLaneFromTCPInfo() async throws {
        let roots = try Roots()
        let bytes = SampleData.random(bytes: 6 << 20, seed: 3)
        let url = URL(fileURLWithPath: roots.source + "/r.bin")
        try Data(bytes).write(to: url)
        let listener = try await DataPlaneListener.bind(host: "127.0.0.1", port: 0, root: roots.destination, token: UnitSenderTests.token, name: "b1")
        let serving = Task { try await listener.run() }
        defer { serving.cancel() }
        let port = listener.localAddress!.port!
        let entry = try UnitSenderTests().entry("r.bin", of: url)
        let task = TaskAssign(job: "j", unit: 1, destination: DataPeer(name: "b1", host: "127.0.0.1", port: UInt16(port)), codec: "auto",
                              chunkSize: 1 << 20, files: [TaskFile(sourcePath: "r.bin", entry: entry, length: UInt64(bytes.count), finish: true)])
        let lane = LaneFlow(mode: .fair)
        let client = DataPlaneClient(host: "127.0.0.1", port: port, token: UnitSenderTests.token, name: "a1")
        let done = try await UnitSender(task: task, client: client, sources: SourcePool { [root = roots.source] in ChunkSource(root: root) },
                                        settings: .init(streams: 2, contentDefinedAbove: nil), progress: UnitProgress(),
                                        flow: UnitFlow(lane: lane)).run()
        #expect(done.bytes == UInt64(bytes.count))
        #expect(try Data(contentsOf: URL(fileURLWithPath: roots.destination + "/r.bin")) == Data(bytes))
        #if os(Linux)
        let c = lane.controller
        #expect(c.rtt != nil && c.baseDelay != nil)
        #expect(lane.tcpSamples >= 6, "one TCP_INFO sample per acked chunk")
        #expect(c.kernelWindow == 0, "closed streams no longer count")
        #expect(lane.figures.rttMicros > 0)
        #endif
    }
}

extension LaneFlowTests {
    final class Log: @unchecked Sendable {
        private let lock = NSLock()
        private var entries: [UInt64] = []
        func add(_ e: UInt64) { lock.withLock { entries.append(e) } }
        var all: [UInt64] { lock.withLock { entries } }
    }

    /// A later unit's chunk waits behind an earlier unit's, whichever asked first.
    @Test func roomGoesToTheOldestUnitFirst() async throws {
        let clock = Clock()
        let lane = LaneFlow(mode: .fair, clock: { clock.now })
        let window = Int(lane.controller.window)
        let chunk = window * 3 / 4
        let first = await lane.acquire(window, order: 1)
        let log = Log()
        let late = Task { _ = await lane.acquire(chunk, order: 9); log.add(9) }
        try await Task.sleep(for: .milliseconds(50))
        let early = Task { _ = await lane.acquire(chunk, order: 2); log.add(2) }
        try await Task.sleep(for: .milliseconds(50))
        #expect(log.all.isEmpty)
        lane.release(window, sentAt: first, answered: false)  // room for one of them
        await early.value
        try await Task.sleep(for: .milliseconds(50))
        #expect(log.all == [2])
        lane.release(chunk, sentAt: clock.now, answered: false)
        await late.value
        #expect(log.all == [2, 9])
    }
}

/// The bottleneck estimate that `auto` compresses for, fed acks at a steady pace on a mock clock.
struct BottleneckEstimateTests {
    /// Sends `count` chunks of `bytes` one at a time, each acked `every` ns later with a socket RTT
    /// of `rtt` over a least RTT of `least`; returns the delivered rate, bytes per second.
    @discardableResult
    func deliver(_ lane: LaneFlow, _ clock: LaneFlowTests.Clock, count: Int, bytes: Int, every: UInt64,
                 rtt: UInt64, least: UInt64, notSent: UInt32 = 0) async -> Double {
        let stream = ObjectIdentifier(NSObject())
        for _ in 0..<count {
            let at = await lane.acquire(bytes)
            clock.advance(every)
            lane.release(bytes, sentAt: at, sample: TCPSample(rtt: rtt, minRTT: least, window: 0, retransmits: 0, notSent: notSent), stream: stream)
        }
        return Double(bytes) / (Double(every) / 1e9)
    }

    /// No queue, and the window mostly free: compression holds the lane back, not the network, so
    /// the estimate jumps to four times what was delivered (and `auto` compresses less).
    @Test func anAppLimitedLaneRaisesItsEstimateFourfold() async {
        let clock = LaneFlowTests.Clock()
        let lane = LaneFlow(mode: .fair, clock: { clock.now })
        #expect(lane.bottleneck == nil)
        // A delay of ¾ of the target ends the first slow start (below the target: no cut).
        let target = lane.controller.parameters.target
        await deliver(lane, clock, count: 1, bytes: 256 << 10, every: 5_000_000, rtt: target * 4 / 5, least: 100_000)
        #expect(lane.controller.phase == .avoidance)
        let delivered = await deliver(lane, clock, count: 40, bytes: 256 << 10, every: 5_000_000, rtt: 100_000, least: 100_000)
        let estimate = try! #require(lane.bottleneck)
        #expect(estimate >= 3.9 * delivered && estimate <= 4.1 * delivered, "estimate \(estimate) for \(delivered) delivered")
        #expect(lane.codecRate == estimate, "auto compresses for the same guess")
    }

    /// No queue and the window mostly free, as above, but the sockets hold unsent bytes at every
    /// answer: TCP, not compression, sets the pace. The estimate still guesses high (the pacing
    /// cap must not hold the lane back), but `auto` compresses for what is delivered.
    @Test func aLaneWhoseSocketsAreBackloggedCompressesForWhatItDelivers() async {
        let clock = LaneFlowTests.Clock()
        let lane = LaneFlow(mode: .fair, clock: { clock.now })
        let target = lane.controller.parameters.target
        await deliver(lane, clock, count: 1, bytes: 256 << 10, every: 5_000_000, rtt: target * 4 / 5, least: 100_000)
        // Empty sockets first: auto gets the guess, as above.
        await deliver(lane, clock, count: 40, bytes: 256 << 10, every: 5_000_000, rtt: 100_000, least: 100_000)
        #expect(lane.codecRate == lane.bottleneck)
        // Then backlogged: auto's rate starts afresh from what is delivered, not from the guess.
        let backlog = UInt32(DataPlaneClient.notSentLowat)
        let delivered = await deliver(lane, clock, count: 40, bytes: 256 << 10, every: 5_000_000, rtt: 100_000, least: 100_000, notSent: backlog)
        let estimate = try! #require(lane.bottleneck)
        let codec = try! #require(lane.codecRate)
        #expect(estimate >= 3.9 * delivered, "estimate \(estimate) for \(delivered) delivered")
        #expect(abs(codec - delivered) < 0.05 * delivered, "auto compresses for \(codec), \(delivered) delivered")
        // Once the sockets drain (compression is the limit again), auto follows the guess.
        await deliver(lane, clock, count: 40, bytes: 256 << 10, every: 5_000_000, rtt: 100_000, least: 100_000)
        #expect(lane.codecRate == lane.bottleneck)
        // Backlogged again, at half the rate for one interval: the average goes on from where
        // it was (the guess in between neither entered it nor reset it).
        let slower = await deliver(lane, clock, count: 17, bytes: 256 << 10, every: 10_000_000, rtt: 100_000, least: 100_000, notSent: backlog)
        let again = try! #require(lane.codecRate)
        #expect(again > slower * 1.3 && again < delivered, "auto compresses for \(again): \(slower) delivered now, \(delivered) before")
    }

    /// In the first slow start, with no queue, the estimate at least doubles each interval, from
    /// the assumed 1 Gbit/s, however little was delivered; the first queue replaces the guess.
    @Test func inItsFirstSlowStartTheEstimateDoublesUntilAQueueShows() async {
        let clock = LaneFlowTests.Clock()
        let lane = LaneFlow(mode: .fair, clock: { clock.now })
        // 11 MB/s delivered, four times that far below the assumed rate; an interval every 17
        // acks (16 acks and a tenth of a second), counted from the first ack.
        await deliver(lane, clock, count: 1 + 17 * 10, bytes: 64 << 10, every: 6_000_000, rtt: 100_000, least: 100_000)
        #expect(lane.controller.phase == .slowStart)
        let guessed = try! #require(lane.bottleneck)
        #expect(abs(guessed - 1024 * UnitFlow.assumedLinkRate) < 1e6, "after ten intervals: \(guessed)")
        // A queue: the estimate is what was delivered, not an average with the guess.
        let delivered = await deliver(lane, clock, count: 20, bytes: 1 << 20, every: 25_000_000, rtt: 20_000_000, least: 100_000)
        let measured = try! #require(lane.bottleneck)
        #expect(abs(measured - delivered) < 0.05 * delivered, "estimate \(measured) for \(delivered) delivered")
    }

    /// A scavenger measures its path under its own queue (52 MB/s), then gives way to a TCP flow
    /// whose 60 ms queue holds it to 1.7 MB/s, and its estimate falls with it. When the flow ends and
    /// the queue drains, its window is still under two chunks, so its sends wait on it (it is not
    /// app-limited). The estimate, and with it the sockets' pacing cap, still goes back at once to
    /// the rate measured under a queue, not by a quarter per interval from what it got behind the
    /// flow (that took 2-6 s to take a 400 Mbit/s link back, in some runs of
    /// `cluster/bench-link.sh`). A rate not measured again for over a minute no longer counts.
    @Test func aLaneBackOnAnEmptyPathReturnsToTheRateItLastMeasuredUnderAQueue() async {
        for competition: UInt64 in [15, 65] {
            let clock = LaneFlowTests.Clock()
            let lane = LaneFlow(mode: .scavenger, clock: { clock.now })
            let ms: UInt64 = 1_000_000
            let own = await deliver(lane, clock, count: 50, bytes: 1 << 20, every: 20 * ms, rtt: 11 * ms, least: ms)
            let measured = try! #require(lane.bottleneck)
            #expect(abs(measured - own) < 0.05 * own, "estimate \(measured) for \(own) delivered")
            // Behind the flow: a quarter chunk each 0.15 s (within the window's pacing, so the test
            // does not sleep).
            await deliver(lane, clock, count: Int(competition * 1000 / 150), bytes: 256 << 10, every: 150 * ms, rtt: 61 * ms, least: ms)
            let behind = try! #require(lane.bottleneck)
            #expect(behind < 0.1 * own, "\(behind) behind the flow")
            #expect(lane.controller.window < 2 * 1_048_576)
            // The flow ends: no queue, and one estimate later…
            await deliver(lane, clock, count: 4, bytes: 1 << 20, every: 150 * ms, rtt: ms, least: ms)
            let after = try! #require(lane.bottleneck)
            if competition < 60 {
                #expect(after >= 0.95 * measured, "back to \(after), measured \(measured) before the flow")
            } else {
                #expect(after < 0.5 * measured, "\(after): a rate measured over a minute ago counts no more")
            }
        }
    }

    /// A queue builds: what was delivered is the bottleneck, and later intervals move the estimate
    /// towards theirs gradually.
    @Test func aQueueMakesTheEstimateWhatWasDelivered() async {
        let clock = LaneFlowTests.Clock()
        let lane = LaneFlow(mode: .fair, clock: { clock.now })
        let first = await deliver(lane, clock, count: 40, bytes: 256 << 10, every: 10_000_000, rtt: 10_000_000, least: 1_000_000)
        let estimate = try! #require(lane.bottleneck)
        #expect(abs(estimate - first) < 0.05 * first, "estimate \(estimate) for \(first) delivered")
        // Twice as fast for one interval: the estimate moves part of the way only.
        let faster = await deliver(lane, clock, count: 20, bytes: 256 << 10, every: 5_000_000, rtt: 10_000_000, least: 1_000_000)
        let moved = try! #require(lane.bottleneck)
        #expect(moved > estimate * 1.05 && moved < faster * 0.8, "moved to \(moved) between \(estimate) and \(faster)")
        // The rate auto compresses for moves less (a burst of acks is not a faster link).
        let codec = try! #require(lane.codecRate)
        #expect(codec > estimate * 1.02 && codec < moved, "auto's rate moved to \(codec), the estimate to \(moved)")
    }

    /// No queue, but the window is full (the sends cannot go at once with room to spare): the
    /// window, not compression, holds the lane back, and the estimate only creeps up.
    @Test func aWindowBoundLaneGrowsItsEstimateSlowly() async {
        let clock = LaneFlowTests.Clock()
        var parameters = CongestionController.Parameters()
        parameters.initialWindow = 384 * 1024  // a 256 KiB chunk fills more than half of it
        parameters.target = 15_000_000  // the delays below are written for it
        // Scavenger: its first slowdown comes two RTTs after slow start and holds the window down.
        let lane = LaneFlow(mode: .scavenger, parameters: parameters, clock: { clock.now })
        // A delay of ¾ of the target ends the first slow start (below the target: no cut).
        await deliver(lane, clock, count: 1, bytes: 256 << 10, every: 2_000_000, rtt: 12_100_000, least: 100_000)
        #expect(lane.controller.phase == .avoidance)
        let delivered = await deliver(lane, clock, count: 60, bytes: 256 << 10, every: 2_000_000, rtt: 100_000, least: 100_000)
        #expect(lane.controller.window <= Double(384 << 10))  // 384 KiB, or the minimum in a slowdown
        let estimate = try! #require(lane.bottleneck)
        #expect(estimate >= delivered && estimate < 1.5 * delivered, "estimate \(estimate) for \(delivered) delivered")
    }
}
