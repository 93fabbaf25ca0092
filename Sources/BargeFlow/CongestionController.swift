/// How a lane shares the network: `fair` competes like TCP but keeps the queue it builds near the
/// target; `scavenger` gives way to other traffic (LEDBAT++); `off` sends as fast as TCP lets it.
public enum CongestionMode: String, Sendable, CaseIterable, Codable {
    case fair, scavenger, off

    /// The wire code (`job settings`).
    public var code: UInt8 {
        switch self {
        case .off: 0
        case .fair: 1
        case .scavenger: 2
        }
    }

    public init?(code: UInt8) {
        guard let mode = Self.allCases.first(where: { $0.code == code }) else { return nil }
        self = mode
    }

    /// A mode as the CLI and the API take it (`--cc`), with the error they show.
    public init(named name: String) throws(UnknownCongestionMode) {
        guard let mode = Self(rawValue: name) else { throw UnknownCongestionMode(name: name) }
        self = mode
    }
}

public struct UnknownCongestionMode: Error, CustomStringConvertible {
    public let name: String
    public var description: String { "cc must be fair, scavenger or off, not '\(name)'" }
}

/// A delay-based congestion controller in the style of LEDBAT++ (draft-irtf-iccrg-ledbat-plus-plus)
/// for one lane: the bytes a source agent may have in flight to one destination, across the
/// lane's streams. Pure, over injected monotonic nanoseconds.
///
/// - Queueing delay is the lane's RTT now less its base delay, the least RTT seen over the last
///   ten one-minute buckets.
/// - Below the target the window grows, by `gain` segments per RTT (slow start: by `gain` times
///   the bytes acked, until the delay reaches ¾ of the target). Below a quarter of the target the
///   queue is empty, and it grows as in slow start: a lane's acks are per chunk, not per packet,
///   so per-RTT growth alone would take many seconds to fill a link that other traffic has left.
///   Above it, the window shrinks once per RTT, at most by half: in proportion to the excess
///   (LEDBAT++), or in `fair` mode, once it knows its delivery rate, by the bytes queued beyond
///   the target (`excess`). A loss halves a `scavenger` lane's window; a `fair` lane leaves
///   losses to its sockets' TCP (`lost`).
/// - `gain` is 1 in `fair` mode; in `scavenger` mode it is 1 / min(16, ⌈2 × target / base⌉),
///   so a lane on a short path grows slowly while a queue shows. With no queue (under a quarter
///   of the target) every lane grows at gain 1: there is nothing to give way to.
/// - Periodic slowdowns (not for a `fair` lane whose sockets give their least RTT, `tcpi_min_rtt`:
///   the kernel measures the base delay for it, and each slowdown left a long path nearly idle
///   for a second): two RTTs after slow start ends (`fair`: `minimumSlowdownGap` after it),
///   and then nine times the length of the last slowdown after it (at least `minimumSlowdownGap`),
///   the window drops to its minimum for two RTTs (at least `slowdownHold`) so that the queue
///   drains and the base delay is measured again; it then slow-starts back (LEDBAT++), or in
///   `fair` mode returns at once to the window it held, so the link idles for two RTTs at most.
/// - In `fair` mode the window never drops below what the kernel's own TCP would have in flight
///   in its place (`observe(kernelWindow:)`: a loss-based socket's congestion window, so that
///   against other TCP flows it competes like TCP; a BBR socket's model of the path, which
///   follows what the lane lets it deliver); alone it keeps the queue near the target.
public struct CongestionController: Sendable {
    public struct Parameters: Sendable {
        /// The queueing delay aimed at. A lane's sends are whole chunks, which reach the bottleneck
        /// as bursts of half a megabyte or more (10 ms at 400 Mbit/s); the queue must hold more
        /// than a burst, or it empties between them. At 15 ms the tbf queue of the test bed was
        /// empty in a tenth of its samples; 20 ms moved the slow-link figure from 89.9% to 91.9%
        /// (mean of six runs each) and the added RTT from 11.5 to 15 ms. At 20 ms the queue still
        /// emptied now and then (the lane's queueing delay swung between 4 and 40 ms), and more
        /// often while the cores were busy compressing; 25 ms moved the slow-link figure from 90.2%
        /// (twelve runs, 88.2–92.9) to 91.9% (six runs, 91.3–92.6), for an added RTT of 15.5–18.4 ms
        /// against LEDBAT++'s 60 ms target.
        public var target: UInt64 = 25_000_000
        /// The window's unit of growth.
        public var segment: Double = 1_048_576
        public var minimumWindow: Double = 128 * 1024
        public var initialWindow: Double = 1_048_576
        /// A `fair` lane's first window. Each of its sockets slow-starts on its own, so TCP already
        /// limits what goes on the wire; a first window of one chunk only kept the lane's other
        /// streams idle while one socket ramped up (the first ack came 1.1 s after the start at
        /// 100 ms RTT). It must also cover the frames the streams hold ready beyond what their
        /// sockets have taken (`ChunkStream.writeSlots`, three of about 1 MiB each): those count
        /// in the window but are not on the wire. At eight chunks, twelve queued frames left the
        /// window, not TCP, setting the pace of a cold start (5–12 sends waiting for it while the
        /// sockets had nothing unsent). 32 chunks: through the delay test bed at 1 Gbit/s, the
        /// link carried 94–95 MB/s 1.3–1.6 s after submit at 100 ms RTT (30–38 with eight) and
        /// 99–116 MB/s 0.6–1.0 s after it at 50 ms (52–89); the flow-control figures held.
        public var initialFairWindow: Double = 32 * 1_048_576
        public var maximumWindow: Double = Double(1 << 30)
        public var bucketLength: UInt64 = 60_000_000_000
        public var buckets = 10
        /// The least time a slowdown holds the window at its minimum.
        public var slowdownHold: UInt64 = 20_000_000
        /// The next slowdown comes this many times the last one's length after it ends…
        public var slowdownSpacing: UInt64 = 9
        /// …and no sooner than this. A lane's sends are whole chunks, so a slowdown and the ramp
        /// after it last about 100 ms rather than a few RTTs; nine of those apart, slowdowns cost 10%
        /// of the link (measured: 87% utilization against 94% without), and 4 s apart still 3–4%.
        /// The base delay is kept per minute, so one measurement every 8 s is plenty.
        public var minimumSlowdownGap: UInt64 = 8_000_000_000

