import BargeWire
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// What an agent tells the coordinator about itself: exactly its `register` message.
public typealias AgentIdentity = Register

/// Why an agent's connection to the coordinator ended.
public enum CoordinatorConnectionError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The coordinator refused the registration.
    case refused(ErrorMessage)
    /// The coordinator closed a registered connection with an error (it heard nothing for too
    /// long, say): worth connecting again.
    case dropped(ErrorMessage)
    /// The coordinator closed the connection.
    case closed
    /// The coordinator sent something this agent does not expect.
    case protocolViolation(String)
    /// Nothing came from the registered coordinator for this long, not even a heartbeat's echo
    /// (`CoordinatorClient.silenceLimit`): the agent closed the connection to connect again.
    case silent(Duration)
    /// `BARGE_FAULT_DROP_REPORTS` closed the connection after a report (tests only).
    case faultInjected

    public var description: String {
        switch self {
        case .refused(let e) where e.code == .timedOut || AgentRunner.isLegacyHandshakeTimeout(e):
            return "coordinator closed the connection: \(e.reason) (a slow or stalled network between them)"
        case .refused(let e): return "coordinator refused: \(e.reason)"
        case .dropped(let e): return "coordinator closed the connection: \(e.reason)"
        case .closed: return "coordinator closed the connection"
        case .protocolViolation(let why): return "coordinator protocol violation: \(why)"
        case .silent(let limit):
            return "heard nothing from the coordinator for \(limit.components.seconds) s, not even a heartbeat's echo (frozen, or the network to it cut); closed the connection"
        case .faultInjected: return "dropped the connection after a report (BARGE_FAULT_DROP_REPORTS)"
        }
    }
}

/// One connection from an agent to the coordinator: connect, authenticate, register, heartbeat.
/// Reconnecting with backoff is the caller's loop around `run`.
public struct CoordinatorClient: Sendable {
    public var host: String
    public var port: Int
    public var token: ClusterToken
    public var identity: AgentIdentity
    public var group: EventLoopGroup
    /// `BARGE_FAULT_DROP_REPORTS=P` (tests only): after this fraction of its `task done` and
    /// `task failed` reports the connection is dropped, half the time before the report is
    /// written and half the time just after.
    public var faultDropReports: Double

    public init(host: String, port: Int, token: ClusterToken, identity: AgentIdentity,
                group: EventLoopGroup = MultiThreadedEventLoopGroup.singleton, faultDropReports: Double = 0) {
        self.host = host
        self.port = port
        self.token = token
        self.identity = identity
        self.group = group
        self.faultDropReports = faultDropReports
    }

