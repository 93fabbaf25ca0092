/// Why a job not yet ended (queued or running) cannot move now, in words for `status`: a site of the job with no agent that
/// takes work (every one down or draining). The job is not failed for it: it goes on when an agent
/// of that site is back, as FTS3 and Globus keep a transfer queued while an endpoint is away.
/// Pure: the caller passes the agents it knows.
public enum JobWaiting {
    /// At most this many of a site's agents are named.
    static let named = 3

    public static func reason(state: JobState, source: String, destination: String, agents: [AgentInfo]) -> String? {
        guard !state.isTerminal else { return nil }
        var reasons: [String] = []
        for (role, site) in [("source", source), ("destination", destination)] where !reasons.contains(where: { $0.contains("site '\(site)'") }) {
            let ofSite = agents.filter { $0.site == site }.sorted { $0.name < $1.name }
            guard !ofSite.contains(where: { $0.state == .up }) else { continue }
            let known = ofSite.prefix(named).map { "\($0.name) \($0.state.rawValue)" }.joined(separator: ", ")
                + (ofSite.count > named ? ", …" : "")
            let which = site == source && site == destination ? "source and destination" : role
            reasons.append("\(which) site '\(site)' has no agent up\(known.isEmpty ? "" : " (\(known))"); the job goes on when one is back: barge agent --site \(site) …")
        }
        return reasons.isEmpty ? nil : "waiting: " + reasons.joined(separator: "; ")
    }
}
