import BargeFlow
import BargeWire
import Foundation
import NIOConcurrencyHelpers

/// One lane's congestion state at the source agent: everything it sends to one destination agent
/// in one mode, over all its units and streams. A chunk waits for room in the controller's window
/// and for its pacing (window ÷ RTT) before it goes; its ack, and the socket's `TCP_INFO` read
/// right after, feed the controller. Also estimates the bottleneck rate that `auto` compresses for.
///
/// Room in the window goes to the oldest unit first (the lowest `order`). Units sharing a lane
/// equally would all end at once, and the lane would idle while their successors start (a scan of
/// cut points, new connections, the have query); served oldest first, they end one by one and the
/// others keep the window full meanwhile.
public final class LaneFlow: Sendable {
    private struct State {
        var controller: CongestionController
        var inFlight = 0
        var pacing = TokenBucket(rate: nil, burst: 256 * 1024)
        var waiting: [Waiter] = []
        /// Sends waited on the window or pacing since the last ack.
        var limited = false
        /// The lane's sockets, by stream, as their last answer found them.
        var sockets: [ObjectIdentifier: Socket] = [:]
        /// Since `since` (nil until the first ack): wire bytes and chunks acked, and sends, and
        /// those that went at once with half the window or more to spare. `delivered` is the
        /// rate over the last such interval.
        var since: UInt64?
        var acked = 0
        var acks = 0
        var sends = 0
        var roomySends = 0
        var delivered: Double = 0
        /// `delivered` over the last `peakIntervals` intervals, newest last (`socketPacing`).
        var recentDelivered: [Double] = []
        var bottleneck: Double?
        /// Acks since `since` that came with a socket sample, and those whose socket held at
        /// least `backlogBytes` unsent (`codecRate`).
        var sampled = 0
        var backlogged = 0
        /// The rate `auto` compresses for (`codecRate`), and the average of what was delivered
        /// in the intervals where the path set the pace (guesses never enter it).
        var codecRate: Double?
        var codecAverage: Double?
        /// The estimate has been measured under a queue (not only guessed while app-limited).
        var measured = false
        /// The highest estimate measured under a queue lately, and when it was last seen
        /// (`estimateBottleneck`: what the path carries once the traffic given way to is gone).
        var queuedPeak: (rate: Double, at: UInt64)?
        /// Acks that came with a `TCP_INFO` sample.
        var tcpSamples = 0
    }

    /// A socket's `TCP_INFO` at its last answer, and when that came (`socketPacing`: the sockets
    /// in use).
    private struct Socket {
        var window: Double
        var retransmits: UInt32
        var answeredAt: UInt64
    }

    private struct Waiter {
        let order: UInt64
        let bytes: Int
        let continuation: CheckedContinuation<Void, Never>
    }

    public let mode: CongestionMode
    /// The longest a chunk waits for its pacing: a lane at its least window still sends a chunk
    /// this often, so that it sees the queue drain when the traffic it gave way to ends.
    public let maximumPause: UInt64 = 1_000_000_000
    private let state: NIOLockedValueBox<State>
    private let clock: @Sendable () -> UInt64

    /// The rate `PathMemory` knew for this lane's path when it was made (`socketPacing`).
    private let remembered: Double?

    public init(mode: CongestionMode, parameters: CongestionController.Parameters = .init(), remembered: Double? = nil,
                clock: @escaping @Sendable () -> UInt64 = RateLimiter.monotonicNow) {
        self.mode = mode
        self.remembered = remembered
        self.clock = clock
        state = NIOLockedValueBox(State(controller: CongestionController(mode: mode, parameters: parameters)))
        if Self.tracing { _ = Self.traceEpoch }  // the clock starts before this lane's first line
    }

