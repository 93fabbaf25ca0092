import BargeWire
import Hummingbird
import Logging
import ServiceLifecycle

/// Everything `barge coordinator` runs, in one `ServiceGroup`: the HTTP API, the agent listener
/// and the expiry loop. SIGTERM and SIGINT shut them down gracefully.
public struct CoordinatorServer {
    public struct Configuration: Sendable {
        public var stateDirectory: String
        public var agents: HostPort
        public var http: HostPort
        public var token: ClusterToken
        public var agentTimeout: Duration = .seconds(15)
        public var heartbeatInterval: Duration = .seconds(1)
        /// How jobs are cut into units and chunks.
        public var planner = Planner()
        /// Jobs that ended longer ago are pruned (`--retain`); nil keeps them.
        public var retention: Duration?

        public init(stateDirectory: String, agents: HostPort, http: HostPort, token: ClusterToken) {
            self.stateDirectory = stateDirectory
            self.agents = agents
            self.http = http
            self.token = token
        }
    }

    public let configuration: Configuration
    public let logger: Logger

    public init(configuration: Configuration, logger: Logger = Logger(label: "barge.coordinator")) {
        self.configuration = configuration
        self.logger = logger
    }

    public func run() async throws {
        let c = configuration
        let journal = try Journal(path: c.stateDirectory + "/" + Journal.fileName)
        let directory = AgentDirectory(heartbeatTimeout: c.agentTimeout)
        var listenerConfig = AgentListenerConfiguration(host: c.agents.host, port: c.agents.port, token: c.token)
        listenerConfig.agentTimeout = c.agentTimeout
        listenerConfig.heartbeatInterval = c.heartbeatInterval
        let logger = self.logger
        let scheduler = Scheduler(journal: journal, planner: c.planner, logger: logger)
        try await scheduler.recoverAfterRestart()
        let listener = try await AgentListener.bind(listenerConfig, directory: directory, scheduler: scheduler, logger: logger)
        let expiry = AgentExpiryService(directory: directory, scheduler: scheduler) { names, released in
            logger.warning("agents down after \(c.agentTimeout) without a heartbeat: \(names.joined(separator: ", ")); \(released) units back to pending")
        }
        let agentAddress = listener.localAddress.map { "\($0.ipAddress ?? c.agents.host):\($0.port ?? c.agents.port)" } ?? "\(c.agents)"
        let app = Application(
            router: buildRouter(directory: directory, scheduler: scheduler),
            configuration: .init(address: .hostname(c.http.host, port: c.http.port), serverName: "barge-coordinator"),
            services: [listener, expiry] + (c.retention.map { [RetentionService(scheduler: scheduler, retention: $0)] as [any Service] } ?? []),
            onServerRunning: { channel in
                let http = channel.localAddress.map { "\($0.ipAddress ?? c.http.host):\($0.port ?? c.http.port)" } ?? "\(c.http)"
                logger.notice("barge coordinator ready: agents on \(agentAddress), HTTP on http://\(http), state in \(c.stateDirectory)")
            },
            logger: logger
        )
        try await app.runService()
    }
}

/// The HTTP API alone over a scheduler, on `host:port` (0: a free port, passed to `onRunning`),
/// until the task is cancelled: for benchmarks that drive the scheduler in process.
public enum CoordinatorAPIServer {
    public static func run(scheduler: Scheduler, directory: AgentDirectory, host: String = "127.0.0.1", port: Int = 0,
                           logger: Logger = Logger(label: "barge.coordinator"),
                           onRunning: @escaping @Sendable (Int) async -> Void) async throws {
        let app = Application(
            router: buildRouter(directory: directory, scheduler: scheduler),
            configuration: .init(address: .hostname(host, port: port), serverName: "barge-coordinator"),
            onServerRunning: { channel in await onRunning(channel.localAddress?.port ?? port) },
            logger: logger)
        try await app.run()
    }
}
