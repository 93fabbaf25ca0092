import BargeFlow
import BargeTier
import BargeWire
import BargeStore
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
        /// Where what each path is known to carry is kept across restarts (`PathMemory`); nil:
        /// in memory only.
        public var pathMemoryFile: String?
        /// `--tcp-congestion`: the TCP congestion control of the connections it sends on; nil:
        /// the host's default.
        public var tcpCongestion: TCPCongestionControl?
        /// The TCP congestion control of the connections a `scavenger` job sends on, when it is
        /// not `tcpCongestion` (`TCPCongestionControl.forScavenger`): a loss-based one, because under BBR a
        /// scavenger lane does not give way on a long path.
        public var scavengerTCP: TCPCongestionControl?
        /// `--send-memory`: the most chunk data the agent holds read and not yet answered.
        public var sendMemory: Int = SendBudget.defaultLimit
        /// `BARGE_FAULT_SCAN_PAGE_DELAY` (tests only): a pause after each scan page but the last,
        /// so that a test can stop an agent in the middle of its scan however fast the machine.
        public var scanPageDelay: Duration?
        /// Tests only: awaited by a run between its report and its leaving the running units, so
        /// that a test can assign the unit again inside that window.
        public var afterReport: (@Sendable () async -> Void)?

        public init(root: String, name: String, token: ClusterToken, sender: UnitSender.Settings = .init(),
                    progressInterval: Duration = .milliseconds(500)) {
            self.root = root
            self.name = name
            self.token = token
            self.sender = sender
            self.progressInterval = progressInterval
        }
    }

    /// A unit this agent runs.
    private struct UnitRef: Hashable {
        let job: String
        let unit: UInt64
    }

    private struct Running {
        /// Tells this run from a later one of the same unit.
        let run: UInt64
        let task: Task<Void, Never>
        let progress: UnitProgress
        let lane: LaneFlow
        /// The coordinator's latest assignment of this unit: what the report answers.
        var assignment: UInt32
        /// The destination agent this run sends to, and where.
        let peer: DataPeer
        var destination: String { peer.name }
    }

    /// A dropped unit's connections to its destination are closed if their requests have waited
    /// this long with no reply (`StreamPool.closeUnanswered`): half the coordinator's agent
    /// timeout (the coordinator took the destination for down after hearing nothing from it for
    /// that long), at least a second; 5 s before a coordinator named it.
    var droppedQuiet: Duration { max(.seconds(1), fence.freezeLimit.map { $0 / 2 } ?? .seconds(5)) }

    public let settings: Settings
    public let outbox = Outbox()
    /// The agent's own freezes, beaten by the coordinator connection (`CoordinatorClient`).
    public let fence = FreezeFence()
    public let sources: SourcePool
    /// The files this agent's data-plane listener is receiving, closed when their job is cancelled.
    public let receiving: DestinationFiles?
    /// Congestion state per destination agent and mode, and each job's cap and mode.
    public let lanes: Lanes
    /// Data-plane connections reused across units and jobs.
    public let pool: StreamPool
    public let jobs: JobFlows
    /// What the units it sends hold in memory, all together (`--send-memory`).
    public let budget: SendBudget
    /// Tier requests (`--cold`, `--tier-policy`); nil answers each with why not.
    public let tiers: TierWork?
    private let logger: Logger
    private let running = NIOLockedValueBox<(units: [UnitRef: Running], runs: UInt64)>(([:], 0))
    private let draining = NIOLockedValueBox(false)
    /// The coordinator says when this draining agent is drained (`drain`).
    private let drainedByCoordinator = NIOLockedValueBox(false)
    /// The protocol version of the coordinator connection (`connected`).
    private let coordinatorVersion = NIOLockedValueBox<UInt8>(0)

    /// The coordinator connection registered at protocol `version`.
    public func connected(version: UInt8) { coordinatorVersion.withLockedValue { $0 = version } }

    /// `sources` makes each worker's chunk source (with the fault injection, if any).
    public init(settings: Settings, sources: SourcePool, receiving: DestinationFiles? = nil, tiers: TierWork? = nil,
                logger: Logger = Logger(label: "barge.agent")) {
        self.settings = settings
        self.tiers = tiers
        self.sources = sources
        self.receiving = receiving
        self.logger = logger
        jobs = JobFlows(logger: logger)
        budget = SendBudget(limit: settings.sendMemory)
        let lanes = Lanes(memory: PathMemory(file: settings.pathMemoryFile))
        self.lanes = lanes
        pool = StreamPool(perDestination: settings.sender.streams, longPath: settings.sender.longPathStreams, closed: { lanes.forget(stream: $0) })
    }

    /// Units in progress.
    public var inFlight: Int { running.withLockedValue { $0.units.count } }

    /// Whether this agent registers again draining: told to drain on an earlier connection, it
    /// stays so (`WireVersion.drainKept`; a coordinator that restarted had forgotten it). A
    /// coordinator before 21 cannot be told, and the agent stops draining, saying so.
    func drainingAgain(coordinatorVersion: UInt8) -> Bool {
        guard draining.withLockedValue({ $0 }) else { return false }
        if coordinatorVersion >= WireVersion.drainKept { return true }
        draining.withLockedValue { $0 = false }
        logger.warning("this agent was told to drain, but the coordinator (protocol \(coordinatorVersion)) cannot be told so as it registers again, and takes it for up: it takes new units again; run 'barge drain' for it again")
        return false
    }

    /// The units running and the assignments they answer: the `holding` message.
    public var holding: Holding {
        Holding(units: running.withLockedValue { r in
            r.units.map { AssignmentKey(job: $0.key.job, unit: $0.key.unit, assignment: $0.value.assignment) }
        }.sorted { ($0.job, $0.unit) < ($1.job, $1.unit) })
    }

    /// Handles one message from the coordinator; false if it is not one an agent takes.
    public func handle(_ message: Message) -> Bool {
        let outbox = outbox, root = settings.root
        switch message {
        case .scanRequest(let request):
            let pause = settings.scanPageDelay, connection = outbox.connection
            Task.detached { await TreeListing.send(request, root: root, outbox: outbox, on: connection, pageDelay: pause) }
        case .verifyRequest(var request):
            let cold = tiers?.store
            // A coordinator before protocol 20 does not say whether a verification repairs: its
            // requests are taken as repairing, as every one was before (its `verify --repair`
            // could not otherwise fix a damaged cold chunk).
            if coordinatorVersion.withLockedValue({ $0 }) < WireVersion.verifyRepair { request.repair = true }
            let request = request
            Task.detached {
                // Reads and hashes whole files: on a blocking thread, not the cooperative pool.
                if let reply = try? await BlockingWork.run({ Verifier.reply(to: request, root: root, cold: cold?.store) }) { outbox.send(.verifyReply(reply)) }
            }
        case .tierRequest(let request):
            let tiers = tiers, name = settings.name
            Task.detached {
                // Packs, hashing and fsyncs: on a blocking thread, not the cooperative pool.
                let reply = (try? await BlockingWork.run { tiers?.reply(to: request) })
                    ?? TierReply(request: request.request, error: "agent \(name) has no tiers set up")
                outbox.send(.tierReply(reply))
            }
        case .compareRequest(let request):
            let cold = tiers?.intake?.store.catalog
            Task.detached {
                // Thousands of lstat calls: on a blocking thread, not the cooperative pool.
                if let reply = try? await BlockingWork.run({ QuickCheck.reply(to: request, root: root, cold: cold) }) { outbox.send(.compareReply(reply)) }
            }
        case .jobSettings(let job):
            jobs.apply(job)
        case .taskAssign(let task):
            start(task)
        case .warmLanes(let warm):
            // A job is starting: its first unit finds its connections open, or opening.
            guard !draining.withLockedValue({ $0 }) else { break }
            for peer in warm.destinations { pool.warm(client(to: peer)) }
        case .reportAck(let key):
            outbox.acknowledge(key)
        case .taskDrop(let key):
            // No longer this agent's (the coordinator gave it to another lane while this one was
            // away): it stops and reports nothing.
            let dropped = running.withLockedValue { r -> Running? in
                let ref = UnitRef(job: key.job, unit: key.unit)
                guard let run = r.units[ref], run.assignment == key.assignment else { return nil }
                r.units.removeValue(forKey: ref)
                return run
            }
            if let dropped {
                dropped.task.cancel()
                // Usually its destination went down (stopped, hung, cut off): the requests the
                // run left on those connections would wait for the stall timeout, holding the
                // send budget that every other unit of this agent needs.
                let quiet = droppedQuiet
                let closed = pool.closeUnanswered(to: dropped.peer.host, port: Int(dropped.peer.port), quiet: quiet)
                logger.notice("\(key) is no longer this agent's: stopped\(closed > 0 ? "; closed \(closed) connections to \(dropped.destination) that had not answered for \(quiet)" : "")")
            }
        case .cancelJob(let cancel):
            // Its units stop and report nothing: the job has ended.
            let cancelled = running.withLockedValue { r in
                let stopping = r.units.filter { $0.key.job == cancel.job }
                for ref in stopping.keys { r.units.removeValue(forKey: ref) }
                return Array(stopping.values)
            }
            cancelled.forEach { $0.task.cancel() }
            // Their requests to a destination that has stopped answering would hold the send
            // budget until the stall timeout, as a dropped unit's would.
            let quiet = droppedQuiet
            for peer in Set(cancelled.map(\.peer)) { pool.closeUnanswered(to: peer.host, port: Int(peer.port), quiet: quiet) }
            // Partial files stay on disk; only their descriptors are closed, here, so that no
            // file of the job is finished after this (a test saw one renamed into place after the
            // cancel when the whole close ran later). The chunk index's flush (SQLite, and perhaps
            // a cold pack's seal) goes to a blocking thread: this reader takes no other message
            // from the coordinator meanwhile.
            if let receiving {
                receiving.forget(job: cancel.job)
                Task.detached { _ = try? await BlockingWork.run { receiving.flush() } }
            }
            sources.sent.forget(job: cancel.job)
            jobs.forget(cancel.job)
            MemoryTrim.soon()
            if !cancelled.isEmpty { logger.notice("job \(cancel.job) cancelled: stopping \(cancelled.count) units") }
        default:
            return false
        }
        return true
    }

    /// The coordinator gives this agent no new units; it says when the last one it holds ends.
    /// A coordinator of protocol 20 (`coordinatorVersion`) says so itself (`Drain.finished`),
    /// since it alone knows the units this agent receives as a destination; an older one's
    /// agent says it when the units it sends have ended.
    public func drain(_ drain: Drain, coordinatorVersion: UInt8) {
        if drain.finished {
            logger.notice("drained: no units left, as a source or a destination; this agent can be stopped")
            return
        }
        let held = inFlight
        let told = coordinatorVersion >= WireVersion.drained
        drainedByCoordinator.withLockedValue { $0 = told }
        logger.notice("draining (\(drain.reason)): finishing the \(held) units it sends, taking no new ones\(told ? "; 'drained' follows once it holds none as a destination either" : "")")
        draining.withLockedValue { $0 = true }
        if held == 0 && !told { logger.notice("drained: no units left; this agent can be stopped") }
    }

    /// How this agent opens data-plane streams to `peer` for a job in `mode`. A scavenger job's
    /// streams run `scavengerTCP` where there is one, on connections of their own (the pool
    /// keeps them apart by algorithm).
    private func client(to peer: DataPeer, mode: CongestionMode? = nil) -> DataPlaneClient {
        let algorithm = mode == .scavenger ? settings.scavengerTCP ?? settings.tcpCongestion : settings.tcpCongestion
        return DataPlaneClient(host: peer.host, port: Int(peer.port), token: settings.token, name: settings.name,
                               stallTimeout: settings.stallTimeout, congestionControl: algorithm)
    }

    private func start(_ task: TaskAssign) {
        let key = UnitRef(job: task.job, unit: task.unit)
        let progress = UnitProgress()
        let jobs = jobs, job = task.job, budget = budget
        let mode = jobs.mode(job, fallback: settings.congestion)
        let client = client(to: task.destination, mode: mode)
        let lane = lanes.lane(to: task.destination.name, mode: mode)
        let flow = UnitFlow(agentLimit: settings.sender.limiter, jobLimit: { jobs.limiter(job) }, lane: lane, order: lanes.nextOrder(),
                            fixedLinkRate: settings.linkRate, budget: budget, fence: fence.ticket())
        let sender = UnitSender(task: task, client: client, sources: sources, settings: settings.sender, progress: progress, flow: flow, pool: pool)
        let outbox = outbox, logger = logger, running = running, draining = draining, lanes = lanes, afterReport = settings.afterReport
        let drainedByCoordinator = drainedByCoordinator
        let superseded = running.withLockedValue { r -> Running? in
            // The same unit assigned again while it runs (a report crossed a reconnect, or a
            // retry): the running one answers the newest assignment. Given to another destination
            // (its agent went down), the run to the old one stops and reports nothing (cancelled
            // below, outside the lock), and the new one starts.
            var superseded: Running? = nil
            if let current = r.units[key] {
                if current.destination == task.destination.name {
                    r.units[key]!.assignment = max(current.assignment, task.assignment)
                    return nil
                }
                r.units.removeValue(forKey: key)
                superseded = current
            }
            r.runs += 1
            let run = r.runs
            let order = flow.order
            logger.debug("unit \(task.unit) of job \(task.job) starts: \(task.files.count) files, to \(task.destination.name), order \(order)")
            let work = Task.detached {
                let report: Message
                let began = ContinuousClock.now
                defer { logger.debug("unit \(task.unit) of job \(task.job) ends after \(ContinuousClock.now - began)") }
                do throws(UnitFailure) {
                    let done = try await sender.run()
                    if !done.leftOut.isEmpty {
                        // Each file with its reason, as rsync names each that vanished: a
                        // coordinator before protocol 23 sends its users here for the others.
                        logger.warning("unit \(task.unit) of job \(task.job): \(done.leftOut.count) file(s) left out, gone from the source or changed since the scan; the first: \(done.firstLeftOut)")
                        for reason in done.laterLeftOut { logger.warning("unit \(task.unit) of job \(task.job), also left out: \(reason)") }
                    }
                    report = .taskDone(done)
                } catch {
                    if Task.isCancelled {
                        logger.notice("unit \(task.unit) of job \(task.job) stopped")
                    } else {
                        logger.warning("unit \(task.unit) of job \(task.job) failed: \(error.description)")
                    }
                    report = .taskFailed(TaskFailed(job: task.job, unit: task.unit, retryable: error.retryable, reason: error.description, lane: error.lane))
                }
                // A dropped or cancelled run reports nothing. The report is queued before the
                // unit leaves `running`, so a new connection lists it as held or sends its report
                // first, never neither.
                guard let assignment = running.withLockedValue({ r in r.units[key].flatMap { $0.run == run ? $0.assignment : nil } }) else { return }
                outbox.send(Self.answering(report, assignment: assignment))
                if let hook = afterReport { await hook() }
                // What the paths carry, saved now and then: a small file write, off the pool.
                _ = try? await BlockingWork.run { lanes.remember() }
                let (left, newer) = running.withLockedValue { r -> (Int, UInt32?) in
                    guard let unit = r.units[key], unit.run == run else { return (r.units.count, nil) }
                    r.units.removeValue(forKey: key)
                    return (r.units.count, unit.assignment != assignment ? unit.assignment : nil)
                }
                // Assigned again after the report was made (a new assignment that found the unit
                // still running, and so started nothing): the same report answers the newest
                // assignment too. Without it that assignment was never answered, and held its
                // lane at the coordinator forever: a job stayed `running` with every file done,
                // its directories never set, after an agent missed its heartbeats under load.
                if let newer { outbox.send(Self.answering(report, assignment: newer)) }
                if left == 0 && draining.withLockedValue({ $0 }) && !drainedByCoordinator.withLockedValue({ $0 }) {
                    logger.notice("drained: no units left; this agent can be stopped")
                }
            }
            r.units[key] = Running(run: run, task: work, progress: progress, lane: lane, assignment: task.assignment, peer: task.destination)
            return superseded
        }
        if let superseded {
            superseded.task.cancel()
            logger.notice("unit \(task.unit) of job \(task.job) now goes to \(task.destination.name), not \(superseded.destination): the run to \(superseded.destination) stops")
        }
    }

    /// A run's report (`task done` or `task failed`) answering `assignment`.
    private static func answering(_ report: Message, assignment: UInt32) -> Message {
        switch report {
        case .taskDone(var done):
            done.assignment = assignment
            return .taskDone(done)
        case .taskFailed(var failed):
            failed.assignment = assignment
            return .taskFailed(failed)
        default:
            return report
        }
    }

    /// Sends each running unit's progress, every `progressInterval`, until cancelled.
    func reportProgress() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: settings.progressInterval)
            let snapshot = running.withLockedValue { r in r.units.map { ($0.key, $0.value.progress.snapshot, $0.value.lane) } }
            for (key, p, lane) in snapshot {
                outbox.send(.taskProgress(TaskProgress(job: key.job, unit: key.unit, bytesDone: p.bytesDone, wireBytes: p.wireBytes,
                                                       lane: lane.figures)))
            }
        }
    }
}
