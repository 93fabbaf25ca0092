import NIOCore
import NIOPosix

/// Opens an authenticated Barge connection as a client and runs `body` on it once the handshake
/// has succeeded. The connection is closed when `body` returns or throws. A failed handshake
/// throws `HandshakeFailure` with the reason.
public enum BargeConnection {
    public static func withConnection<Result: Sendable>(
        host: String, port: Int, token: ClusterToken, name: String, role: PeerRole,
        idleTimeout: TimeAmount = .seconds(120),
        group: EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        _ body: (Session, NIOAsyncChannelInboundStream<Frame>, NIOAsyncChannelOutboundWriter<Frame>) async throws -> Result
    ) async throws -> Result {
        try await withProbedConnection(host: host, port: port, token: token, name: name, role: role, idleTimeout: idleTimeout,
                                       group: group) { session, _, inbound, outbound in
            try await body(session, inbound, outbound)
        }
    }

    /// `withConnection`, with a probe of the socket's TCP state. `notSentLowat` sets
    /// `TCP_NOTSENT_LOWAT`: the kernel holds at most that many unsent bytes beyond what is in
    /// flight, so the sender's RTT and backlog are the network's, not a deep socket buffer's.
    /// `congestionControl` sets the socket's TCP congestion control before it connects; nil keeps
    /// the host's default.
    public static func withProbedConnection<Result: Sendable>(
        host: String, port: Int, token: ClusterToken, name: String, role: PeerRole,
        idleTimeout: TimeAmount = .seconds(120), notSentLowat: Int? = nil, congestionControl: TCPCongestionControl? = nil,
        group: EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        _ body: (Session, TCPProbe, NIOAsyncChannelInboundStream<Frame>, NIOAsyncChannelOutboundWriter<Frame>) async throws -> Result
    ) async throws -> Result {
        let token = token.bytes
        var bootstrap = ClientBootstrap(group: group).channelOption(.tcpOption(.tcp_nodelay), value: 1)
        if let notSentLowat { bootstrap = bootstrap.channelOption(TCPProbe.notSentLowatOption, value: SocketOptionValue(notSentLowat)) }
        let (channel, sessionFuture, sent) = try await bootstrap
            .connectTimeout(.seconds(10))
            .connect(host: host, port: port) { channel in
                let chosen = congestionControl.map { $0.apply(to: channel) } ?? channel.eventLoop.makeSucceededVoidFuture()
                return chosen.flatMapThrowing {
                    let session = channel.eventLoop.makePromise(of: Session.self)
                    try channel.pipeline.syncOperations.addBargeHandlers(
                        .client(ClientHandshake(token: token, name: name, role: role, nonce: freshNonce())), idleTimeout: idleTimeout)
                    try channel.pipeline.syncOperations.addHandler(SessionStartHandler(promise: session))
                    let sent = try channel.pipeline.syncOperations.handler(type: ProtocolErrorHandler.self).sent
                    return (try NIOAsyncChannel<Frame, Frame>(wrappingChannelSynchronously: channel), session.futureResult, sent)
                }
            }
        let probe = TCPProbe(channel: channel.channel, sentError: sent)
        // The handshake is awaited inside executeThenClose, so the connection is closed and its
        // writer finished on every path, failures included.
        return try await channel.executeThenClose { inbound, outbound in
            // A task cancelled meanwhile (an agent stopping) closes the connection rather than
            // wait out the handshake's timeout: a peer that accepts but never answers (a frozen
            // coordinator) held a SIGTERM for 10 s.
            let session = try await withTaskCancellationHandler {
                try await sessionFuture.get()
            } onCancel: {
                channel.channel.close(promise: nil)
            }
            return try await body(session, probe, inbound, outbound)
        }
    }
}
