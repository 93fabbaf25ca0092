import BargeFlow
import BargeWire
import Logging
import NIOConcurrencyHelpers

/// Everything an agent does for the coordinator: scans, units and verifications, each in its
/// own task off the event loop, with their reports going out through the `Outbox`. It outlives
/// any one coordinator connection, so units keep running while the coordinator is away.
public final class AgentWork: Sendable {
    public struct Settings: Sendable {
        public var root: String
        public var name: String
        public var token: ClusterToken
        public var sender: UnitSender.Settings
        public var progressInterval: Duration
        /// A data-plane stream that answers nothing for this long is dropped and its unit retried.
        public var stallTimeout: Duration = .seconds(60)
        /// The congestion mode of jobs whose coordinator sent none (it speaks an older version).
        public var congestion: CongestionMode = .fair
        /// `--link-rate`: `auto` compresses for this rate instead of the lane's measured bottleneck.
        public var linkRate: Double?

        public init(root: String, name: String, token: ClusterToken, sender: UnitSender.Settings = .init(),
                    progressInterval: Duration = .milliseconds(500)) {
            self.root = root
            self.name = name
            self.token = token
            self.sender = sender
            self.progressInterval = progressInterval
        }
    }

    private struct Running {
        let task: Task<Void, Never>
        let progress: UnitProgress
        let lane: LaneFlow
        /// The coordinator's latest assignment of this unit: what the report answers.
        var assignment: UInt32
    }

    public let settings: Settings
    public let outbox = Outbox()
    public let sources: SourcePool
    /// The files this agent's data-plane listener is receiving, closed when their job is cancelled.
    public let receiving: DestinationFiles?
    /// Congestion state per destination agent and mode, and each job's cap and mode.
    public let lanes = Lanes()
    public let jobs: JobFlows
    private let logger: Logger
    private let running = NIOLockedValueBox<[String: Running]>([:])
    private let draining = NIOLockedValueBox(false)

    /// `sources` makes each worker's chunk source (with the fault injection, if any).
    public init(settings: Settings, sources: SourcePool, receiving: DestinationFiles? = nil, logger: Logger = Logger(label: "barge.agent")) {
        self.settings = settings
        self.sources = sources
        self.receiving = receiving
        self.logger = logger
        jobs = JobFlows(logger: logger)
    }

    /// Units in progress.
    public var inFlight: Int { running.withLockedValue { $0.count } }

    private static func key(_ job: String, _ unit: UInt64) -> String { "\(job)/\(unit)" }

    /// Handles one message from the coordinator; false if it is not one an agent takes.
    public func handle(_ message: Message) -> Bool {
        let outbox = outbox, root = settings.root
        switch message {
        case .scanRequest(let request):
            Task.detached { await TreeListing.send(request, root: root, outbox: outbox) }
        case .verifyRequest(let request):
            Task.detached { outbox.send(.verifyReply(Verifier.reply(to: request, root: root))) }
        case .jobSettings(let job):
            jobs.apply(job)
        case .taskAssign(let task):
            start(task)
        case .cancelJob(let cancel):
            let prefix = cancel.job + "/"
            let cancelled = running.withLockedValue { r in r.filter { $0.key.hasPrefix(prefix) }.map(\.value.task) }
            cancelled.forEach { $0.cancel() }
            // Partial files stay on disk; only their descriptors are closed.
            receiving?.close(job: cancel.job)
            sources.sent.forget(job: cancel.job)
            jobs.forget(cancel.job)
            if !cancelled.isEmpty { logger.notice("job \(cancel.job) cancelled: stopping \(cancelled.count) units") }
        default:
            return false
        }
        return true
    }

    /// The coordinator gives this agent no new units; it says when the last one it holds ends.
    public func drain(_ drain: Drain) {
        let held = inFlight
        logger.notice("draining (\(drain.reason)): finishing \(held) units, taking no new ones")
        draining.withLockedValue { $0 = true }
        if held == 0 { logger.notice("drained: no units left; this agent can be stopped") }
    }

    private func start(_ task: TaskAssign) {
        let key = Self.key(task.job, task.unit)
        let progress = UnitProgress()
        let client = DataPlaneClient(host: task.destination.host, port: Int(task.destination.port), token: settings.token, name: settings.name,
                                     stallTimeout: settings.stallTimeout)
        let jobs = jobs, job = task.job
        let lane = lanes.lane(to: task.destination.name, mode: jobs.mode(job, fallback: settings.congestion))
        let flow = UnitFlow(agentLimit: settings.sender.limiter, jobLimit: { jobs.limiter(job) }, lane: lane, order: lanes.nextOrder(),
                            fixedLinkRate: settings.linkRate)
        let sender = UnitSender(task: task, client: client, sources: sources, settings: settings.sender, progress: progress, flow: flow)
        let outbox = outbox, logger = logger, running = running, draining = draining
        running.withLockedValue { r in
            // The same unit assigned again while it runs (a report crossed a reconnect, or a
            // retry): the running one answers the newest assignment.
            if r[key] != nil {
                r[key]!.assignment = max(r[key]!.assignment, task.assignment)
                return
            }
            let work = Task.detached {
                var report: Message
                do throws(UnitFailure) {
                    report = .taskDone(try await sender.run())
                } catch {
                    if Task.isCancelled {
                        logger.notice("unit \(task.unit) of job \(task.job) stopped")
                    } else {
                        logger.warning("unit \(task.unit) of job \(task.job) failed: \(error.description)")
                    }
                    report = .taskFailed(TaskFailed(job: task.job, unit: task.unit, retryable: error.retryable, reason: error.description))
                }
                let (left, assignment) = running.withLockedValue { r in
                    let assignment = r.removeValue(forKey: key)?.assignment ?? task.assignment
                    return (r.count, assignment)
                }
                switch report {
                case .taskDone(var done):
                    done.assignment = assignment
                    report = .taskDone(done)
                case .taskFailed(var failed):
                    failed.assignment = assignment
                    report = .taskFailed(failed)
                default: break
                }
                outbox.send(report)
                if left == 0 && draining.withLockedValue({ $0 }) { logger.notice("drained: no units left; this agent can be stopped") }
            }
            r[key] = Running(task: work, progress: progress, lane: lane, assignment: task.assignment)
        }
    }

    /// Sends each running unit's progress, every `progressInterval`, until cancelled.
    func reportProgress() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: settings.progressInterval)
            let snapshot = running.withLockedValue { r in r.map { ($0.key, $0.value.progress.snapshot, $0.value.lane) } }
            for (key, p, lane) in snapshot {
                guard let slash = key.lastIndex(of: "/"), let unit = UInt64(key[key.index(after: slash)...]) else { continue }
                outbox.send(.taskProgress(TaskProgress(job: String(key[..<slash]), unit: unit, bytesDone: p.bytesDone, wireBytes: p.wireBytes,
                                                       lane: lane.figures)))
            }
        }
    }
}
