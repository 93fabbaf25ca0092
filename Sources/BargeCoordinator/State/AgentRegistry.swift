import BargeStore
import BargeWire

/// Whether an agent can take work.
public enum AgentState: String, Codable, Hashable, Sendable {
    case up, draining, down
}

/// What the coordinator knows of one agent.
public struct AgentInfo: Hashable, Sendable {
    public var name: String
    public var site: String
    /// Where other agents reach its data-plane listener (host:port).
    public var address: String
    public var state: AgentState
    /// Monotonic nanoseconds of the last registration or heartbeat.
    public var lastSeen: UInt64
    /// Its build version (`barge --version`), when it said (protocol 11).
    public var build: String?
    /// Its `--root` as it gave it (every version), and which directory that is (`RootIdentity`,
    /// from protocol 14; nil from older agents, and from one that could not keep the id).
    public var root: String?
    public var rootID: String?

    public init(name: String, site: String, address: String, state: AgentState = .up, lastSeen: UInt64, build: String? = nil,
                root: String? = nil, rootID: String? = nil) {
        self.name = name
        self.site = site
        self.address = address
        self.state = state
        self.lastSeen = lastSeen
        self.build = build
        self.root = root
        self.rootID = rootID
    }
}

/// The agents the coordinator knows, as a pure state machine over injected monotonic time. It
/// decides; the listener and scheduler act. In particular `expire` returns the agents that have
/// just gone down, whose units the scheduler returns to pending.
public struct AgentRegistry: Sendable {
    public enum Registration: Hashable, Sendable {
        /// First time this name is seen.
        case new
        /// A known agent that was down (or restarted before its timeout) is back.
        case rejoined
    }

    public let heartbeatTimeout: UInt64
    /// How often `expire` is called (`AgentExpiryService`), in nanoseconds.
    public let lookInterval: UInt64
    /// `AgentExpiryService`'s interval (whole milliseconds), which `lookInterval` must match.
    public static let defaultLookInterval = Duration.seconds(1)
    public private(set) var agents: [String: AgentInfo] = [:]
    /// When the registry last did anything: a look, a heartbeat or a registration.
    private var lastActivity: UInt64?

    /// `heartbeatTimeout` in nanoseconds: an agent silent for longer is down.
    public init(heartbeatTimeout: UInt64, lookInterval: UInt64? = nil) {
        self.heartbeatTimeout = heartbeatTimeout
        self.lookInterval = max(1_000_000, lookInterval ?? UInt64(Self.defaultLookInterval.wholeNanoseconds))
    }

    /// The coordinator's own stalls (SIGSTOP, a paused VM) do not count as its agents' silence.
    /// It looks at its agents every interval and hears some of them every heartbeat interval; a
    /// gap of more than two intervals in all of that is a coordinator that stood still itself,
    /// which heard no one meanwhile while their heartbeats waited in its sockets. Whatever comes
    /// first after it (a look, a heartbeat read, a registration) gives every agent that time back,
    /// less one interval. Without this, a coordinator stopped past the timeout took every agent
    /// for down as it resumed and gave all their units again while they still ran them. An agent
    /// that is really gone is taken for down as many seconds later as the stall lasted; a slow
    /// look (a busy scheduler) gives nothing back while heartbeats are read meanwhile.
    private mutating func woke(at now: UInt64) {
        if let last = lastActivity, now > last, now - last > 2 * lookInterval {
            let stood = now - last - lookInterval
            for (name, agent) in agents where agent.state != .down {
                agents[name]!.lastSeen = min(now, agent.lastSeen + stood)
            }
        }
        lastActivity = max(lastActivity ?? 0, now)
    }

    /// Registers or re-registers an agent. An agent may not move to another site under the same
    /// name while it is up: two live processes with one name would steal each other's work. Nor
    /// may a second one take a name whose agent is `connected` and was heard from within
    /// `liveWindow` (nanoseconds): a restart of that agent gets in once its old connection's end is
    /// seen or it falls silent. Looked at before `woke`, which would make a stalled coordinator's
    /// agents look heard lately.
    ///
    /// Nor may an agent join a site whose other agents, up or not yet taken for down, have
    /// another root (`rootID`, the directory's `RootIdentity`): a job's units go to any agent
    /// of the destination site, so its files would land in two directories, and the job would
    /// still succeed. Agents that did not say (older ones) are not compared.
    public mutating func register(name: String, site: String, address: String, build: String? = nil, root: String? = nil,
                                  rootID: String? = nil, now: UInt64,
                                  connected: Bool = false, liveWindow: UInt64 = 0) throws(RegistryError) -> Registration {
        if let problem = Register.nameProblem(name) { throw .invalid("agent name '\(name)' \(problem)") }
        if let problem = Register.siteProblem(site) { throw .invalid("site '\(site)' \(problem)") }
        if connected, let known = agents[name], known.state != .down, now <= known.lastSeen || now - known.lastSeen <= liveWindow {
            throw .connected(name: name, site: known.site, address: known.address)
        }
        woke(at: now)
        if let known = agents[name], known.state != .down, known.site != site {
            throw .nameInUse(name: name, site: known.site)
        }
        if let rootID, let other = agents.values.filter({ $0.name != name && $0.site == site && $0.state != .down && $0.rootID != nil && $0.rootID != rootID })
            .min(by: { $0.name < $1.name }) {
            throw .rootDiffers(name: name, site: site, root: root ?? "", other: other.name, otherRoot: other.root ?? "")
        }
        let rejoined = agents[name] != nil
        agents[name] = AgentInfo(name: name, site: site, address: address, state: .up, lastSeen: now, build: build, root: root, rootID: rootID)
        return rejoined ? .rejoined : .new
    }

