import NIOConcurrencyHelpers
import NIOCore
#if canImport(Glibc)
import Glibc
#endif

/// The last inbound handler of every Barge connection. A protocol error from anywhere before it
/// (a bad frame, a malformed message), or a peer that sends nothing for the idle timeout (a stalled
/// stream, a half frame sent slowly), is answered with an error frame, then the connection is
/// closed. One bad peer costs one connection and nothing else.
public final class ProtocolErrorHandler: ChannelInboundHandler, RemovableChannelHandler {
    public typealias InboundIn = Frame
    public typealias OutboundOut = Frame

    private var closing = false
    /// The error this side sent as it closed the connection, if it did: for the owner of the
    /// connection, whose reader otherwise sees only its end (and took it for the peer's close).
    public let sent = NIOLockedValueBox<ErrorMessage?>(nil)

    public init() {}

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.fireChannelRead(data)
    }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let idle = event as? IdleStateHandler.IdleStateEvent, idle == .read {
            fail(context, ErrorMessage(code: .timedOut, reason: "nothing received for too long; closing the connection"))
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    public func errorCaught(context: ChannelHandlerContext, error: Error) {
        switch error {
        case let wire as WireError: fail(context, ErrorMessage(wire))
        // The connection itself broke (reset, pipe): nothing was malformed, and this side closed
        // nothing of its own will (not `sent`: the owner tells it as the peer's end).
        case is IOError, is ChannelError: fail(context, ErrorMessage(code: .unexpectedMessage, reason: ConnectionFailure.describe(error)), ownDoing: false)
        // Any other error is this side's own (a message its handlers could not take), not damage
        // on the wire: a code that `isDamageOnTheWire` leaves out, so that the peer does not
        // retry it for minutes as a path's fault, where it fails the same every time.
        default: fail(context, ErrorMessage(code: .malformedMessage, reason: "\(error)"))
        }
    }

    private func fail(_ context: ChannelHandlerContext, _ message: ErrorMessage, ownDoing: Bool = true) {
        guard !closing else { return }
        closing = true
        if ownDoing { sent.withLockedValue { $0 = message } }
        context.fireUserInboundEventTriggered(ProtocolEvent.protocolError(message))
        context.closeAfterWriting(wrapOutboundOut(Message.error(message).frame(allocator: context.channel.allocator)))
    }
}

extension ChannelHandlerContext {
    /// How long a connection that is being closed waits for its last frame (an error) to be
    /// written.
    static let lastWriteLimit: TimeAmount = .seconds(2)

    /// Writes `data` (an error frame), then closes the connection once it is written, or after
    /// `lastWriteLimit` if it cannot be: a peer that has stopped reading (SIGSTOP, a hung host)
    /// leaves its window shut, and the close waited for ever behind the write. The connection
    /// stayed open past its idle timeout, with every request on it unanswered, so the units that
    /// sent them held the agent's send budget and its other units stopped too.
    func closeAfterWriting(_ data: NIOAny) {
        let bound = NIOLoopBound(self, eventLoop: eventLoop)
        let limit = eventLoop.assumeIsolated().scheduleTask(in: Self.lastWriteLimit) { bound.value.close(promise: nil) }
        writeAndFlush(data).whenComplete { _ in
            limit.cancel()
            bound.value.close(promise: nil)
        }
    }
}

/// Events Barge's handlers announce to the handlers after them, for logging and for the session
/// code that owns the connection.
public enum ProtocolEvent: Hashable, Sendable {
    case established(Session)
    case handshakeFailed(ErrorMessage)
    case protocolError(ErrorMessage)
}

/// A connection's failure in words: NIO's own ("I/O on closed channel", "read(descriptor:
/// pointer:size:): Connection reset by peer) (errno: 104)") said what broke, not what happened.
public enum ConnectionFailure {
    /// NIO's words for a connection that closed under a request.
    public static func isClosed(_ error: any Error) -> Bool {
        guard let channel = error as? ChannelError else { return false }
        return channel == .ioOnClosedChannel || channel == .alreadyClosed || channel == .eof || channel == .outputClosed
    }

    public static func describe(_ error: any Error) -> String {
        if isClosed(error) { return "the connection closed under a request (the peer, or the network to it, went away)" }
        if let io = error as? IOError {
            return "the connection broke: \(String(cString: strerror(io.errnoCode)).lowercased()) (errno \(io.errnoCode))"
        }
        return "\(error)"
    }
}
