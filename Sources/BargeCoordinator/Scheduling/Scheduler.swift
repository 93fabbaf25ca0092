import BargeFlow
import BargeWire
import Foundation
import Logging

/// The coordinator's moving parts: which agents are connected, which units they hold, scans and
/// verifications in flight. Decisions are made by the pure parts (`Planner`, `LanePicker`,
/// `JobLifecycle`); every state change is journalled before it is acted on, and this actor
/// sends the resulting messages to the agents' connections.
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
        var entries: [FileEntry] = []
        var skipped: [String] = []
    }

    public let journal: Journal
    public let metrics: CoordinatorMetrics
    public let planner: Planner
    /// A unit whose lanes failed this many times fails its job.
    public let maxAttempts: Int64
    let logger: Logger
    let now: @Sendable () -> Double

    var links: [String: Link] = [:]
    /// Agents being drained: connected, but given no new work.
    var draining: Set<String> = []
    /// Units whose lane failed wait this long before another try (doubling per attempt, with jitter).
    let retryBackoff = ExponentialBackoff(initial: .milliseconds(500), maximum: .seconds(30))
    /// When each unit waiting out its backoff may be handed out again.
    private var notBefore: [UnitKey: Double] = [:]
    var load: [String: Int] = [:]
    var held: [UnitKey: (source: String, destination: String)] = [:]
    /// job, destination path → the agent holding that file's partial copy.
    private var pins: [String: String] = [:]
    private var scans: [UInt64: PendingScan] = [:]
    var live: [UnitKey: TaskProgress] = [:]
    /// The `job settings` each source agent was last sent, per job.
    var sentSettings: [String: [String: JobSettings]] = [:]
    var replies: [UInt64: (agent: String, continuation: CheckedContinuation<VerifyReply, Error>)] = [:]
    var repairs: [UnitKey: CheckedContinuation<Result<TaskDone, SchedulerError>, Never>] = [:]
    var nextRequest: UInt64 = 1
    private var nextConnection: UInt64 = 1
    private var lastRate: (time: Double, bytes: Int64)?
    /// Raw bytes of units finished since start, for the throughput gauge.
    private var completedBytes: Int64 = 0

    public init(journal: Journal, metrics: CoordinatorMetrics = CoordinatorMetrics(), planner: Planner = Planner(),
                maxAttempts: Int64 = 3, logger: Logger = Logger(label: "barge.coordinator"),
                now: @escaping @Sendable () -> Double = { Date().timeIntervalSince1970 }) {
        self.journal = journal
        self.metrics = metrics
        self.planner = planner
        self.maxAttempts = maxAttempts
        self.logger = logger
        self.now = now
    }

    // MARK: Agents

    /// An agent's connection has registered; returns the connection's id for `detach`.
    public func attach(_ agent: Register, sink: AsyncStream<Message>.Continuation, version: UInt8 = 1) -> UInt64 {
        let id = nextConnection
        nextConnection += 1
        links[agent.name]?.sink.finish()
        links[agent.name] = Link(agent: agent, sink: sink, connection: id, version: version)
        // An agent that registers again (restarted after an upgrade) takes work again.
        if draining.remove(agent.name) != nil { logger.notice("agent \(agent.name) registered again: no longer draining") }
        knownSites.insert(agent.site)
        startQueuedJobs()
        pump()
        return id
    }

    /// The connection ended. The agent's units stay with it until it misses its heartbeats
    /// (`agentsDown`): a quick reconnect keeps its work.
    public func detach(_ name: String, connection: UInt64) {
        guard links[name]?.connection == connection else { return }
        links.removeValue(forKey: name)
    }

    /// `barge drain`: the agent keeps the units it holds and gets no new ones (nor scans or
    /// verifications), so it can be stopped once they end. Returns how many it still holds.
    public func drain(_ name: String) throws -> Int {
        guard let link = links[name] else { throw SchedulerError.invalid("agent \(name) is not connected") }
        draining.insert(name)
        let holding = load[name] ?? 0
        logger.notice("agent \(name) draining: it finishes its \(holding) units and takes no new ones")
        if link.version >= WireVersion.drain { link.sink.yield(.drain(Drain(reason: "barge drain \(name)"))) }
        return holding
    }

    /// Agents that missed their heartbeats: their units go back to pending for other lanes.
    @discardableResult
    public func agentsDown(_ names: [String]) throws -> Int {
        guard !names.isEmpty else { return 0 }
        for name in names { links.removeValue(forKey: name)?.sink.finish() }
        let released = try journal.releaseUnits(heldBy: names)
        metrics.retried(released)
        for (key, lane) in held where names.contains(lane.source) || names.contains(lane.destination) {
            release(key, abandoned: true)
            repairs.removeValue(forKey: key)?.resume(returning: .failure(.agentUnavailable("agent \(lane.source) or \(lane.destination) went down during the repair")))
        }
        pins = pins.filter { !names.contains($0.value) }
        for (request, waiting) in replies where names.contains(waiting.agent) {
            replies.removeValue(forKey: request)
            waiting.continuation.resume(throwing: SchedulerError.agentUnavailable("agent '\(waiting.agent)' went down during the verification"))
        }
        // A scan whose agent went down is asked of another agent of the site.
        scans = scans.filter { !names.contains($0.value.agent) }
        startQueuedJobs()
        pump()
        return released
    }

    // MARK: Jobs

    public func submit(_ request: SubmitRequest, id: String) throws -> JobRecord {
        let source = try Self.path(request.source.path), destination = try Self.path(request.destination.path)
        try requireAgents(at: request.source.site)
        try requireAgents(at: request.destination.site)
        let codec = request.codec ?? "auto"
        guard codec.utf8.count <= 64, !codec.isEmpty else { throw SchedulerError.invalid("codec name is empty or too long") }
        let bwlimit = try Self.limit(request.bwlimit)
        let cc = request.cc ?? CongestionMode.fair.rawValue
        do { _ = try CongestionMode(named: cc) } catch { throw SchedulerError.invalid(error.description) }
        var job = JobRecord(id: id, sourceSite: request.source.site, sourcePath: source,
                            destinationSite: request.destination.site, destinationPath: destination, createdAt: Int64(now()))
        job.codec = codec
        job.chunkSize = Int64(planner.chunkSize)
        job.bwlimit = bwlimit
        job.congestion = cc
        try journal.insert(job)
        logger.notice("job \(id): \(job.sourceSite):/\(source) → \(job.destinationSite):/\(destination), codec \(codec), cc \(cc)\(bwlimit.map { ", bwlimit \($0)" } ?? "")")
        startScan(job)
        return job
    }

    public func cancel(_ id: String) throws -> JobRecord {
        let job = try journal.end(id, .cancel, now: now())
        stopUnits(of: id)
        return job
    }

    /// Runs a failed or cancelled job again from where it stopped: units already done stay done.
    public func resume(_ id: String) throws -> JobRecord {
        guard let before = try journal.job(id) else { throw SchedulerError.unknownJob(id) }
        if before.state == .failed || before.state == .cancelled {
            try requireAgents(at: before.sourceSite)
            try requireAgents(at: before.destinationSite)
        }
        let job = try journal.resume(id)
        notBefore = notBefore.filter { $0.key.job != id }
        logger.notice("job \(id) resumed (\(job.state.rawValue))")
        if job.state == .queued { startScan(job) }
        pump()
        return job
    }

    /// The job as stored, with the bytes of units still running added.
    public func status(_ id: String) throws -> JobRecord? {
        guard var job = try journal.job(id) else { return nil }
        addLive(&job)
        return job
    }

    public func statuses() throws -> [JobRecord] {
        try journal.jobs().map { job in
            var j = job
            addLive(&j)
            return j
        }
    }

    private func addLive(_ job: inout JobRecord) {
        guard job.state == .running else { return }
        for (key, p) in live where key.job == job.id {
            job.bytesDone += Int64(p.bytesDone)
            job.wireBytes += Int64(p.wireBytes)
        }
    }

    /// Picks up jobs left by an earlier run of the coordinator: nothing is assigned any more.
    public func recoverAfterRestart() throws {
        let released = try journal.releaseAllAssigned()
        if released > 0 { logger.notice("\(released) units of interrupted jobs are pending again") }
        startQueuedJobs()
        pump()
    }

    // MARK: Messages from agents

    public func received(_ message: Message, from agent: String) {
        do {
            switch message {
            case .scanReply(let reply): try scanned(reply)
            case .taskProgress(let p):
                let key = UnitKey(job: p.job, unit: p.unit)
                if let lane = held[key] {
                    live[key] = p
                    if let f = p.lane { metrics.update(lane: lane.source, lane.destination, f) }
                }
            case .taskDone(let done): try finished(done)
            case .taskFailed(let failure): try failed(failure, agent: agent)
            case .verifyReply(let reply): replies.removeValue(forKey: reply.request)?.continuation.resume(returning: reply)
            default: logger.warning("agent \(agent) sent an unexpected \(message.type)")
            }
        } catch {
            logger.error("handling \(message.type) from \(agent): \(error)")
        }
    }

    private func scanned(_ reply: ScanReply) throws {
        guard var scan = scans[reply.request] else { return }
        scan.entries += reply.entries
        scan.skipped += reply.skipped
        guard reply.final else {
            scans[reply.request] = scan
            return
        }
        scans.removeValue(forKey: reply.request)
        guard let job = try journal.job(scan.job), job.state == .queued else { return }
        if !reply.error.isEmpty {
            try journal.end(job.id, .fail("scan of \(job.sourceSite):/\(job.sourcePath) failed: \(reply.error)"), now: now())
            logger.warning("job \(job.id): scan failed: \(reply.error)")
            return
        }
        if !scan.skipped.isEmpty {
            logger.warning("job \(job.id): \(scan.skipped.count) entries cannot be transferred and are skipped, e.g. \(scan.skipped[0])")
        }
        let plan = planner.plan(entries: scan.entries, sourcePath: job.sourcePath, destinationPath: job.destinationPath)
        let units = plan.units.enumerated().map { i, u in
            UnitRecord(jobId: job.id, unitId: Int64(i), kind: u.kind, files: u.files, dependsOn: u.dependsOn)
        }
        try journal.plan(job.id, units: units, totals: plan.totals, now: now())
        logger.notice("job \(job.id): \(plan.totals.files) files, \(plan.totals.bytes) bytes in \(units.count) units")
        pump()
    }

    private func finished(_ done: TaskDone) throws {
        let key = UnitKey(job: done.job, unit: done.unit)
        if let waiter = repairs.removeValue(forKey: key) {
            release(key)
            waiter.resume(returning: .success(done))
            return
        }
        release(key)
        if let job = try journal.complete(done, now: now()) {
            metrics.record(done)
            completedBytes += Int64(done.bytes)
            if job.state == .succeeded {
                logger.notice("job \(job.id) succeeded: \(job.bytesDone) bytes, \(job.filesDone) files, \(job.chunksRefetched) chunks refetched")
            }
        }
        pump()
    }

    private func failed(_ failure: TaskFailed, agent: String) throws {
        let key = UnitKey(job: failure.job, unit: failure.unit)
        if let waiter = repairs.removeValue(forKey: key) {
            release(key)
            waiter.resume(returning: .failure(.agentUnavailable(failure.reason)))
            return
        }
        guard held[key] != nil else { return }
        release(key, abandoned: true)
        guard let job = try journal.job(failure.job), job.state == .running else { return }
        let attempts = try journal.release(job: failure.job, unit: Int64(failure.unit))
        metrics.retried(1)
        if failure.retryable && attempts < maxAttempts {
            let wait = retryBackoff.delay(attempt: Int(attempts) - 1, fraction: Double.random(in: 0...1))
            notBefore[key] = now() + Double(wait.components.seconds) + Double(wait.components.attoseconds) / 1e18
            logger.warning("job \(failure.job) unit \(failure.unit) failed on \(agent) (attempt \(attempts) of \(maxAttempts)), retrying in \(wait): \(failure.reason)")
            // A large file that cannot be finished where it now goes (its partial copy was at an
            // agent that went down) is sent again from its first range.
            if let unit = try journal.units(job: failure.job).first(where: { $0.unitId == Int64(failure.unit) }), unit.kind == .finish {
                let reset = try journal.resetRanges(job: failure.job, path: unit.path)
                pins.removeValue(forKey: failure.job + "\u{0}" + unit.path)
                if reset > 0 { logger.warning("job \(failure.job): \(unit.path) will be sent again in full (\(reset) ranges)") }
            }
        } else {
            let reason = failure.retryable ? "unit \(failure.unit) failed \(attempts) times; last: \(failure.reason)" : failure.reason
            try journal.end(failure.job, .fail(reason), now: now())
            logger.error("job \(failure.job) failed: \(reason)")
            stopUnits(of: failure.job)
        }
        pump()
    }

    // MARK: Assignment

    /// Hands out every pending unit that is ready and has a lane with room.
    private func pump() {
        do {
            for job in try journal.jobs() where job.state == .running {
                try assignReady(job)
            }
        } catch {
            logger.error("scheduling failed: \(error)")
        }
    }

    /// Called every second: updates the throughput and in-flight gauges.
    public func tick() {
        if !notBefore.isEmpty { pump() }  // units whose backoff has run out
        let moved = completedBytes + live.values.reduce(Int64(0)) { $0 + Int64($1.bytesDone) }
        metrics.update(throughput: rate(moved))
    }

    private func assignReady(_ job: JobRecord) throws {
        let units = try journal.openUnits(job: job.id)
        var openByPath: [String: Int] = [:]
        var firstOpen = Int64.max
        for u in units {
            firstOpen = min(firstOpen, u.unitId)
            if u.kind == .range || u.kind == .finish { openByPath[u.path, default: 0] += 1 }
        }
        let time = now()
        for u in units where u.state == .pending {
            let key = UnitKey(job: job.id, unit: UInt64(u.unitId))
            if let at = notBefore[key] {
                if at > time { continue }
                notBefore.removeValue(forKey: key)
            }
            if let after = u.dependsOn {
                // `*`: every earlier unit is done; a path: every other unit of that file is done.
                let ready = after == "*" ? firstOpen == u.unitId : (openByPath[after] ?? 1) == 1
                if !ready { continue }
            }
            let pinKey = job.id + "\u{0}" + u.path
            let pinned = u.kind == .range || u.kind == .finish ? pins[pinKey] : nil
            guard let lane = LanePicker.pick(sources: candidates(at: job.sourceSite), destinations: candidates(at: job.destinationSite),
                                             pinned: pinned),
                  let source = links[lane.source], let destination = links[lane.destination] else { continue }
            try journal.assign(job: job.id, unit: u.unitId, source: lane.source, destination: lane.destination)
            hold(key, lane)
            shareSettings(job)
            if u.kind == .range || u.kind == .finish { pins[pinKey] = lane.destination }
            source.sink.yield(.taskAssign(TaskAssign(
                job: job.id, unit: UInt64(u.unitId),
                destination: DataPeer(name: destination.agent.name, host: destination.agent.dataHost, port: destination.agent.dataPort),
                codec: job.codec, chunkSize: UInt32(job.chunkSize), files: u.files)))
        }
    }

    func candidates(at site: String) -> [LanePicker.Candidate] {
        links.values.filter { $0.agent.site == site && !draining.contains($0.agent.name) }.map {
            LanePicker.Candidate(name: $0.agent.name, load: load[$0.agent.name] ?? 0, bound: Int(max(1, $0.agent.maxInFlight)))
        }
    }

    func hold(_ key: UnitKey, _ lane: (source: String, destination: String)) {
        held[key] = lane
        metrics.update(unitsInFlight: held.count)
        load[lane.source, default: 0] += 1
        if lane.destination != lane.source { load[lane.destination, default: 0] += 1 }
    }

    /// Forgets a unit's lane (it ended, or its job stopped).
    /// Forgets that a unit is held. An `abandoned` unit (failed, or its agent went down) will not
    /// report its wire bytes: those it last reported in progress are counted now, so that
    /// `wire_bytes` includes what crashes cost.
    func release(_ key: UnitKey, abandoned: Bool = false) {
        guard let lane = held.removeValue(forKey: key) else { return }
        metrics.update(unitsInFlight: held.count)
        if let progress = live.removeValue(forKey: key), abandoned, progress.wireBytes > 0 {
            do { try journal.addWireBytes(key.job, Int64(progress.wireBytes)) } catch { logger.error("journal: \(error)") }
        }
        load[lane.source, default: 1] -= 1
        if lane.destination != lane.source { load[lane.destination, default: 1] -= 1 }
        if let job = try? journal.job(key.job) { shareSettings(job) }
    }

    private func stopUnits(of job: String) {
        for key in held.keys where key.job == job { release(key) }
        for link in links.values { link.sink.yield(.cancelJob(CancelJob(job: job))) }
        pins = pins.filter { !$0.key.hasPrefix(job + "\u{0}") }
    }

    private func startQueuedJobs() {
        guard let queued = try? journal.jobs().filter({ $0.state == .queued }) else { return }
        let scanning = Set(scans.values.map(\.job))
        for job in queued where !scanning.contains(job.id) { startScan(job) }
    }

    private func startScan(_ job: JobRecord) {
        guard let agent = candidates(at: job.sourceSite).min(by: { ($0.load, $0.name) < ($1.load, $1.name) }),
              let link = links[agent.name] else {
            logger.notice("job \(job.id) waits for an agent of site '\(job.sourceSite)' to scan its source")
            return
        }
        let request = nextRequest
        nextRequest += 1
        scans[request] = PendingScan(job: job.id, agent: agent.name)
        link.sink.yield(.scanRequest(ScanRequest(request: request, path: job.sourcePath)))
    }

    private func requireAgents(at site: String) throws {
        guard !links.values.contains(where: { $0.agent.site == site }) else { return }
        throw knownSites.contains(site) ? SchedulerError.noAgentsUp(site) : SchedulerError.unknownSite(site, known: knownSites.sorted())
    }

    /// Sites seen since start, up or not, for error messages.
    private var knownSites: Set<String> = []

    private static func path(_ p: String) throws -> String {
        do { return try JobPath.normalize(p) } catch { throw SchedulerError.invalid(error.description) }
    }

    private func rate(_ bytes: Int64) -> Double {
        let t = now()
        defer { lastRate = (t, bytes) }
        guard let last = lastRate, t > last.time + 0.001, bytes >= last.bytes else { return 0 }  // a failed unit's progress went away
        return Double(bytes - last.bytes) / (t - last.time)
    }
}
