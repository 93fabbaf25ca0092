import BargeWire
import Logging
import NIOCore

/// One agent's connection after the handshake: `register`, then `heartbeat`s, each echoed.
/// Anything else, or a refused registration, is answered with an error and ends the connection.
struct AgentSession {
    let session: Session
    let directory: AgentDirectory
    let configuration: AgentListenerConfiguration
    let logger: Logger

    func run(inbound: NIOAsyncChannelInboundStream<Frame>, outbound: NIOAsyncChannelOutboundWriter<Frame>) async throws {
        var frames = inbound.makeAsyncIterator()
        guard session.role == .agent else {
            return try await refuse(ErrorMessage(code: .unexpectedMessage, reason: "this listener serves agents; \(session.role) connections are not served here"), outbound)
        }
        guard let first = try await frames.next() else { return }
        guard case .register(let registration) = try Message(frame: first) else {
            return try await refuse(ErrorMessage(.unexpected(first.type, state: "waiting for register")), outbound)
        }
        guard registration.name == session.peerName else {
            return try await refuse(ErrorMessage(code: .unexpectedMessage,
                                                 reason: "registered as '\(registration.name)' after the handshake named '\(session.peerName)'"), outbound)
        }
        do {
            let outcome = try await directory.register(registration)
            logger.notice("agent '\(registration.name)' of site '\(registration.site)' \(outcome == .new ? "registered" : "registered again"), root \(registration.root)")
        } catch {
            logger.warning("refused registration of '\(registration.name)': \(error)")
            return try await refuse(ErrorMessage(code: .unexpectedMessage, reason: error.description), outbound)
        }
        try await outbound.write(Message.registered(Registered(
            heartbeatIntervalMillis: UInt32(clamping: configuration.heartbeatInterval.wholeMilliseconds),
            agentTimeoutMillis: UInt32(clamping: configuration.agentTimeout.wholeMilliseconds))).frame())

        while let frame = try await frames.next() {
            switch try Message(frame: frame) {
            case .heartbeat(let beat):
                do {
                    try await directory.heartbeat(name: registration.name)
                } catch {
                    return try await refuse(ErrorMessage(code: .unexpectedMessage, reason: error.description), outbound)
                }
                try await outbound.write(Message.heartbeat(beat).frame())
            case .error:
                return
            default:
                return try await refuse(ErrorMessage(.unexpected(frame.type, state: "serving agent '\(registration.name)'")), outbound)
            }
        }
    }

    fileprivate func refuse(_ error: ErrorMessage, _ outbound: NIOAsyncChannelOutboundWriter<Frame>) async throws {
        try await outbound.write(Message.error(error).frame())
    }
}
