import Hummingbird

/// The coordinator's HTTP API (docs/openapi.yaml). Handlers only translate between HTTP and the
/// directory and journal; decisions live there.
public func buildRouter(directory: AgentDirectory, journal: Journal) -> Router<BasicRequestContext> {
    let router = Router()
    router.get("/v1/agents") { _, _ -> AgentList in
        AgentList(agents: await directory.agents.map(AgentStatus.init))
    }
    router.get("/v1/jobs") { _, _ -> JobList in
        JobList(jobs: try journal.jobs().map(JobStatus.init))
    }
    router.get("/v1/jobs/{id}") { _, context -> JobStatus in
        let id = try context.parameters.require("id")
        guard let job = try journal.job(id) else { throw HTTPError(.notFound, message: "no job \(id)") }
        return JobStatus(job)
    }
    router.post("/v1/jobs/{id}/cancel") { _, context -> JobStatus in
        let id = try context.parameters.require("id")
        do {
            return JobStatus(try journal.apply(.cancel, to: id))
        } catch JournalError.unknownJob {
            throw HTTPError(.notFound, message: "no job \(id)")
        } catch let error as JobTransitionError {
            throw HTTPError(.conflict, message: error.description)
        }
    }
    return router
}
