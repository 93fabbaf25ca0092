/// An agent introduces itself to the coordinator after the handshake.
public struct Register: Hashable, Sendable {
    public static let maxNameLength = 255
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

    public static let maxBuildLength = 64

    public init(name: String, site: String, root: String, dataHost: String, dataPort: UInt16, maxInFlight: UInt32 = 8, build: String? = nil) {
        self.name = name
        self.site = site
        self.root = root
        self.dataHost = dataHost
        self.dataPort = dataPort
        self.maxInFlight = maxInFlight
        self.build = build
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
