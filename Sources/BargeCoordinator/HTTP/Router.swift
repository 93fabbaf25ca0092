import BargeTier
import BargeWire
import Foundation
import Hummingbird
import Logging
import ServiceLifecycle

/// The coordinator's HTTP API (docs/openapi.yaml). Handlers only translate between HTTP and the
/// directory, scheduler and tokens; decisions live there. Each route names the least role that
/// may call it; `APIAuthentication` answers 401 to a request without a valid token first.
public func buildRouter(directory: AgentDirectory, scheduler: Scheduler, tokens: APITokens, audit: AuditTrail? = nil,
                        secureCookie: Bool = false, logger: Logger = Logger(label: "barge.coordinator")) -> Router<APIRequestContext> {
    buildRoutes(directory: directory, scheduler: scheduler, tokens: tokens, audit: audit, secureCookie: secureCookie, logger: logger).router
}

/// `audit`: where control actions are recorded (the coordinator always has one).
/// `secureCookie`: the API is served over TLS, so the dashboard's sign-in cookie is marked
/// `Secure` (a browser then never sends it over plain HTTP).
public func buildRoutes(directory: AgentDirectory, scheduler: Scheduler, tokens: APITokens, audit: AuditTrail? = nil,
                        secureCookie: Bool = false, logger: Logger = Logger(label: "barge.coordinator")) -> APIRoutes {
    let api = APIRoutes(tokens: tokens, audit: audit, metrics: scheduler.metrics, logger: logger)
    api.open(.get, "/healthz") { _, _ -> Health in Health(status: "ok") }
    api.route(.get, "/v1/agents", .viewer) { _, _ -> AgentList in
        AgentList(agents: await directory.agents.map(AgentStatus.init))
    }
    api.route(.post, "/v1/agents/{name}/drain", .admin) { _, context -> DrainOutcome in
        let name = try context.parameters.decoded("name")
        do throws(RegistryError) {
            try await directory.drain(name: name)
        } catch {
            throw HTTPError(.notFound, message: error.description)
        }
        let holding = try await httpErrors { try await scheduler.drain(name) }
        return DrainOutcome(agent: name, state: "draining", unitsHeld: holding)
    }
    api.route(.get, "/v1/jobs", .viewer) { request, _ -> JobList in
        let query = request.uri.queryParameters
        var limit = 100
        if let given = query["limit"] {
            guard let n = Int(given), (1...1000).contains(n) else { throw HTTPError(.badRequest, message: "limit must be a whole number from 1 to 1000") }
            limit = n
        }
        let after = query["after"].map(String.init).flatMap { $0.isEmpty ? nil : $0 }
        // One more than the page: `next` only when there is a job after it (with exactly a page
        // left, it named the last job, and following it gave an empty page).
        let jobs = try await httpErrors { try await scheduler.statuses(limit: limit + 1, after: after) }
        let page = Array(jobs.prefix(limit))
        return JobList(jobs: page.map(JobStatus.init), next: jobs.count > limit ? page.last?.id : nil)
    }
    api.route(.post, "/v1/jobs/prune", .operator) { request, _ -> PruneOutcome in
        // A finite number: `nan` pruned nothing with 200, and `1e400` (infinity) every ended job.
        guard let given = request.uri.queryParameters["before"], let before = Double(given), before.isFinite else {
            throw HTTPError(.badRequest, message: "before must be a time in Unix seconds: jobs that ended before it are deleted")
        }
        return PruneOutcome(pruned: try await scheduler.prune(endedBefore: before))
    }
    api.route(.post, "/v1/jobs", .operator) { request, context -> EditedResponse<JobStatus> in
        let submit = try await RequestChecks.decode(SubmitRequest.self, request,
                                                    shape: "{\"source\":{\"site\",\"path\"},\"destination\":{\"site\",\"path\"},\"codec\",\"bwlimit\",\"cc\",\"checksum\",\"tier\"}",
                                                    keys: ["source", "destination", "codec", "bwlimit", "cc", "checksum", "tier", "notify"],
                                                    nested: ["source": ["site", "path"], "destination": ["site", "path"]])
        let job = try await httpErrors { try await scheduler.submit(submit, id: JobID.make()) }
        return EditedResponse(status: .created, response: JobStatus(job))
    }
    api.route(.get, "/v1/jobs/{id}", .viewer) { request, context -> JobStatus in
        let id = try context.parameters.decoded("id")
        guard var job = try await scheduler.status(id) else { throw HTTPError(.notFound, message: "no job \(id)") }
        // A long poll: `wait=S` answers when the job ends, or after S seconds (at most 60).
        if let raw = request.uri.queryParameters["wait"] {
            guard let seconds = Double(String(raw)), seconds >= 0, seconds <= 5 else {
                throw HTTPError(.badRequest, message: "wait must be a number of seconds from 0 to 5, not '\(raw)'")
            }
            if !job.state.isTerminal, seconds > 0 {
                await scheduler.endings.wait(for: id, upTo: .milliseconds(Int64(seconds * 1000)))
                job = try await scheduler.status(id) ?? job
            }
        }
        var status = JobStatus(job, lanes: scheduler.lanes(of: id))
        status.waiting = JobWaiting.reason(state: job.state, source: job.sourceSite, destination: job.destinationSite, agents: await directory.agents,
                                           journalProblem: await scheduler.journalProblem, coordinatorAge: await directory.age) ?? scheduler.waitsForOverlap(id)
        status.verification = try await httpErrors { try await scheduler.verification(id) }.map(VerifyProgress.init)
        return status
    }
    api.route(.post, "/v1/jobs/{id}/limit", .operator) { request, context -> JobStatus in
        let id = try context.parameters.decoded("id")
        let limit = try await RequestChecks.decode(LimitRequest.self, request, shape: "{\"bwlimit\": \"100MiB/s\"} (or \"off\", or a timetable)", keys: ["bwlimit"])
        return JobStatus(try await httpErrors { try await scheduler.setLimit(id, bwlimit: limit.bwlimit) })
    }
    api.route(.post, "/v1/jobs/{id}/cancel", .operator) { _, context -> JobStatus in
        let id = try context.parameters.decoded("id")
        return JobStatus(try await httpErrors { try await scheduler.cancel(id) })
    }
    api.route(.post, "/v1/jobs/{id}/resume", .operator) { _, context -> JobStatus in
        let id = try context.parameters.decoded("id")
        return JobStatus(try await httpErrors { try await scheduler.resume(id) })
    }
    api.route(.post, "/v1/jobs/{id}/verify", .operator) { request, context -> EditedResponse<VerifyOutcome> in
        let id = try context.parameters.decoded("id")
        let repair = try RequestChecks.flag(request, "repair")
        return EditedResponse(status: .accepted, response: try await httpErrors { try await scheduler.startVerify(id, repair: repair) })
    }
    api.route(.get, "/v1/jobs/{id}/verify", .viewer) { _, context -> VerifyOutcome in
        let id = try context.parameters.decoded("id")
        guard let outcome = try await httpErrors({ try await scheduler.verification(id) }) else {
            throw HTTPError(.notFound, message: "job \(id) has not been verified")
        }
        return outcome
    }
    api.route(.get, "/v1/jobs/{id}/untransferable", .viewer) { request, context -> UntransferableList in
        let id = try context.parameters.decoded("id")
        let query = request.uri.queryParameters
        var limit = 1000
        if let given = query["limit"] {
            guard let n = Int(given), (1...10_000).contains(n) else { throw HTTPError(.badRequest, message: "limit must be a whole number from 1 to 10000") }
            limit = n
        }
        var after: Int64?
        if let given = query["after"], !given.isEmpty {
            guard let n = Int64(given), n > 0 else { throw HTTPError(.badRequest, message: "after must be the next of the page before (a positive whole number), not '\(given)'") }
            after = n
        }
        guard let page = try await httpErrors({ try await scheduler.untransferable(id, limit: limit, after: after) }) else {
            throw HTTPError(.notFound, message: "no job \(id)")
        }
        return UntransferableList(job: id, total: page.job.untransferableEntries, named: page.named,
                                  entries: page.entries, next: page.next.map(String.init))
    }
    api.route(.get, "/v1/jobs/{id}/evidence", .viewer) { _, context -> Response in
        let id = try context.parameters.decoded("id")
        guard let job = try await scheduler.status(id) else { throw HTTPError(.notFound, message: "no job \(id)") }
        guard let audit else { throw HTTPError(.serviceUnavailable, message: "this coordinator keeps no audit trail") }
        return Response(status: .ok, headers: [.contentType: "application/json"],
                        body: EvidenceBundle.body(job: JobStatus(job), journal: audit.journal, trail: audit))
    }
    api.route(.post, "/v1/tiers/demote", .operator) { request, context -> EditedResponse<JobStatus> in
        try await tierJob(.demote, request, context, scheduler)
    }
    api.route(.post, "/v1/tiers/promote", .operator) { request, context -> EditedResponse<JobStatus> in
        try await tierJob(.promote, request, context, scheduler)
    }
    api.route(.get, "/v1/sites/{site}/files", .viewer) { request, context -> SiteFileList in
        let site = try context.parameters.decoded("site")
        // Checked as a job's path is: one too long for the agents' protocol ended their
        // connection (over 4 KiB), or trapped the coordinator encoding it (over 64 KiB).
        let path: String
        do throws(PlanError) { path = try JobPath.normalize(request.uri.queryParameters["path"].map(String.init) ?? "") } catch {
            throw HTTPError(.badRequest, message: error.description)
        }
        let after = request.uri.queryParameters["after"].map(String.init) ?? ""
        guard after.utf8.count <= TierRequest.maxCursorLength, !after.utf8.contains(0) else {
            throw HTTPError(.badRequest, message: "after must be what the previous page returned as next (at most \(TierRequest.maxCursorLength) bytes, no NUL)")
        }
        // A page after a cursor goes to an agent that reads cursors; an older one would start over.
        let version = after.hasPrefix("h:") || after.hasPrefix("c:") ? WireVersion.listCursor : WireVersion.tiers
        let limit = try request.uri.queryParameters["limit"].map { raw -> UInt32 in
            guard let n = UInt32(String(raw)), (1...10_000).contains(n) else { throw HTTPError(.badRequest, message: "limit must be from 1 to 10000") }
            return n
        } ?? 1000
        let reply = try await tierCall(scheduler, site, version: version) { TierRequest(request: $0, operation: .list, path: path, after: after, limit: limit) }
        return SiteFileList(files: reply.entries.map(SiteFile.init), next: reply.next.isEmpty ? nil : reply.next)
    }
    api.route(.get, "/v1/sites/{site}/tiers", .viewer) { _, context -> TierStats in
        let site = try context.parameters.decoded("site")
        let reply = try await tierCall(scheduler, site) { TierRequest(request: $0, operation: .stats, path: "", limit: 0) }
        return TierStats(site: site, reply.counters)
    }
    api.route(.post, "/v1/sites/{site}/tiers/gc", .operator) { _, context -> TierGCOutcome in
        let site = try context.parameters.decoded("site")
        let reply = try await tierCall(scheduler, site) { TierRequest(request: $0, operation: .gc, path: "", limit: 0) }
        return TierGCOutcome(site: site, reply.counters)
    }
    api.route(.get, "/v1/tokens", .admin) { _, _ -> TokenList in
        TokenList(tokens: tokens.entries.map(TokenInfo.init))
    }
    api.route(.post, "/v1/tokens", .admin) { request, context -> EditedResponse<CreatedToken> in
        let create = try await RequestChecks.decode(CreateTokenRequest.self, request, shape: "{\"name\": \"ci\", \"role\": \"viewer|operator|admin\"}", keys: ["name", "role"])
        do {
            let secret = try tokens.create(name: create.name, role: create.role)
            return EditedResponse(status: .created, response: CreatedToken(name: create.name, role: create.role, token: secret))
        } catch let error as APITokenError {
            throw tokenHTTPError(error)
        }
    }
    api.route(.delete, "/v1/tokens/{name}", .admin) { _, context -> TokenInfo in
        let name = try context.parameters.decoded("name")
        guard let entry = tokens.entries.first(where: { $0.name == name }) else { throw HTTPError(.notFound, message: APITokenError.unknown(name).description) }
        do { try tokens.revoke(name: name) } catch let error as APITokenError { throw tokenHTTPError(error) }
        return TokenInfo(entry)
    }
    Dashboard.add(to: api, scheduler: scheduler, directory: directory, tokens: tokens, secureCookie: secureCookie)
    api.route(.get, "/metrics", .viewer) { _, _ -> Response in
        await metricsResponse(scheduler, directory)
    }
    return api
}

