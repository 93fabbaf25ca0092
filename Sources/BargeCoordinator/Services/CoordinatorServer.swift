import BargeWire
import Foundation
import Hummingbird
import Logging
import NIOCore
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
        /// `--metrics`: a second listener serving `/metrics` alone, with no token.
        public var metrics: HostPort?
        /// `--tls-cert` and `--tls-key`: the HTTP API over TLS; nil serves plain HTTP.
        public var tls: APITLS?
        /// `--notify` and `--notify-secret-file`: web hooks told of every job's events.
        public var notify = NotificationService.Settings()

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
        try FileManager.default.createDirectory(atPath: c.stateDirectory, withIntermediateDirectories: true)
        let lock = try await StateLock.acquire(directory: c.stateDirectory, logger: logger)
        defer { withExtendedLifetime(lock) {} }
        let journal: Journal
        do {
            journal = try Journal(path: c.stateDirectory + "/" + Journal.fileName)
        } catch {
            guard let full = JournalError.diskFull(error) else { throw error }
            throw CoordinatorStartError("cannot open the journal in \(c.stateDirectory): the disk there is full (\(full)); free space there, or give --state another directory")
        }
        let directory = AgentDirectory(heartbeatTimeout: c.agentTimeout)
        var listenerConfig = AgentListenerConfiguration(host: c.agents.host, port: c.agents.port, token: c.token)
        listenerConfig.agentTimeout = c.agentTimeout
        listenerConfig.heartbeatInterval = c.heartbeatInterval
        let logger = self.logger
        let audit = try AuditTrail(directory: c.stateDirectory, journal: journal, logger: logger)
        let tokens = try APITokens(journal: journal)
        if let written = try tokens.ensureAdmin(in: c.stateDirectory) {
            logger.notice("first start: an admin API token is in \(written) (mode 0600); pass it with --api-token-file or BARGE_API_TOKEN_FILE, and make others with 'barge token create'")
        }
        if c.tls == nil, !Self.isLoopback(c.http.host) {
            logger.warning("the HTTP API listens on \(c.http.host), beyond this host, without TLS: API tokens and job details cross the network in clear")
        }
        let scheduler = Scheduler(journal: journal, planner: c.planner, logger: logger)
        try await scheduler.recoverAfterRestart()
        let listener: AgentListener
        do {
            listener = try await AgentListener.bind(listenerConfig, directory: directory, scheduler: scheduler, logger: logger)
        } catch let error as IOError {
            throw Self.bindFailure(error, flag: "--listen", address: "\(c.agents)")
        }
        let expiry = AgentExpiryService(directory: directory, scheduler: scheduler) { names, released in
            logger.warning("agents down after \(c.agentTimeout) without a heartbeat: \(names.joined(separator: ", ")); \(released) units back to pending")
        }
        let agentAddress = listener.localAddress.map { "\($0.ipAddress ?? c.agents.host):\($0.port ?? c.agents.port)" } ?? "\(c.agents)"
        var services: [any Service] = [listener, expiry, AuditMirrorService(trail: audit, logger: logger),
                                       EvidenceRootService(journal: journal, logger: logger)]
        if let retention = c.retention { services.append(RetentionService(scheduler: scheduler, retention: retention)) }
        // Deliveries run even without --notify: a job's own --notify URL is told as well.
        services.append(NotificationService(journal: journal, settings: c.notify, source: "barge/\(agentAddress)", logger: logger))
        if let metrics = c.metrics {
            services.append(Application(
                router: buildMetricsRouter(scheduler: scheduler, directory: directory),
                configuration: .init(address: .hostname(metrics.host, port: metrics.port), serverName: "barge-metrics"),
                onServerRunning: { channel in
                    let at = channel.localAddress.map { "\($0.ipAddress ?? metrics.host):\($0.port ?? metrics.port)" } ?? "\(metrics)"
                    logger.notice("metrics on http://\(at)/metrics, with no token")
                },
                logger: logger))
        }
        let app = Application(
            router: buildRouter(directory: directory, scheduler: scheduler, tokens: tokens, audit: audit, secureCookie: c.tls != nil, logger: logger),
            server: try c.tls?.server() ?? .http1(configuration: APIServer.http1),
            configuration: .init(address: .hostname(c.http.host, port: c.http.port), serverName: "barge-coordinator"),
            services: services,
            onServerRunning: { channel in
                let http = channel.localAddress.map { "\($0.ipAddress ?? c.http.host):\($0.port ?? c.http.port)" } ?? "\(c.http)"
                let scheme = c.tls == nil ? "http" : "https"
                logger.notice("barge coordinator ready: agents on \(agentAddress), HTTP on \(scheme)://\(http), state in \(c.stateDirectory)")
            },
            logger: logger
        )
        // SIGTERM or SIGINT begin a graceful stop: the services end their rounds at once
        // (`StopAwarePause`) and the HTTP server waits for the answers under way. One that takes
        // longer (a tier request, a webhook delivery, a client that stopped reading a stream) is
        // cancelled after `stopLimit`, so that the coordinator always stops.
        var group = ServiceGroupConfiguration(services: [app], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        group.maximumGracefulShutdownDuration = Self.stopLimit
        do {
            try await ServiceGroup(configuration: group).run()
        } catch let error as IOError where "\(error)".hasPrefix("bind") {
            // The HTTP server (and the metrics one) bind as the group starts.
            throw Self.bindFailure(error, flag: c.metrics == nil ? "--http" : "--http or --metrics",
                                   address: c.metrics.map { "\(c.http) or \($0)" } ?? "\(c.http)")
        }
    }

    /// A port the coordinator cannot bind, named by its flag. Before, the error was NIO's
    /// ("bind(descriptor:ptr:bytes:): Address already in use) (errno: 98)"), which did not say
    /// which of its ports it was (a black-box review).
    static func bindFailure(_ error: IOError, flag: String, address: String) -> CoordinatorStartError {
        let why = switch error.errnoCode {
        case EADDRINUSE: "the address is in use (another coordinator, or another program, listens there)"
        case EADDRNOTAVAIL: "no interface of this host has that address"
        case EACCES: "this user may not listen on that port (below 1024)"
        default: String(cString: strerror(error.errnoCode))
        }
        return CoordinatorStartError("\(flag) \(address): cannot listen: \(why)")
    }

    /// The longest a graceful stop waits for the answers under way before it cancels them.
    static let stopLimit: Duration = .seconds(10)

    /// Names that reach only this host.
    static func isLoopback(_ host: String) -> Bool {
        host == "localhost" || host == "::1" || host == "[::1]" || host.hasPrefix("127.")
    }
}

