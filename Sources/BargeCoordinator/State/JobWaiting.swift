/// Why a job not yet ended (queued or running) cannot move now, in words for `status`: a
/// coordinator that cannot write its journal, or a site of the job with no agent that takes work
/// (every one down or draining). The job is not failed for
/// it: it goes on when an agent of that site is back, as FTS3 and Globus keep a transfer queued
/// while an endpoint is away. Pure: the caller passes the agents it knows.
public enum JobWaiting {
    /// At most this many of a site's agents are named.
    static let named = 3

    /// The agents the coordinator knows, by site and name: grouped once for all the jobs a
    /// dashboard snapshot asks about, rather than filtered once per job.
    public struct Sites: Sendable {
        let bySite: [String: [AgentInfo]]

        public init(_ agents: [AgentInfo]) {
            bySite = Dictionary(grouping: agents, by: \.site).mapValues { $0.sorted { $0.name < $1.name } }
        }
    }

    public static func reason(state: JobState, source: String, destination: String, agents: [AgentInfo], journalProblem: String? = nil,
                              coordinatorAge: Double? = nil) -> String? {
        reason(state: state, source: source, destination: destination, sites: Sites(agents), journalProblem: journalProblem,
               coordinatorAge: coordinatorAge)
    }

    /// How long after the coordinator starts a site it knows no agent of is taken for agents not
    /// yet back, rather than for none at all: running agents reconnect within seconds (their
    /// backoff is at most 4 s).
    static let reconnecting: Double = 30

    /// `journalProblem`: why the coordinator's last journal commit failed, if it did
    /// (`Scheduler.journalProblem`); every job not ended waits for it, first.
    /// `coordinatorAge`: seconds since the coordinator started. Soon after it, a site none of
    /// whose agents has registered yet is said to be waiting for them to reconnect: a restarted
    /// coordinator's jobs told the operator to start agents that were running (a black-box review).
    public static func reason(state: JobState, source: String, destination: String, sites: Sites, journalProblem: String? = nil,
                              coordinatorAge: Double? = nil) -> String? {
        guard !state.isTerminal else { return nil }
        let journal = journalProblem.map {
            "the coordinator cannot write its journal (\($0)); nothing is lost, and the job goes on once it can: free space where the coordinator's --state lies"
        }
        let ends = source == destination ? [("source and destination", source)] : [("source", source), ("destination", destination)]
        let reasons = ends.compactMap { role, site -> String? in
            let ofSite = sites.bySite[site] ?? []
            guard !ofSite.contains(where: { $0.state == .up }) else { return nil }
            if ofSite.isEmpty, let age = coordinatorAge, age < reconnecting {
                // Not "none has registered since": one may have, and been drained and stopped
                // (a retired agent is forgotten), which the words denied (h4 of session 49).
                return "\(role) site '\(site)' has no agent up yet: the coordinator started \(Int(age)) s ago, and running agents reconnect within seconds (if none does: barge agent --site \(site) …)"
            }
            let known = ofSite.prefix(named).map { "\($0.name) \($0.state.rawValue)" }.joined(separator: ", ")
                + (ofSite.count > named ? ", …" : "")
            return "\(role) site '\(site)' has no agent up\(known.isEmpty ? "" : " (\(known))"); the job goes on when one is back: barge agent --site \(site) …"
        }
        let all = (journal.map { [$0] } ?? []) + reasons
        return all.isEmpty ? nil : "waiting: " + all.joined(separator: "; ")
    }
}
