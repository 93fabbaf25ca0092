import BargeAgent
import BargeCoordinator
import BargeWire
import Foundation
import NIOCore
import NIOPosix
import Synchronization
import Testing

/// A settable monotonic clock for the directory.
final class ManualClock: @unchecked Sendable {
    private let lock = NSLock()
    private var value: UInt64 = 1_000_000_000
    var now: UInt64 { lock.withLock { value } }
    func advance(seconds: UInt64) { lock.withLock { value += seconds * 1_000_000_000 } }
}

/// Counts events from the client's callbacks.
actor Counter {
    var count = 0
    func increment() { count += 1 }
}

/// The agent listener on real loopback sockets, with a real agent client.
final class AgentListenerTests: Sendable {
    /// The journals of this test's listeners, removed with it.
    let journals = FileManager.default.temporaryDirectory.appendingPathComponent("barge-listener-\(UUID().uuidString)")

    init() throws { try FileManager.default.createDirectory(at: journals, withIntermediateDirectories: true) }
    deinit { try? FileManager.default.removeItem(at: journals) }

    static let token = try! ClusterToken(bytes: Array("listener-test-token-0123456789".utf8))

    func listener(clock: ManualClock, deliver: AgentListener.Deliver? = nil) async throws -> AgentListener {
        let directory = AgentDirectory(heartbeatTimeout: .seconds(15), clock: { clock.now })
        var config = AgentListenerConfiguration(host: "127.0.0.1", port: 0, token: Self.token)
        config.heartbeatInterval = .milliseconds(50)
        let journal = try Journal(path: journals.appendingPathComponent("journal-\(UUID().uuidString).sqlite").path)
        return try await AgentListener.bind(config, directory: directory, scheduler: Scheduler(journal: journal), deliver: deliver)
    }

    func client(_ listener: AgentListener, token: ClusterToken = token, name: String = "a1") -> CoordinatorClient {
        CoordinatorClient(host: "127.0.0.1", port: listener.localAddress!.port!, token: token,
                          identity: AgentIdentity(name: name, site: "site-a", root: "/data", dataHost: "127.0.0.1", dataPort: 7501))
    }

