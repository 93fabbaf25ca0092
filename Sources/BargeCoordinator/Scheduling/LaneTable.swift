import HeapModule

/// The agents of every site with the units each holds, for choosing lanes. Pure. The least-loaded
/// agent of a site with room is found in O(log n): each site keeps a heap of (load, name) entries,
/// pushed whenever an agent's load changes, and stale entries (an older load, a gone or draining
/// agent) are dropped when they reach the top. Ties go to the smaller name, so choices are
/// deterministic.
struct LaneTable: Sendable {
    struct Agent: Hashable, Sendable {
        var site: String
        /// Units it holds now, as source or destination.
        var load: Int
        /// Its registered `--max-units`.
        var bound: Int
        var up: Bool
        var draining: Bool

        var takesWork: Bool { up && !draining && load < bound }
    }

    private struct Entry: Comparable, Sendable {
        var load: Int
        var name: String
        static func < (a: Entry, b: Entry) -> Bool { (a.load, a.name) < (b.load, b.name) }
    }

    private(set) var agents: [String: Agent] = [:]
    private var free: [String: Heap<Entry>] = [:]
    private var upPerSite: [String: Int] = [:]

    /// An agent registered (again): it keeps the load of units it still holds.
    mutating func up(_ name: String, site: String, bound: Int) {
        var agent = agents[name] ?? Agent(site: site, load: 0, bound: bound, up: false, draining: false)
        if agent.up && agent.site != site { down(name) }
        if !agent.up || agent.site != site { upPerSite[site, default: 0] += 1 }
        agent.site = site
        agent.bound = max(1, bound)
        agent.up = true
        agent.draining = false
        agents[name] = agent
        offer(name)
    }

    /// Gone: it is offered no more work. Its load stays until its units are released.
    mutating func down(_ name: String) {
        guard var agent = agents[name], agent.up else { return }
        agent.up = false
        agents[name] = agent
        upPerSite[agent.site, default: 1] -= 1
    }

    mutating func drain(_ name: String) {
        agents[name]?.draining = true
    }

    func isUp(_ name: String) -> Bool { agents[name]?.up == true }
    func isDraining(_ name: String) -> Bool { agents[name]?.draining == true }
    func hasAgents(at site: String) -> Bool { (upPerSite[site] ?? 0) > 0 }
    /// Agents of `site` that are up.
    func agentsUp(at site: String) -> Int { upPerSite[site] ?? 0 }
    func load(of name: String) -> Int { agents[name]?.load ?? 0 }
    func hasRoom(_ name: String) -> Bool { agents[name]?.takesWork == true }

    /// The least-loaded agent of `site` that takes work; nil when every one is full.
    mutating func least(at site: String) -> String? {
        while let top = free[site]?.min {
            if let a = agents[top.name], a.site == site, a.takesWork, a.load == top.load { return top.name }
            free[site]!.removeMin()
        }
        return nil
    }

    /// An agent of `site` that is up and not draining, full or not (for scans, quick checks and
    /// verifications, which are not units): the least loaded if one has room, else the first by
    /// name (a walk over the agents, only when every one of the site is full).
    mutating func any(at site: String) -> String? {
        if let name = least(at: site) { return name }
        return agents.filter { $0.value.site == site && $0.value.up && !$0.value.draining }.keys.min()
    }

    mutating func charge(_ name: String) {
        agents[name]?.load += 1
        offer(name)
    }

    mutating func release(_ name: String) {
        guard agents[name] != nil else { return }
        agents[name]!.load = max(0, agents[name]!.load - 1)
        offer(name)
    }

    private mutating func offer(_ name: String) {
        guard let a = agents[name], a.takesWork else { return }
        free[a.site, default: Heap()].insert(Entry(load: a.load, name: name))
        // Stale entries pile up where loads churn below the top; rebuild now and then.
        if free[a.site]!.count > 4 * agents.count + 64 {
            free[a.site] = Heap(agents.filter { $0.value.site == a.site && $0.value.takesWork }.map { Entry(load: $0.value.load, name: $0.key) })
        }
    }
}
