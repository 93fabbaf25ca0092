import BargeFlow
import BargeWire
import Logging
import NIOConcurrencyHelpers

/// What paces a unit's chunks: the agent's cap, its job's share of the job's cap (looked up per
/// chunk, so `barge set` applies at once), and its lane's congestion controller.
public struct UnitFlow: Sendable {
    public var agentLimit: RateLimiter?
    public var jobLimit: @Sendable () -> RateLimiter?
    public var lane: LaneFlow?
    /// The unit's place in its lane's queue (`Lanes.nextOrder`): older units get the window first.
    public var order: UInt64
    /// `--link-rate`: compress for this rate rather than for the lane's estimate.
    public var fixedLinkRate: Double?
    /// The agent's `--send-memory`, shared by all its units.
    public var budget: SendBudget?
    /// The unit's hold on the agent's `FreezeFence`: no request goes once the agent has been
    /// frozen since the unit began.
    public var fence: FreezeFence.Ticket?

    public init(agentLimit: RateLimiter? = nil, jobLimit: @escaping @Sendable () -> RateLimiter? = { nil }, lane: LaneFlow? = nil,
                order: UInt64 = 0, fixedLinkRate: Double? = nil, budget: SendBudget? = nil,
                fence: FreezeFence.Ticket? = nil) {
        self.fence = fence
        self.agentLimit = agentLimit
        self.jobLimit = jobLimit
        self.lane = lane
        self.order = order
        self.fixedLinkRate = fixedLinkRate
        self.budget = budget
    }

    /// Throws a retryable failure once the agent has been frozen since the unit began: called
    /// before each of the unit's requests, after every wait (a process stopped in one goes on
    /// from there).
    func check() throws(UnitFailure) { try fence?.check() }

    /// Before a chunk of `bytes` raw bytes is read and encoded: holds that much of the agent's
    /// budget, so that a worker reads a chunk only when the agent may hold it. (The caps and the
    /// lane's window are taken after the read, on the encoded frame: charged the raw length, a cap
    /// would pace compressible data below its rate.)
    func reserve(_ bytes: Int) async -> Int {
        await budget?.take(bytes)
        return bytes
    }

    /// A step that sends bytes, holding a write slot of a stream other jobs share: charges its
    /// job's cap `estimate` bytes (its bytes before encoding: a chunk, or a batch of small files)
    /// and returns how long to wait for them, which the step waits out without its slot; nil for
    /// a job without a cap. The step's sends use the charge up (`JobPrepaid`) and charge what
    /// they send beyond it without a wait, and what is left (encoded smaller, or sent by
    /// reference) is given back whole (`refundJob`). A chunk that waited for its job's tokens
    /// while holding the slot held every other job on that stream to its cap (an uncapped job
    /// beside one at 20 MB/s went at 21.5 MB/s, not 302). Waiting before the step only for the
    /// debt to clear let every worker go at once (a 20 MiB job capped at 2 MiB/s was done in
    /// 6 s); charging before the step, workers that found none had waited, and a job went at 38
    /// of its 50 MB/s.
    func prepayJob(_ estimate: Int) -> Duration? {
        guard let job = jobLimit() else { return nil }
        return .nanoseconds(Int64(min(job.chargeLater(estimate), UInt64(Int64.max))))
    }

    func refundJob(_ prepaid: Int) {
        if prepaid > 0 { jobLimit()?.refund(prepaid) }
    }

    /// The chunk is not sent after all (it could not be read, or it goes by reference).
    func cancel(_ reserved: Int) { budget?.give(reserved) }

