import BargeTier
import BargeWire
import Foundation

/// Tier jobs (`barge tier demote|promote SITE:PATH`) and the site's tier requests (`ls`,
/// `tier stats`, `tier gc`).
///
/// A tier job is a `JobRecord` whose source and destination are the same site and path, with
/// `operation` `demote` or `promote`. It runs here as a loop of pages, as a verification does:
/// each page is one `tier request` to an up agent of the site (protocol 9), which moves up to
/// `tierPage` files and answers with what it moved and where the next page starts. After each
/// page the journal gets the counts and the cursor, so a tier job shows progress in `status`,
/// is cancelled between pages, and resumes where it stopped after a coordinator restart or
/// `barge resume`. A page is safe to run twice: an agent's demotion and promotion are
/// idempotent over crashes (see `ColdStore`).
extension Scheduler {
    /// Files per page.
    static let tierPage: UInt32 = 256
    /// A page whose agent went down is asked of another this many times before the job fails.
    static let tierAttempts = 5
    /// How long a tier job that the journal could not start waits before it is tried again.
    static let tierStartPause = Duration.seconds(5)

    /// `barge tier demote|promote`: a tier job, started at once.
    public func submitTier(_ operation: JobOperation, site: String, path: String, policy: String?, id: String) throws -> JobRecord {
        guard operation != .transfer else { throw SchedulerError.invalid("not a tier operation") }
        let path = try Self.path(path)
        try requireTierAgent(at: site)
        var job = JobRecord(id: id, sourceSite: site, sourcePath: path, destinationSite: site, destinationPath: path, createdAt: Int64(now()))
        job.operation = operation
        job.tierPolicy = policy
        job.codec = "archive"
        try journal.insert(job)
        logger.notice("job \(id): \(operation.rawValue) \(site):/\(path)\(policy.map { " with policy \($0)" } ?? "")")
        // At once, unless a job writes to an overlapping place (it waits for it, `startQueuedJobs`).
        startQueuedJobs()
        return try journal.job(id) ?? job
    }

    /// One request to an up agent of `site` that speaks tiers, and its reply.
    /// `version`: the least an agent must speak to take it (a listing's page with a cursor).
    public func tierRequest(site: String, version: UInt8 = WireVersion.tiers, _ make: @Sendable (UInt64) -> TierRequest,
                            timeout: Duration = .seconds(600)) async throws -> TierReply {
        let agent = try await tierAgent(at: site, wait: .zero, version: version)
        return try await sendTier(make, to: agent, timeout: timeout)
    }

    /// The tier jobs that were running when the coordinator stopped (queued ones start as
    /// `startQueuedJobs` lets them).
    func resumeTierJobs() {
        for job in (try? journal.jobs(in: [.running])) ?? [] where job.operation != .transfer {
            logger.notice("job \(job.id): \(job.operation.rawValue) resumes\(job.tierCursor.map { " after \($0)" } ?? "")")
            launchTier(job.id)
        }
    }

    func launchTier(_ id: String) {
        guard !tiering.contains(id) else { return }
        tiering.insert(id)
        Task { await self.runTier(id) }
    }

    private func runTier(_ id: String) async {
        var startAgain = false, runAgain = false
        defer {
            tiering.remove(id)
            // The jobs that waited for it may start (or it, again).
            if startAgain || overlapWaits.withLock({ $0.values.contains(id) }) { startQueuedJobs() }
            if runAgain { launchTier(id) }
        }
        var job: JobRecord
        do { job = try journal.startTier(id, now: now()) } catch {
            // The journal cannot take it (its disk full): the job stays queued, and is tried again
            // after a pause. Launched again at once by the jobs that wait for it, it spun on the
            // actor until the journal had room.
            logger.error("job \(id): cannot start (\(error)); tried again in \(Self.tierStartPause)")
            try? await Task.sleep(for: Self.tierStartPause)
            // A queued one waits its turn again; one running already (resumed after a restart,
            // or by `barge resume`) has no one else to run it (a review).
            if (try? journal.job(id))?.state == .running { runAgain = true } else { startAgain = true }
            return
        }
        guard job.state == .running else { return }
        let operation: TierOperation = job.operation == .demote ? .demote : .promote
        var attempts = 0
        // Pages stay with one agent while it is up: it keeps the demotion's walk between pages.
        var sticky: String?
        do {
            while true {
                // Cancelled (or ended some other way) between pages.
                guard let current = try journal.job(id), current.state == .running else { return }
                job = current
                let reply: TierReply
                do {
                    let agent: String
                    // Not one draining: its pages would keep it from being drained.
                    if let kept = sticky, links[kept] != nil, !policy.isDraining(kept) { agent = kept } else {
                        agent = try await tierAgent(at: job.destinationSite, wait: Self.verifyAgentWait)
                    }
                    sticky = agent
                    let page = job
                    reply = try await sendTier({ request in
                        TierRequest(request: request, operation: operation, job: id, path: page.destinationPath, policy: page.tierPolicy ?? "",
                                    after: page.tierCursor ?? "", limit: Self.tierPage)
                    }, to: agent, timeout: .seconds(3600))
                } catch SchedulerError.agentUnavailable(let why) where attempts < Self.tierAttempts {
                    attempts += 1
                    sticky = nil
                    logger.warning("job \(id): \(why); page asked again (\(attempts) of \(Self.tierAttempts))")
                    continue
                }
                guard reply.error.isEmpty else { throw SchedulerError.agentUnavailable(reply.error) }
                attempts = 0
                for s in reply.skipped.prefix(20) { logger.warning("job \(id): \(s.path) left where it was: \(s.reason)") }
                // A file left cold because its cold copy is damaged did not move: the job ends
                // partial (exit status 2) and `status` names the first, as a transfer's entries
                // left out; others (a newer file under the name) were only left where they were.
                let damaged = reply.skipped.filter { $0.reason.hasPrefix(ColdStoreError.damagedPrefix) }
                try journal.tierProgress(id, cursor: reply.next.isEmpty ? nil : reply.next, files: Int64(reply.counters.files),
                                         bytes: Int64(reply.counters.logicalBytes), packBytes: Int64(reply.counters.packBytes),
                                         skipped: Int64(reply.skipped.count - damaged.count),
                                         damaged: damaged.map { "\($0.path): \($0.reason)" })
                if reply.next.isEmpty { break }
            }
            let ended = try journal.end(id, .succeed, now: now())
            logger.notice("job \(id): \(job.operation.rawValue) done, \(ended.filesDone) files, \(ended.bytesDone) bytes, \(ended.skippedFiles) left where they were")
            endings.ended(id)
        } catch {
            logger.error("job \(id): \(job.operation.rawValue) failed: \(error)")
            _ = try? journal.end(id, .fail("\(error)"), now: now())
            endings.ended(id)
        }
    }

