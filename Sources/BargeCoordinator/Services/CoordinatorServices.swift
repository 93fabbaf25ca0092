import ServiceLifecycle

/// The agent listener as a service: it serves until graceful shutdown, then closes its socket.
extension AgentListener: Service {
    public func run() async throws {
        try await withGracefulShutdownHandler {
            try await serve()
        } onGracefulShutdown: {
            Task { await self.close() }
        }
    }
}

/// Every `interval`, marks silent agents down and returns their units to pending, and updates the
/// scheduler's gauges.
public struct AgentExpiryService: Service {
    public let directory: AgentDirectory
    public let scheduler: Scheduler
    public let interval: Duration
    public let onExpired: @Sendable ([String], Int) -> Void

    public init(directory: AgentDirectory, scheduler: Scheduler, interval: Duration = .seconds(1),
                onExpired: @escaping @Sendable ([String], Int) -> Void = { _, _ in }) {
        self.directory = directory
        self.scheduler = scheduler
        self.interval = interval
        self.onExpired = onExpired
    }

    public func run() async throws {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            let expired = await directory.expire()
            if !expired.isEmpty {
                onExpired(expired, try await scheduler.agentsDown(expired))
            }
            await scheduler.tick()
            try? await Task.sleep(for: interval)
        }
    }
}
