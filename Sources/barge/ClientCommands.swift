import ArgumentParser
import BargeCoordinator
import BargeFlow
import Foundation

struct AgentsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "agents", abstract: "List the agents the coordinator knows.")

    @Flag(help: "Print JSON: a list of objects with name, site, state and address.") var json = false
    @OptionGroup var coordinator: CoordinatorURLOptions

    func run() async throws {
        let list = try JSONDecoder().decode(AgentList.self, from: try await coordinator.api().get("/v1/agents"))
        if json {
            print(try JSONOutput.encode(list.agents))
        } else if list.agents.isEmpty {
            print("No agents have registered.")
        } else {
            let rows = [["NAME", "SITE", "STATE", "VERSION", "ADDRESS", "ROOT"]]
                + list.agents.map { [$0.name, $0.site, $0.state.rawValue, $0.version ?? "-", $0.address, $0.root ?? "-"] }
            print(Table.render(rows))
        }
    }
}

struct JobsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "jobs", abstract: "List jobs, oldest first; or delete old ones.",
        discussion: """
            The list is fetched a page at a time (GET /v1/jobs?limit=&after=), so a coordinator with \
            millions of jobs answers each page as fast as the first. STATE is the job's, but \
            'partial' for a job that succeeded and left source entries behind ('barge status JOB' \
            says which and why; 'submit --wait' exits 2 for it).

            --prune-before deletes every job that ended (succeeded, failed or cancelled) before a \
            date, with its units and manifests: YYYY-MM-DD, an ISO 8601 time, or an age such as \
            30d or 12h. Running and queued jobs are never pruned.
            """)

    @Flag(help: "Print JSON: a list of status objects.") var json = false
    @Option(help: ArgumentHelp("Jobs per request (1 to 1000).", valueName: "n")) var pageSize = 500
    @Option(help: ArgumentHelp("Delete jobs that ended before this date or age (2026-11-01, 30d).", valueName: "date"))
    var pruneBefore: String?
    @OptionGroup var coordinator: CoordinatorURLOptions

    func validate() throws {
        guard (1...1000).contains(pageSize) else { throw ValidationError("--page-size must be from 1 to 1000") }
        if let pruneBefore {
            guard let before = Self.time(pruneBefore) else {
                throw ValidationError("--prune-before: '\(pruneBefore)' is not a date (2026-11-01, 2026-11-01T12:00:00Z) or an age above 0 (30d, 12h, 90m)")
            }
            // A time to come means every ended job: a typo of the year more likely than a wish
            // (a black-box review pruned all 46 jobs with 2099-01-01). The present says it plainly.
            guard before <= Date().timeIntervalSince1970 + 60 else {
                throw ValidationError("--prune-before: \(pruneBefore) is in the future, and every ended job ended before it; to delete them all, give the time now: --prune-before \"$(date -u +%FT%TZ)\"")
            }
        }
    }

    /// A date, an ISO 8601 time, or an age back from now, as Unix seconds.
    static func time(_ text: String, now: Date = Date()) -> Double? {
        if let unit = text.last, let n = Double(text.dropLast()), n > 0, n.isFinite {
            switch unit {
            case "d": return now.timeIntervalSince1970 - n * 86_400
            case "h": return now.timeIntervalSince1970 - n * 3_600
            case "m": return now.timeIntervalSince1970 - n * 60
            default: break
            }
        }
        let full = ISO8601DateFormatter()
        if let d = full.date(from: text) { return d.timeIntervalSince1970 }
        let day = ISO8601DateFormatter()
        day.formatOptions = [.withFullDate]
        return day.date(from: text)?.timeIntervalSince1970
    }

    /// A job's state for the list: a success that left source entries behind says so (as
    /// `submit --wait` exits 2 for it).
    static func state(_ s: JobStatus) -> String {
        s.state == .succeeded && (s.untransferableEntries ?? 0) > 0 ? "partial" : s.state.rawValue
    }

    func run() async throws {
        let api = try coordinator.api()
        if let pruneBefore, let before = Self.time(pruneBefore) {
            let outcome = try JSONDecoder().decode(PruneOutcome.self, from: try await api.post("/v1/jobs/prune?before=\(before)", timeout: 600))
            if json { print(try JSONOutput.encode(outcome)) } else { print("Pruned \(outcome.pruned.count) jobs that ended before \(pruneBefore).") }
            return
        }
        var jobs: [JobStatus] = []
        var after: String?
        repeat {
            var path = "/v1/jobs?limit=\(pageSize)"
            if let after { path += "&after=\(after)" }
            let page = try JSONDecoder().decode(JobList.self, from: try await api.get(path))
            jobs += page.jobs
            after = page.next
        } while after != nil
        if json {
            print(try JSONOutput.encode(jobs))
        } else if jobs.isEmpty {
            print("No jobs.")
        } else {
            let rows = [["ID", "STATE", "DONE", "TOTAL", "FILES", "OPERATION"]] + jobs.map {
                [$0.id, Self.state($0), ByteQuantity.formatSize(Double($0.bytesDone)), ByteQuantity.formatSize(Double($0.bytesTotal)),
                 "\($0.filesDone)/\($0.filesTotal)", "\($0.operation ?? "transfer") \($0.source) → \($0.destination)"]
            }
            print(Table.render(rows))
        }
    }
}

struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status", abstract: "Show one job's progress.",
        discussion: "With --watch, follows the job until it ends: on a terminal, a block of lines that fits its width (totals, rate, ETA, files, one line per lane with its rate, RTT and queueing delay, and the codec mix), redrawn every half second; elsewhere, one plain line every 5 seconds. Rates are shown in the units the job's --bwlimit was written in, else MiB/s. Without --watch it reports the job as it is and exits 0 whatever its state (1 when the coordinator cannot answer or knows no such job); --watch and 'submit --wait' exit by how the job ended. With --watch --json, as with 'submit --wait --json', the progress goes to stderr and the final status object to stdout.")

    @Argument(help: ArgumentHelp("The job id.", valueName: "job")) var job: String
    @Flag(help: "Print the status object as JSON.") var json = false
    @Flag(help: "Follow the job with a live progress line until it ends; exit non-zero unless it succeeds. A coordinator that stops answering meanwhile (a restart) is asked again for up to 5 minutes.") var watch = false
    @Flag(help: ArgumentHelp("List every entry the job did not transfer, one a line, with why (left out by the scan, or gone or changed at the source during the transfer): the first 10,000 of a job are named. With --json, one JSON string a line.", valueName: "not-transferred"))
    var notTransferred = false
    @OptionGroup var coordinator: CoordinatorURLOptions

    func validate() throws {
        if notTransferred && watch { throw ValidationError("--not-transferred lists what a job left out; use it without --watch") }
    }

    func run() async throws {
        let api = try coordinator.api()
        if notTransferred {
            try await NotTransferredList(api: api, job: job, json: json).print()
            return
        }
        if watch {
            // With --json, as 'submit --wait --json': progress on stderr, the final status object
            // on stdout (before, the two flags were refused together; a black-box review).
            let final = try await JobWatcher(api: api, job: job).follow()
            print(json ? try JSONOutput.encode(final) : JobSummary.text(final))
            try JobSummary.exit(for: final)
            return
        }
        let data = try await api.get("/v1/jobs/\(pathComponent(job))")
        if json {
            print(String(decoding: data, as: UTF8.self))
        } else {
            print(JobSummary.text(try JSONDecoder().decode(JobStatus.self, from: data)))
        }
    }
}

struct CancelCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cancel", abstract: "Cancel a queued or running job.",
        discussion: """
            Its agents stop its units: files not yet finished stay partial copies \
            (NAME.barge-partial), and 'barge resume JOB' sends what is missing. A destination agent \
            that was stopped (SIGSTOP, a hung node) when the job was cancelled may still finish \
            the files it had received whole once it runs again: the cancel reaches it after the \
            messages already in its sockets.
            """)

    @Argument(help: ArgumentHelp("The job id.", valueName: "job")) var job: String
    @Flag(help: "Print the job's status object as JSON.") var json = false
    @OptionGroup var coordinator: CoordinatorURLOptions

    func run() async throws {
        let data = try await coordinator.api().post("/v1/jobs/\(pathComponent(job))/cancel")
        let s = try JSONDecoder().decode(JobStatus.self, from: data)
        print(json ? try JSONOutput.encode(s) : "\(s.id): \(s.state.rawValue)")
    }
}