    /// Records a heartbeat. A heartbeat from an agent marked down does not revive it: it must
    /// register again, so that the coordinator re-learns what it holds.
    public mutating func heartbeat(name: String, now: UInt64) throws(RegistryError) {
        woke(at: now)
        guard var agent = agents[name] else { throw .unknownAgent(name) }
        guard agent.state != .down else { throw .mustRegisterAgain(name) }
        agent.lastSeen = max(agent.lastSeen, now)
        agents[name] = agent
    }

    /// Stops handing new work to an agent; its current work finishes.
    public mutating func drain(name: String) throws(RegistryError) {
        guard var agent = agents[name] else { throw .unknownAgent(name) }
        guard agent.state == .up else { return }
        agent.state = .draining
        agents[name] = agent
    }

    /// Marks every agent silent for longer than the timeout as down; returns their names, sorted.
    /// A stall of the coordinator's own is not their silence (`woke`). One that was draining is
    /// forgotten instead: `barge drain` then a stop is how an agent is retired, and listed down
    /// it kept `barge_agents{state="down"}` above zero, and the shipped `BargeAgentDown` alert
    /// firing, until the coordinator restarted (a review). Should it come back, it registers as
    /// new.
    public mutating func expire(now: UInt64) -> [String] {
        woke(at: now)
        var expired: [String] = []
        for (name, agent) in agents where agent.state != .down && now > agent.lastSeen && now - agent.lastSeen > heartbeatTimeout {
            takeDown(name, agent)
            expired.append(name)
        }
        return expired.sorted()
    }

    /// An agent gone: listed down, or forgotten when it was drained.
    private mutating func takeDown(_ name: String, _ agent: AgentInfo) {
        if agent.state == .draining {
            agents.removeValue(forKey: name)
        } else {
            agents[name]?.state = .down
        }
    }

    /// The agent said it is stopping (error `stopping` as it closed its connection): down now, as
    /// `expire` would take it after its timeout (a drained one is forgotten). True when it was
    /// up or draining, and its units are to go back to pending.
    public mutating func stopped(name: String) -> Bool {
        guard let agent = agents[name], agent.state != .down else { return false }
        takeDown(name, agent)
        return true
    }

    /// Agents of `site` that can take new work, by name.
    public func available(site: String) -> [AgentInfo] {
        agents.values.filter { $0.site == site && $0.state == .up }.sorted { $0.name < $1.name }
    }

    public var all: [AgentInfo] { agents.values.sorted { $0.name < $1.name } }
}

public enum RegistryError: Error, Hashable, Sendable, CustomStringConvertible {
    case unknownAgent(String)
    case mustRegisterAgain(String)
    case nameInUse(name: String, site: String)
    /// Another live agent of that name is connected (`register`'s `connected`).
    case connected(name: String, site: String, address: String)
    /// A name or site that cannot be used (`Register.nameProblem`, `siteProblem`).
    case invalid(String)
    /// The agent's root is another directory than the one its site's other agents share.
    case rootDiffers(name: String, site: String, root: String, other: String, otherRoot: String)

    public var description: String {
        switch self {
        case .unknownAgent(let n): "no agent named '\(n)' is registered"
        case .mustRegisterAgain(let n): "agent '\(n)' was marked down after missing heartbeats; it must register again"
        case .nameInUse(let n, let site): "an agent named '\(n)' is already up at site '\(site)'; give each agent its own --name"
        case .connected(let n, let site, let address): "an agent named '\(n)' is already connected (site '\(site)', data plane \(address)); give each agent its own --name, or stop the other"
        case .invalid(let why): why
        case .rootDiffers(let n, let site, let root, let other, let otherRoot):
            "agent '\(n)' has root \(StoreError.shortened(root)), another directory than the root of site '\(site)' that agent '\(other)' serves (\(StoreError.shortened(otherRoot))): the agents of a site must share one root (one file system, at any path), or a job's files would be split between them. Give '\(n)' that same directory as --root, or its own --site. (If '\(other)' is gone for good, '\(n)' gets in once '\(other)' is marked down, after the coordinator's --agent-timeout.)"
        }
    }
}