    /// Runs until cancelled (returns) or until the connection fails (throws `HandshakeFailure`,
    /// `CoordinatorConnectionError` or a connect error). `onRegistered` runs once, after the
    /// coordinator accepts the registration; `onHeartbeatEcho` after each echoed heartbeat. The
    /// coordinator's requests go to `work`, whose reports go out through its outbox; everything
    /// this connection writes goes through that one outbox, but for the heartbeats, which a timer
    /// on the connection's event loop writes.
    public func run(work: AgentWork? = nil,
                    onRegistered: @escaping @Sendable (Registered) async -> Void = { _ in },
                    onHeartbeatEcho: @escaping @Sendable (UInt64) async -> Void = { _ in }) async throws {
        let i = identity
        // Echoes come every heartbeat interval (up to six minutes with the longest agent timeout).
        try await BargeConnection.withProbedConnection(host: host, port: port, token: token, name: i.name, role: .agent,
                                                       idleTimeout: .seconds(1200), group: group) { session, connection, inbound, outbound in
            var frames = inbound.makeAsyncIterator()
            var registration = i
            if session.version < WireVersion.agentBuild { registration.build = nil }
            if session.version < WireVersion.rootIdentity { registration.rootID = nil }
            // Told to drain on an earlier connection: it stays so (a coordinator that restarted
            // had forgotten it). A coordinator before 21 is not told, and the agent says so.
            registration.draining = work?.drainingAgain(coordinatorVersion: session.version) ?? false
            try await outbound.write(Message.register(registration).frame())
            guard let reply = try await frames.next() else { throw CoordinatorConnectionError.closed }
            let registered: Registered
            switch try Message(frame: reply) {
            case .registered(let r): registered = r
            case .error(let e): throw CoordinatorConnectionError.refused(e)
            default: throw CoordinatorConnectionError.protocolViolation("expected registered, got \(reply.type)")
            }
            work?.connected(version: session.version)
            work?.fence.registered(timeout: .milliseconds(Int(registered.agentTimeoutMillis)),
                                   interval: .milliseconds(Int(registered.heartbeatIntervalMillis)))
            // Every heartbeat is echoed: a coordinator silent for twice the agent timeout has
            // taken this agent for down, and the connection is dead (a partition, a host gone
            // without a reset). Connecting again then finds a restarted coordinator in seconds
            // rather than at the 20-minute idle timeout.
            let silence = Self.silenceLimit(registered)
            try await connection.setIdleTimeout(silence.timeAmount)
            var heard = ContinuousClock.now
            await onRegistered(registered)

            let outbox = work?.outbox ?? Outbox()
            let (messages, sink) = AsyncStream.makeStream(of: Message.self)
            // Version 5: unacknowledged reports again, then what this agent runs.
            let acks = session.version >= WireVersion.acks
            outbox.attach(sink, acknowledged: acks, holding: acks ? { .holding(work?.holding ?? Holding(units: [])) } : nil)
            defer {
                outbox.detach()
                sink.finish()
            }
            let writerStopped = NIOLockedValueBox<Error?>(nil)
            let interval = Duration.milliseconds(max(50, Int(registered.heartbeatIntervalMillis)))
            // Stopped (SIGTERM, SIGINT): the coordinator is told, and takes this agent for down at
            // once rather than after its timeout, so its units go to other agents now. Before, a
            // stopped agent stayed `up` for the whole timeout (a black-box review).
            let sayStopping = {
                guard Task.isCancelled else { return }
                // Its units stop first (the fence, as when the coordinator marks it down), so that
                // none sends or finishes anything once they are another agent's.
                work?.fence.markedDown()
                await connection.writeLast(Message.error(ErrorMessage(code: .stopping, reason: "agent '\(i.name)' is stopping")).frame(),
                                           within: .seconds(1))
            }
            do {
                try await withThrowingTaskGroup(of: Void.self) { tasks in
                    // One writer; reports and replies reach it through the outbox. Replies are read
                    // here, so the inbound iterator never leaves this task.
                    // A writer that stops (a failed write, or the fault injection) closes its side of
                    // the connection; the reader below then ends and throws what stopped it.
                    let fault = faultDropReports
                    tasks.addTask {
                        do {
                            for await message in messages {
                                let drop = fault > 0 && Outbox.reportKey(message) != nil && Double.random(in: 0..<1) < fault
                                if drop && Bool.random() { throw CoordinatorConnectionError.faultInjected }
                                try await outbound.write(Self.downgrade(message, to: session.version).frame())
                                outbox.written(message)
                                if drop { throw CoordinatorConnectionError.faultInjected }
                            }
                        } catch {
                            writerStopped.withLockedValue { $0 = error }
                            connection.close()
                        }
                    }
                    // Heartbeats go from the connection's event loop, beside the writer: on the
                    // cooperative pool, two chunks compressed with zstd-19 held both threads long
                    // enough that the coordinator took a busy agent for down (DedupProcessTests, with
                    // other suites beside it). The first goes one interval after registration; with
                    // the pool starved it may pass reports the writer resends, which the coordinator
                    // takes in any order.
                    let sequence = NIOLockedValueBox<UInt64>(0)
                    let beats = connection.writeRepeatedly(every: interval.timeAmount) {
                        work?.fence.beat()
                        let n = sequence.withLockedValue { $0 += 1; return $0 }
                        return Message.heartbeat(Heartbeat(sequence: n, inFlight: UInt32(work?.inFlight ?? 0))).frame()
                    }
                    defer { beats.cancel() }
                    if let work { tasks.addTask { await work.reportProgress() } }
                    defer { tasks.cancelAll() }
                    // The last echo of a recent heartbeat: frames that keep coming but are all
                    // old (a link that drains a backlog a few bytes a second) are not a live
                    // coordinator. Such a backlog held an agent on a dead connection for over
                    // eight minutes, its coordinator long gone (h1 of session 49). Checked once
                    // the coordinator has echoed a heartbeat on this connection.
                    var freshEcho: ContinuousClock.Instant?
                    // An echo is recent while it answers one of the heartbeats of the last half
                    // silence limit: a slow coordinator's late echoes still count.
                    let lagLimit = UInt64(max(3, silence / interval / 2))
                    while let frame = try await nextFrame(&frames, writerStopped) {
                        heard = .now
                        if let fresh = freshEcho, heard - fresh >= silence { throw CoordinatorConnectionError.silent(silence) }
                        let message = try Message(frame: frame)
                        switch message {
                        case .heartbeat(let echo):
                            if sequence.withLockedValue({ $0 }) &- echo.sequence <= lagLimit { freshEcho = heard }
                            await onHeartbeatEcho(echo.sequence)
                        case .error(let e):
                            // Certain evidence that this agent's units went to others, whatever its
                            // own clock saw (a paused VM's may see no gap).
                            if e.code == .markedDown { work?.fence.markedDown() }
                            throw CoordinatorConnectionError.dropped(e)
                        case .drain(let d): work?.drain(d, coordinatorVersion: session.version)
                        default:
                            guard work?.handle(message) == true else {
                                throw CoordinatorConnectionError.protocolViolation("unexpected \(frame.type)")
                            }
                        }
                    }
                    if let error = writerStopped.withLockedValue({ $0 }) { throw error }
                    // The idle timeout closed it: nothing was read for that long. `heard` is when this
                    // task took the last frame, a little after the event loop read it, so the timeout
                    // can fire just short of `silence` by this clock (a second's margin: a coordinator
                    // echoes every heartbeat, so only a silent one goes 9 s without a frame). Without
                    // the margin, a frozen coordinator was sometimes reported as closing the connection.
                    if ContinuousClock.now - heard >= silence - .seconds(1) { throw CoordinatorConnectionError.silent(silence) }
                    if !Task.isCancelled { throw CoordinatorConnectionError.closed }
                }
            } catch {
                await sayStopping()
                throw error
            }
            await sayStopping()
        }
    }