        public init() {}

        /// The window a new lane starts at on a path known to carry `rate` bytes per second over a
        /// base delay of `baseDelay` ns: their product, no less than `initialWindow` and no more
        /// than 64 MiB (a 100 ms path at 5 Gbit/s; the window grows from there as usual). Slow
        /// start still follows, in case the path is faster now; if it is slower, the first queue
        /// or loss cuts the window within a round trip.
        public func startingWindow(rate: Double, baseDelay: UInt64, mode: CongestionMode = .scavenger) -> Double {
            let product = rate * Double(baseDelay) / 1e9
            guard product.isFinite, product > 0 else { return initialWindow(mode) }
            return min(max(product, initialWindow(mode)), min(maximumWindow, Double(64 << 20)))
        }

        /// The first window of a lane in `mode` on a path it knows nothing of.
        public func initialWindow(_ mode: CongestionMode) -> Double {
            mode == .fair ? max(initialWindow, initialFairWindow) : initialWindow
        }
    }

    public enum Phase: Equatable, Sendable {
        case slowStart
        case avoidance
        /// Holding the minimum window until `until`, then slow start back to `resume`.
        case slowdown(until: UInt64)
    }

    public let mode: CongestionMode
    public let parameters: Parameters
    public private(set) var phase: Phase = .slowStart
    public private(set) var window: Double
    /// The window slow start stops at (after a slowdown: the window before it).
    public private(set) var threshold: Double = .infinity
    /// The lane's latest RTT, nanoseconds.
    public private(set) var rtt: UInt64?
    /// In `fair` mode, what the kernel's TCP would have in flight in the lane's place.
    public private(set) var kernelWindow: Double = 0
    /// The rate the lane's acks came in at lately, bytes per second (`fair` mode's cuts).
    public private(set) var deliveryRate: Double?
    private var history: [(start: UInt64, least: UInt64)] = []
    private var lastCut: UInt64?
    private var nextSlowdown: UInt64?
    private var slowdownBegan: UInt64?
    /// The base delay comes from the kernel's least RTT of the lane's sockets (`tcpi_min_rtt`,
    /// from the handshake on, before any queue): a `fair` lane then needs no slowdowns.
    private var kernelBase = false