struct ResumeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "resume", abstract: "Run a failed or cancelled job again from where it stopped.",
        discussion: """
            Units already done stay done; the rest are handed out again with fresh attempts. Use it \
            after fixing what stopped the job (a full or unwritable destination, an agent that was \
            down). With --wait, follows the job and exits non-zero unless it succeeds.
            """)

    @Argument(help: ArgumentHelp("The job id.", valueName: "job")) var job: String
    @Flag(help: "Follow the job until it ends; exit non-zero unless it succeeds. A coordinator that stops answering meanwhile (a restart) is asked again for up to 5 minutes: the job goes on when it is back.") var wait = false
    @Flag(help: "Print the job's status object as JSON (with --wait, the final one).") var json = false
    @OptionGroup var coordinator: CoordinatorURLOptions

    func run() async throws {
        let api = try coordinator.api()
        let s = try JSONDecoder().decode(JobStatus.self, from: try await api.post("/v1/jobs/\(pathComponent(job))/resume"))
        guard wait else {
            print(json ? try JSONOutput.encode(s) : "\(s.id): \(s.state.rawValue)")
            return
        }
        let final = try await JobWatcher(api: api, job: s.id, answered: true).follow()
        print(json ? try JSONOutput.encode(final) : JobSummary.text(final))
        try JobSummary.exit(for: final)
    }
}

struct DrainCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "drain", abstract: "Let an agent finish its units and give it no new ones, so it can be stopped.",
        discussion: """
            For rolling updates: drain an agent, wait until the coordinator logs "agent AGENT \
            drained: it holds no units" (an agent of 0.12 or later logs "drained" then too), stop \
            it, upgrade it and start it again. 'barge drain AGENT --json' says how many units it \
            still holds (units_held). An agent restarted takes work again; one that only \
            reconnects (the coordinator restarted, the network came back) stays draining \
            (both of 0.13 or later).
            """)

    @Argument(help: ArgumentHelp("The agent's name.", valueName: "agent")) var agent: String
    @Flag(help: "Print JSON: the agent, its state and the units it is finishing.") var json = false
    @OptionGroup var coordinator: CoordinatorURLOptions

    func run() async throws {
        let data = try await coordinator.api().post("/v1/agents/\(pathComponent(agent))/drain")
        let outcome = try JSONDecoder().decode(DrainOutcome.self, from: data)
        print(json ? try JSONOutput.encode(outcome) : "\(outcome.agent): draining, finishing \(outcome.unitsHeld) units")
    }
}

/// A job id as one URL path segment.
/// An id or name as one component of an API path; an empty one is a usage error (exit 64), as
/// the API would take `/v1/jobs/` for the list of jobs.
func pathComponent(_ s: String) throws -> String {
    guard !s.isEmpty else { throw ValidationError("the id or name is empty; 'barge jobs', 'barge agents' and 'barge token list' list them") }
    return s.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(CharacterSet(charactersIn: "/"))) ?? s
}

/// Left-aligned columns separated by two spaces.
enum Table {
    /// Columns as wide as their widest cell, and at least `minimumWidths` (so that pages printed
    /// one after another line up).
    /// Cells from the cluster (file names in `barge ls`, agents' words) have their control
    /// characters escaped, newlines and tabs too (`TerminalText.field`).
    static func render(_ rows: [[String]], minimumWidths: [Int] = []) -> String {
        let rows = rows.map { $0.map(TerminalText.field) }
        let widths = (0..<(rows.first?.count ?? 0)).map { c in
            max(rows.map { $0[c].count }.max() ?? 0, c < minimumWidths.count ? minimumWidths[c] : 0)
        }
        return rows.map { row in
            zip(row, widths).enumerated().map { i, cell in i == row.count - 1 ? cell.0 : cell.0.padding(cell.1) }.joined(separator: "  ")
        }.joined(separator: "\n")
    }
}