    /// How long a registered agent waits for anything from its coordinator before it connects
    /// again: twice the agent timeout, at least three heartbeat intervals and 10 s.
    static func silenceLimit(_ registered: Registered) -> Duration {
        .milliseconds(max(10_000, 2 * Int(registered.agentTimeoutMillis), 3 * Int(registered.heartbeatIntervalMillis)))
    }

    /// The next frame; once the writer has stopped, what stopped it rather than the read error
    /// of the connection it closed.
    private func nextFrame(_ frames: inout NIOAsyncChannelInboundStream<Frame>.AsyncIterator,
                           _ writerStopped: NIOLockedValueBox<Error?>) async throws -> Frame? {
        do {
            return try await frames.next()
        } catch {
            if let stopped = writerStopped.withLockedValue({ $0 }) { throw stopped }
            throw error
        }
    }

    /// A report as a coordinator of an older protocol version reads it: version 1 has no dedup
    /// bytes in `task done`, versions before 3 no lane figures in `task progress`, versions
    /// before 13 no files left out (the unit fails instead), versions before 23 no reason but the
    /// first's.
    static func downgrade(_ message: Message, to version: UInt8) -> Message {
        switch message {
        case .taskDone(let done) where version < WireVersion.leftOut && !done.leftOut.isEmpty:
            // A coordinator before version 13 cannot count files left out: the unit fails the
            // job, as it did then, with what to do.
            let failure = UnitSender.leftOutFailure(done.firstLeftOut)
            return downgrade(.taskFailed(TaskFailed(job: done.job, unit: done.unit, retryable: false, reason: failure.description,
                                                    assignment: done.assignment)), to: version)
        case .taskDone(var done) where version < WireVersion.leftOutReasons && !done.laterLeftOut.isEmpty:
            // Why the others were left out would be trailing bytes to it.
            done.laterLeftOut = []
            return downgrade(.taskDone(done), to: version)
        case .taskDone(var done) where version < WireVersion.assignments && (done.assignment != 0 || (version < WireVersion.dedup && done.dedupBytes > 0)):
            done.assignment = 0
            if version < WireVersion.dedup { done.dedupBytes = 0 }
            return .taskDone(done)
        case .taskFailed(var failed) where (version < WireVersion.assignments && failed.assignment != 0) || (version < WireVersion.laneFailures && failed.lane):
            if version < WireVersion.assignments { failed.assignment = 0 }
            failed.lane = false
            return .taskFailed(failed)
        case .taskProgress(var progress) where version < WireVersion.flow && progress.lane != nil:
            progress.lane = nil
            return .taskProgress(progress)
        default:
            return message
        }
    }
}