    /// Runs `body` on a raw connection to `listener` that has registered as agent a1.
    func asRegisteredAgent(_ listener: AgentListener,
                           _ body: (inout NIOAsyncChannelInboundStream<Frame>.AsyncIterator, NIOAsyncChannelOutboundWriter<Frame>) async throws -> Void) async throws {
        let register = Register(name: "a1", site: "site-a", root: "/data", dataHost: "127.0.0.1", dataPort: 7501)
        try await BargeConnection.withConnection(host: "127.0.0.1", port: listener.localAddress!.port!, token: Self.token, name: "a1", role: .agent) { _, inbound, outbound in
            var frames = inbound.makeAsyncIterator()
            try await outbound.write(Message.register(register).frame())
            guard case .registered = try Message(frame: try #require(await frames.next())) else { Issue.record("not registered"); return }
            try await body(&frames, outbound)
        }
    }

    /// Polls `condition` for up to five seconds.
    func eventually(_ condition: () async -> Bool) async throws -> Bool {
        for _ in 0..<100 {
            if await condition() { return true }
            try await Task.sleep(for: .milliseconds(50))
        }
        return false
    }

    /// An agent taken for down while its connection stays up (the coordinator stopped hearing
    /// it) has its next heartbeat refused with `markedDown` (error 12), which tells it that its
    /// units went to others.
    @Test func aHeartbeatFromAnAgentTakenForDownIsRefusedAsMarkedDown() async throws {
        let clock = ManualClock()
        let listener = try await listener(clock: clock)
        let serving = Task { try await listener.run() }
        let echoes = Counter()
        let agent = Task { try await client(listener).run(onHeartbeatEcho: { _ in await echoes.increment() }) }
        #expect(try await eventually { await echoes.count >= 1 })
        // Time runs on the coordinator's clock alone, a second a look: the agent's heartbeats (real
        // time, 50 ms apart) may land between looks and put its expiry off, but not for ever.
        var expired: [String] = []
        for _ in 0..<200 where expired.isEmpty {
            clock.advance(seconds: 1)
            expired += await listener.directory.expire()
        }
        #expect(expired == ["a1"])
        let ended = await agent.result
        guard case .failure(let error) = ended, case CoordinatorConnectionError.dropped(let refusal) = error else {
            Issue.record("the connection did not end with a refusal: \(ended)")
            return
        }
        #expect(refusal.code == .markedDown, "\(refusal)")
        await listener.close()
        serving.cancel()
        _ = await serving.result
    }

    @Test func anAgentRegistersHeartbeatsAndGoesDownWhenStoppedOrSilent() async throws {
        let clock = ManualClock()
        let listener = try await listener(clock: clock)
        let serving = Task { try await listener.run() }
        let echoes = Counter()
        let agent = Task { try await client(listener).run(onHeartbeatEcho: { _ in await echoes.increment() }) }

        #expect(try await eventually { await listener.directory.agents.map(\.name) == ["a1"] })
        #expect(try await eventually { await echoes.count >= 3 })
        let info = try #require(await listener.directory.agents.first)
        #expect(info.site == "site-a" && info.address == "127.0.0.1:7501" && info.state == .up)

        // Stopped (cancelled, as SIGTERM cancels it), the agent says so as it closes: down at
        // once, with no wait for its timeout.
        agent.cancel()
        _ = await agent.result
        #expect(try await eventually { await listener.directory.agents.first?.state == .down })
        // One that falls silent instead (its registration, then nothing) is down once its
        // timeout passes, looked at every second as the expiry service does (one look after
        // 16 s would be the coordinator's own stall, which is not the agent's silence).
        _ = try await listener.directory.register(Register(name: "a2", site: "site-a", root: "/data", dataHost: "127.0.0.1", dataPort: 7502, maxInFlight: 8))
        var expired: [String] = []
        for _ in 0..<16 {
            clock.advance(seconds: 1)
            expired += await listener.directory.expire()
        }
        #expect(expired == ["a2"])
        #expect(await listener.directory.agents.map(\.state) == [.down, .down])

        await listener.close()
        serving.cancel()
        _ = await serving.result
    }

    /// A coordinator link that keeps delivering frames, but only old ones (a backlog drained a
    /// few bytes a second long after the coordinator went): the agent takes it for silence once
    /// no echo of a recent heartbeat has come for its silence limit, and connects again. Before,
    /// every frame counted as hearing the coordinator, and an agent sat on such a connection for
    /// over eight minutes (h1 of session 49).
    @Test(.timeLimit(.minutes(1))) func echoesOfOldHeartbeatsAloneAreSilence() async throws {
        let server = try await BargeServer.bind(host: "127.0.0.1", port: 0, token: Self.token, name: "coordinator")
        let serving = Task {
            try await server.serve(session: { _, inbound, outbound in
                var frames = inbound.makeAsyncIterator()
                guard let first = try await frames.next(), case .register = try Message(frame: first) else { return }
                try await outbound.write(Message.registered(Registered(heartbeatIntervalMillis: 100, agentTimeoutMillis: 1000)).frame())
                // One echo of its first heartbeat, then that echo again and again: old news.
                while let frame = try await frames.next() {
                    if case .heartbeat(let beat) = try Message(frame: frame), beat.sequence == 1 { break }
                }
                while !Task.isCancelled {
                    try await outbound.write(Message.heartbeat(Heartbeat(sequence: 1, inFlight: 0)).frame())
                    try await Task.sleep(for: .milliseconds(100))
                }
            }, onError: { _, _ in })
        }
        defer { serving.cancel() }
        let client = CoordinatorClient(host: "127.0.0.1", port: server.localAddress!.port!, token: Self.token,
                                       identity: AgentIdentity(name: "a1", site: "site-a", root: "/data", dataHost: "127.0.0.1", dataPort: 7501))
        let started = ContinuousClock.now
        await #expect { try await client.run() } throws: { error in
            guard case CoordinatorConnectionError.silent = error else { return false }
            return true
        }
        #expect(ContinuousClock.now - started < .seconds(30))
    }

    @Test func aWrongTokenIsRefusedAndTheListenerServesTheNextAgent() async throws {
        let listener = try await listener(clock: ManualClock())
        let serving = Task { try await listener.run() }

        let wrong = try ClusterToken(bytes: Array("some-other-clusters-token-999".utf8))
        do {
            try await client(listener, token: wrong, name: "intruder").run()
            Issue.record("a wrong token was accepted")
        } catch let failure as HandshakeFailure {
            #expect(failure.error.code == .authenticationFailed)
            #expect(failure.error.reason.contains("--token-file"))
        }
        #expect(await listener.directory.agents.isEmpty)

        let agent = Task { try await client(listener, name: "a2").run() }
        #expect(try await eventually { await listener.directory.agents.map(\.name) == ["a2"] })
        agent.cancel()
        _ = await agent.result
        await listener.close()
        serving.cancel()
        _ = await serving.result
    }

