import BargeWire

/// The coordinator's live view of its agents: the pure `AgentRegistry` behind an actor, with the
/// clock injected. Connection tasks report registrations and heartbeats; `expire` runs periodically.
public actor AgentDirectory {
    private var registry: AgentRegistry
    private let clock: @Sendable () -> UInt64

    /// `clock` gives monotonic nanoseconds; by default, time since the directory was made.
    public init(heartbeatTimeout: Duration, clock: (@Sendable () -> UInt64)? = nil) {
        registry = AgentRegistry(heartbeatTimeout: UInt64(heartbeatTimeout.wholeNanoseconds))
        let start = ContinuousClock.now
        self.clock = clock ?? { UInt64((ContinuousClock.now - start).wholeNanoseconds) }
    }

    public func register(_ r: Register) throws(RegistryError) -> AgentRegistry.Registration {
        try registry.register(name: r.name, site: r.site, address: "\(r.dataHost):\(r.dataPort)", build: r.build, now: clock())
    }

    /// The agent of that name, if it is not down and was heard from (registered, or a heartbeat)
    /// within `window`.
    public func heardLately(_ name: String, within window: Duration) -> AgentInfo? {
        guard let info = registry.agents[name], info.state != .down else { return nil }
        let now = clock()
        return now < info.lastSeen || now - info.lastSeen <= UInt64(window.wholeNanoseconds) ? info : nil
    }

    public func heartbeat(name: String) throws(RegistryError) {
        try registry.heartbeat(name: name, now: clock())
    }

    /// Marks an agent draining (shown by `barge agents`); registering again makes it up.
    public func drain(name: String) throws(RegistryError) {
        try registry.drain(name: name)
    }

    /// Marks silent agents down; returns their names.
    public func expire() -> [String] {
        registry.expire(now: clock())
    }

    public var agents: [AgentInfo] { registry.all }
}
