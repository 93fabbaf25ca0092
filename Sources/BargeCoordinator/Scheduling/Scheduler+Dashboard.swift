import BargeWire

/// What the dashboard's snapshots need of the scheduler, each in one call on the actor.
extension Scheduler {
    /// Per agent: its connection's protocol version (nil when not connected), the units it holds
    /// as a source or destination, and the bytes it sent and received.
    public struct AgentActivity: Sendable {
        public var protocolVersion: UInt8?
        public var unitsHeld: Int
        public var bytesSent: UInt64
        public var bytesReceived: UInt64
    }

    public func agentActivity() -> [String: AgentActivity] {
        var out: [String: AgentActivity] = [:]
        func touch(_ name: String) {
            if out[name] == nil {
                let bytes = agentBytes[name] ?? (0, 0)
                out[name] = AgentActivity(protocolVersion: links[name]?.version, unitsHeld: 0, bytesSent: bytes.sent, bytesReceived: bytes.received)
            }
        }
        for name in links.keys { touch(name) }
        for name in agentBytes.keys { touch(name) }
        for (_, held) in policy.held {
            touch(held.source)
            out[held.source]!.unitsHeld += 1
            if held.destination != held.source {
                touch(held.destination)
                out[held.destination]!.unitsHeld += 1
            }
        }
        return out
    }

    /// The newest `limit` jobs, newest first, with running units' bytes added.
    public func recentJobs(limit: Int) throws -> [JobRecord] {
        try journal.recentJobs(limit: limit).map { job in
            var j = job
            addLive(&j)
            return j
        }
    }

    /// Jobs that ended since `time`, by state.
    public func endedSince(_ time: Double) throws -> [JobState: Int] { try journal.endedSince(time) }

    /// Unix seconds, by the scheduler's clock.
    public var clockNow: Double { now() }
}
