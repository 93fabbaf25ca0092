import NIOCore

/// The last inbound handler of every Barge connection. A protocol error from anywhere before it
/// (a bad frame, a malformed message), or a peer that sends nothing for the idle timeout (a stalled
/// stream, a half frame sent slowly), is answered with an error frame, then the connection is
/// closed. One bad peer costs one connection and nothing else.
public final class ProtocolErrorHandler: ChannelInboundHandler, RemovableChannelHandler {
    public typealias InboundIn = Frame
    public typealias OutboundOut = Frame

    private var closing = false

    public init() {}

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.fireChannelRead(data)
    }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let idle = event as? IdleStateHandler.IdleStateEvent, idle == .read {
            fail(context, ErrorMessage(code: .unexpectedMessage, reason: "nothing received for too long; closing the connection"))
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    public func errorCaught(context: ChannelHandlerContext, error: Error) {
        switch error {
        case let wire as WireError: fail(context, ErrorMessage(wire))
        default: fail(context, ErrorMessage(code: .malformedFrame, reason: "\(error)"))
        }
    }

    private func fail(_ context: ChannelHandlerContext, _ message: ErrorMessage) {
        guard !closing else { return }
        closing = true
        context.fireUserInboundEventTriggered(ProtocolEvent.protocolError(message))
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.writeAndFlush(wrapOutboundOut(Message.error(message).frame(allocator: context.channel.allocator)))
            .whenComplete { _ in bound.value.close(promise: nil) }
    }
}

/// Events Barge's handlers announce to the handlers after them, for logging and for the session
/// code that owns the connection.
public enum ProtocolEvent: Hashable, Sendable {
    case established(Session)
    case handshakeFailed(ErrorMessage)
    case protocolError(ErrorMessage)
}