    /// `stopping` on an agent's old connection (a hung process stopped after a new one took its
    /// name) does not take the agent on its new connection down (a review).
    @Test func aStoppingWordOnAnOldConnectionLeavesTheAgentOnItsNewOneUp() async throws {
        let clock = ManualClock()
        let listener = try await listener(clock: clock)
        let serving = Task { try await listener.run() }
        try await asRegisteredAgent(listener) { frames, outbound in
            // Silent past three heartbeat intervals on the coordinator's clock: a new process
            // takes the name on a connection of its own.
            clock.advance(seconds: 1)
            let echoes = Counter()
            let agent = Task { try await client(listener).run(onHeartbeatEcho: { _ in await echoes.increment() }) }
            #expect(try await eventually { await echoes.count >= 2 })
            try await outbound.write(Message.error(ErrorMessage(code: .stopping, reason: "the old process stops")).frame())
            let before = await echoes.count
            #expect(try await eventually { await echoes.count >= before + 3 })
            #expect(await listener.directory.agents.map(\.state) == [.up])
            agent.cancel()
            _ = await agent.result
        }
        await listener.close()
        serving.cancel()
        _ = await serving.result
    }

    /// A registered agent's message that does not decode (a heartbeat cut short) is answered
    /// with an error frame that says why, then the connection closes, as protocol.md says of
    /// every violation. Before, the agent saw only the connection end (the fuzzing review, h3).
    /// A scheduler slow to take an agent's reports does not hold up its heartbeats: they are
    /// read, recorded and echoed meanwhile, and the reports still reach the scheduler in order.
    /// Before, the session read nothing more until the scheduler took the report in hand: under
    /// a burst of 500 submissions a live agent went 5 s unheard and was taken for down.
    @Test func heartbeatsAreHeardWhileTheSchedulerIsSlowToTakeReports() async throws {
        let delivered = Mutex<[Message]>([])
        let listener = try await listener(clock: ManualClock(), deliver: { report, _ in
            if delivered.withLock({ $0.isEmpty }) { try? await Task.sleep(for: .seconds(3)) }
            delivered.withLock { $0.append(report) }
        })
        let serving = Task { try await listener.run() }
        try await asRegisteredAgent(listener) { frames, outbound in
            let reports = (0..<3).map { Message.taskProgress(TaskProgress(job: "j", unit: UInt64($0), bytesDone: 1, wireBytes: 1)) }
            for report in reports { try await outbound.write(report.frame()) }
            let start = ContinuousClock.now
            var echoes = 0
            for beat in 0..<5 {
                try await outbound.write(Message.heartbeat(Heartbeat(sequence: UInt64(beat), inFlight: 0)).frame())
                guard case .heartbeat = try Message(frame: try #require(await frames.next())) else { Issue.record("not an echo"); return }
                echoes += 1
                try await Task.sleep(for: .milliseconds(150))
            }
            #expect(echoes == 5 && ContinuousClock.now - start < .milliseconds(2_500), "\(ContinuousClock.now - start) for 5 echoes")
            #expect(delivered.withLock { $0.isEmpty })
            #expect(try await eventually { delivered.withLock { $0.count == 3 } })
            #expect(delivered.withLock { $0 } == reports)
        }
        await listener.close()
        serving.cancel()
        _ = await serving.result
    }

    @Test func aMalformedMessageAfterRegistrationGetsAnErrorFrameWithTheReason() async throws {
        let listener = try await listener(clock: ManualClock())
        let serving = Task { try await listener.run() }
        try await asRegisteredAgent(listener) { frames, outbound in
            var short = ByteBuffer()
            short.writeBytes([0, 0, 1])
            try await outbound.write(Frame(type: .heartbeat, payload: short))
            var error: ErrorMessage?
            while let frame = try await frames.next() {
                if case .error(let e) = try Message(frame: frame) { error = e }
            }
            #expect(error?.code == .malformedMessage && error?.reason.contains("heartbeat") == true, "\(String(describing: error))")
        }
        await listener.close()
        serving.cancel()
        _ = await serving.result
    }

    /// Raw bytes that are not Barge: the peer gets an error frame, then the connection closes.
    @Test func garbageOnTheSocketGetsAnErrorFrameAndAClose() async throws {
        let listener = try await listener(clock: ManualClock())
        let serving = Task { try await listener.run() }
        let raw = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: "127.0.0.1", port: listener.localAddress!.port!) { channel in
                channel.eventLoop.makeCompletedFuture { try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel) }
            }
        var received = ByteBuffer()
        try await raw.executeThenClose { inbound, outbound in
            try await outbound.write(ByteBuffer(string: "GET / HTTP/1.1\r\nHost: coordinator\r\n\r\n"))
            for try await chunk in inbound { received.writeImmutableBuffer(chunk) }  // ends when the server closes
        }
        let frame = try #require(try received.readFrame(maxPayloadLength: 4096))
        guard case .error(let e) = try Message(frame: frame) else { Issue.record("no error frame"); return }
        #expect(e.code == .badMagic)
        await listener.close()
        serving.cancel()
        _ = await serving.result
    }
}
