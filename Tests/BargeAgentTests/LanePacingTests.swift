@testable import BargeAgent
import BargeFlow
import BargeWire
import Foundation
import Testing

/// The pacing cap a lane puts on each of its sockets (`LaneFlow.socketPacing`), and a real
/// socket taking it (`ChunkStream.pace`).
struct LanePacingTests {
    typealias Clock = LaneFlowTests.Clock

    /// Acks `count` chunks of `bytes`, one every `every` ns, taking the streams in turn; each ack
    /// reports an RTT of `rtt` over a least RTT of `least`. Returns the rate delivered.
    @discardableResult
    func deliver(_ lane: LaneFlow, _ clock: Clock, on streams: [ObjectIdentifier], count: Int, bytes: Int = 256 << 10,
                 every: UInt64, rtt: UInt64 = 10_000_000, least: UInt64 = 1_000_000) async -> Double {
        for i in 0..<count {
            let at = await lane.acquire(bytes)
            clock.advance(every)
            lane.release(bytes, sentAt: at, sample: TCPSample(rtt: rtt, minRTT: least, window: 0, retransmits: 0),
                         stream: streams[i % streams.count])
        }
        return Double(bytes) / (Double(every) / 1e9)
    }

    /// Sockets' identities: the objects are kept, so that no two share an address.
    final class Sockets {
        let objects: [NSObject]
        init(_ n: Int) { objects = (0..<n).map { _ in NSObject() } }
        var ids: [ObjectIdentifier] { objects.map(ObjectIdentifier.init) }
    }

    func near(_ cap: UInt64?, _ expected: Double, within: Double = 0.05) -> Bool {
        guard let cap else { return false }
        return abs(Double(cap) - expected) <= within * expected
    }

    /// No cap while the lane has not measured its path under a queue (it only sent what it had),
    /// nor in mode `off`. A lane whose path `PathMemory` remembers starts capped at that rate, and
    /// the cap lifts with what the lane delivers: a cap held at a remembered rate below what the
    /// path now carries would keep the link from ever queueing, and so from ever being measured.
    @Test func aLaneCapsItsSocketsOnlyOnceItKnowsItsPath() async {
        let clock = Clock()
        let lane = LaneFlow(mode: .fair, clock: { clock.now })
        #expect(lane.socketPacing == nil)
        // No queue (the RTT is the least RTT): app-limited, not measured.
        let one = Sockets(1)
        await deliver(lane, clock, on: one.ids, count: 60, every: 5_000_000, rtt: 1_000_000)
        #expect(lane.socketPacing == nil)

        // Remembered at 10 MB/s; the path now carries far more, without a queue.
        let lanes = Lanes(memory: PathMemory(file: nil), clock: { clock.now })
        lanes.memory.remember("b1", PathMemory.Known(rate: 10e6, baseDelay: 5_000_000, measuredAt: Date().timeIntervalSince1970))
        let known = lanes.lane(to: "b1", mode: .fair)
        #expect(known.socketPacing == 12_500_000)
        let fast = await deliver(known, clock, on: one.ids, count: 200, every: 2_000_000, rtt: 1_000_000)
        let lifted = known.socketPacing ?? 0
        #expect(Double(lifted) >= SocketPacing.headroom * fast, "\(lifted): held below the \(fast) delivered")
        // Once a queue shows, the cap is what was measured.
        let measured = await deliver(known, clock, on: one.ids, count: 120, every: 2_000_000)
        #expect(near(known.socketPacing, SocketPacing.headroom * measured), "\(known.socketPacing ?? 0) for \(measured)")
        #expect(LaneFlow(mode: .off, remembered: 40e6, clock: { clock.now }).socketPacing == nil)
        withExtendedLifetime(one) {}
    }

    /// A lane remembered at some rate, held back by its source for a long while (zstd-9 on
    /// loopback: app-limited, in its first slow start, never queueing): its estimate doubles
    /// every interval meanwhile, far beyond any link, and its sockets go uncapped. Before
    /// `SocketPacing.most`, the cap overflowed a `UInt64` and the agent crashed.
    @Test func aLaneHeldBackByItsSourceForLongLeavesItsSocketsUncapped() async {
        let clock = Clock()
        let lanes = Lanes(memory: PathMemory(file: nil), clock: { clock.now })
        lanes.memory.remember("b1", PathMemory.Known(rate: 100e6, baseDelay: 1_000_000, measuredAt: Date().timeIntervalSince1970))
        let lane = lanes.lane(to: "b1", mode: .fair)
        let one = Sockets(1)
        // 30 s at 25 MB/s (a 256 KiB chunk every 10 ms), no queue.
        let rate = await deliver(lane, clock, on: one.ids, count: 3000, every: 10_000_000, rtt: 1_000_000)
        #expect(lane.controller.phase == .slowStart)
        let estimate = lane.bottleneck ?? 0
        #expect(estimate > Double(UInt64.max), "\(estimate) for \(rate) delivered")
        #expect(lane.socketPacing == nil, "no cap beyond any link")
        withExtendedLifetime(one) {}
    }

