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

    /// `connected`: an agent of that name has a live connection; with one heard from within
    /// `liveWindow`, the registration is refused (`RegistryError.connected`).
    public func register(_ r: Register, connected: Bool = false, liveWindow: Duration = .zero) throws(RegistryError) -> AgentRegistry.Registration {
        try registry.register(name: r.name, site: r.site, address: "\(r.dataHost):\(r.dataPort)", build: r.build, root: r.root, rootID: r.rootID, now: clock(),
                              connected: connected, liveWindow: UInt64(max(0, liveWindow.wholeNanoseconds)))
    }

    public func heartbeat(name: String) throws(RegistryError) {
        try registry.heartbeat(name: name, now: clock())
    }

    /// Marks an agent draining (shown by `barge agents`); registering again makes it up.
    public func drain(name: String) throws(RegistryError) {
        try registry.drain(name: name)
    }

    /// An agent that said it is stopping is down now; true when it was not already.
    public func stopped(name: String) -> Bool {
        registry.stopped(name: name)
    }

    /// Marks silent agents down; returns their names.
    public func expire() -> [String] {
        registry.expire(now: clock())
    }

    public var agents: [AgentInfo] { registry.all }

    /// Seconds since the directory was made: since the coordinator started.
    public var age: Double { Double(clock()) / 1e9 }
}
