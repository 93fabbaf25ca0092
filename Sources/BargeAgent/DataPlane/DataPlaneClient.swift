import BargeWire
import DequeModule
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// A stream to another agent's data-plane listener, pipelined: any number of tasks send on it at
/// once, and each message gets its own reply. The listener answers a connection's messages one at
/// a time, in order, so replies are matched to requests first in, first out; each reply is checked
/// against its request's place (`Pending.expects`), and a mismatch ends the stream. Frames go out in
/// the order their replies are expected: a request is queued for the writer under the same lock
/// that records it.
public final class ChunkStream: Sendable {
    /// The protocol version negotiated with the peer: what it understands.
    public let version: UInt8
    /// The socket's `TCP_INFO`.
    let probe: TCPProbe?

    private struct Pending {
        let continuation: CheckedContinuation<Message, Error>
        /// The place the reply must name (chunk ack or nack), when the request has one.
        let expects: ChunkPlace?
    }

    private struct State {
        var pending: Deque<Pending> = []
        var failure: Error?
    }

    private let state = NIOLockedValueBox(State())
    private let writes: AsyncStream<Frame>.Continuation

    private init(version: UInt8, probe: TCPProbe?, writes: AsyncStream<Frame>.Continuation) {
        self.version = version
        self.probe = probe
        self.writes = writes
    }

    /// Runs `body` with a stream over the connection: a writer task sends the queued frames, a
    /// reader task hands each reply to its request. Both end with `body`.
    static func serve<Result: Sendable>(inbound: NIOAsyncChannelInboundStream<Frame>, outbound: NIOAsyncChannelOutboundWriter<Frame>,
                                        version: UInt8, probe: TCPProbe?, _ body: (ChunkStream) async throws -> Result) async throws -> Result {
        let (frames, writes) = AsyncStream<Frame>.makeStream()
        let stream = ChunkStream(version: version, probe: probe, writes: writes)
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                do {
                    for await frame in frames { try await outbound.write(frame) }
                } catch {
                    stream.fail(error)
                }
            }
            group.addTask {
                do {
                    for try await frame in inbound { try stream.deliver(frame) }
                    stream.fail(CoordinatorConnectionError.closed)
                } catch {
                    stream.fail(error)
                }
            }
            defer {
                writes.finish()
                group.cancelAll()
                stream.fail(CancellationError())
            }
            return try await body(stream)
        }
    }

    /// The stream has failed (its connection closed or broke): nothing more can be sent on it.
    public var isFailed: Bool { state.withLockedValue { $0.failure != nil } }

    /// Sends `message` and returns the peer's reply (ack, nack, have list, files done reply).
    public func send(_ message: Message) async throws -> Message {
        let place: ChunkPlace? = switch message {
        case .chunkData(let d), .chunkRepair(let d): d.place
        case .chunkRef(let r): r.place
        case .fileDone(let f): f.place
        default: nil
        }
        return try await send(message.frame(), expecting: place)
    }

    /// Sends a frame built by the caller (a prepared chunk for `place`) and returns the peer's
    /// ack or nack.
    public func send(_ frame: Frame, expecting place: ChunkPlace? = nil) async throws -> Message {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<Message, Error>) in
            let failed = state.withLockedValue { s -> Error? in
                if let failure = s.failure { return failure }
                s.pending.append(Pending(continuation: c, expects: place))
                writes.yield(frame)
                return nil
            }
            if let failed { c.resume(throwing: failed) }
        }
    }

    private func deliver(_ frame: Frame) throws {
        let reply = try Message(frame: frame)
        guard let head = state.withLockedValue({ $0.pending.popFirst() }) else {
            throw WireError.malformed(frame.type, "a reply with no request outstanding")
        }
        if case .error(let e) = reply {
            head.continuation.resume(throwing: PeerRefused(error: e))
            return
        }
        if let expected = head.expects {
            let named: ChunkPlace? = switch reply {
            case .chunkAck(let a): a.place
            case .chunkNack(let n): n.place
            default: nil
            }
            guard named == expected else {
                let error = WireError.malformed(frame.type, "a reply for \(named.map { "\($0.path) at \($0.offset)" } ?? "nothing") where \(expected.path) at \(expected.offset) was due")
                head.continuation.resume(throwing: error)
                throw error
            }
        }
        head.continuation.resume(returning: reply)
    }

    /// Ends the stream: every request still waiting fails with `error`, and later ones at once.
    private func fail(_ error: Error) {
        let waiting = state.withLockedValue { s -> Deque<Pending> in
            if s.failure == nil { s.failure = error }
            defer { s.pending.removeAll() }
            return s.pending
        }
        writes.finish()
        for p in waiting { p.continuation.resume(throwing: error) }
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
            try await ChunkStream.serve(inbound: inbound, outbound: outbound, version: session.version, probe: probe, body)
        }
    }
}
