import BargeWire
import NIOCore
import NIOPosix

/// A stream to another agent's data-plane listener: each message sent gets one reply.
public final class ChunkStream {
    private var frames: NIOAsyncChannelInboundStream<Frame>.AsyncIterator
    private let outbound: NIOAsyncChannelOutboundWriter<Frame>
    /// The protocol version negotiated with the peer: what it understands.
    public let version: UInt8
    /// The socket's `TCP_INFO`.
    let probe: TCPProbe?

    init(inbound: NIOAsyncChannelInboundStream<Frame>, outbound: NIOAsyncChannelOutboundWriter<Frame>, version: UInt8, probe: TCPProbe? = nil) {
        frames = inbound.makeAsyncIterator()
        self.outbound = outbound
        self.version = version
        self.probe = probe
    }

    /// Sends `message` (chunk data or file done) and returns the peer's ack or nack.
    public func send(_ message: Message) async throws -> Message {
        try await send(message.frame())
    }

    /// Sends a frame built by the caller (a prepared chunk) and returns the peer's ack or nack.
    public func send(_ frame: Frame) async throws -> Message {
        try await outbound.write(frame)
        guard let frame = try await frames.next() else { throw CoordinatorConnectionError.closed }
        let reply = try Message(frame: frame)
        if case .error(let e) = reply { throw PeerRefused(error: e) }
        return reply
    }
}

/// The other agent answered with an error frame and closed the stream.
public struct PeerRefused: Error, CustomStringConvertible {
    public let error: ErrorMessage
    public var description: String { "the peer closed the stream: \(error.reason)" }
}

/// Opens data-plane streams to another agent.
public struct DataPlaneClient: Sendable {
    public var host: String
    public var port: Int
    public var token: ClusterToken
    /// This agent's name, for the peer's logs.
    public var name: String
    /// A stream with no answer for this long is closed, and its unit fails so that it is retried.
    public var stallTimeout: Duration

    public init(host: String, port: Int, token: ClusterToken, name: String, stallTimeout: Duration = .seconds(60)) {
        self.host = host
        self.port = port
        self.token = token
        self.name = name
        self.stallTimeout = stallTimeout
    }

    /// At most this many bytes wait unsent in a stream's socket (`TCP_NOTSENT_LOWAT`), so that
    /// the lane's window, not the socket buffer, holds what is not yet on the network.
    public static let notSentLowat = 128 * 1024

    public func withStream<Result: Sendable>(_ body: (ChunkStream) async throws -> Result) async throws -> Result {
        try await BargeConnection.withProbedConnection(host: host, port: port, token: token, name: name, role: .peer,
                                                       idleTimeout: stallTimeout.timeAmount,
                                                       notSentLowat: Self.notSentLowat) { session, probe, inbound, outbound in
            try await body(ChunkStream(inbound: inbound, outbound: outbound, version: session.version, probe: probe))
        }
    }
}
