/// An agent introduces itself to the coordinator after the handshake.
public struct Register: Hashable, Sendable {
    public static let maxNameLength = 255

    /// Why `name` cannot name an agent (nil: it can). It names the agent's state directory
    /// (`<root>/.barge/<name>`) and a path of the API (`/v1/agents/<name>`): 1 to 255 bytes, no
    /// "/", not "." or "..", no control characters or spaces. (`--name ..` put the chunk index and
    /// the state marker in the root itself, and every job path there was then refused.)
    public static func nameProblem(_ name: String) -> String? {
        if let common = commonProblem(name) { return common }
        if name == "." || name == ".." || name.utf8.contains(UInt8(ascii: "/")) { return "must not be '.' or '..' or hold a '/' (it names the agent's state directory)" }
        return nil
    }

    /// Why `site` cannot name a site (nil: it can): 1 to 255 bytes, no ":" (jobs name their ends
    /// as `SITE:PATH`), no "/" (it is a path segment of the API, `/v1/tiers/<site>/stats`), no
    /// control characters or spaces.
    public static func siteProblem(_ site: String) -> String? {
        if let common = commonProblem(site) { return common }
        if site.utf8.contains(UInt8(ascii: ":")) { return "must not hold a ':' (jobs name their ends as SITE:PATH)" }
        if site.utf8.contains(UInt8(ascii: "/")) { return "must not hold a '/' (it names a path of the API, /v1/tiers/SITE)" }
        return nil
    }

    private static func commonProblem(_ s: String) -> String? {
        guard !s.isEmpty, s.utf8.count <= maxNameLength else { return "must be 1 to \(maxNameLength) bytes" }
        // C0, DEL and C1, as a handshake's name is checked (`ControlCharacters`).
        guard ControlCharacters.escaped(s) == s else { return "must not hold control characters" }
        // `barge agents` and `barge jobs` print names in columns that spaces would break.
        guard !s.utf8.contains(UInt8(ascii: " ")) else { return "must not hold spaces" }
        return nil
    }
    public static let maxRootLength = 4096

    public var name: String
    public var site: String
    /// The agent's `--root`, for operators' eyes (`barge agents`); never used to build paths.
    public var root: String
    /// Where other agents reach its data-plane listener.
    public var dataHost: String
    public var dataPort: UInt16
    /// How many units it holds at once.
    public var maxInFlight: UInt32
    /// The agent's build version (`barge --version`), for operators' eyes. Protocol version 11:
    /// a trailing string, on the wire only when set; nil from older agents.
    public var build: String?
    /// Which directory its root is (`RootIdentity`: the same for every agent that sees that
    /// directory, whatever its path), so that the coordinator can refuse an agent whose site's
    /// other agents share another. Protocol version 14: a trailing string after `build`, on the
    /// wire only when set; nil from older agents, and from an agent that could not make it.
    public var rootID: String?
    /// The agent was told to drain and has not restarted since: it registers again draining
    /// (`WireVersion.drainKept`). Version 21: a trailing u8 1 after the root's id, on the wire
    /// only when set; false from older agents.
    public var draining: Bool

    /// The most units an agent may take at once (`--max-units` allows 256).
    public static let maxUnits: UInt32 = 4096

    public static let maxBuildLength = 64
    public static let maxRootIDLength = 64

    public init(name: String, site: String, root: String, dataHost: String, dataPort: UInt16, maxInFlight: UInt32 = 8, build: String? = nil,
                rootID: String? = nil, draining: Bool = false) {
        self.name = name
        self.site = site
        self.root = root
        self.dataHost = dataHost
        self.dataPort = dataPort
        self.maxInFlight = maxInFlight
        self.build = build
        self.rootID = rootID
        self.draining = draining
    }
}

/// The coordinator accepts a registration and sets the heartbeat rhythm.
public struct Registered: Hashable, Sendable {
    public var heartbeatIntervalMillis: UInt32
    /// Silence longer than this marks the agent down.
    public var agentTimeoutMillis: UInt32

    public init(heartbeatIntervalMillis: UInt32, agentTimeoutMillis: UInt32) {
        self.heartbeatIntervalMillis = heartbeatIntervalMillis
        self.agentTimeoutMillis = agentTimeoutMillis
    }
}

/// Sent by an agent every interval; the coordinator echoes it, so each side sees the other alive.
public struct Heartbeat: Hashable, Sendable {
    public var sequence: UInt64
    /// Units the agent is working on.
    public var inFlight: UInt32

    public init(sequence: UInt64, inFlight: UInt32) {
        self.sequence = sequence
        self.inFlight = inFlight
    }
}