/// `/metrics` alone, with no token: for `--metrics HOST:PORT`, a listener Prometheus can
/// scrape without reaching the API.
public func buildMetricsRouter(scheduler: Scheduler, directory: AgentDirectory) -> Router<BasicRequestContext> {
    let router = Router(options: .autoGenerateHeadEndpoints)
    router.get("/metrics") { _, _ -> Response in await metricsResponse(scheduler, directory) }
    return router
}

/// The metrics, with the gauges of jobs and agents by state taken now.
private func metricsResponse(_ scheduler: Scheduler, _ directory: AgentDirectory) async -> Response {
    let jobs = (try? await scheduler.jobCounts()) ?? [:]
    var agents: [String: Int] = [:]
    for a in await directory.agents { agents[a.state.rawValue, default: 0] += 1 }
    scheduler.metrics.set(jobs: Dictionary(uniqueKeysWithValues: jobs.map { ($0.key.rawValue, $0.value) }), agents: agents)
    let text = scheduler.metrics.render()
    return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                    body: ResponseBody(byteBuffer: ByteBuffer(string: text)))
}

private func tokenHTTPError(_ error: APITokenError) -> HTTPError {
    switch error {
    case .exists, .lastAdmin: HTTPError(.conflict, message: error.description)
    case .unknown: HTTPError(.notFound, message: error.description)
    case .badName: HTTPError(.badRequest, message: error.description)
    case .io: HTTPError(.internalServerError, message: error.description)
    }
}

