import BargeFlow
import BargeWire

/// Job caps and congestion modes: each source agent holding units of a job gets the job's cap
/// divided equally among those agents (`job settings`), again whenever that set or the cap changes.
extension Scheduler {
    /// `barge set JOB --bwlimit`: a running or queued job's new cap, in force at once.
    public func setLimit(_ id: String, bwlimit: String) throws -> JobRecord {
        guard let job = try journal.job(id) else { throw SchedulerError.unknownJob(id) }
        guard !job.state.isTerminal else { throw SchedulerError.conflict("job \(id) is \(job.state.rawValue): its cap cannot change") }
        let limit = try Self.limit(bwlimit)
        try journal.setLimit(id, limit)
        logger.notice("job \(id): bwlimit \(limit ?? "off")")
        let updated = try journal.job(id) ?? job
        if running[id] != nil {
            running[id]!.record.bwlimit = limit
            shareSettings(id)
            limitUnits(running[id]!.record)
            schedule()  // a cap lifted or raised: the job may take more units now
        }
        return updated
    }

    /// Tells the policy how many units the job's cap needs at once: at its highest, whatever the
    /// time of day (an agent reads a timetable in its own time zone).
    func limitUnits(_ job: JobRecord) {
        let timetable = job.bwlimit.flatMap { try? Timetable(parsing: $0) }
        policy.limitUnits(job: job.id, to: policy.unitsFor(cap: timetable?.highest))
    }

    /// Sends each source agent of the job's running units its share, if it changed. `joined` and
    /// `left` name the one source whose first unit of the job just started or whose last just
    /// ended. Without a cap a share bounds nothing, and only the congestion mode matters, which
    /// is the same for every source: then only a source that joined is told (once per job), so a
    /// job over a thousand agents costs O(1) per event, not a message to each of them. With a cap,
    /// every source's share changes with their number, and each is told.
    func shareSettings(_ id: String, joined: String? = nil, left: String? = nil) {
        guard let run = running[id] else {
            sentSettings.removeValue(forKey: id)
            return
        }
        let job = run.record
        if job.bwlimit == nil, joined != nil || left != nil {
            guard let source = joined, let link = links[source] else { return }
            let congestion = (CongestionMode(rawValue: job.congestion) ?? .fair).code
            if let sent = sentSettings[id]?[source], sent.bwlimit.isEmpty, sent.congestion == congestion { return }
            let settings = JobSettings(job: job.id, bwlimit: "", share: UInt32(1_000_000 / max(1, run.sources.count)), congestion: congestion)
            tell(settings, to: source, over: link)
            sentSettings[id, default: [:]][source] = settings
            return
        }
        let sources = Set(run.sources.keys)
        var sent = (sentSettings[job.id] ?? [:]).filter { sources.contains($0.key) }
        let congestion = (CongestionMode(rawValue: job.congestion) ?? .fair).code
        for source in sources.sorted() {
            guard let link = links[source] else { continue }
            let settings = JobSettings(job: job.id, bwlimit: job.bwlimit ?? "", share: UInt32(1_000_000 / sources.count), congestion: congestion)
            guard sent[source] != settings else { continue }
            tell(settings, to: source, over: link)
            sent[source] = settings
        }
        sentSettings[job.id] = sent
    }

    /// Sends a source its `job settings`, or, to an agent too old for them, logs what it cannot take.
    private func tell(_ settings: JobSettings, to source: String, over link: Link) {
        if link.version >= WireVersion.flow {
            link.sink.yield(.jobSettings(settings))
        } else if !settings.bwlimit.isEmpty || settings.congestion != CongestionMode.fair.code {
            logger.warning("job \(settings.job): agent \(source) speaks protocol version \(link.version): it cannot take the job's bwlimit or cc")
        }
    }

    /// The lanes of a running job as its units last reported them, one entry per lane.
    public nonisolated func lanes(of job: String) -> [LaneStatus] { live.lanes(of: job, now: now()) }

    /// A cap as given: nil for none (absent or `off`); otherwise it must parse as a rate or a
    /// timetable. An empty one is refused: it says nothing, where `off` says none.
    static func limit(_ spec: String?) throws -> String? {
        guard let given = spec else { return nil }
        let spec = given.trimmingCharacters(in: .whitespaces)
        guard !spec.isEmpty else { throw SchedulerError.invalid("bwlimit is empty; give a rate such as 100MiB/s, a timetable, or off") }
        guard spec != "off" else { return nil }
        guard spec.utf8.count <= JobSettings.maxLimitLength else { throw SchedulerError.invalid("bwlimit is longer than \(JobSettings.maxLimitLength) bytes") }
        do {
            _ = try Timetable(parsing: spec)
        } catch {
            throw SchedulerError.invalid("bwlimit: \(error)")
        }
        return spec
    }
}
