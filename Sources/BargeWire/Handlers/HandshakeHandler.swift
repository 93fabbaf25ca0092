import NIOCore

/// Runs one side of the handshake on a connection. It only carries out what the pure state machine
/// decides: send a message, fail (with an error frame and a close), or establish. On success it
/// raises the frame limit to the agreed one, announces `ProtocolEvent.established` and removes
/// itself, so later frames flow straight to the session's own handlers. A peer that does not
/// finish within `timeout` is dropped.
public final class HandshakeHandler: ChannelInboundHandler, RemovableChannelHandler {
    public typealias InboundIn = Frame
    public typealias InboundOut = Frame
    public typealias OutboundOut = Frame

    public enum Side: Sendable {
        case client(ClientHandshake)
        case server(ServerHandshake)
    }

    private var side: Side
    private let limit: FrameLimit
    private let timeout: TimeAmount
    private var timer: Scheduled<Void>?
    private var done = false

    public init(_ side: Side, limit: FrameLimit, timeout: TimeAmount = .seconds(10)) {
        self.side = side
        self.limit = limit
        self.timeout = timeout
    }

    public func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { begin(context: context) }
    }

    public func channelActive(context: ChannelHandlerContext) {
        begin(context: context)
        context.fireChannelActive()
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
    }

    private func begin(context: ChannelHandlerContext) {
        guard timer == nil, !done else { return }
        let timeout = self.timeout
        timer = context.eventLoop.assumeIsolated().scheduleTask(in: timeout) { [self] in
            guard !done else { return }
            carryOut(.fail(ErrorMessage(code: .timedOut, reason: "handshake not finished within \(timeout.nanoseconds / 1_000_000) ms"),
                           notifyPeer: true), context: context)
        }
        if case .client(var client) = side {
            let action = client.start()
            side = .client(client)
            carryOut(action, context: context)
        }
    }

    /// The frames a handshake is made of; any other is refused from its header, unparsed.
    static let handshakeTypes: Set<MessageType> = [.hello, .challenge, .auth, .welcome, .error]

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !done else { return }
        let frame = unwrapInboundIn(data)
        // Handshake frames are never sealed, and no other message is read before it ends: its
        // payload is not parsed (a chunk's, a register's) for a peer not yet authenticated.
        guard frame.flags == 0 else {
            carryOut(.fail(ErrorMessage(code: .sealBroken, reason: "a sealed \(frame.type) frame before the handshake ended"), notifyPeer: true), context: context)
            return
        }
        guard Self.handshakeTypes.contains(frame.type) else {
            carryOut(.fail(ErrorMessage(.unexpected(frame.type, state: "in the handshake, before it ended")), notifyPeer: true), context: context)
            return
        }
        let message: Message
        do {
            message = try Message(frame: frame)
        } catch {
            carryOut(.fail(ErrorMessage(error), notifyPeer: true), context: context)
            return
        }
        let action: HandshakeAction
        switch side {
        case .client(var client):
            action = client.receive(message)
            side = .client(client)
        case .server(var server):
            action = server.receive(message)
            side = .server(server)
        }
        carryOut(action, context: context)
    }

    private func carryOut(_ action: HandshakeAction, context: ChannelHandlerContext) {
        switch action {
        case .send(let message):
            context.writeAndFlush(wrapOutboundOut(message.frame(allocator: context.channel.allocator)), promise: nil)
        case .sendAndEstablish(let message, let session):
            context.writeAndFlush(wrapOutboundOut(message.frame(allocator: context.channel.allocator)), promise: nil)
            establish(session, context: context)
        case .establish(let session):
            establish(session, context: context)
        case .fail(let error, let notifyPeer):
            done = true
            timer?.cancel()
            context.fireUserInboundEventTriggered(ProtocolEvent.handshakeFailed(error))
            if notifyPeer {
                context.closeAfterWriting(wrapOutboundOut(Message.error(error).frame(allocator: context.channel.allocator)))
            } else {
                context.close(promise: nil)
            }
        }
    }

    private func establish(_ session: Session, context: ChannelHandlerContext) {
        done = true
        timer?.cancel()
        // Version 8: every frame from here on is sealed, both ways. The cipher takes this
        // handler's place, after the framing and before the session's handlers, before any
        // frame of the session can pass.
        if let keys = session.keys {
            do {
                try context.pipeline.syncOperations.addHandler(try FrameCipher(keys: keys, isClient: session.isClient, welcomeAhead: session.welcomeAhead), position: .after(self))
            } catch {
                carryOut(.fail(ErrorMessage(code: .authenticationFailed, reason: "cannot set up the frame cipher: \(error)"), notifyPeer: true), context: context)
                return
            }
        }
        limit.maxPayloadLength = session.maxPayloadLength
        context.fireUserInboundEventTriggered(ProtocolEvent.established(session))
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }
}

extension ChannelPipeline.SynchronousOperations {
    /// Adds the idle timer, Barge's framing, one side of the handshake and the protocol error handler. Session
    /// handlers go after these; they receive `Frame`s once `ProtocolEvent.established` has fired.
    /// `idleTimeout`: a connection that receives nothing for this long is closed with an error frame.
    public func addBargeHandlers(_ side: HandshakeHandler.Side, handshakeTimeout: TimeAmount = .seconds(10),
                                 idleTimeout: TimeAmount = .seconds(120)) throws {
        let limit = FrameLimit()
        try addHandler(IdleStateHandler(readTimeout: idleTimeout))
        try addHandler(FrameReader(limit: limit))
        try addHandler(FrameWriter())
        try addHandler(HandshakeHandler(side, limit: limit, timeout: handshakeTimeout))
        try addHandler(ProtocolErrorHandler())
    }
}