    /// Waits until `bytes` more may be in flight (after every waiting chunk of an older unit: a
    /// lower `order`), then for the pacing; returns when they may go out (for `release`).
    public func acquire(_ bytes: Int, order: UInt64 = 0) async -> UInt64 {
        let admitted = state.withLockedValue { s -> Bool in
            s.sends += 1
            guard s.waiting.allSatisfy({ $0.order > order }), fits(s, bytes) else {
                s.limited = true
                return false
            }
            s.inFlight += bytes
            if Double(s.inFlight) * 2 <= s.controller.window { s.roomySends += 1 }
            return true
        }
        if !admitted {
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                // Room may have been made since the check above; `release` admits in order.
                let resume = state.withLockedValue { s -> [Waiter] in
                    s.waiting.append(Waiter(order: order, bytes: bytes, continuation: c))
                    return admit(&s)
                }
                resume.forEach { $0.continuation.resume() }
            }
        }
        let wait = state.withLockedValue { s -> UInt64 in
            let now = clock()
            let pause = s.pacing.take(bytes, now: now)
            if pause > 0 { s.limited = true }
            if pause > maximumPause { s.pacing.clearDebt(now: now) }
            return min(pause, maximumPause)
        }
        if wait > 0 { try? await Task.sleep(for: .nanoseconds(Int64(wait))) }
        return clock()
    }

    private func fits(_ s: State, _ bytes: Int) -> Bool {
        mode == .off || s.inFlight == 0 || s.inFlight + bytes <= Int(s.controller.window)
    }

    /// Takes waiters into the window, oldest unit first, while they fit; the caller resumes them.
    private func admit(_ s: inout State) -> [Waiter] {
        var admitted: [Waiter] = []
        while let i = s.waiting.indices.min(by: { s.waiting[$0].order < s.waiting[$1].order }), fits(s, s.waiting[i].bytes) {
            let w = s.waiting.remove(at: i)
            s.inFlight += w.bytes
            admitted.append(w)
        }
        return admitted
    }

    /// The `bytes` sent at `sentAt` were answered (acked, nacked, or the stream failed: `answered`
    /// false). `sample` is the stream's `TCP_INFO` read after the answer; `stream` tells the
    /// lane's sockets apart.
    public func release(_ bytes: Int, sentAt: UInt64, answered: Bool = true, sample: TCPSample? = nil, stream: ObjectIdentifier? = nil) {
        let waiting = state.withLockedValue { s -> [Waiter] in
            // Read under the lock, so that the controller sees time move forward only.
            let now = clock()
            s.inFlight -= bytes
            if answered {
                if let sample {
                    s.tcpSamples += 1
                    s.sampled += 1
                    if sample.notSent >= Self.backlogBytes { s.backlogged += 1 }
                    s.controller.observe(rtt: sample.rtt, least: sample.minRTT, now: now)
                    if let stream {
                        let socket = Socket(window: sample.inFlightAim, retransmits: sample.retransmits, answeredAt: now)
                        if let before = s.sockets.updateValue(socket, forKey: stream), sample.retransmits > before.retransmits {
                            s.controller.lost(now: now)
                        }
                    }
                    Self.observeKernelWindows(&s)
                } else {
                    s.controller.observe(rtt: now - sentAt, now: now)
                }
                s.controller.acked(bytes, limited: s.limited, now: now)
                s.limited = false
                s.acked += bytes
                s.acks += 1
                estimateBottleneck(&s, now)
            }
            s.pacing.setRate(s.controller.rate, now: now)
            if Self.tracing { trace(s, now, bytes, answered, sample, stream) }
            return admit(&s)
        }
        waiting.forEach { $0.continuation.resume() }
    }

    /// `BARGE_TRACE_LANES=1`: each answer's effect on the lane, one line on standard error (for
    /// finding where a transfer loses time; not for production).
    static let tracing = ProcessInfo.processInfo.environment["BARGE_TRACE_LANES"] == "1"
    /// The trace's clock starts with the process's first lane, so that lines of several lanes
    /// and of units (`UnitSender`) line up.
    static let traceEpoch = RateLimiter.monotonicNow()

    /// `now` on the trace's clock, in seconds, as a trace line prints it.
    static func traceTime(_ now: UInt64 = RateLimiter.monotonicNow()) -> String {
        let epoch = traceEpoch  // read first: set lazily, it must not lie after `now`
        return String(format: "%.3f", Double(now &- epoch) / 1e9)
    }

    /// Writes one trace line (`line` ends with a newline) to standard error.
    static func writeTrace(_ line: String) {
        FileHandle.standardError.write(Data(line.utf8))
    }

    private func trace(_ s: State, _ now: UInt64, _ bytes: Int, _ answered: Bool, _ sample: TCPSample?, _ stream: ObjectIdentifier?) {
        let c = s.controller
        func f(_ x: Double) -> String { String(format: "%.1f", x) }
        // Whole numbers printed from doubles, never converted to Int: an unmeasured estimate
        // doubles every interval of a first slow start and passes Int.max on loopback, which
        // crashed a traced source agent.
        func n(_ x: Double) -> String { String(format: "%.0f", x) }
        let line = "lane \(mode.rawValue) t=\(Self.traceTime(now)) \(answered ? "ack" : "drop") \(bytes)"
            + " inflight=\(s.inFlight) window=\(n(c.window)) phase=\(c.phase) rtt=\(f(Double(c.rtt ?? 0) / 1e6)) base=\(f(Double(c.baseDelay ?? 0) / 1e6))"
            + " kwin=\(n(Double(sample?.window ?? 0))) aim=\(n(Double(sample?.inFlightAim ?? 0))) retrans=\(sample?.retransmits ?? 0) waiting=\(s.waiting.count)"
            + " notsent=\(sample?.notSent ?? 0) peak=\(n(s.recentDelivered.max() ?? 0)) bottleneck=\(n(s.bottleneck ?? 0))"
            + " codec=\(n(s.codecRate ?? 0)) measured=\(s.measured) stream=\(stream.map { String(UInt(bitPattern: $0.hashValue) % 100_000) } ?? "-")\n"
        Self.writeTrace(line)
    }

    /// What the kernel's TCP would keep in flight on the lane's open sockets, together (`fair`
    /// mode's floor; `TCPSample.inFlightAim`).
    private static func observeKernelWindows(_ s: inout State) {
        s.controller.observe(kernelWindow: s.sockets.values.reduce(0) { $0 + $1.window })
    }

    /// A stream of the lane closed: its socket no longer counts.
    public func closed(_ stream: ObjectIdentifier) {
        state.withLockedValue { s in
            s.sockets.removeValue(forKey: stream)
            Self.observeKernelWindows(&s)
        }
    }

    /// Every half second, or sooner once `estimateAcks` chunks are in (at least a tenth of a second),
    /// counted from the lane's first ack:
    /// - a queue is building (a quarter of the target or more): the lane sends as fast as the
    ///   bottleneck drains, so what was delivered is the bottleneck's rate. It is averaged over
    ///   about `smoothing` (a half-second interval moves the estimate half way), so that a short
    ///   interval's noise, or a blip of queue such as a busy CPU delaying acks, moves it little;
    /// - no queue, and three sends in four went at once with half the window to spare (or the lane
    ///   is still in its first slow start): the network is not what holds the lane back
    ///   (compression is), so the estimate goes to four times what was delivered. Compressing for
    ///   a faster link costs less CPU, and if the link cannot take it, a queue shows within an
    ///   interval. In the first slow start the estimate also at least doubles each interval: a
    ///   lane that compresses for too slow a link delivers little, and four times little took
    ///   1.4 s to reach loopback's rate (the first job on loopback compressed for a second
    ///   what it should have sent raw). The first queue replaces such guesses outright;
    /// - no queue, but the window held the sends back (it is growing, or recovering from a
    ///   slowdown): the estimate grows by half per second;
    /// - no queue, and the estimate under half the most measured under a queue within the last
    ///   minute (`queuedPeak`): it goes back to that at once.
    private func estimateBottleneck(_ s: inout State, _ now: UInt64) {
        guard let since = s.since else {
            (s.acked, s.acks, s.sends, s.roomySends, s.sampled, s.backlogged, s.since) = (0, 0, 0, 0, 0, 0, now)
            return
        }
        let elapsed = Double(now - since) / 1e9
        guard elapsed >= 0.5 || (elapsed >= 0.1 && s.acks >= Self.estimateAcks) else { return }
        s.delivered = Double(s.acked) / elapsed
        s.recentDelivered.append(s.delivered)
        if s.recentDelivered.count > Self.peakIntervals { s.recentDelivered.removeFirst() }
        s.controller.observe(deliveryRate: s.delivered)
        let congested = s.controller.queueingDelay * 4 >= s.controller.parameters.target
        // In the first slow start the window is still doubling towards whatever the path takes, so
        // it is not what holds the lane back either.
        let firstSlowStart = s.controller.phase == .slowStart && s.controller.threshold == .infinity
        let appLimited = firstSlowStart || (s.sends > 0 && s.roomySends * 4 >= s.sends * 3)
        let previous = s.bottleneck ?? UnitFlow.assumedLinkRate
        if congested {
            let weight = elapsed / (elapsed + Self.smoothing)
            let estimate = s.measured ? previous + weight * (s.delivered - previous) : s.delivered
            s.bottleneck = estimate
            s.measured = true
            // A lower rate under a queue (the path shared now) leaves the peak to age.
            let kept = s.queuedPeak.flatMap { now - $0.at <= Self.peakLifetime ? $0.rate : nil }
            if kept.map({ estimate >= 0.8 * $0 }) ?? true { s.queuedPeak = (max(estimate, kept ?? 0), now) }
        } else if appLimited {
            s.bottleneck = max(firstSlowStart ? 2 * previous : previous, 4 * s.delivered)
        } else {
            s.bottleneck = max(s.delivered, previous * (1 + 0.5 * min(elapsed, 0.5)))
        }
        if !congested, let peak = s.queuedPeak, now - peak.at <= Self.peakLifetime, let b = s.bottleneck, b < peak.rate / 2 {
            // No queue, and far below what the path carried under a queue lately: the traffic the
            // lane gave way to has gone (a scavenger behind a TCP flow, whose queue made the
            // estimate what little it got). Back to that rate at once: the sockets' pacing cap
            // follows the estimate, and growing it by a quarter per interval from a few MB/s took
            // 2-6 s to take a 400 Mbit/s link back. If the path is slower now, the next queue
            // measures it.
            s.bottleneck = peak.rate
        }
        // The rate `auto` compresses for. With no queue seen, the estimate above is a guess that
        // errs high on purpose (the pacing cap must not hold the lane below the path). But when
        // the sockets held unsent bytes at three answers in four, TCP is what set the pace, and
        // what was delivered is what the path carries now: compressing for the higher guess
        // chose weaker codecs than the link needed (through the delay test bed at 400 Mbit/s, a
        // guess of 62-141 MB/s on a 50 MB/s link sent text with lz4, at 2.1 against zstd's 3.2).
        // Under a queue, or with the sockets backlogged, it is therefore what was delivered in
        // such intervals, averaged over `codecSmoothing`, never above the estimate. The guesses
        // of other intervals never enter that average (averaging from a guess of four times the
        // rate took seconds), nor reset it (a half second's burst of acks then counted whole).
        let socketBound = !congested && s.sampled > 0 && s.backlogged * 4 >= s.sampled * 3
        if congested || socketBound {
            let previous = s.codecAverage ?? s.delivered
            let average = previous + elapsed / (elapsed + Self.codecSmoothing) * (s.delivered - previous)
            s.codecAverage = average
            s.codecRate = min(s.bottleneck ?? .infinity, average)
        } else {
            s.codecRate = s.bottleneck
        }
        (s.acked, s.acks, s.sends, s.roomySends, s.sampled, s.backlogged, s.since) = (0, 0, 0, 0, 0, 0, now)
    }

    /// Unsent bytes in a socket at an answer that count it as backlogged (`codecRate`): half of
    /// `TCP_NOTSENT_LOWAT`, below which the socket takes the writer's next frame.
    static let backlogBytes = UInt32(DataPlaneClient.notSentLowat / 2)

    /// How long a rate measured under a queue counts as what the path carries (`queuedPeak`),
    /// unless measured again within four fifths of it.
    static let peakLifetime: UInt64 = 60_000_000_000

    /// Chunks acked after which the bottleneck estimate may be refreshed before the half second.
    static let estimateAcks = 16
    /// The time constant of the bottleneck estimate's average, seconds.
    static let smoothing = 0.5
    /// The time constant of `codecRate`'s average while the path sets the pace, seconds. Acks
    /// come in bursts (a receiver that waited for a core answers many chunks at once), so a
    /// half second's delivered rate read 78 MB/s on a 50 MB/s link; a codec is chosen for the
    /// rate of the next seconds, not of the last half.
    static let codecSmoothing = 2.0

    /// What this lane's path carries, once measured under a queue: the bottleneck rate and the
    /// base delay (for `PathMemory`).
    public var known: (rate: Double, baseDelay: UInt64)? {
        state.withLockedValue { s in
            guard s.measured, let rate = s.bottleneck, let base = s.controller.baseDelay, base > 0 else { return nil }
            return (rate, base)
        }
    }

    /// The most each of the lane's sockets should send per second (`SocketPacing`): its share,
    /// among the sockets that answered within the last `activeSpan`, of what the path carries.
    /// Once the lane has measured its bottleneck under a queue, that is the larger of the estimate
    /// and the most it delivered in an interval lately: the estimate follows the delivered rate,
    /// which the cap itself bounds, so on its own a dip (a socket in recovery) would lower the
    /// cap, and the cap the next interval's rate. Before that, the rate `PathMemory` remembered,
    /// or the lane's own estimate once that is higher; nil (no cap) without a memory, and in mode
    /// `off`.
    ///
    /// Why the estimate too: a cap at the remembered rate alone, below what the path now carries,
    /// kept the link from ever queueing, so the lane was never measured and the cap never lifted.
    /// On the mixed dataset (`cluster/bench-link.sh`, part `codecs`), a lane remembered at
    /// 100 Mbit/s then sent at 3-4 MB/s over 1 Gbit/s. Unmeasured, the estimate grows with what
    /// the lane delivers (at least 4 times it, while nothing queues).
    public var socketPacing: UInt64? {
        state.withLockedValue { s in
            guard mode != .off else { return nil }
            let now = clock()
            let active = s.sockets.values.count { now &- $0.answeredAt <= Self.activeSpan }
            let path = s.measured ? max(s.bottleneck ?? 0, s.recentDelivered.max() ?? 0) : remembered.map { max($0, s.bottleneck ?? 0) }
            return SocketPacing.cap(bottleneck: path, sockets: active)
        }
    }

    /// The intervals of `estimateBottleneck` over which `socketPacing` takes the most delivered.
    static let peakIntervals = 10

    /// A socket that answered within this long counts as one the lane's traffic is spread over.
    static let activeSpan: UInt64 = 1_000_000_000

    /// The bottleneck estimate (nil before the first).
    public var bottleneck: Double? { state.withLockedValue { $0.bottleneck } }

    /// The rate `auto` should compress for: while the path sets the pace (a queue, or the lane's
    /// sockets backlogged), what the lane delivers, averaged over 2 s; otherwise the bottleneck
    /// estimate (nil before the first).
    public var codecRate: Double? { state.withLockedValue { $0.codecRate ?? $0.bottleneck } }

    public var figures: LaneFigures {
        state.withLockedValue { s in
            LaneFigures(rttMicros: UInt32(clamping: (s.controller.rtt ?? 0) / 1000),
                        queueMicros: UInt32(clamping: s.controller.queueingDelay / 1000),
                        window: UInt64(s.controller.window), rate: UInt64(s.delivered))
        }
    }

    /// For tests.
    var controller: CongestionController { state.withLockedValue { $0.controller } }
    var tcpSamples: Int { state.withLockedValue { $0.tcpSamples } }
}

