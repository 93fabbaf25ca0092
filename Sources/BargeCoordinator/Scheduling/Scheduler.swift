import BargeFlow
import BargeStore
import BargeCodec
import BargeTier
import BargeWire
import Foundation
import Logging
import Synchronization

/// The coordinator's moving parts: which agents are connected, scans and verifications in
/// flight, and the `SchedulingPolicy` that decides which unit goes to which lane. This actor
/// carries out the policy's decisions and journals them.
///
/// **Group commit.** State changes collect in a batch; one commit task writes a batch in one
/// transaction while the next one collects, so the journal's `fsync` is shared by every change
/// that arrived meanwhile. Nothing that depends on a change is sent before its batch is durable:
/// a `task assign` goes out after the assignment is journaled, and the job's end is announced
/// after it is written. The in-memory state runs ahead of the journal by at most one batch.
public actor Scheduler {
    struct Link {
        let agent: Register
        let sink: AsyncStream<Message>.Continuation
        let connection: UInt64
        /// The protocol version of its connection.
        var version: UInt8 = 1
    }

    struct PendingScan {
        let job: String
        let agent: String
        var builder: Planner.Builder
        /// Entries up to this path were planned before the scan started again.
        var skipUpTo: String?
        var skipped = 0
        var firstSkipped: String?
    }

    /// A running job's fixed settings, kept while it runs.
    struct RunningJob {
        var record: JobRecord
        /// Units held per source agent, for sharing the job's cap.
        var sources: [String: Int] = [:]
        /// When a unit of it last reported progress or ended (Unix seconds), and when its stall
        /// was last logged (`tick`).
        var movedAt: Double = 0
        var stallLogged: Double = 0
    }

    /// A running job that has not moved for this long (seconds) gets a line in the log with the
    /// scheduler's view of it, once per such period: why a job waits should be in the log.
    static let stallReport: Double = 120

    public let journal: Journal
    public let metrics: CoordinatorMetrics
    public let planner: Planner
    /// A unit whose lanes failed this many times fails its job.
    public let maxAttempts: Int64
    /// Long polls waiting for jobs to end.
    public nonisolated let endings = JobEndSignals()
    let logger: Logger
    let now: @Sendable () -> Double

    var links: [String: Link] = [:]
    /// Bytes each agent sent (wire) and received (file bytes), from the reports, for the dashboard.
    var agentBytes: [String: (sent: UInt64, received: UInt64)] = [:]
    /// The units each agent held when its connection (protocol version 5) attached: its
    /// `holding` is checked against them.
    var heldAtAttach: [String: [UnitKey: UInt32]] = [:]
    var policy: SchedulingPolicy
    /// Units read from the journal and not done: the policy's window, held and retrying units.
    var records = UnitRecords()
    /// How many times a unit's attempt was given back because an agent of its lane went down.
    var pathLosses: [UnitKey: Int] = [:]
    static let forgivenLosses = 10
    var running: [String: RunningJob] = [:]
    /// Units running, as their agents last reported them (read by status without the actor).
    let live = LiveProgress()
    /// Units whose lane failed wait this long before another try (doubling per attempt, with jitter).
    let retryBackoff = ExponentialBackoff(initial: .milliseconds(500), maximum: .seconds(30))
    var scans: [UInt64: PendingScan] = [:]
    /// The `job settings` each source agent was last sent, per job.
    var sentSettings: [String: [String: JobSettings]] = [:]
    var replies: [UInt64: (agent: String, continuation: CheckedContinuation<VerifyReply, Error>)] = [:]
    /// Jobs whose verification runs now.
    var verifying: Set<String> = []
    var tierReplies: [UInt64: (agent: String, continuation: CheckedContinuation<TierReply, Error>)] = [:]
    /// Tier jobs whose page loop runs now.
    var tiering: Set<String> = []
    /// Wire bytes of running units already in the metrics from their progress reports.
    var wireCounted: [UnitKey: UInt64] = [:]
    /// Wire bytes of assignments that failed or were released, journaled from their progress
    /// (`journalRelease`, `failed`): an assignment's late `task done` counts only what it adds.
    var wireJournaled: [AssignmentKey: UInt64] = [:]
    /// Draining agents (of protocol 20) not yet told that they hold no units (`tellDrained`).
    var drainsUnderWay: Set<String> = []
    /// Quick checks waiting for their destination agent, by request.
    var compares: [UInt64: Compare] = [:]
    /// Agents with scan pages waiting for a quick check, and how many: their connections may
    /// not be read meanwhile (`takePage`).
    var waitingForCompare: [String: Int] = [:]
    /// Each scan's pages in their turn to be planned, by scan request (`takePage`).
    var pagesInCheck: [UInt64: [CheckedPage]] = [:]
    /// The source agent's connection of a scan whose `pagesAhead` pages wait, by scan request.
    var pageWindow: [UInt64: CheckedContinuation<Void, Never>] = [:]
    /// Jobs already logged as planned without a quick check, for want of an agent to ask.
    var unchecked: Set<String> = []
    var repairs: [UnitKey: (lane: (source: String, destination: String), continuation: CheckedContinuation<Result<TaskDone, SchedulerError>, Never>)] = [:]
    /// The next request's number (scans, quick checks, verifications, tier requests, repair
    /// units). It carries this run's boot count in its high 32 bits (`recoverAfterRestart`):
    /// an agent may still answer a request of an earlier run, and a number used again would take
    /// that answer for the new request's (seen: a scan asked again after a restart got the tail
    /// of the old scan's pages and its final page, and the job "succeeded" with part of the tree).
    var nextRequest: UInt64 = 1
    private var nextConnection: UInt64 = 1
    private var lastRate: (time: Double, bytes: Int64)?
    /// Raw bytes of units finished since start, for the throughput gauge.
    private var completedBytes: Int64 = 0

    // Group commit.
    var batch: [JournalChange] = []
    private var batchRefills: [SchedulingPolicy.Refill] = []
    var batchSends: [(key: UnitKey?, agent: String, message: Message)] = []
    /// Reports journaled in the batch, and whether their unit was held.
    private var reported: [UnitKey: Bool] = [:]
    /// Scanned entries planned into the batch not yet committed: past 20,000 the next scan page
    /// waits, so a fast scan never piles up in memory.
    private var plannedEntriesWaiting = 0
    private var committing = false
    /// This run of the coordinator, counted in the journal: assignment numbers carry it, so a
    /// report of an assignment made before a restart never matches one made after.
    var boot: Int64 = 0
    /// Batches whose commit began, and those committed and carried out.
    private var batchesBegun = 0
    private var batchesDone = 0
    /// Batches committed since start.
    public var batchesCommitted: Int { batchesDone }
    /// `flush` callers, each waiting for the batch it needs to be done.
    private var committed: [(batch: Int, continuation: CheckedContinuation<Void, Never>)] = []

    public init(journal: Journal, metrics: CoordinatorMetrics = CoordinatorMetrics(), planner: Planner = Planner(),
                policy: SchedulingPolicy.Parameters = .init(), maxAttempts: Int64 = 3, logger: Logger = Logger(label: "barge.coordinator"),
                now: @escaping @Sendable () -> Double = { Date().timeIntervalSince1970 }) {
        self.journal = journal
        self.metrics = metrics
        self.planner = planner
        self.policy = SchedulingPolicy(parameters: policy)
        self.maxAttempts = maxAttempts
        self.logger = logger
        self.now = now
    }

    // MARK: Agents

    /// How many of the jobs that ended lately an agent that registers is told of (`attach`).
    static let endedJobsToldAtAttach = 256

    /// An agent's connection has registered; returns the connection's id for `detach`.
    public func attach(_ agent: Register, sink: AsyncStream<Message>.Continuation, version: UInt8 = 1) -> UInt64 {
        let id = nextConnection
        nextConnection += 1
        // Requests sent on its previous connection get no answer on this one: they are asked again.
        if links[agent.name] != nil { requestsLost(to: agent.name) }
        links[agent.name]?.sink.finish()
        links[agent.name] = Link(agent: agent, sink: sink, connection: id, version: version)
        // The jobs that ended lately are told again: an agent cut off when one ended (stopped,
        // SIGSTOP, or its connection down) missed its `cancel job`, and kept that job's files
        // open for good (h1 of session 50: 32 descriptors, 3 of 3). An agent forgets a job it
        // does not know at no cost.
        for job in endings.latest(Self.endedJobsToldAtAttach) where running[job] == nil { sink.yield(.cancelJob(CancelJob(job: job))) }
        // Its `holding` comes first on the new connection and is checked against these.
        if version >= WireVersion.acks { heldAtAttach[agent.name] = assignments(heldBy: agent.name) }
        // An agent that registers again (restarted after an upgrade) takes work again.
        policy.agentUp(agent.name, site: agent.site, bound: Int(max(1, agent.maxInFlight)))
        drainsUnderWay.remove(agent.name)
        // Told to drain before, and not restarted since (protocol 21): it stays draining. Before,
        // a coordinator restart or a lost connection forgot the drain, and the `drained` the
        // operator waits for never came (h3 of session 50).
        if agent.draining {
            policy.drain(agent.name)
            if version >= WireVersion.drained { drainsUnderWay.insert(agent.name) }
            logger.notice("agent \(agent.name) registered again draining: it takes no new units")
        }
        knownSites.insert(agent.site)
        // A scan it was running is asked again from its mark: an agent that registers again may
        // have restarted and lost it (pages of the old request are then ignored).
        for (request, scan) in scans where scan.agent == agent.name {
            scans.removeValue(forKey: request)
            restartScan(scan.job)
        }
        // Scans that waited for an agent of this site.
        for job in scansWaiting {
            scansWaiting.remove(job)
            restartScan(job)
        }
        startQueuedJobs()
        schedule()
        return id
    }

    /// The connection ended. The agent's units stay with it until it misses its heartbeats
    /// (`agentsDown`): a quick reconnect keeps its work. It gets no new work meanwhile.
    /// Whether an agent of that name has a live connection.
    public func isAttached(_ name: String) -> Bool { links[name] != nil }

    /// Whether `connection` is the agent's current one (not one it had before it registered again).
    public func isAttached(_ name: String, connection: UInt64) -> Bool { links[name]?.connection == connection }

    public func detach(_ name: String, connection: UInt64) {
        guard links[name]?.connection == connection else { return }
        links.removeValue(forKey: name)
        requestsLost(to: name)
        heldAtAttach.removeValue(forKey: name)
        policy.disconnected(name)
    }

    /// The agent's connection ended, or it registered again: what it was asked on that connection
    /// gets no answer. Tier requests fail (`agentUnavailable`, asked again by their caller);
    /// verification requests and repair units fail as `connectionLost`, and the verification
    /// makes that step again. Before, a verification waited for ever for a repair that the
    /// reconnected agent had been told to drop (`reconcile` does not know repair units). A repair
    /// whose destination's connection ended is dropped at its source, which would otherwise go on
    /// beside the one sent again.
    func requestsLost(to name: String) {
        tierRepliesLost(to: [name])
        for (request, waiting) in replies where waiting.agent == name {
            replies.removeValue(forKey: request)
            waiting.continuation.resume(throwing: SchedulerError.connectionLost("the connection to agent '\(name)' ended during the verification"))
        }
        for (key, repair) in repairs where repair.lane.source == name || repair.lane.destination == name {
            repairs.removeValue(forKey: key)
            if repair.lane.source != name, let source = links[repair.lane.source], source.version >= WireVersion.acks {
                source.sink.yield(.taskDrop(AssignmentKey(job: key.job, unit: key.unit, assignment: 0)))
            }
            repair.continuation.resume(returning: .failure(.connectionLost("the connection to agent '\(name)' ended during the repair")))
        }
    }

    /// `barge drain`: the agent keeps the units it holds and gets no new ones (nor scans or
    /// verifications), so it can be stopped once they end. Returns how many it still holds.
    public func drain(_ name: String) throws -> Int {
        guard let link = links[name] else { throw SchedulerError.conflict("agent \(name) is not connected") }
        policy.drain(name)
        let holding = policy.load(of: name)
        logger.notice("agent \(name) draining: it finishes its \(holding) units and takes no new ones")
        if link.version >= WireVersion.drain { link.sink.yield(.drain(Drain(reason: "barge drain \(name)"))) }
        if link.version >= WireVersion.drained { drainsUnderWay.insert(name) }
        tellDrained()
        return holding
    }

    /// Agents that missed their heartbeats: their units go back to pending for other lanes.
    @discardableResult
    public func agentsDown(_ names: [String]) throws -> Int {
        guard !names.isEmpty else { return 0 }
        var released = 0
        for name in names {
            links.removeValue(forKey: name)?.sink.finish()
            heldAtAttach.removeValue(forKey: name)
            for (key, source) in policy.agentDown(name) {
                released += 1
                // A source still up stops its run to the agent that went down: left going, a run
                // to a stopped agent (SIGSTOP, a hung node) waited out the stall timeout, and the
                // unit given again to the same source found it still running and started nothing.
                if source != name, let link = links[source], link.version >= WireVersion.acks {
                    link.sink.yield(.taskDrop(AssignmentKey(job: key.job, unit: key.unit, assignment: currentAssignment(key))))
                }
                // Not the unit's failure: an agent of its lane went away (the policy makes it
                // ready again at once for that reason). Its attempt is given back, as `reconcile`
                // gives back one lost with a connection, up to `forgivenLosses` times a unit (an
                // agent that dies of one unit each time still ends the job). Counted, two outages
                // of the network between the agents used two of a unit's three attempts, and one
                // connection that closed after the second failed the job ("unit N failed 3
                // times", with one failure logged).
                if var record = records[key], pathLosses[key, default: 0] < Self.forgivenLosses {
                    pathLosses[key, default: 0] += 1
                    record.attempts = max(0, record.attempts - 1)
                    records[key] = record
                }
                journalRelease(key, source: source)
            }
        }
        metrics.retried(released)
        for (key, repair) in repairs where names.contains(repair.lane.source) || names.contains(repair.lane.destination) {
            repairs.removeValue(forKey: key)
            // As a lost connection: the verification makes the step again, with another agent
            // of the site (they share the root). As unavailable, it stopped there, though the
            // other agent was up.
            repair.continuation.resume(returning: .failure(.connectionLost("agent \(repair.lane.source) or \(repair.lane.destination) went down during the repair")))
        }
        comparesLost(to: names)
        tierRepliesLost(to: names)
        for (request, waiting) in replies where names.contains(waiting.agent) {
            replies.removeValue(forKey: request)
            waiting.continuation.resume(throwing: SchedulerError.connectionLost("agent '\(waiting.agent)' went down during the verification"))
        }
        // A scan whose agent went down is asked of another agent of the site, from where it stopped.
        for (request, scan) in scans where names.contains(scan.agent) {
            scans.removeValue(forKey: request)
            restartScan(scan.job)
        }
        startQueuedJobs()
        schedule()
        return released
    }

    // MARK: Jobs

    public func submit(_ request: SubmitRequest, id: String) async throws -> JobRecord {
        let source = try Self.path(request.source.path), destination = try Self.path(request.destination.path)
        if let why = JobPath.partialCopyName(source, lastOnly: true) ?? JobPath.partialCopyName(destination) { throw SchedulerError.invalid(why) }
        let codec = request.codec ?? "auto"
        guard codec.utf8.count <= 64, !codec.isEmpty else { throw SchedulerError.invalid("codec name is empty or too long") }
        // Checked as the CLI checks it: a name the agents would not know is refused here.
        do { _ = try CodecChoice(name: codec) } catch { throw SchedulerError.invalid("codec: \(error)") }
        let bwlimit = try Self.limit(request.bwlimit)
        let cc = request.cc ?? CongestionMode.fair.rawValue
        do { _ = try CongestionMode(named: cc) } catch { throw SchedulerError.invalid(error.description) }
        let tier: TierPolicy?
        do { tier = try request.tier.map { try TierPolicy(parsing: $0) } } catch { throw SchedulerError.invalid("tier: \(error)") }
        if let notify = request.notify, !NotifyURL.isValid(notify) {
            throw SchedulerError.invalid("notify must be an http:// or https:// URL of at most 2048 bytes")
        }
        // The request is checked whole before the sites are: a bad field is a 400 whatever runs.
        try requireAgents(at: request.source.site)
        try requireAgents(at: request.destination.site)
        // A site's agents share one root: a destination at or inside the source there would be
        // scanned while it fills, and its copies copied again.
        if request.source.site == request.destination.site, JobPath.contains(source, destination) {
            throw SchedulerError.conflict("the destination \(request.destination.site):/\(destination) is \(source == destination ? "the source itself" : "inside the source \(request.source.site):/\(source)"): its copies would be scanned and copied again; choose a destination outside the source")
        }
        var job = JobRecord(id: id, sourceSite: request.source.site, sourcePath: source,
                            destinationSite: request.destination.site, destinationPath: destination, createdAt: Int64(now()))
        job.codec = codec
        job.chunkSize = Int64(planner.chunkSize)
        job.bwlimit = bwlimit
        job.congestion = cc
        job.checksum = request.checksum ?? false
        job.tierPolicy = tier?.description
        job.notify = request.notify
        job.destinationIsDirectory = JobPath.namesDirectory(request.destination.path)
        job.sourceNamesDirectory = !source.isEmpty && JobPath.namesDirectory(request.source.path)
        // Off the actor's thread: a burst of submissions made one synchronous write each, every
        // one waiting for the commit under way and then for its own sync, while the actor took
        // no report and one of the pool's threads stood still.
        try await journal.offPool { [job] in try $0.insert(job) }
        logger.notice("job \(id): \(job.sourceDescription) → \(job.destinationDescription), codec \(codec), cc \(cc)\(bwlimit.map { ", bwlimit \($0)" } ?? "")\(tier.map { ", tier policy \($0)" } ?? "")")
        startQueuedJobs()
        return job
    }

    /// Refuses a request that must wait for the journal while its commits fail: it would wait
    /// until there is space again, past any client's timeout.
    private func requireJournal() throws(SchedulerError) {
        if let journalProblem { throw .journalUnavailable(journalProblem) }
    }

    public func cancel(_ id: String) async throws -> JobRecord {
        try requireJournal()
        await flush()
        let job = try journal.end(id, .cancel, now: now())
        stopUnits(of: id)
        return job
    }

    /// Runs a failed or cancelled job again from where it stopped: units already done stay done.
    public func resume(_ id: String) async throws -> JobRecord {
        try requireJournal()
        await flush()
        guard let before = try journal.job(id) else { throw SchedulerError.unknownJob(id) }
        if before.operation != .transfer {
            if before.state == .failed || before.state == .cancelled, let other = writerOfOverlap(with: before) {
                throw SchedulerError.conflict("job \(other) writes to a place that overlaps this job's (\(before.destinationSite):/\(before.destinationPath)); resume this job once it has ended ('barge status \(other) --watch' follows it)")
            }
            let job = (before.state == .failed || before.state == .cancelled) ? try journal.resume(id, now: now()) : before
            endings.resumed(id)
            // One that never started waits its turn (a queued one that waits for a writer was
            // started at once by a resume before); one that ran goes on.
            if job.state == .queued { startQueuedJobs() } else { launchTier(id) }
            return job
        }
        if before.state == .failed || before.state == .cancelled {
            try requireAgents(at: before.sourceSite)
            try requireAgents(at: before.destinationSite)
        }
        if before.state == .failed || before.state == .cancelled, before.planned, let other = writerOfOverlap(with: before) {
            throw SchedulerError.conflict("job \(other) writes to a destination that overlaps this job's (\(before.destinationSite):/\(before.destinationPath)); resume this job once it has ended ('barge status \(other) --watch' follows it)")
        }
        let job = try journal.resume(id, now: now())
        endings.resumed(id)
        logger.notice("job \(id) resumed (\(job.state.rawValue))")
        if job.state == .queued { startQueuedJobs() }
        if job.state == .running { try run(job) }
        schedule()
        return job
    }

    /// Jobs by state, for the metrics.
    public func jobCounts() throws -> [JobState: Int] { try journal.jobCounts() }

    /// The job as stored, with the bytes of units still running added.
    /// Neither the read nor the running units' bytes wait for this actor: the journal is read on
    /// its own queue and the bytes come from `live` under its lock (a status poll used to queue
    /// behind every report the actor had yet to handle).
    public nonisolated func status(_ id: String) async throws -> JobRecord? {
        guard var job = try await journal.readJob(id) else { return nil }
        addLive(&job)
        return job
    }

    /// A page of the entries job `id` could not transfer, each named, and the job (nil: no such
    /// job); `after` is the page before's `next`.
    public nonisolated func untransferable(_ id: String, limit: Int, after: Int64?) async throws -> (job: JobRecord, named: Int64, entries: [String], next: Int64?)? {
        guard let job = try await journal.readJob(id) else { return nil }
        let page = try await journal.untransferable(job: id, limit: limit, after: after)
        return (job, page.named, page.entries, page.next)
    }

    /// A page of jobs in submission order, after the job `after`: read on a Dispatch thread, not
    /// on the cooperative pool (`Journal.read`).
    public nonisolated func statuses(limit: Int = 1000, after: String? = nil) async throws -> [JobRecord] {
        do {
            return try await journal.offPool { try $0.jobs(limit: limit, after: after) }.map { job in
                var j = job
                addLive(&j)
                return j
            }
        } catch JournalError.unknownJob(let id) {
            throw SchedulerError.unknownJob(id)
        }
    }

    /// Deletes jobs that ended before `before` (Unix seconds); returns their ids.
    public func prune(endedBefore before: Double) async throws -> [String] {
        try requireJournal()
        await flush()
        let ids = try await journal.prune(endedBefore: before)
        if !ids.isEmpty {
            logger.notice("pruned \(ids.count) jobs that ended before \(Date(timeIntervalSince1970: before))")
            // The space goes back to the file system, not only to the journal's free list.
            do {
                let pages = try await journal.reclaim()
                logger.info("gave \(pages) pages of the journal back to the file system")
            } catch {
                logger.warning("could not give the pruned jobs' space back to the file system: \(error)")
            }
        }
        return ids
    }

    nonisolated func addLive(_ job: inout JobRecord) {
        guard job.state == .running else { return }
        let running = live.sums(of: job.id)
        job.bytesDone = job.bytesDone.addingSaturated(running.bytes)
        job.wireBytes = job.wireBytes.addingSaturated(running.wire)
    }

    /// Picks up jobs left by an earlier run of the coordinator: nothing is assigned any more.
    public func recoverAfterRestart() throws {
        boot = try journal.countBoot()
        nextRequest = UInt64(truncatingIfNeeded: boot) << 32 | 1
        policy.startedAgain(at: now())
        // Journals written before assignments lived in memory may still mark units assigned.
        try journal.releaseAllAssigned()
        var pending = 0
        for job in try journal.jobs(in: [.running]) where job.operation == .transfer {
            pending += try run(job)
            if !job.planned { restartScan(job.id) }
        }
        if pending > 0 { logger.notice("\(pending) units of interrupted jobs are pending again") }
        // Tier jobs that were running first: the queued jobs that overlap them wait for them.
        resumeTierJobs()
        startQueuedJobs()
        schedule()
        resumeVerifications()
    }

    /// The policy's view of a job, in one line.
    public func describe(_ job: String) -> String { policy.describe(job) }

    /// Units held by lanes now.
    public var unitsHeld: Int { policy.heldCount }

    /// Hands a running job to the policy; returns its units not done.
    @discardableResult
    private func run(_ job: JobRecord) throws -> Int {
        guard !policy.isRunning(job.id) else { return 0 }
        running[job.id] = RunningJob(record: job, movedAt: now())
        let open = try journal.openWork(job: job.id)
        policy.start(job: job.id, source: job.sourceSite, destination: job.destinationSite, openWork: open, planned: job.planned)
        limitUnits(job)
        return open
    }

    // MARK: Messages from agents

    public func received(_ message: Message, from agent: String) async {
        // Only a report that frees a lane, plans work or changes what an agent holds gives
        // `schedule` anything new to do. Progress (every half second from each running unit)
        // and answers to requests do not; each cost a pass over every running job.
        let changesWork = switch message {
        case .taskProgress, .verifyReply, .compareReply, .tierReply: false
        default: true
        }
        defer { if changesWork { schedule() } }
        do {
            switch message {
            case .scanReply(var reply):
                leaveOutLongPaths(&reply)
                await takePage(reply)
                // Planning faster than the journal commits: the agent's next page waits (and so,
                // through TCP, does its scan).
                if plannedEntriesWaiting > 20_000 { await flush() }
            case .taskProgress(let p):
                let key = UnitKey(job: p.job, unit: p.unit)
                // Progress is sent every interval while a unit runs; only bytes that moved count.
                let before = live.report(key)?.wireBytes ?? 0
                if p.wireBytes != before { running[p.job]?.movedAt = now() }
                if let lane = policy.lane(of: key) {
                    // On the wire as they move (a unit's later report says more, or, another
                    // assignment's, starts again from its own count).
                    if p.wireBytes > before {
                        metrics.sent(wire: Int64(p.wireBytes - before), source: lane.source)
                        wireCounted[key, default: 0] += p.wireBytes - before
                    }
                    live.set(key, p, lane: LiveProgress.LaneKey(source: lane.source, destination: lane.destination), at: now())
                    if let f = p.lane { metrics.update(lane: lane.source, lane.destination, f, now: now()) }
                }
            case .taskDone(let done):
                finished(done)
                acknowledge(done.key, to: agent)
            case .taskFailed(let failure):
                acknowledge(failure.key, to: agent)
                try failed(failure, agent: agent)
            case .holding(let holding): reconcile(holding, from: agent)
            case .verifyReply(let reply): replies.removeValue(forKey: reply.request)?.continuation.resume(returning: reply)
            case .compareReply(let reply): compared(reply.request, reply.unchanged)
            case .tierReply(let reply): tierReplied(reply)
            default: logger.warning("agent \(agent) sent an unexpected \(message.type)")
            }
        } catch {
            logger.error("handling \(message.type) from \(agent): \(error)")
        }
    }

    /// Entries whose path at either end would be longer than a path may be (`JobPath.longest`)
    /// go to the page's skipped entries: reported, never planned. Sent on, they would fail at
    /// every open (ENAMETOOLONG), and encoding them would stop the process.
    private func leaveOutLongPaths(_ reply: inout ScanReply) {
        guard let scan = scans[reply.request] else { return }
        let (source, destination) = (scan.builder.sourcePath, scan.builder.destinationPath)
        var kept: [FileEntry] = []
        for e in reply.entries {
            // A single file sent into a directory lands under its own name there.
            let at = e.path.isEmpty ? scan.builder.destination(of: e.path, kind: e.kind) : destination
            if let why = JobPath.notBelow(e.path) ?? JobPath.tooLong(e.path, source: source, destination: at) { reply.skipped.append(why) } else { kept.append(e) }
        }
        if kept.count < reply.entries.count { reply.entries = kept }
    }

    /// A scan page: planned, but for the entries the quick check found `unchanged`.
    func scanned(_ reply: ScanReply, unchanged: [Bool]?) throws {
        guard var scan = scans[reply.request] else { return }
        if !reply.error.isEmpty {
            scans.removeValue(forKey: reply.request)
            unchecked.remove(scan.job)
            batch.append(.end(job: scan.job, .fail("scan failed: \(reply.error)"), now: now()))
            logger.warning("job \(scan.job): scan failed: \(reply.error)")
            return
        }
        // A single file sent into its own directory (`a:/x/f` to `a:/x/`) would land on itself.
        if let e = reply.entries.first, e.path.isEmpty, e.kind != .directory, scan.builder.destinationIsDirectory,
           PathKey.sameBytes(scan.builder.destination(of: e.path, kind: e.kind), scan.builder.sourcePath),
           let job = try journal.job(scan.job), job.sourceSite == job.destinationSite {
            scans.removeValue(forKey: reply.request)
            unchecked.remove(scan.job)
            batch.append(.end(job: scan.job, .fail("the source \(job.sourceSite):/\(job.sourcePath) is a file, and sent into \(job.destinationDescription) it would land on itself; choose another destination"), now: now()))
            return
        }
        var entries: [FileEntry] = []
        var mark: String?
        var skipped = (files: Int64(0), bytes: Int64(0))
        for (i, e) in reply.entries.enumerated() {
            // A scan that started again: what was planned before is skipped.
            if let m = scan.skipUpTo, !ScanOrder.precedes(m, e.path) { continue }
            mark = e.path
            if let unchanged, unchanged[i], e.kind != .directory {
                skipped.files += 1
                skipped.bytes = skipped.bytes.addingSaturated(Int64(e.size))
                continue
            }
            entries.append(e)
        }
        if let m = scan.skipUpTo, let last = reply.entries.last, ScanOrder.precedes(m, last.path) { scan.skipUpTo = nil }
        scan.skipped += reply.skipped.count
        if scan.firstSkipped == nil { scan.firstSkipped = reply.skipped.first }
        let page = scan.builder.page(entries)
        batch.append(.plan(job: scan.job, units: page.units, totals: page.totals, mark: mark, final: reply.final, now: now()))
        if skipped.files > 0 { batch.append(.skipped(job: scan.job, files: skipped.files, bytes: skipped.bytes)) }
        if !reply.skipped.isEmpty { batch.append(.untransferable(job: scan.job, entries: reply.skipped)) }
        plannedEntriesWaiting += entries.count
        // Not one that ended meanwhile (`forget` drops its scan, but a page may have been in its
        // quick check then): it would run again, its pending units sent after its cancel.
        if !policy.isRunning(scan.job), let job = try journal.job(scan.job), !job.state.isTerminal {
            var record = job
            record.state = .running
            running[job.id] = RunningJob(record: record, movedAt: now())
            policy.start(job: job.id, source: job.sourceSite, destination: job.destinationSite, openWork: 0, planned: false)
            limitUnits(record)
        }
        policy.planned(job: scan.job, workUnits: page.workUnits, final: reply.final)
        if reply.final {
            scans.removeValue(forKey: reply.request)
            unchecked.remove(scan.job)
            if scan.skipped > 0 {
                logger.warning("job \(scan.job): \(scan.skipped) entries cannot be transferred and are skipped, e.g. \(scan.firstSkipped ?? "")")
            }
            logger.notice("job \(scan.job): scan complete, \(scan.builder.nextUnit) units")
        } else {
            scans[reply.request] = scan
        }
    }

    private func finished(_ done: TaskDone) {
        let key = UnitKey(job: done.job, unit: done.unit)
        var done = done
        // Its progress went into the job's figures and the metrics as it failed or was released:
        // counted again in full, its wire bytes were twice in both.
        if let journaled = wireJournaled.removeValue(forKey: done.key) { done.wireBytes -= min(journaled, done.wireBytes) }
        running[done.job]?.movedAt = now()
        if let waiter = repairs.removeValue(forKey: key) {
            waiter.continuation.resume(returning: .success(done))
            return
        }
        if isStale(done.assignment, key) {
            // An earlier assignment's report: the work is done and counts, but the current
            // assignment still runs and holds its lane until it answers.
            reported[key] = reported[key] ?? false
            batch.append(.complete(done, now: now(), unit: records[key], lane: policy.lane(of: key)))
            return
        }
        let lane = policy.lane(of: key)
        policy.ended(key)
        noteReleased(key, source: lane?.source)
        let held = lane != nil
        live.remove(key)
        reported[key] = held || (reported[key] ?? false)
        let record = records[key]
        batch.append(.complete(done, now: now(), unit: record, destination: record?.kind == .range ? lane?.destination : nil, lane: lane))
    }

    /// A report the journal counted goes into the metrics once, as it went into the job's
    /// figures: the same report again (its acknowledgement was lost on a reconnect) counts in
    /// neither, and another assignment's work on a unit already done counts on the wire only.
    private func count(_ done: TaskDone, first: Bool, lane: (source: String, destination: String)?, at time: Double) {
        metrics.record(done, first: first, source: lane?.source, destination: lane?.destination, now: time,
                       wireCounted: wireCounted.removeValue(forKey: UnitKey(job: done.job, unit: done.unit)) ?? 0)
        if let lane {
            agentBytes[lane.source, default: (0, 0)].sent += done.wireBytes
            if first { agentBytes[lane.destination, default: (0, 0)].received += done.bytes }
        }
        if first { completedBytes = completedBytes.addingSaturated(Int64(done.bytes)) }
    }

    private func failed(_ failure: TaskFailed, agent: String) throws {
        let key = UnitKey(job: failure.job, unit: failure.unit)
        if let waiter = repairs.removeValue(forKey: key) {
            waiter.continuation.resume(returning: .failure(.agentUnavailable(failure.reason)))
            return
        }
        guard let lane = policy.lane(of: key), var record = records[key] else { return }
        if isStale(failure.assignment, key) {
            logger.info("job \(failure.job) unit \(failure.unit): ignoring a failure of assignment \(failure.assignment) (now \(currentAssignment(key))): \(failure.reason)")
            return
        }
        if let progress = live.remove(key), progress.wireBytes > 0 {
            batch.append(.wireBytes(job: key.job, Int64(progress.wireBytes)))
            wireJournaled[failure.key] = progress.wireBytes
        }
        metrics.failed(job: failure.job, unit: failure.unit)
        wireCounted.removeValue(forKey: key)
        // Failed on its data plane (the destination agent died, restarted or stalled, or the
        // network between them went): not the unit's failure, and its attempt is given back, as
        // for an agent that went down, up to `forgivenLosses` times a unit. Counted, a destination
        // killed three times in a job failed it ("unit N failed 3 times; … the peer agent closed
        // the connection"), and only `resume` finished it.
        let forgiven = failure.retryable && failure.lane && pathLosses[key, default: 0] < Self.forgivenLosses
        if forgiven {
            pathLosses[key, default: 0] += 1
            record.attempts = max(0, record.attempts - 1)
            records[key] = record
        }
        let attempts = record.attempts
        if failure.retryable && attempts < maxAttempts {
            metrics.retried(1)
            // Backed off by every failure, forgiven ones too: a data plane that stays down (the
            // control path up) is tried again 0.5, 1, 2 … 30 s apart, some five minutes in all
            // over its ten, rather than ten times within a minute.
            let wait = retryBackoff.delay(attempt: max(0, Int(attempts) - 1 + pathLosses[key, default: 0]), fraction: Double.random(in: 0...1))
            policy.failed(key, retryAt: now() + wait.seconds)
            noteReleased(key, source: lane.source)
            batch.append(.release(key, retry: true, attempts: attempts))
            let counted = forgiven ? "its data plane failed, not counted as an attempt" : "attempt \(attempts) of \(maxAttempts)"
            logger.warning("job \(failure.job) unit \(failure.unit) failed on \(agent) (\(counted)), retrying in \(String(format: "%.2f", wait.seconds)) s: \(failure.reason)")
            // A large file that cannot be finished where it now goes (its partial copy was at an
            // agent that went down) is sent again from its first range.
            if record.kind == .finish { batch.append(.resend(job: failure.job, finish: failure.unit)) }
        } else {
            policy.failed(key, retryAt: nil)
            noteReleased(key, source: lane.source)
            // Not a retry: the job ends here ('units retried: 1' read as a retry that never was).
            batch.append(.release(key, retry: false, attempts: attempts))
            // With the attempts given back too (a reader saw "failed 3 times" after 13 failures).
            let givenBack = pathLosses[key, default: 0]
            let more = givenBack > 0 ? " (and \(givenBack) more on its data plane, not counted)" : ""
            let reason = failure.retryable ? "unit \(failure.unit) failed \(attempts) times\(more); last: \(failure.reason)" : failure.reason
            batch.append(.end(job: failure.job, .fail(reason), now: now()))
            logger.error("job \(failure.job) failed: \(reason)")
        }
    }

    /// A report names an assignment other than the unit's current one (agents before protocol
    /// version 4 name none).
    private func isStale(_ assignment: UInt32, _ key: UnitKey) -> Bool {
        guard assignment != 0, policy.lane(of: key) != nil, records[key] != nil else { return false }
        return assignment != currentAssignment(key)
    }

    // MARK: Assignment and group commit

    /// Called every second: retries whose backoff ran out, and the gauges.
    public func tick() {
        if let due = policy.nextWake, due <= now() { schedule() }
        let t = now()
        for (id, job) in running where t - job.movedAt >= Self.stallReport && t - job.stallLogged >= Self.stallReport {
            running[id]!.stallLogged = t
            logger.notice("job \(id): nothing has moved for \(Int(t - job.movedAt)) s; the scheduler's view: \(policy.describe(id))")
        }
        let moved = completedBytes.addingSaturated(live.totalBytes)
        metrics.update(throughput: rate(moved))
        // Also when nothing was scheduled: a cancel lets go of its units without a pass (the
        // gauge said 1 unit in flight after one, while the agents held none).
        metrics.update(unitsInFlight: policy.heldCount)
        tellDrained()
    }

    /// Tells each draining agent that holds no unit any more, as a source or as a destination,
    /// that it is drained (protocol 20): an agent knows only the units it sends, and said
    /// "drained" while it still received three (h4 of session 49).
    func tellDrained() {
        for name in drainsUnderWay {
            guard let link = links[name] else {
                drainsUnderWay.remove(name)
                continue
            }
            // What it holds is known once its `holding` has come (an agent that registered again).
            guard heldAtAttach[name] == nil else { continue }
            // Nor a request in its hands: a scan, a quick check, a verification or a tier page (a
            // tier job keeps its pages with one agent; a review). A few each, looked through.
            guard policy.load(of: name) == 0, !scans.values.contains(where: { $0.agent == name }),
                  !compares.values.contains(where: { $0.agent == name }), !replies.values.contains(where: { $0.agent == name }),
                  !tierReplies.values.contains(where: { $0.agent == name }) else { continue }
            drainsUnderWay.remove(name)
            logger.notice("agent \(name) drained: it holds no units; it can be stopped")
            link.sink.yield(.drain(Drain(reason: "barge drain \(name)", finished: true)))
        }
    }

    /// Keeps a unit's row as the journal read it, with the count of its assignments kept here: that
    /// count is not journaled, and a report is matched to the unit's current assignment by it. A
    /// file sent again re-reads its ranges while one of them may still run (its earlier
    /// assignment's report came first, from before a coordinator restart): read back as the
    /// journal's, the count went back by one, the running assignment's report was taken for a
    /// stale one, and the range held its lane forever, so the job never reached its directories.
    private func remember(_ row: UnitRecord) {
        let key = UnitKey(job: row.jobId, unit: UInt64(row.unitId))
        var row = row
        if let known = records[key] { row.assignments = max(row.assignments, known.assignments) }
        records[key] = row
    }

    /// Asks the policy for assignments and pages, and makes sure a commit will carry them out.
    func schedule() {
        for a in policy.assign(now: now()) {
            guard var record = records[a.key], let job = running[a.key.job], let destination = links[a.destination], links[a.source] != nil else {
                // Known to the policy but not here: cannot happen; put it back rather than lose it.
                logger.error("no record or link for \(a.key); returning it")
                policy.failed(a.key, retryAt: now())
                continue
            }
            // An assignment is not journaled: every one is void after a restart (the units
            // are pending again and agents drop what they held), so it lives in memory only.
            record.attempts += 1
            record.assignments += 1
            records[a.key] = record
            running[a.key.job]!.sources[a.source, default: 0] += 1
            if running[a.key.job]!.sources[a.source] == 1 { shareSettings(a.key.job, joined: a.source) }
            metrics.assigned(job: a.key.job, unit: a.key.unit, now: now())
            var files = record.files
            // A --checksum job's large file may be kept in place (its ranges and finish are
            // pinned to one destination agent); a source before version 17 would refuse the flag.
            if job.record.checksum, links[a.source]!.version >= WireVersion.wholeFiles {
                for i in files.indices where files[i].entry.kind == .file && !files[i].repair && files[i].entry.size > 0 { files[i].inPlace = true }
            }
            // A source before version 19 would refuse the files' identities.
            if links[a.source]!.version < WireVersion.sourceIdentity { for i in files.indices { files[i].entry.identity = nil } }
            batchSends.append((a.key, a.source, .taskAssign(TaskAssign(
                job: a.key.job, unit: a.key.unit,
                destination: DataPeer(name: destination.agent.name, host: destination.agent.dataHost, port: destination.agent.dataPort),
                codec: job.record.codec, chunkSize: UInt32(job.record.chunkSize), files: files,
                assignment: links[a.source]!.version >= WireVersion.assignments ? currentAssignment(a.key) : 0))))
        }
        batchRefills += policy.refills()
        metrics.update(unitsInFlight: policy.heldCount)
        guard !committing, !(batch.isEmpty && batchRefills.isEmpty && batchSends.isEmpty) else { return }
        committing = true
        Task { await self.commitLoop() }
    }

    /// Waits until everything decided so far is journaled (and sent): the batch being committed
    /// and, if it holds anything, the one collecting now. Not for the commit loop to go idle,
    /// which under steady load it never does.
    public func flush() async {
        let collecting = !(batch.isEmpty && batchRefills.isEmpty && batchSends.isEmpty)
        guard committing || collecting else { return }
        let needed = collecting ? batchesBegun + 1 : batchesBegun
        if !committing { schedule() }
        await withCheckedContinuation { committed.append((needed, $0)) }
    }

    /// Why the journal cannot be written (its last commit failed: a full disk, an I/O error),
    /// for `status` and the dashboard; nil while commits succeed. Jobs wait meanwhile: nothing
    /// decided since is sent, and the commit is tried again with backoff.
    public private(set) var journalProblem: String?

    /// Commits batch after batch while there is anything to commit. A batch is carried out
    /// (its sends, pages and completions applied) while the next one commits, so the journal's
    /// writer does not wait for the actor between batches. Carrying out batch N before N + 1 is
    /// committed is safe: N + 1 holds only what was decided before N's outcome was known, and
    /// nothing N's outcome leads to goes into a batch before N + 2.
    private func commitLoop() async {
        var failures = 0
        var previous: (outcome: BatchOutcome, changes: [JournalChange], sends: [(key: UnitKey?, agent: String, message: Message)], number: Int)?
        while true {
            let work = !(batch.isEmpty && batchRefills.isEmpty && batchSends.isEmpty)
            guard work || previous != nil else { break }
            let changes = batch, refills = batchRefills, sends = batchSends
            var commit: Task<BatchOutcome, any Error>?
            if work {
                batch = []
                batchRefills = []
                batchSends = []
                plannedEntriesWaiting = 0
                batchesBegun += 1
                // Sends alone (assignments of units already journaled) need no transaction.
                if !(changes.isEmpty && refills.isEmpty) {
                    commit = Task.detached { [journal] in try await journal.commit(changes, refills: refills) }
                }
            }
            if let done = previous {
                carryOut(done.outcome, changes: done.changes, sends: done.sends)
                batchesDone = done.number
                resumeFlushes()
                previous = nil
            }
            if work {
                do {
                    let outcome = try await commit?.value ?? BatchOutcome()
                    failures = 0
                    journalProblem = nil
                    previous = (outcome, changes, sends, batchesBegun)
                } catch {
                    // Nothing of the batch was written; nothing of it was sent. Try it again.
                    failures += 1
                    journalProblem = "\(error)"
                    metrics.error(.journal)
                    logger.critical("journal commit of \(changes.count) changes failed (try \(failures)): \(error)")
                    batch = changes + batch
                    batchRefills = refills + batchRefills
                    batchSends = sends + batchSends
                    batchesBegun -= 1
                    try? await Task.sleep(for: .milliseconds(min(5000, 50 << min(failures, 7))))
                }
            }
            schedule()
        }
        committing = false
        // Everything is journaled now (a failed commit's changes went into a later batch, so a
        // waiter's batch number may not have come).
        batchesDone = batchesBegun
        let waiting = committed
        committed = []
        for w in waiting { w.continuation.resume() }
    }

    private func resumeFlushes() {
        guard committed.contains(where: { $0.batch <= batchesDone }) else { return }
        let ready = committed.filter { $0.batch <= batchesDone }
        committed.removeAll { $0.batch <= batchesDone }
        for w in ready { w.continuation.resume() }
    }

    private func carryOut(_ outcome: BatchOutcome, changes: [JournalChange], sends: [(key: UnitKey?, agent: String, message: Message)]) {
        for key in outcome.stale {
            // Done meanwhile (a report from before a restart): it is not sent.
            guard let lane = policy.lane(of: key) else { continue }
            policy.failed(key, retryAt: nil)
            noteReleased(key, source: lane.source)
            records.removeValue(forKey: key)
            pathLosses.removeValue(forKey: key)
        }
        // A unit reported twice in one batch (an earlier assignment's report, then the current
        // one's) is done once.
        var reportedNow: Set<UnitKey> = []
        for (i, change) in changes.enumerated() {
            guard case .complete(let done, let time, _, _, let lane) = change else { continue }
            reportedNow.insert(UnitKey(job: done.job, unit: done.unit))
            if let first = outcome.counted[i] { count(done, first: first, lane: lane, at: time) }
        }
        for key in reportedNow {
            let wasHeld = reported.removeValue(forKey: key) ?? false
            if let unit = outcome.firstCompletions[key] { policy.done(key, unit: unit, wasHeld: wasHeld) }
            if policy.lane(of: key) == nil, !policy.isRetrying(key) {
                records.removeValue(forKey: key)
                pathLosses.removeValue(forKey: key)
            }
        }
        for (file, ranges) in outcome.resent {
            for r in ranges { remember(r) }
            policy.resend(job: file.job, finish: file.unit, ranges: ranges.map(\.planned))
            logger.warning("job \(file.job): \(ranges.first?.path ?? "") will be sent again in full (\(ranges.count) ranges)")
        }
        policy.formerDestinations(outcome.formerDestinations)
        for page in outcome.pages {
            for u in page.units { remember(u) }
            policy.loaded(page.refill, units: page.units.map(\.planned))
        }
        for (key, agent, message) in sends {
            if let key, outcome.stale.contains(key) { continue }
            // An assignment taken back before its batch committed (its destination went down) is
            // not sent: the `task drop` sent then went ahead of it, and would not stop it.
            if let key, case .taskAssign(let task) = message {
                guard let lane = policy.lane(of: key), lane.source == agent, lane.destination == task.destination.name,
                      task.assignment == 0 || task.assignment == currentAssignment(key) else { continue }
            }
            links[agent]?.sink.yield(message)
        }
        for job in outcome.ended {
            switch job.state {
            case .succeeded:
                logger.notice("job \(job.id) succeeded: \(job.bytesDone) bytes, \(job.filesDone) files, \(job.chunksRefetched) chunks refetched")
                // Told to every agent too (`cancel job`), which then forgets the job: a
                // destination kept, with their descriptors, the files of a unit that failed there
                // and was finished by another agent of the site, for as long as it ran.
                stopUnits(of: job.id)
            default:
                stopUnits(of: job.id)
            }
        }
    }

    /// A unit no longer holds its lane on `source`: the job's count of units per source agent follows.
    func noteReleased(_ key: UnitKey, source: String?) {
        guard let source, let count = running[key.job]?.sources[source] else { return }
        running[key.job]!.sources[source] = count > 1 ? count - 1 : nil
        if count <= 1 { shareSettings(key.job, left: source) }
    }

    private func stopUnits(of job: String) {
        for link in links.values { link.sink.yield(.cancelJob(CancelJob(job: job))) }
        forget(job)
    }

    /// A job that ended: nothing of it stays in memory. Jobs that waited for it may start.
    private func forget(_ job: String) {
        endings.ended(job)
        MemoryTrim.soon()
        // Its scan's later pages are ignored (the agent's walk goes on to its end unheard).
        for (request, scan) in scans where scan.job == job { scans.removeValue(forKey: request) }
        scansWaiting.remove(job)
        unchecked.remove(job)
        policy.end(job: job)
        records.removeAll(job: job)
        metrics.forget(job: job)
        metrics.update(unitsInFlight: policy.heldCount)
        pathLosses = pathLosses.filter { $0.key.job != job }
        wireCounted = wireCounted.filter { $0.key.job != job }
        wireJournaled = wireJournaled.filter { $0.key.job != job }
        live.remove(job: job)
        running.removeValue(forKey: job)
        sentSettings.removeValue(forKey: job)
        let waiters = overlapWaits.withLock { w -> Bool in
            w.removeValue(forKey: job)
            return w.values.contains(job)
        }
        if waiters { startQueuedJobs() }
    }

    /// A started job other than `job` whose destination overlaps `job`'s (`JobPath.overlaps`), if
    /// any: a transfer scanning or running, or a tier job running (a demotion or promotion moves
    /// and removes files where a transfer writes them). Tier jobs take their turn as transfers
    /// do: before, one ran at once beside a transfer into the same place, and a demotion that
    /// checked a file, then removed it by name, could remove the new file a transfer had just
    /// renamed there: the job succeeded, and the file was in neither tier (a reading review).
    func writerOfOverlap(with job: JobRecord) -> String? {
        func overlaps(_ other: JobRecord) -> Bool {
            other.id != job.id && JobPath.overlaps(site: job.destinationSite, job.destinationPath, withSite: other.destinationSite, other.destinationPath)
        }
        if let found = running.values.first(where: { overlaps($0.record) }) { return found.record.id }
        for scanning in Set(scans.values.map(\.job)) where scanning != job.id && running[scanning] == nil {
            if let other = try? journal.job(scanning), !other.state.isTerminal, overlaps(other) { return other.id }
        }
        // A tier job until its page loop ends, cancelled or not: the page the agent is moving
        // goes on to its end (a review: a cancelled demotion's page could still remove a file a
        // transfer let in by the cancel had just written).
        for tier in tiering.sorted() where tier != job.id {
            if let other = try? journal.job(tier), overlaps(other) { return other.id }
        }
        return nil
    }

    /// The job each job waits for (`startScan`), for `status`; read off the actor.
    let overlapWaits = Mutex<[String: String]>([:])

    /// What `job` waits for before it starts, in words for `status`: another job writing to an
    /// overlapping destination. Nil when it waits for nothing of the kind.
    public nonisolated func waitsForOverlap(_ job: String) -> String? {
        overlapWaits.withLock { $0[job] }.map {
            "waiting: job \($0) writes to an overlapping destination, or was submitted before this one to write there; this job starts when that one ends (jobs into one destination run one at a time, in the order they were submitted)"
        }
    }

    // MARK: Scans

    /// Starts the queued jobs that may start, in submission order: a transfer's scan
    /// (`startScan`), a tier job's pages (`launchTier`). A job that cannot start yet (it waits
    /// for an overlapping job, or for an agent of its source site) holds back the later ones
    /// whose destinations overlap its own.
    func startQueuedJobs() {
        guard let queued = try? journal.jobs(in: [.queued]) else { return }
        let scanning = Set(scans.values.map(\.job))
        var waiting = DestinationClaims()
        for job in queued {
            guard job.operation != .transfer else {
                // Nor one the policy runs already: its scan's pages are planned, but not yet
                // journaled (a state disk that is full): each submission meanwhile scanned it
                // again, and the journal took its units as many times once it had room.
                if !scanning.contains(job.id) && !policy.isRunning(job.id), !startScan(job, behind: waiting) {
                    waiting.claim(site: job.destinationSite, path: job.destinationPath, job: job.id)
                }
                continue
            }
            // A tier job: started unless a started job, or a queued one submitted before it,
            // writes to an overlapping place.
            guard !tiering.contains(job.id) else { continue }
            if let other = writerOfOverlap(with: job) ?? waiting.holder(site: job.destinationSite, path: job.destinationPath) {
                if overlapWaits.withLock({ $0.updateValue(other, forKey: job.id) }) != other {
                    logger.notice("job \(job.id) waits for job \(other), which writes to an overlapping place (\(job.destinationSite):/\(job.destinationPath))")
                }
                waiting.claim(site: job.destinationSite, path: job.destinationPath, job: job.id)
                continue
            }
            overlapWaits.withLock { _ = $0.removeValue(forKey: job.id) }
            launchTier(job.id)
        }
    }

    /// Asks an agent of the job's source site to scan it (from after `mark`, for a scan that
    /// stopped); false when the job cannot start yet.
    ///
    /// A job that has not started waits while another started job writes to an overlapping
    /// destination (both would write each file's one partial copy at once: seen, files that
    /// were a mix of both sources, and both jobs "succeeded"), and while one of `behind`
    /// (the queued jobs submitted before it that have not started) would: jobs into one
    /// destination run one at a time in the order they were submitted, so the files left are
    /// the last one's (seen: the last of three jobs started first when the one running ended,
    /// found every file current, and "succeeded" under the second one's files). It starts
    /// when that job ends (`forget`).
    @discardableResult
    private func startScan(_ job: JobRecord, from mark: String? = nil, behind: DestinationClaims = DestinationClaims()) -> Bool {
        if mark == nil, job.state == .queued,
           let other = writerOfOverlap(with: job) ?? behind.holder(site: job.destinationSite, path: job.destinationPath) {
            if overlapWaits.withLock({ $0.updateValue(other, forKey: job.id) }) != other {
                logger.notice("job \(job.id) waits for job \(other), which writes to an overlapping destination, or was submitted before it to write there (\(job.destinationSite):/\(job.destinationPath))")
            }
            return false
        }
        overlapWaits.withLock { _ = $0.removeValue(forKey: job.id) }
        guard let agent = policy.anyAgent(at: job.sourceSite), let link = links[agent] else {
            logger.notice("job \(job.id) waits for an agent of site '\(job.sourceSite)' to scan its source")
            if job.state == .running { scansWaiting.insert(job.id) }
            return false
        }
        let request = nextRequest
        nextRequest += 1
        scans[request] = PendingScan(job: job.id, agent: agent,
                                     builder: Planner.Builder(planner: planner, job: job.id, sourcePath: job.sourcePath,
                                                              destinationPath: job.destinationPath, destinationIsDirectory: job.destinationIsDirectory,
                                                              placement: job.tierPolicy.flatMap { try? TierPolicy(parsing: $0) }, now: Int64(now())),
                                     skipUpTo: mark)
        // With its slash when it was given one: the agent follows a link there (agents before
        // this read the path by its words, as they always did).
        // Each file's identity with it (version 19): its units then read only that file.
        link.sink.yield(.scanRequest(ScanRequest(request: request, path: job.sourcePath + (job.sourceNamesDirectory ? "/" : ""),
                                                 identities: link.version >= WireVersion.sourceIdentity)))
        warmLanes(for: job)
        return true
    }

    /// Asks the source agent of the job's likely first lane (the least-loaded agent of each site,
    /// as `assign` would pick them now) to open its data-plane connections to the destination
    /// agent while the scan and the quick check run (`warm lanes`, version 12). The first unit
    /// then starts on connections already open, one round trip or more sooner; if another lane
    /// gets it, those connections close when idle. Nothing waits for it.
    private func warmLanes(for job: JobRecord) {
        guard let source = policy.leastLoaded(at: job.sourceSite), let sourceLink = links[source],
              sourceLink.version >= WireVersion.warmLanes,
              let destination = policy.leastLoaded(at: job.destinationSite), destination != source,
              let peer = links[destination]?.agent else { return }
        sourceLink.sink.yield(.warmLanes(WarmLanes(destinations: [DataPeer(name: peer.name, host: peer.dataHost, port: peer.dataPort)])))
    }

    /// A scan that stopped midway (its agent or this coordinator died) starts again; what was
    /// planned is kept, and entries up to the last one planned are skipped. It waits for the
    /// changes not yet journaled, which move the mark and the unit ids.
    private func restartScan(_ id: String) {
        Task {
            await self.flush()
            self.restartScanNow(id)
        }
    }

    private func restartScanNow(_ id: String) {
        guard !scans.values.contains(where: { $0.job == id }),
              let job = try? journal.job(id), !job.state.isTerminal, !job.planned else { return }
        logger.notice("job \(id): scanning again\(job.scanMark.map { " after \($0)" } ?? "")")
        startScan(job, from: job.scanMark)
    }

    private func requireAgents(at site: String) throws {
        guard !policy.hasAgents(at: site) else { return }
        throw knownSites.contains(site) ? SchedulerError.noAgentsUp(site) : SchedulerError.unknownSite(site, known: knownSites.sorted())
    }

    /// Running jobs whose scan stopped and waits for an agent of their source site.
    var scansWaiting: Set<String> = []

    /// Sites seen since start, up or not, for error messages.
    var knownSites: Set<String> = []

    static func path(_ p: String) throws -> String {
        do { return try JobPath.normalize(p) } catch { throw SchedulerError.invalid(error.description) }
    }

    private func rate(_ bytes: Int64) -> Double {
        let t = now()
        defer { lastRate = (t, bytes) }
        guard let last = lastRate, t > last.time + 0.001, bytes >= last.bytes else { return 0 }  // a failed unit's progress went away
        return Double(bytes - last.bytes) / (t - last.time)
    }
}