    /// An up agent of `site` that speaks protocol 9; waits up to `wait` for one.
    private func tierAgent(at site: String, wait: Duration, version: UInt8 = WireVersion.tiers) async throws -> String {
        let deadline = ContinuousClock.now + wait
        while true {
            let candidates = links.filter { $0.value.agent.site == site && $0.value.version >= version }.keys.sorted()
            if let agent = policy.anyAgent(at: site).flatMap({ candidates.contains($0) ? $0 : nil }) ?? candidates.first { return agent }
            guard ContinuousClock.now < deadline else {
                if links.values.contains(where: { $0.agent.site == site }) {
                    throw SchedulerError.agentUnavailable("no agent of site '\(site)' speaks protocol \(version)\(version == WireVersion.tiers ? " (tiers)" : ""): upgrade them, and run them without --insecure-plaintext")
                }
                throw SchedulerError.agentUnavailable("no agent of site '\(site)' is up")
            }
            try await Task.sleep(for: .milliseconds(500))
        }
    }

    private func requireTierAgent(at site: String) throws {
        guard links.values.contains(where: { $0.agent.site == site && $0.version >= WireVersion.tiers }) else {
            if links.values.contains(where: { $0.agent.site == site }) {
                throw SchedulerError.conflict("no agent of site '\(site)' speaks protocol \(WireVersion.tiers) (tiers): upgrade them, and run them without --insecure-plaintext")
            }
            // A site no agent ever registered from is unknown (404), as for a submission; one
            // whose agents are all down has no agent up (409).
            throw knownSites.contains(site) ? SchedulerError.noAgentsUp(site) : SchedulerError.unknownSite(site, known: knownSites.sorted())
        }
    }

    private func sendTier(_ make: (UInt64) -> TierRequest, to agent: String, timeout: Duration) async throws -> TierReply {
        guard let link = links[agent] else { throw SchedulerError.agentUnavailable("agent '\(agent)' is not connected") }
        let request = nextRequest
        nextRequest += 1
        let message = Message.tierRequest(make(request))
        let timer = Task { [weak self] in
            try await Task.sleep(for: timeout)
            await self?.expireTierReply(request)
        }
        defer { timer.cancel() }
        // Cancelled (the coordinator stopping, the caller gone), the wait ends at once and the
        // reply, should it come, is dropped: a frozen agent held a stop for the 10 s limit.
        try Task.checkCancellation()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                tierReplies[request] = (agent, continuation)
                link.sink.yield(message)
            }
        } onCancel: { [weak self] in
            Task { await self?.cancelTierReply(request) }
        }
    }

    private func cancelTierReply(_ request: UInt64) {
        tierReplies.removeValue(forKey: request)?.continuation.resume(throwing: CancellationError())
    }

    private func expireTierReply(_ request: UInt64) {
        tierReplies.removeValue(forKey: request)?.continuation.resume(throwing: SchedulerError.timedOut("a tier reply"))
    }

    func tierReplied(_ reply: TierReply) {
        tierReplies.removeValue(forKey: reply.request)?.continuation.resume(returning: reply)
    }

    func tierRepliesLost(to names: [String]) {
        for (request, waiting) in tierReplies where names.contains(waiting.agent) {
            tierReplies.removeValue(forKey: request)
            waiting.continuation.resume(throwing: SchedulerError.agentUnavailable("agent '\(waiting.agent)' went down during a tier request"))
        }
    }
}