    /// Sends a chunk's frame once the caps and the lane allow, and feeds the answer's round trip
    /// and the socket's `TCP_INFO` back to the lane. `reserved`: the budget held for it before it
    /// was read (resized to the frame); without it, the frame's bytes are taken now.
    /// `slot`: the stream's write slot the step holds, freed once the frame is written.
    func send(_ frame: Frame, reserved: Int? = nil, expecting place: ReplyKey? = nil, on stream: ChunkStream, slot: WriteSlot? = nil) async throws -> Message {
        let bytes = frame.payload.readableBytes
        if let reserved {
            budget?.resize(from: reserved, to: bytes)
        } else {
            await budget?.take(bytes)
        }
        defer { budget?.give(bytes) }
        await agentLimit?.charge(bytes)
        // With a write slot held, the job's cap was waited for before the slot was taken
        // (`prepayJob`), and its bytes are charged here without a wait: the streams to a
        // destination are shared by every job sending there, and a chunk that waited for its
        // job's tokens while holding a slot held the other jobs to its cap (an uncapped job beside
        // one at 20 MB/s went at 21.5 MB/s, not 302).
        if let job = jobLimit() {
            if let prepaid = JobPrepaid.current {
                let covered = min(prepaid.left, bytes)
                prepaid.left -= covered
                if bytes > covered { job.chargeLater(bytes - covered) }
            } else {
                await job.charge(bytes)
            }
        }
        guard let lane else {
            await stream.pace(nil)  // a connection a lane paced before, now sending for mode off
            try check()
            return try await stream.send(frame, expecting: place, slot: slot)
        }
        let sentAt = await lane.acquire(bytes, order: order)
        let reply: Message
        do {
            // A unit stopped while it waited for the window sends nothing more: its room would
            // go to a frame on a connection that may no longer answer.
            try Task.checkCancellation()
            try check()
            reply = try await stream.send(frame, expecting: place, slot: slot)
        } catch {
            lane.release(bytes, sentAt: sentAt, answered: false)
            throw error
        }
        lane.release(bytes, sentAt: sentAt, sample: await stream.probe?.sample(), stream: ObjectIdentifier(stream))
        await stream.pace(lane.socketPacing)
        return reply
    }

    /// Until a lane has measured its bottleneck, `auto` plans for 1 Gbit/s.
    public static let assumedLinkRate = 125e6

    /// The rate `auto` compresses for: `--link-rate` if given, else the tightest of the caps in
    /// force and the lane's bottleneck estimate (or `assumedLinkRate` before it has one).
    var compressionRate: Double? {
        if let fixedLinkRate { return fixedLinkRate }
        let measured = lane.map { $0.codecRate ?? Self.assumedLinkRate }
        return [agentLimit?.currentRate, jobLimit()?.currentRate, measured].compactMap { $0 }.min()
    }
}

/// The settings the coordinator sent for each job this agent sends units of (`job settings`):
/// the job's cap, as this agent's share, and its congestion mode.
public final class JobFlows: Sendable {
    private struct Entry {
        var settings: JobSettings
        var limiter: RateLimiter?
    }
    private let jobs = NIOLockedValueBox<[String: Entry]>([:])
    private let logger: Logger

    public init(logger: Logger = Logger(label: "barge.agent")) { self.logger = logger }

    public func apply(_ settings: JobSettings) {
        let limiter: RateLimiter?
        if settings.bwlimit.isEmpty {
            limiter = nil
        } else {
            do {
                limiter = try RateLimiter(settings.bwlimit, share: Double(settings.share) / 1e6)
            } catch {
                logger.warning("job \(settings.job): cannot use its bwlimit '\(settings.bwlimit)': \(error)")
                limiter = nil
            }
        }
        jobs.withLockedValue { j in
            if let old = j[settings.job], old.settings.bwlimit == settings.bwlimit, old.settings.share == settings.share {
                j[settings.job]!.settings = settings  // the same cap: keep its bucket
            } else {
                j[settings.job] = Entry(settings: settings, limiter: limiter)
            }
        }
        if !settings.bwlimit.isEmpty {
            logger.info("job \(settings.job): bwlimit \(settings.bwlimit), this agent's share \(Double(settings.share) / 1e4)%")
        }
    }

    public func limiter(_ job: String) -> RateLimiter? { jobs.withLockedValue { $0[job]?.limiter } }

    /// The job's congestion mode; `fallback` when the coordinator sent none (an older version).
    public func mode(_ job: String, fallback: CongestionMode) -> CongestionMode {
        jobs.withLockedValue { $0[job] }.map { CongestionMode(code: $0.settings.congestion) ?? fallback } ?? fallback
    }

    public func forget(_ job: String) { jobs.withLockedValue { _ = $0.removeValue(forKey: job) } }
}

/// What a worker's step may still send of the job cap it was charged before it took its write
/// slot (`UnitFlow.prepayJob`). Used by the one task taking the step.
final class JobPrepaid: @unchecked Sendable {
    @TaskLocal static var current: JobPrepaid?
    var left: Int
    init(_ left: Int) { self.left = left }
}
