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

/// Every `interval`, marks silent agents down and returns their units to pending.
public struct AgentExpiryService: Service {
    public let directory: AgentDirectory
    public let journal: Journal
    public let interval: Duration
    public let onExpired: @Sendable ([String], Int) -> Void

    public init(directory: AgentDirectory, journal: Journal, interval: Duration = .seconds(1),
                onExpired: @escaping @Sendable ([String], Int) -> Void = { _, _ in }) {
        self.directory = directory
        self.journal = journal
        self.interval = interval
        self.onExpired = onExpired
    }

    public func run() async throws {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            let expired = await directory.expire()
            if !expired.isEmpty {
                onExpired(expired, try journal.releaseUnits(heldBy: expired))
            }
            try? await Task.sleep(for: interval)
        }
    }
}