/// The lanes of a source agent, one per destination agent and mode, kept for the agent's life
/// (their base delays and windows carry over from unit to unit). A new lane to a destination that
/// `memory` knows starts from what that path carries.
public final class Lanes: Sendable {
    private struct Key: Hashable {
        let destination: String
        let mode: CongestionMode
    }
    private let lanes = NIOLockedValueBox<[Key: LaneFlow]>([:])
    private let started = NIOLockedValueBox<UInt64>(0)
    public let memory: PathMemory
    private let clock: @Sendable () -> UInt64

    public init(memory: PathMemory = PathMemory(file: nil), clock: @escaping @Sendable () -> UInt64 = RateLimiter.monotonicNow) {
        self.memory = memory
        self.clock = clock
    }

    /// The next unit's place in the queue for its lane's window: units started earlier go first.
    public func nextOrder() -> UInt64 {
        started.withLockedValue { n in
            n += 1
            return n
        }
    }

    public func lane(to destination: String, mode: CongestionMode) -> LaneFlow {
        let known = memory.known(destination)
        return lanes.withLockedValue { l in
            let key = Key(destination: destination, mode: mode)
            if let lane = l[key] { return lane }
            var parameters = CongestionController.Parameters()
            if let known, mode != .off {
                parameters.initialWindow = parameters.startingWindow(rate: known.rate, baseDelay: known.baseDelay, mode: mode)
            }
            let lane = LaneFlow(mode: mode, parameters: parameters, remembered: known?.rate, clock: clock)
            l[key] = lane
            return lane
        }
    }

    /// A connection closed: no lane counts its socket's window any more.
    public func forget(stream: ObjectIdentifier) {
        lanes.withLockedValue { Array($0.values) }.forEach { $0.closed(stream) }
    }

    /// Records what each lane has measured of its path, and saves it when due (a unit ended).
    public func remember(now: Double = Date().timeIntervalSince1970) {
        let measured = lanes.withLockedValue { l in l.compactMap { key, lane in lane.known.map { (key.destination, $0) } } }
        for (destination, k) in measured {
            memory.remember(destination, PathMemory.Known(rate: k.rate, baseDelay: k.baseDelay, measuredAt: now))
        }
        memory.save(now: now)
    }
}