/// The HTTP API alone over a scheduler, on `host:port` (0: a free port, passed to `onRunning`),
/// until the task is cancelled, which shuts it down gracefully (a bare cancellation logged an
/// error for the listening channel): for benchmarks that drive the scheduler in process.
public enum CoordinatorAPIServer {
    public static func run(scheduler: Scheduler, directory: AgentDirectory, tokens: APITokens, host: String = "127.0.0.1", port: Int = 0,
                           logger: Logger = Logger(label: "barge.coordinator"),
                           onRunning: @escaping @Sendable (Int) async -> Void) async throws {
        let app = Application(
            router: buildRouter(directory: directory, scheduler: scheduler, tokens: tokens),
            configuration: .init(address: .hostname(host, port: port), serverName: "barge-coordinator"),
            onServerRunning: { channel in await onRunning(channel.localAddress?.port ?? port) },
            logger: logger)
        let group = ServiceGroup(configuration: .init(services: [app], logger: logger))
        // The group runs in a task of its own, which the caller's cancellation does not reach: a
        // group that sees it cancels its services at once, racing the graceful shutdown below,
        // and Hummingbird then logged `Waiting on child channel: CancellationError()`.
        let running = Task { try await group.run() }
        try await withTaskCancellationHandler {
            try await running.value
        } onCancel: {
            Task { await group.triggerGracefulShutdown() }
        }
    }
}

/// Why the coordinator cannot start, in words for its operator.
public struct CoordinatorStartError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