    public init(mode: CongestionMode, parameters: Parameters = Parameters()) {
        self.mode = mode
        self.parameters = parameters
        window = parameters.initialWindow(mode)
    }

    /// The least RTT over the kept buckets.
    public var baseDelay: UInt64? { history.map(\.least).min() }

    /// The RTT above the base delay, nanoseconds.
    public var queueingDelay: UInt64 {
        guard let rtt, let base = baseDelay else { return 0 }
        return rtt > base ? rtt - base : 0
    }

    /// Bytes per second the window allows at the current RTT (nil: not known yet, or mode off).
    public var rate: Double? {
        guard mode != .off, let rtt else { return nil }
        return window / (Double(max(rtt, 100_000)) / 1e9)
    }

    /// Growth per RTT, in segments.
    public var gain: Double {
        guard mode == .scavenger, let base = baseDelay, base > 0 else { return 1 }
        let ratio = (2 * Double(parameters.target) / Double(base)).rounded(.up)
        return 1 / min(16, max(1, ratio))
    }

    private var floor: Double {
        mode == .fair ? max(parameters.minimumWindow, kernelWindow) : parameters.minimumWindow
    }

    /// An RTT sample: an acked chunk's round trip, or a socket's smoothed RTT (`tcpi_rtt`) with
    /// its least RTT (`tcpi_min_rtt`), which feeds the base delay too.
    public mutating func observe(rtt sample: UInt64, least: UInt64? = nil, now: UInt64) {
        rtt = sample
        if least != nil { kernelBase = true }
        let low = min(sample, least ?? sample)
        if let last = history.last, now < last.start + parameters.bucketLength {
            history[history.count - 1].least = min(last.least, low)
        } else {
            history.append((now, low))
            if history.count > parameters.buckets { history.removeFirst(history.count - parameters.buckets) }
        }
    }

    /// What the kernel's TCP would keep in flight on the lane's sockets, in bytes (`fair` mode's
    /// floor; `TCPSample.inFlightAim`).
    public mutating func observe(kernelWindow bytes: Double) {
        kernelWindow = bytes
        clamp()
    }

    /// The rate acks came in at over the last fraction of a second.
    public mutating func observe(deliveryRate bytesPerSecond: Double) {
        deliveryRate = bytesPerSecond > 0 ? bytesPerSecond : nil
    }

    /// How much a cut takes off the window when the queueing delay is `delay` (above the target).
    /// LEDBAT++ takes the fraction the delay is above the target. A lane's window also holds what
    /// the destination is still verifying and writing, so in `fair` mode, which knows its
    /// delivery rate, the cut is the bytes queued beyond the target: the fraction would take off
    /// a whole chunk's worth more than the queue held, and leave the link idle until it grows back.
    private func excess(_ delay: Double) -> Double {
        let target = Double(parameters.target)
        if mode == .fair, let rate = deliveryRate { return (delay - target) / 1e9 * rate }
        return window * (delay / target - 1)
    }

