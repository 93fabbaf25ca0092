import BargeWire
import Logging
import NIOCore
import NIOPosix

/// Settings of the coordinator's agent listener.
public struct AgentListenerConfiguration: Sendable {
    public var host: String
    public var port: Int
    public var token: ClusterToken
    public var name: String
    public var heartbeatInterval: Duration
    public var agentTimeout: Duration
    public var handshakeTimeout: Duration

    public init(host: String, port: Int, token: ClusterToken, name: String = "coordinator",
                heartbeatInterval: Duration = .seconds(1), agentTimeout: Duration = .seconds(15),
                handshakeTimeout: Duration = .seconds(10)) {
        self.host = host
        self.port = port
        self.token = token
        self.name = name
        self.heartbeatInterval = heartbeatInterval
        self.agentTimeout = agentTimeout
        self.handshakeTimeout = handshakeTimeout
    }
}

/// Accepts agent connections: a `BargeServer` whose sessions are `AgentSession`s (register, then
/// heartbeats and the agent's reports to the scheduler). Refused handshakes and failed sessions are logged with the peer's address.
public final class AgentListener: Sendable {
    public let configuration: AgentListenerConfiguration
    public let directory: AgentDirectory
    public let scheduler: Scheduler
    /// Hands an agent's report to the scheduler.
    public typealias Deliver = @Sendable (_ report: Message, _ from: String) async -> Void
    let deliver: Deliver
    let logger: Logger
    private let server: BargeServer

    /// The address actually bound (port 0 binds a free port).
    public var localAddress: SocketAddress? { server.localAddress }

    private init(configuration: AgentListenerConfiguration, directory: AgentDirectory, scheduler: Scheduler, deliver: Deliver?, logger: Logger, server: BargeServer) {
        self.configuration = configuration
        self.directory = directory
        self.scheduler = scheduler
        self.deliver = deliver ?? { report, agent in await scheduler.received(report, from: agent) }
        self.logger = logger
        self.server = server
    }

    /// Binds the listening socket. Call `run()` to serve. `deliver` hands reports to the
    /// scheduler (`Scheduler.received`, unless a test gives another).
    public static func bind(_ configuration: AgentListenerConfiguration, directory: AgentDirectory, scheduler: Scheduler,
                            deliver: Deliver? = nil, logger: Logger = Logger(label: "barge.coordinator"),
                            group: EventLoopGroup = MultiThreadedEventLoopGroup.singleton) async throws -> AgentListener {
        let server = try await BargeServer.bind(
            host: configuration.host, port: configuration.port, token: configuration.token, name: configuration.name,
            handshakeTimeout: configuration.handshakeTimeout.timeAmount,
            // Heartbeats come every interval; twice the agent timeout of silence is a dead connection.
            idleTimeout: (configuration.agentTimeout * 2).timeAmount,
            // One connection per agent, and few files of its own: up to 16,384 agents, half its
            // descriptors.
            maxConnections: BargeServer.connectionLimit(most: 16_384, share: 2), group: group)
        return AgentListener(configuration: configuration, directory: directory, scheduler: scheduler, deliver: deliver, logger: logger, server: server)
    }

    /// Serves until the task is cancelled or the listening socket closes. `run()` (the `Service`
    /// conformance) wraps it with graceful shutdown.
    func serve() async throws {
        let directory = directory, scheduler = scheduler, deliver = deliver, configuration = configuration, logger = logger
        try await server.serve(session: { peer, inbound, outbound in
            try await AgentSession(session: peer.session, directory: directory, scheduler: scheduler, deliver: deliver, configuration: configuration, logger: logger)
                .run(inbound: inbound, outbound: outbound)
        }, onError: { address, error in
            // The coordinator stopping (SIGTERM) cancels its agents' connections: not worth a warning.
            if error is CancellationError || Task.isCancelled {
                logger.debug("agent connection from \(address) closed as the coordinator stops")
                return
            }
            // Too many handshakes at once from one address: the agent asks again on its own (as
            // an agent's data port says it).
            if let full = error as? BargeServer.ServerFull, full.fromOneAddress {
                logger.notice("connection from \(address) refused: \(full); the agent asks again")
                return
            }
            logger.warning(error is HandshakeFailure || error is RefusedHandshake ? "refused connection from \(address): \(error)" : "connection from \(address) ended: \(error)")
        })
    }

    /// Closes the listening socket; `run()` then returns once open connections end.
    public func close() async {
        await server.close()
    }
}
