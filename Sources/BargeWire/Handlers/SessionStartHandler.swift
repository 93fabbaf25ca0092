import NIOCore

/// Turns the handshake's outcome into a future, for the async code that owns the connection:
/// it succeeds with the `Session` when the handshake completes and fails if the handshake fails or
/// the connection closes first. Add it after `addBargeHandlers`.
public final class SessionStartHandler: ChannelInboundHandler, RemovableChannelHandler {
    public typealias InboundIn = Frame
    public typealias InboundOut = Frame

    private let promise: EventLoopPromise<Session>
    private var settled = false

    public init(promise: EventLoopPromise<Session>) {
        self.promise = promise
    }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        switch event as? ProtocolEvent {
        case .established(let session)?:
            settle { promise.succeed(session) }
        case .handshakeFailed(let error)?, .protocolError(let error)?:
            // A protocol error before the session (bytes that are not Barge frames) is the
            // handshake's failure, with its reason, rather than "connection closed".
            settle { promise.fail(HandshakeFailure(error: error)) }
        default:
            break
        }
        context.fireUserInboundEventTriggered(event)
    }

    public func channelInactive(context: ChannelHandlerContext) {
        settle { promise.fail(HandshakeFailure(error: ErrorMessage(code: .unexpectedMessage, reason: "connection closed during the handshake"))) }
        context.fireChannelInactive()
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        settle { promise.fail(HandshakeFailure(error: ErrorMessage(code: .unexpectedMessage, reason: "connection torn down during the handshake"))) }
    }

    private func settle(_ body: () -> Void) {
        guard !settled else { return }
        settled = true
        body()
    }
}

/// The handshake did not complete; `error` says why (also what the peer was told, or told us).
public struct HandshakeFailure: Error, Hashable, Sendable, CustomStringConvertible {
    public let error: ErrorMessage
    public init(error: ErrorMessage) { self.error = error }
    public var description: String { "handshake failed: \(error.reason)" }
}

/// 32 bytes from the system's cryptographic generator (getrandom on Linux), for handshake nonces.
public func freshNonce() -> [UInt8] {
    var rng = SystemRandomNumberGenerator()
    return (0..<Hello.nonceLength).map { _ in UInt8.random(in: .min ... .max, using: &rng) }
}
