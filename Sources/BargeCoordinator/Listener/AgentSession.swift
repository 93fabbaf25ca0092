import BargeWire
import Logging
import NIOCore

/// One agent's connection after the handshake: `register`, then heartbeats (each echoed) and the
/// agent's reports, which go to the scheduler; the scheduler's requests to the agent go out
/// through this connection's one writer. Anything unexpected, or a refused registration, is
/// answered with an error and ends the connection.
struct AgentSession {
    let session: Session
    let directory: AgentDirectory
    let scheduler: Scheduler
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
            // A second live agent under one name would take the first's place unseen (its units,
            // its scans, with another root): refused while the first is connected and heard from
            // within three heartbeat intervals; the refused agent tries again with backoff.
            let outcome = try await directory.register(registration, connected: await scheduler.isAttached(registration.name),
                                                       liveWindow: configuration.heartbeatInterval * 3)
            logger.notice("agent '\(registration.name)' of site '\(registration.site)' \(outcome == .new ? "registered" : "registered again"), root \(registration.root), data plane \(registration.dataHost):\(registration.dataPort)")
        } catch .connected(let name, let site, let address) {
            logger.warning("refused registration of '\(registration.name)' (root \(registration.root), data plane \(registration.dataHost):\(registration.dataPort)): an agent of that name is connected, data plane \(address)")
            return try await refuse(ErrorMessage(code: .nameInUse, reason: RegistryError.connected(name: name, site: site, address: address).description), outbound)
        } catch {
            logger.warning("refused registration of '\(registration.name)': \(error)")
            return try await refuse(ErrorMessage(code: .unexpectedMessage, reason: error.description), outbound)
        }
        try await outbound.write(Message.registered(Registered(
            heartbeatIntervalMillis: UInt32(clamping: configuration.heartbeatInterval.wholeMilliseconds),
            agentTimeoutMillis: UInt32(clamping: configuration.agentTimeout.wholeMilliseconds))).frame())

        let (messages, sink) = AsyncStream.makeStream(of: Message.self)
        let connection = await scheduler.attach(registration, sink: sink, version: session.version)
        defer { Task { [scheduler] in await scheduler.detach(registration.name, connection: connection) } }
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask {
                for await message in messages { try await outbound.write(message.frame()) }
            }
            // The writer drains what is queued (a last error included), then ends with the stream.
            defer { sink.finish() }
            // Heartbeats echoed at most ten a second: an agent's come seconds apart, and one that
            // sent them as fast as it could without reading grew the echoes' queue without end.
            var lastEcho = ContinuousClock.now - .seconds(1)
            while let frame = try await frames.next() {
                let message: Message
                do throws(WireError) { message = try Message(frame: frame) } catch {
                    // Answered with the reason before the connection closes, as protocol.md says
                    // of every violation; before, the agent saw only the connection end.
                    sink.yield(.error(ErrorMessage(error)))
                    throw error
                }
                switch message {
                case .heartbeat(let beat):
                    do {
                        try await directory.heartbeat(name: registration.name)
                    } catch {
                        // Unknown on a session that registered: a drained agent forgotten once it
                        // fell silent (`AgentRegistry.expire`), as good as marked down: it fences
                        // its units (given to others meanwhile) and registers again.
                        let code: ErrorCode = switch error {
                        case RegistryError.mustRegisterAgain, RegistryError.unknownAgent: .markedDown
                        default: .unexpectedMessage
                        }
                        sink.yield(.error(ErrorMessage(code: code, reason: "\(error)")))
                        return
                    }
                    if ContinuousClock.now - lastEcho >= .milliseconds(100) {
                        lastEcho = ContinuousClock.now
                        sink.yield(.heartbeat(beat))
                    }
                case .scanReply, .taskProgress, .taskDone, .taskFailed, .verifyReply, .holding, .compareReply, .tierReply:
                    await scheduler.received(message, from: registration.name)
                case .error(let e):
                    // An agent stopping (SIGTERM) says so as it closes: it is down at once and its
                    // units go back to pending, rather than after its timeout.
                    // Only on its current connection: an old one of a hung process, stopped after
                    // a new one took its name, would take the live agent down.
                    if e.code == .stopping, await scheduler.isAttached(registration.name, connection: connection),
                       await directory.stopped(name: registration.name) {
                        let released = (try? await scheduler.agentsDown([registration.name])) ?? 0
                        logger.notice("agent '\(registration.name)' is stopping: marked down, \(released) units back to pending")
                    }
                    return
                default:
                    sink.yield(.error(ErrorMessage(.unexpected(frame.type, state: "serving agent '\(registration.name)'"))))
                    return
                }
            }
        }
    }

    fileprivate func refuse(_ error: ErrorMessage, _ outbound: NIOAsyncChannelOutboundWriter<Frame>) async throws {
        try await outbound.write(Message.error(error).frame())
    }
}