    /// Under a queue, each socket's cap is its share of what the lane delivers, with headroom. A
    /// dip (a socket in recovery) does not lower it at once: the cap takes the most delivered over
    /// the last intervals, since the estimate follows a delivered rate that the cap itself bounds.
    /// A dip that lasts does lower it.
    @Test func eachSocketIsCappedAtItsShareOfTheMostDeliveredLately() async {
        let clock = Clock()
        let lane = LaneFlow(mode: .fair, clock: { clock.now })
        let sockets = Sockets(2), two = sockets.ids
        let full = await deliver(lane, clock, on: two, count: 60, every: 5_000_000)
        #expect(near(lane.socketPacing, SocketPacing.headroom * full / 2), "\(lane.socketPacing ?? 0) for \(full)")

        // Half the rate for half a second: the estimate falls towards it, the cap does not.
        let half = await deliver(lane, clock, on: two, count: 50, every: 10_000_000)
        #expect(lane.bottleneck! < 0.9 * full)
        #expect(near(lane.socketPacing, SocketPacing.headroom * full / 2), "\(lane.socketPacing ?? 0) after a dip")

        // Three seconds of it: the cap follows.
        await deliver(lane, clock, on: two, count: 300, every: 10_000_000)
        #expect(near(lane.socketPacing, SocketPacing.headroom * half / 2, within: 0.1), "\(lane.socketPacing ?? 0) for \(half)")
        withExtendedLifetime(sockets) {}
    }

    /// The share is among the sockets that answered in the last second: a lane whose traffic moved
    /// to one socket lets that socket have the whole rate.
    @Test func theShareIsAmongTheSocketsInUse() async {
        let clock = Clock()
        let lane = LaneFlow(mode: .fair, clock: { clock.now })
        let sockets = Sockets(4), streams = sockets.ids
        let rate = await deliver(lane, clock, on: streams, count: 80, every: 5_000_000)
        #expect(near(lane.socketPacing, SocketPacing.headroom * rate / 4))
        clock.advance(2_000_000_000)
        await deliver(lane, clock, on: [streams[0]], count: 20, every: 5_000_000)
        #expect(near(lane.socketPacing, SocketPacing.headroom * rate), "\(lane.socketPacing ?? 0) for one socket")
        // A closed socket stops counting at once.
        await deliver(lane, clock, on: Array(streams[0...1]), count: 4, every: 5_000_000)
        #expect(near(lane.socketPacing, SocketPacing.headroom * rate / 2))
        lane.closed(streams[1])
        #expect(near(lane.socketPacing, SocketPacing.headroom * rate))
        withExtendedLifetime(sockets) {}
    }

    /// Over real loopback TCP: a unit's send leaves its lane's cap on the socket
    /// (`SO_MAX_PACING_RATE`), and a send with no lane (mode `off`) lifts it.
    @Test(.enabled(if: isLinux, "SO_MAX_PACING_RATE is Linux's"))
    func aSendLeavesItsLanesCapOnTheSocket() async throws {
        let harness = WriteSlotTests()
        let script = WriteSlotTests.Script()
        script.go.withLockedValue { $0 = true }
        let (server, serving) = try await harness.server(script)
        defer { serving.cancel() }
        // A lane that measured its path under a queue, on another socket a moment ago.
        let clock = Clock()
        let lane = LaneFlow(mode: .fair, clock: { clock.now })
        let other = Sockets(1)
        let rate = await deliver(lane, clock, on: other.ids, count: 120, every: 2_000_000)
        try await harness.client(of: server).withStream { stream in
            let probe = try #require(stream.probe)
            #expect(await probe.maximumPacingRate() == nil)
            let (first, place) = harness.frame(0)
            _ = try await UnitFlow(lane: lane).send(first, expecting: .place(place), on: stream)
            let cap = try #require(stream.pacingCap)
            #expect(near(cap, SocketPacing.headroom * rate / 2), "\(cap): the share of two sockets of \(rate)")
            #expect(await probe.maximumPacingRate() == cap)
            let (second, other) = harness.frame(1)
            _ = try await UnitFlow().send(second, expecting: .place(other), on: stream)
            #expect(stream.pacingCap == nil)
            #expect(await probe.maximumPacingRate() == nil)
        }
        withExtendedLifetime(other) {}
        await server.close()
    }
}

#if os(Linux)
let isLinux = true
#else
let isLinux = false
#endif
