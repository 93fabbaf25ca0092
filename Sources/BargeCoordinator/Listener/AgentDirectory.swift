import BargeWire

/// The coordinator's live view of its agents: the pure `AgentRegistry` behind an actor, with the
/// clock injected. Connection tasks report registrations and heartbeats; `expire` runs periodically.
public actor AgentDirectory {
    private var registry: AgentRegistry
    private let clock: @Sendable () -> UInt64

    public init(heartbeatTimeout: Duration, clock: @escaping @Sendable () -> UInt64 = { DispatchClock.nanoseconds() }) {
        registry = AgentRegistry(heartbeatTimeout: UInt64(heartbeatTimeout.components.seconds) * 1_000_000_000
                                     + UInt64(heartbeatTimeout.components.attoseconds / 1_000_000_000))
        self.clock = clock
    }

    public func register(_ r: Register) throws(RegistryError) -> AgentRegistry.Registration {
        try registry.register(name: r.name, site: r.site, address: "\(r.dataHost):\(r.dataPort)", now: clock())
    }

    public func heartbeat(name: String) throws(RegistryError) {
        try registry.heartbeat(name: name, now: clock())
    }

    /// Marks silent agents down; returns their names.
    public func expire() -> [String] {
        registry.expire(now: clock())
    }

    public var agents: [AgentInfo] { registry.all }
}

/// Monotonic nanoseconds (CLOCK_MONOTONIC).
public enum DispatchClock {
    public static func nanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
