import BargeWire
import DequeModule
import Logging
import NIOCore
import Synchronization

/// One agent's connection after the handshake: `register`, then heartbeats (each echoed) and the
/// agent's reports, which go to the scheduler; the scheduler's requests to the agent go out
/// through this connection's one writer. Anything unexpected, or a refused registration, is
/// answered with an error and ends the connection.
struct AgentSession {
    let session: Session
    let directory: AgentDirectory
    let scheduler: Scheduler
    /// Hands a report to the scheduler (`Scheduler.received`; a test's may take its time).
    let deliver: AgentListener.Deliver
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
            if registration.draining { try await directory.drain(name: registration.name) }
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
        // A message that does not decode ends the session with its error, after the writer has
        // sent the agent the reason (thrown inside the group, it cancelled the writer first).
        var violation: WireError?
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask {
                for await message in messages { try await outbound.write(message.frame()) }
            }
            // The writer drains what is queued (a last error included), then ends with the stream.
            defer { sink.finish() }
            // The agent's reports go to the scheduler in order, on a task of their own, so that a
            // heartbeat is never read behind a report that a busy scheduler has not yet taken:
            // under a burst of 500 submissions one waited 5 s that way, and a live agent was taken
            // for down. At most `ReportQueue.limit` reports wait; past that, reading waits too.
            let reports = ReportQueue()
            defer { reports.finish() }
            tasks.addTask { [scheduler, directory, logger, deliver] in
                for await message in reports.messages {
                    reports.took()
                    guard case .error(let e) = message else {
                        await deliver(message, registration.name)
                        continue
                    }
                    // An agent stopping (SIGTERM) says so as it closes: it is down at once and its
                    // units go back to pending, rather than after its timeout; after the reports
                    // it sent before.
                    // Only on its current connection: an old one of a hung process, stopped after
                    // a new one took its name, would take the live agent down.
                    if e.code == .stopping, await scheduler.isAttached(registration.name, connection: connection),
                       await directory.stopped(name: registration.name) {
                        let released = (try? await scheduler.agentsDown([registration.name])) ?? 0
                        logger.notice("agent '\(registration.name)' is stopping: marked down, \(released) units back to pending")
                    }
                    return
                }
            }
            // Heartbeats echoed at most ten a second: an agent's come seconds apart, and one that
            // sent them as fast as it could without reading grew the echoes' queue without end.
            var lastEcho = ContinuousClock.now - .seconds(1)
            // False for the agent's last word, which is handled on this connection (`stopping`).
            var detachNow = true
            reading: while let frame = try await frames.next() {
                let message: Message
                do throws(WireError) { message = try Message(frame: frame) } catch {
                    // Answered with the reason before the connection closes, as protocol.md says
                    // of every violation; before, the agent saw only the connection end.
                    sink.yield(.error(ErrorMessage(error)))
                    violation = error
                    break reading
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
                        break reading
                    }
                    if ContinuousClock.now - lastEcho >= .milliseconds(100) {
                        lastEcho = ContinuousClock.now
                        sink.yield(.heartbeat(beat))
                    }
                case .scanReply, .taskProgress, .taskDone, .taskFailed, .verifyReply, .holding, .compareReply, .tierReply:
                    try await reports.add(message, bytes: frame.payload.readableBytes)
                case .error:
                    // The agent's last word: handled after its reports, then the session ends.
                    try await reports.add(message, bytes: frame.payload.readableBytes)
                    detachNow = false
                    break reading
                default:
                    sink.yield(.error(ErrorMessage(.unexpected(frame.type, state: "serving agent '\(registration.name)'"))))
                    break reading
                }
            }
            // The connection ended (or is ending): the agent is detached now, while its queued
            // reports still go to the scheduler after. Detached only once they had, a quick
            // reconnect was refused as a name in use, and units went to the closed connection.
            if detachNow { await scheduler.detach(registration.name, connection: connection) }
        }
        if let violation { throw violation }
    }

    fileprivate func refuse(_ error: ErrorMessage, _ outbound: NIOAsyncChannelOutboundWriter<Frame>) async throws {
        try await outbound.write(Message.error(error).frame())
    }
}

/// An agent's reports on their way from its connection's reader to the scheduler, in order. At
/// most `limit` reports, or `byteLimit` bytes of them, wait: an agent whose reports come faster
/// than the scheduler takes them is then read no faster than they are taken. (A scan page is
/// 1,024 entries: counted in reports alone, a scanning agent could have a million entries waiting.)
final class ReportQueue: Sendable {
    static let limit = 1_024
    static let byteLimit = 4 << 20
    let messages: AsyncStream<Message>
    private let continuation: AsyncStream<Message>.Continuation
    /// Reports and bytes queued, and the size of each queued report in order.
    private let waiting = Mutex((count: 0, bytes: 0, sizes: Deque<Int>()))

    init() {
        (messages, continuation) = AsyncStream.makeStream(of: Message.self)
    }

    /// Queues a report of `bytes` (its frame's payload), first waiting while the queue is full;
    /// a report is let in alone whatever its size.
    func add(_ message: Message, bytes: Int) async throws {
        while waiting.withLock({ $0.count > 0 && ($0.count >= Self.limit || $0.bytes + bytes > Self.byteLimit) }) {
            try await Task.sleep(for: .milliseconds(5))
        }
        waiting.withLock {
            $0.count += 1
            $0.bytes += bytes
            $0.sizes.append(bytes)
        }
        continuation.yield(message)
    }

    /// The consumer took one (the oldest).
    func took() {
        waiting.withLock {
            $0.count -= 1
            $0.bytes -= $0.sizes.popFirst() ?? 0
        }
    }

    /// No more: the consumer ends once it has taken those queued.
    func finish() { continuation.finish() }
}