/// A tier job from `POST /v1/tiers/{demote|promote}`.
private func tierJob(_ operation: JobOperation, _ request: Request, _ context: APIRequestContext, _ scheduler: Scheduler) async throws -> EditedResponse<JobStatus> {
    let body: TierJobRequest
    body = try await RequestChecks.decode(TierJobRequest.self, request, shape: "{\"site\", \"path\"\(operation == .demote ? ", \"policy\"" : "")}",
                                          keys: operation == .demote ? ["site", "path", "policy"] : ["site", "path"])
    if let policy = body.policy {
        guard operation == .demote else { throw HTTPError(.badRequest, message: "policy applies to demote only") }
        do { _ = try TierPolicy(parsing: policy) } catch { throw HTTPError(.badRequest, message: error.description) }
    }
    let job = try await httpErrors { try await scheduler.submitTier(operation, site: body.site, path: body.path, policy: body.policy, id: JobID.make()) }
    return EditedResponse(status: .created, response: JobStatus(job))
}

/// A site's tier request, with the agent's error as 409 (no cold store there, say). The
/// coordinator stopping ends the wait with 503 rather than holding the stop (an agent that
/// never answers held it for the 10 s limit).
private func tierCall(_ scheduler: Scheduler, _ site: String, version: UInt8 = WireVersion.tiers,
                      _ make: @Sendable @escaping (UInt64) -> TierRequest) async throws -> TierReply {
    let reply: TierReply
    do {
        reply = try await cancelWhenGracefulShutdown { try await httpErrors { try await scheduler.tierRequest(site: site, version: version, make) } }
    } catch is CancellationError {
        throw HTTPError(.serviceUnavailable, message: "the coordinator is stopping; ask again once it is back")
    }
    guard reply.error.isEmpty else { throw HTTPError(.conflict, message: reply.error) }
    return reply
}