    /// `bytes` were acked. `limited`: sends waited on the window or its pacing since the last ack
    /// (a lane with less to send than its window does not grow it).
    public mutating func acked(_ bytes: Int, limited: Bool, now: UInt64) {
        guard mode != .off else { return }
        let delay = Double(queueingDelay), target = Double(parameters.target)
        switch phase {
        case .slowdown(let until):
            guard now >= until else { return }
            if mode == .fair {
                // The queue has drained and the base delay is measured: back to the window held
                // before, at once (paced over the RTT). Slow-starting back from the minimum took
                // about seven RTTs at 1 Gbit/s and 100 ms, with the link nearly idle.
                window = threshold
                endRecovery(now)
                clamp()
                return
            }
            phase = .slowStart  // back up to the window before the slowdown
        case .slowStart where delay > 0.75 * target:
            exitSlowStart(now)
        default:
            break
        }
        if delay > target {
            guard lastCut.map({ now >= $0 + roundTrip }) ?? true else { return }
            lastCut = now
            window -= min(excess(delay), window / 2)
        } else if limited {
            // No queue (under a quarter of the target): nothing to give way to, so growth is at
            // gain 1 in every mode, as a fair lane's slow start. A scavenger's smaller gain holds
            // only while a queue shows. At 1/16, a scavenger that had shrunk to its minimum behind
            // a TCP flow sent one chunk at a time (its window under one chunk) and grew by a
            // sixteenth of a chunk per chunk acked: linearly, about 2 MB/s of window at
            // 400 Mbit/s. With its bottleneck estimate's slow return (`LaneFlow`), that kept it
            // from taking the link back for 2-6 s after the flow ended in some runs of
            // `cluster/bench-link.sh` (part `scavenger`). Either fix alone was not enough.
            let growth = delay < target / 4 ? 1 : gain
            switch phase {
            case .slowStart:
                window += growth * Double(bytes)
                if window >= threshold {
                    window = threshold
                    endRecovery(now)
                }
            case .avoidance where delay < target / 4:
                // The queue is empty (traffic given way to has ended): grow as slow start does.
                window += growth * Double(bytes)
            case .avoidance:
                window += gain * parameters.segment * Double(bytes) / window * (1 - delay / target)
            case .slowdown:
                break
            }
        }
        clamp()
        if phase == .avoidance, let next = nextSlowdown, now >= next { beginSlowdown(now) }
    }

    /// A loss (the lane's sockets retransmitted): a `scavenger` lane's window halves, once per
    /// RTT, as LEDBAT++'s does. A `fair` lane's does not: the socket that lost already cut its
    /// own congestion window, and the lane's window, held at least at the sockets' windows, also
    /// holds what waits at either end (frames queued for the sockets, chunks the destination is
    /// still verifying and writing). So a halving first took those away and left the link idle
    /// until the window grew back. Through the delay test bed at 1 Gbit/s and 20 ms, with BBR
    /// sockets, a 1 GiB job took 9.36–9.76 s without the halving against 9.88–10.27 s with it
    /// (four rounds each), as fast as mode `off`; the flow-control figures of
    /// `cluster/bench-link.sh` (utilization, added RTT, the cubic flow's share, take-back) held.
    public mutating func lost(now: UInt64) {
        guard mode == .scavenger, lastCut.map({ now >= $0 + roundTrip }) ?? true else { return }
        lastCut = now
        window /= 2
        if phase == .slowStart { exitSlowStart(now) }
        clamp()
    }

    private var roundTrip: UInt64 { max(rtt ?? 0, 1_000_000) }

    private mutating func exitSlowStart(_ now: UInt64) {
        threshold = .infinity
        phase = .avoidance
        if nextSlowdown == nil, !(mode == .fair && kernelBase) { nextSlowdown = now + firstSlowdownDelay }
    }

    /// How long after the first slow start the first slowdown comes. LEDBAT++ slows down two RTTs
    /// after it, in case the base delay measured at the start included another flow's queue: a
    /// scavenger would otherwise build its queue on top of theirs. A `fair` lane competes like
    /// TCP anyway, and its first RTTs (with the sockets' `tcpi_min_rtt`, taken at the handshake)
    /// came before it had built any queue; its first slowdown waits for the minimum gap, which
    /// saves a job of a few seconds the slowdown's ~100 ms of idle link (2% of an 8 s job).
    private var firstSlowdownDelay: UInt64 {
        mode == .fair ? max(2 * roundTrip, parameters.minimumSlowdownGap) : 2 * roundTrip
    }

    private mutating func beginSlowdown(_ now: UInt64) {
        threshold = window
        slowdownBegan = now
        window = parameters.minimumWindow
        phase = .slowdown(until: now + max(2 * roundTrip, parameters.slowdownHold))
        nextSlowdown = nil
    }

    /// Slow start reached the window held before the slowdown: the next one is nine slowdowns away.
    private mutating func endRecovery(_ now: UInt64) {
        threshold = .infinity
        phase = .avoidance
        if let began = slowdownBegan {
            nextSlowdown = now + max(parameters.slowdownSpacing * (now - began), parameters.minimumSlowdownGap)
            slowdownBegan = nil
        }
    }

    private mutating func clamp() {
        if case .slowdown = phase { return }
        window = min(parameters.maximumWindow, max(floor, window))
    }
}
