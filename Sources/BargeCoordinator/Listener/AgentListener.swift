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

/// Accepts agent connections on real TCP: framing and the authenticated handshake in the channel
/// pipeline, then registration and heartbeats in plain async code, one child task per connection.
/// Each connection catches its own errors, so one bad peer never takes the listener down.
public final class AgentListener: Sendable {
    typealias Connection = (channel: NIOAsyncChannel<Frame, Frame>, session: EventLoopFuture<Session>)

    public let configuration: AgentListenerConfiguration
    public let directory: AgentDirectory
    let logger: Logger
    private let server: NIOAsyncChannel<Connection, Never>

    /// The address actually bound (port 0 binds a free port).
    public var localAddress: SocketAddress? { server.channel.localAddress }

    private init(configuration: AgentListenerConfiguration, directory: AgentDirectory, logger: Logger, server: NIOAsyncChannel<Connection, Never>) {
        self.configuration = configuration
        self.directory = directory
        self.logger = logger
        self.server = server
    }

    /// Binds the listening socket. Call `run()` to serve.
    public static func bind(_ configuration: AgentListenerConfiguration, directory: AgentDirectory,
                            logger: Logger = Logger(label: "barge.coordinator"),
                            group: EventLoopGroup = MultiThreadedEventLoopGroup.singleton) async throws -> AgentListener {
        let token = configuration.token.bytes
        let name = configuration.name
        let handshakeTimeout = TimeAmount.nanoseconds(Int64(configuration.handshakeTimeout.components.seconds) * 1_000_000_000
                                                      + configuration.handshakeTimeout.components.attoseconds / 1_000_000_000)
        let server = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .bind(host: configuration.host, port: configuration.port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    let session = channel.eventLoop.makePromise(of: Session.self)
                    let handshake = ServerHandshake(token: token, name: name, nonce: freshNonce())
                    try channel.pipeline.syncOperations.addBargeHandlers(.server(handshake), handshakeTimeout: handshakeTimeout)
                    try channel.pipeline.syncOperations.addHandler(SessionStartHandler(promise: session))
                    let async = try NIOAsyncChannel<Frame, Frame>(wrappingChannelSynchronously: channel)
                    return (channel: async, session: session.futureResult)
                }
            }
        return AgentListener(configuration: configuration, directory: directory, logger: logger, server: server)
    }

    /// Serves until the task is cancelled or the listening socket closes. `run()` (the `Service`
    /// conformance) wraps it with graceful shutdown.
    func serve() async throws {
        try await withThrowingDiscardingTaskGroup { group in
            try await server.executeThenClose { inbound in
                for try await connection in inbound {
                    group.addTask { await self.handle(connection) }
                }
            }
        }
    }

    /// Closes the listening socket; `run()` then returns once open connections end.
    public func close() async {
        try? await server.channel.close()
    }

    private func handle(_ connection: Connection) async {
        // Everything happens inside executeThenClose, which closes the connection and finishes its
        // writer on every path (an NIOAsyncChannel left without it traps when released).
        let peer = connection.channel.channel.remoteAddress.map { "\($0.ipAddress ?? "?"):\($0.port ?? 0)" } ?? "unknown peer"
        try? await connection.channel.executeThenClose { inbound, outbound in
            let session: Session
            do {
                session = try await connection.session.get()
            } catch {
                // The handshake handler has already told the peer and closed the connection.
                logger.warning("refused connection from \(peer): \(error)")
                return
            }
            do {
                try await AgentSession(session: session, directory: directory, configuration: configuration, logger: logger)
                    .run(inbound: inbound, outbound: outbound)
            } catch {
                logger.warning("connection from \(session.role) '\(session.peerName)' at \(peer) ended: \(error)")
            }
        }
    }
}