/// Scheduler and journal errors as HTTP statuses, with the error's own message.
private func httpErrors<T>(_ body: () async throws -> T) async throws -> T {
    do {
        return try await body()
    } catch let error as SchedulerError {
        switch error {
        case .unknownJob, .unknownSite: throw HTTPError(.notFound, message: error.description)
        case .invalid: throw HTTPError(.badRequest, message: error.description)
        // The request is sound, but no agent can carry it out now: a state, not a server fault.
        case .notVerifiable, .conflict, .noAgentsUp, .agentUnavailable, .connectionLost: throw HTTPError(.conflict, message: error.description)
        case .timedOut: throw HTTPError(.gatewayTimeout, message: error.description)
        case .journalUnavailable: throw HTTPError(.serviceUnavailable, message: error.description)
        }
    } catch let error as JournalError {
        if case .unknownJob = error { throw HTTPError(.notFound, message: error.description) }
        throw HTTPError(.internalServerError, message: error.description)
    } catch let error as JobTransitionError {
        throw HTTPError(.conflict, message: error.description)
    }
}

/// Job ids: "j-" and 10 random hex digits, short enough to type.
enum JobID {
    static func make() -> String {
        String(format: "j-%010llx", UInt64.random(in: 0..<(1 << 40)))
    }
}
