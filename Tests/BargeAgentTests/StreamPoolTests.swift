@testable import BargeAgent
import BargeWire
import Foundation
import Glibc
import NIOConcurrencyHelpers
import NIOCore
import Testing

/// Pipelined streams and the pool of data-plane connections, over real loopback TCP.
struct StreamPoolTests {
    static let token = DataPlaneSocketTests.token

    /// A data-plane listener on loopback over `roots.destination`, and a client for it.
    func listening(_ roots: Roots) async throws -> (DataPlaneListener, Task<Void, Error>, DataPlaneClient) {
        let listener = try await DataPlaneListener.bind(host: "127.0.0.1", port: 0, root: roots.destination, token: Self.token, name: "b1")
        let serving = Task { try await listener.run() }
        return (listener, serving, DataPlaneClient(host: "127.0.0.1", port: listener.localAddress!.port!, token: Self.token, name: "a1"))
    }

    func entry(_ i: Int) -> Message {
        .makeEntry(MakeEntry(job: "j", entry: FileEntry(path: "dirs/d\(i)", kind: .directory, mode: 0o755, mtimeSeconds: 1_600_000_000, mtimeNanoseconds: 0)))
    }

    /// A destination agent stopped for about its agent timeout (its fence's clock jumps here)
    /// closes the connections it accepted before, idle ones too, within about half a second: the
    /// source's pool drops them, and the next unit opens a new connection and is served, rather
    /// than being refused on a connection from before the stop and failing.
    @Test func aDestinationsFreezeClosesItsOldConnectionsAndTheNextUnitOpensANewOne() async throws {
        let roots = try Roots()
        let now = NIOLockedValueBox<UInt64>(1_000_000_000)
        let fence = FreezeFence(clock: { now.withLockedValue { $0 } })
        fence.registered(timeout: .seconds(2), interval: .milliseconds(200))
        let listener = try await DataPlaneListener.bind(host: "127.0.0.1", port: 0, root: roots.destination, token: Self.token, name: "b1")
        let serving = Task { try await listener.run(fence: fence) }
        defer { serving.cancel() }
        let client = DataPlaneClient(host: "127.0.0.1", port: listener.localAddress!.port!, token: Self.token, name: "a1")
        let pool = StreamPool()
        _ = try await pool.withStream(client) { try await $0.send(entry(0)) }
        #expect(pool.idleCount == 1)
        now.withLockedValue { $0 += 10_000_000_000 }  // ten seconds without a beat: a freeze
        try await Task.sleep(for: .milliseconds(1_200))
        let reply = try await pool.withStream(client) { try await $0.send(entry(1)) }
        #expect(reply == .chunkAck(ChunkAck(place: ChunkPlace(job: "j", path: "dirs/d1", offset: 0))))
        #expect(pool.opened == 2 && pool.reused == 0, "the connection from before the freeze was used again")
        pool.closeAll()
        await listener.close()
    }

    /// `closeUnanswered`: a connection whose requests have gone unanswered for the quiet time (its
    /// peer stopped reading: here a listener that takes the handshake and then nothing) is closed,
    /// and the request waiting on it fails at once, so its unit ends and gives back what it held.
    /// A connection to a peer that answers is left alone. (A unit dropped because its destination
    /// agent was stopped used to wait on such a connection until the agent came back, and the
    /// send budget it held stopped the agent's units to other destinations: a job stalled.)
    @Test func unansweredConnectionsToADestinationAreClosedAndTheirRequestsFail() async throws {
        let stopped = try await BargeServer.bind(host: "127.0.0.1", port: 0, token: Self.token, name: "b1")
        let serving = Task { try await stopped.serve(session: { _, _, _ in try await Task.sleep(for: .seconds(600)) }, onError: { _, _ in }) }
        defer { serving.cancel() }
        let roots = try Roots()
        let (listener, answering, live) = try await listening(roots)
        defer { answering.cancel() }
        let port = stopped.localAddress!.port!
        let silent = DataPlaneClient(host: "127.0.0.1", port: port, token: Self.token, name: "a1")
        let pool = StreamPool()
        _ = try await pool.withStream(live) { try await $0.send(entry(0)) }
        let waiting = Task { try await pool.withStream(silent) { try await $0.send(entry(1)) } }
        try await Task.sleep(for: .milliseconds(600))
        #expect(pool.closeUnanswered(to: "127.0.0.1", port: live.port, quiet: .milliseconds(300)) == 0, "a peer that answers")
        #expect(pool.closeUnanswered(to: "127.0.0.1", port: port, quiet: .seconds(5)) == 0, "not quiet for that long yet")
        let started = ContinuousClock.now
        #expect(pool.closeUnanswered(to: "127.0.0.1", port: port, quiet: .milliseconds(300)) == 1)
        await #expect(throws: (any Error).self) { try await waiting.value }
        #expect(ContinuousClock.now - started < .seconds(5))
        // The answering destination's connection is still there, and used again.
        _ = try await pool.withStream(live) { try await $0.send(entry(2)) }
        #expect(pool.reused >= 1)
        pool.closeAll()
        await listener.close()
    }

    /// A destination whose handshake slots are all held (a slow-loris: connections that never
    /// finish their hello) answers a new connection `busy`, in words, and the pool asks again
    /// until a slot frees, rather than failing the unit: before, the refusal was a bare close,
    /// and three units' failures ended the job within 2 s.
    @Test func aBusyDestinationIsAskedAgainUntilASlotFrees() async throws {
        let server = try await BargeServer.bind(host: "127.0.0.1", port: 0, token: Self.token, name: "b1", maxHandshakes: 1)
        let serving = Task { try await server.serve(session: { _, _, _ in try await Task.sleep(for: .seconds(600)) }, onError: { _, _ in }) }
        defer { serving.cancel() }
        let port = server.localAddress!.port!
        // The one slot, held by a connection that says nothing.
        let holder = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(holder, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        try #require(connected == 0)
        try await Task.sleep(for: .milliseconds(200))
        #expect(server.handshakingConnections == 1)
        let client = DataPlaneClient(host: "127.0.0.1", port: port, token: Self.token, name: "a1")
        // Said in words to a plain connection.
        await #expect(throws: HandshakeFailure.self) { try await client.withStream { _ in 0 } }
        do { _ = try await client.withStream { _ in 0 } } catch let failure as HandshakeFailure {
            #expect(failure.error.code == .busy && failure.error.reason.contains("in their handshake"), "\(failure)")
        }
        // The pool waits it out: the slot frees after 0.8 s, and the lease comes.
        let pool = StreamPool()
        let started = ContinuousClock.now
        let leased = Task { try await pool.withStream(client) { _ in 7 } }
        try await Task.sleep(for: .milliseconds(800))
        close(holder)
        #expect(try await leased.value == 7)
        #expect(ContinuousClock.now - started < .seconds(10))
        pool.closeAll()
        await server.close()
    }

    @Test func aStreamIsReusedClosedWhenIdleAndReplacedAfterAFailure() async throws {
        let roots = try Roots()
        let (listener, serving, client) = try await listening(roots)
        defer { serving.cancel() }
        let pool = StreamPool(idleTimeout: .milliseconds(300))
        for i in 0..<3 {
            let reply = try await pool.withStream(client) { try await $0.send(entry(i)) }
            #expect(reply == .chunkAck(ChunkAck(place: ChunkPlace(job: "j", path: "dirs/d\(i)", offset: 0))))
        }
        #expect(pool.opened == 1 && pool.reused == 2, "one connection for three units")
        // Idle past the timeout: closed, and the next unit opens a new one.
        try await Task.sleep(for: .milliseconds(500))
        _ = try await pool.withStream(client) { try await $0.send(entry(3)) }
        #expect(pool.opened == 2)
        // A message the listener refuses: it answers an error and closes the connection. The unit
        // fails, its stream is not put back, and the next unit gets a new, working one.
        await #expect(throws: PeerRefused.self) {
            try await pool.withStream(client) { try await $0.send(.heartbeat(Heartbeat(sequence: 1, inFlight: 0))) }
        }
        #expect(pool.idleCount == 0)
        let reply = try await pool.withStream(client) { try await $0.send(entry(4)) }
        #expect(reply == .chunkAck(ChunkAck(place: ChunkPlace(job: "j", path: "dirs/d4", offset: 0))))
        #expect(pool.opened == 3)
        #expect(FileManager.default.fileExists(atPath: roots.destination + "/dirs/d4"))
        pool.closeAll()
        await listener.close()
    }

    /// Six units at once to one destination share its two connections: none opens a third, each
    /// gets its own replies, and a seventh unit later reuses an idle one.
    /// `--tcp-congestion`: the connections a client opens run the algorithm it names; without one,
    /// the host's default. Reno is in every Linux kernel; the test bed's hosts default to another.
    @Test(.enabled(if: TCPCongestionControl.hostDefault() != nil, "no /proc/sys/net/ipv4/tcp_congestion_control (not Linux)"))
    func aConnectionRunsTheTCPCongestionControlAskedFor() async throws {
        let roots = try Roots()
        let (_, serving, hostDefault) = try await listening(roots)
        defer { serving.cancel() }
        var reno = hostDefault
        reno.congestionControl = try TCPCongestionControl(named: "reno")
        #expect(try await reno.withStream { stream in
            _ = try await stream.send(entry(0))
            return await stream.congestionControl()
        } == "reno")
        #expect(try await hostDefault.withStream { await $0.congestionControl() } == TCPCongestionControl.hostDefault())
    }

    /// A BBR connection's sample carries BBR's model of the path (`TCP_CC_INFO`), and the bytes
    /// it aims to keep in flight come from that model, not from its congestion window; a reno
    /// connection's sample has no model, and aims at its window.
    @Test(.enabled(if: (try? TCPCongestionControl(named: "bbr").check()) != nil, "the kernel grants no BBR (tcp_bbr not loaded, or not allowed)"))
    func aBBRConnectionsSampleCarriesItsModel() async throws {
        let roots = try Roots()
        let (_, serving, hostDefault) = try await listening(roots)
        defer { serving.cancel() }
        for name in ["bbr", "reno"] {
            var client = hostDefault
            client.congestionControl = try TCPCongestionControl(named: name)
            let sample = try #require(try await client.withStream { stream in
                for i in 0..<20 { _ = try await stream.send(entry(i)) }
                return await stream.probe?.sample()
            })
            #expect(sample.window > 0)
            if name == "bbr" {
                let model = try #require(sample.bbr, "a BBR socket without BBR's model")
                #expect(model.rate > 0 && model.minRTT > 0 && model.minRTT < 1_000_000_000, "\(model)")
                // Both in nanoseconds from the kernel's microseconds: BBR's least RTT of the last
                // ten seconds is no less than the connection's least ever, and of its order.
                let least = try #require(sample.minRTT)
                #expect(model.minRTT >= least && model.minRTT <= 1000 * least, "BBR's \(model.minRTT) ns against tcpi_min_rtt \(least) ns")
                #expect(sample.inFlightAim == min(sample.window, model.rate * Double(model.minRTT) / 1e9))
            } else {
                #expect(sample.bbr == nil, "reno has no BBR model: \(String(describing: sample.bbr))")
                #expect(sample.inFlightAim == sample.window)
            }
        }
    }

    /// Without `--streams`, a destination gets four connections, or eight once a connection to
    /// it measured a least RTT of 10 ms or more (`longPath`); the RTT each connection measures is
    /// given here, as the delay test bed would have it. `--streams` keeps its count everywhere.
    @Test(arguments: [(UInt64(50_000_000), 8, Optional(8)), (UInt64(300_000), 4, Optional(8)), (UInt64(50_000_000), 4, nil)])
    func aFarDestinationGetsMoreConnections(rtt: UInt64, expected: Int, longPath: Int?) async throws {
        let roots = try Roots()
        let (listener, serving, client) = try await listening(roots)
        defer { serving.cancel() }
        let pool = StreamPool(perDestination: 4, longPath: longPath, measure: { _ in rtt })
        #expect(pool.streams(to: client) == 4, "nothing is known of the path before a connection")
        _ = try await pool.withStream(client) { try await $0.send(entry(0)) }
        #expect(pool.streams(to: client) == expected)
        // Found far, the pool opens the rest at once, before any unit asks for them.
        let deadline = ContinuousClock.now + .seconds(5)
        let warmed = expected > 4 ? expected : 1
        while pool.openCount < warmed, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        #expect(pool.openCount == warmed, "\(pool.openCount) connections open after the first")
        // Twelve holders at once: the pool opens up to its limit for the destination, no more.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for unit in 0..<12 {
                group.addTask {
                    try await pool.withStream(client, holder: ObjectIdentifier(NSObject())) { stream in
                        _ = try await stream.send(entry(100 + unit))
                        try await Task.sleep(for: .milliseconds(100))
                    }
                }
            }
            try await group.waitForAll()
        }
        #expect(pool.openCount == expected, "\(pool.openCount) connections open")
        pool.closeAll()
        await listener.close()
    }

    @Test func unitsAtOnceShareAtMostPerDestinationConnections() async throws {
        let roots = try Roots()
        let (listener, serving, client) = try await listening(roots)
        defer { serving.cancel() }
        let pool = StreamPool(perDestination: 2)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for unit in 0..<6 {
                group.addTask {
                    try await pool.withStream(client) { stream in
                        for k in 0..<5 {
                            let i = unit * 10 + k
                            #expect(try await stream.send(entry(i)) == .chunkAck(ChunkAck(place: ChunkPlace(job: "j", path: "dirs/d\(i)", offset: 0))))
                            try await Task.sleep(for: .milliseconds(10))
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
        #expect(pool.opened == 2, "six units, two connections: \(pool.opened)")
        #expect(pool.openCount == 2 && pool.idleCount == 2)
        _ = try await pool.withStream(client) { try await $0.send(entry(99)) }
        #expect(pool.opened == 2)
        pool.closeAll()
        await listener.close()
    }

    /// The pool reports a connection when it closes it, not when a unit ends on it (the lanes
    /// stop counting a socket's window only then).
    @Test func aConnectionIsReportedClosedOnlyWhenItCloses() async throws {
        let roots = try Roots()
        let (listener, serving, client) = try await listening(roots)
        defer { serving.cancel() }
        let closed = NIOLockedValueBox<[ObjectIdentifier]>([])
        // Idle for 2 s before it closes (the pool also sweeps on a timer): a loaded machine's
        // delay before the first look does not close it.
        let pool = StreamPool(idleTimeout: .seconds(2), closed: { id in closed.withLockedValue { $0.append(id) } })
        let first = try await pool.withStream(client) { stream in
            _ = try await stream.send(entry(1))
            return ObjectIdentifier(stream)
        }
        #expect(closed.withLockedValue { $0 }.isEmpty, "a unit ending leaves its connection open")
        try await Task.sleep(for: .milliseconds(3_000))
        let second = try await pool.withStream(client) { stream in
            _ = try await stream.send(entry(2))
            return ObjectIdentifier(stream)
        }
        #expect(closed.withLockedValue { $0 } == [first], "the idle one closed before the next unit came")
        pool.closeAll()
        #expect(closed.withLockedValue { $0 } == [first, second])
        await listener.close()
    }

    /// An idle connection closes after `idleTimeout` with no unit coming to sweep it: before, it
    /// stayed open until the destination's read timer closed it at 120 s, which logged "nothing
    /// received for too long" (h2 of session 50).
    @Test func anIdleConnectionClosesWithNoUnitComing() async throws {
        let roots = try Roots()
        let (listener, serving, client) = try await listening(roots)
        defer { serving.cancel() }
        let closed = NIOLockedValueBox<[ObjectIdentifier]>([])
        let pool = StreamPool(idleTimeout: .milliseconds(300), closed: { id in closed.withLockedValue { $0.append(id) } })
        let used = try await pool.withStream(client) { stream in
            _ = try await stream.send(entry(1))
            return ObjectIdentifier(stream)
        }
        #expect(try await eventually { pool.openCount == 0 }, "still open: \(pool.openCount)")
        #expect(closed.withLockedValue { $0 } == [used])
        pool.closeAll()
        await listener.close()
    }

    /// Polls `condition` every 10 ms for up to 10 s.
    func eventually(_ condition: () -> Bool) async throws -> Bool {
        for _ in 0..<1000 {
            if condition() { return true }
            try await Task.sleep(for: .milliseconds(10))
        }
        return condition()
    }

    /// `warm lanes`: a destination's connections open before any unit asks for one, the units
    /// that come then use them without opening more, and warming again opens only what is
    /// missing. Warming toward an agent that is down leaves nothing behind.
    @Test func warmingOpensTheConnectionsTheNextUnitsUse() async throws {
        let roots = try Roots()
        let (listener, serving, client) = try await listening(roots)
        defer { serving.cancel() }
        let pool = StreamPool(perDestination: 3)
        #expect(pool.warm(client) == 3)
        #expect(pool.warm(client) == 0, "all three are opening")
        #expect(try await eventually { pool.idleCount == 3 })
        #expect(pool.warm(client) == 0, "all three are open")
        try await withThrowingTaskGroup(of: Void.self) { group in
            for unit in 0..<3 {
                group.addTask {
                    let reply = try await pool.withStream(client) { try await $0.send(entry(unit)) }
                    #expect(reply == .chunkAck(ChunkAck(place: ChunkPlace(job: "j", path: "dirs/d\(unit)", offset: 0))))
                }
            }
            try await group.waitForAll()
        }
        #expect(pool.opened == 3 && pool.reused == 3, "the units ran on the warm connections")
        #expect(pool.openCount == 3)

        // A connection that failed while a unit still holds it takes no place: warming opens a
        // working one beside it, as a unit's own `acquire` would.
        let held = StreamPool(perDestination: 1)
        try await held.withStream(client) { (stream: ChunkStream) async throws in
            await #expect(throws: PeerRefused.self) { try await stream.send(.heartbeat(Heartbeat(sequence: 1, inFlight: 0))) }
            #expect(try await eventually { stream.isFailed })
            #expect(held.warm(client) == 1, "the failed connection still counted")
        }
        #expect(try await eventually { held.idleCount == 1 })
        _ = try await held.withStream(client) { try await $0.send(entry(20)) }
        #expect(held.opened == 2 && held.reused == 1)
        held.closeAll()

        // A unit waiting for a warm-up still opening gets one of its connections.
        let other = StreamPool(perDestination: 2)
        #expect(other.warm(client) == 2)
        _ = try await other.withStream(client) { try await $0.send(entry(10)) }
        #expect(other.opened == 2 && other.reused == 1)
        other.closeAll()

        // The destination goes down: a warm-up fails quietly, and once its opens have ended it
        // can start again (nothing is left counted as opening or open).
        pool.closeAll()
        await listener.close()
        serving.cancel()
        #expect(pool.openCount == 0)
        #expect(pool.warm(client) == 3)
        #expect(try await eventually { pool.warm(client) == 3 }, "the failed opens left nothing behind")
        #expect(try await eventually { pool.warm(client) == 3 })
        #expect(pool.openCount == 0)
    }

    /// Where a unit asking for a connection goes: idle first, then a new one up to the limit,
    /// then one still opening, and only then a busy one, the least used.
    @Test func aUnitTakesAnIdleConnectionThenANewOneThenOneOpeningThenTheLeastUsed() {
        #expect(StreamPool.place(users: [2, 0, 1], opening: 1, perDestination: 4) == .use(1))
        #expect(StreamPool.place(users: [1, 1], opening: 1, perDestination: 4) == .open)
        #expect(StreamPool.place(users: [], opening: 0, perDestination: 1) == .open)
        #expect(StreamPool.place(users: [3, 1], opening: 2, perDestination: 4) == .wait, "two more are coming: share none yet")
        #expect(StreamPool.place(users: [], opening: 4, perDestination: 4) == .wait)
        #expect(StreamPool.place(users: [3, 1, 2, 1], opening: 0, perDestination: 4) == .use(1))
        #expect(StreamPool.place(users: [5], opening: 0, perDestination: 1) == .use(0))
        // A unit's next stream goes to a connection it is not on yet, the least used of those...
        #expect(StreamPool.place(users: [1, 2, 3, 1], held: [true, false, false, true], opening: 0, perDestination: 4) == .use(1))
        // ...or, on every one already, the least used of all.
        #expect(StreamPool.place(users: [3, 2, 4], held: [true, true, true], opening: 0, perDestination: 3) == .use(1))
    }

    /// The streams of one unit go to different connections where they can: four units each on
    /// one of four connections, then the first unit's next three streams go to the three it is
    /// not on, not back to its own (the least used by count alone, the first).
    @Test func aUnitsStreamsGoToDifferentConnections() async throws {
        let roots = try Roots()
        let (listener, serving, client) = try await listening(roots)
        defer { serving.cancel() }
        let pool = StreamPool(perDestination: 4)
        #expect(pool.warm(client) == 4)
        #expect(try await eventually { pool.idleCount == 4 })
        final class Unit: Sendable {}
        let (a, b, c, d) = (Unit(), Unit(), Unit(), Unit())
        func on(_ unit: Unit, _ body: (ChunkStream) async throws -> Void) async throws {
            try await pool.withStream(client, holder: ObjectIdentifier(unit), body)
        }
        var firstStreams: Set<ObjectIdentifier> = []
        var unitA: [ObjectIdentifier] = []
        try await on(a) { a0 in
            try await on(b) { b0 in
                try await on(c) { c0 in
                    try await on(d) { d0 in
                        firstStreams = Set([a0, b0, c0, d0].map(ObjectIdentifier.init))
                        try await on(a) { a1 in
                            try await on(a) { a2 in
                                try await on(a) { a3 in
                                    unitA = [a0, a1, a2, a3].map(ObjectIdentifier.init)
                                    let reply = try await a3.send(entry(3))
                                    #expect(reply == .chunkAck(ChunkAck(place: ChunkPlace(job: "j", path: "dirs/d3", offset: 0))))
                                }
                            }
                        }
                    }
                }
            }
        }
        #expect(firstStreams.count == 4, "each unit's first stream on an idle connection of its own")
        #expect(Set(unitA).count == 4, "the first unit's four streams on four connections")
        #expect(pool.opened == 4 && pool.idleCount == 4)
        pool.closeAll()
        await listener.close()
    }

    /// Units that ask for connections together while a warm-up opens them spread over all of
    /// them, rather than piling onto the first to open: eight at once over four connections,
    /// two on each.
    @Test func unitsThatComeWhileAWarmUpOpensSpreadOverItsConnections() async throws {
        let roots = try Roots()
        let (listener, serving, client) = try await listening(roots)
        defer { serving.cancel() }
        let pool = StreamPool(perDestination: 4)
        #expect(pool.warm(client) == 4)
        let used = NIOLockedValueBox<[ObjectIdentifier: Int]>([:])
        try await withThrowingTaskGroup(of: Void.self) { group in
            for unit in 0..<8 {
                group.addTask {
                    try await pool.withStream(client) { stream in
                        used.withLockedValue { $0[ObjectIdentifier(stream), default: 0] += 1 }
                        #expect(try await stream.send(entry(unit)) == .chunkAck(ChunkAck(place: ChunkPlace(job: "j", path: "dirs/d\(unit)", offset: 0))))
                        // Held, as a unit holds its streams while it sends.
                        try await Task.sleep(for: .milliseconds(300))
                    }
                }
            }
            try await group.waitForAll()
        }
        let counts = used.withLockedValue { $0.values.sorted() }
        #expect(counts == [2, 2, 2, 2], "units per connection: \(counts)")
        #expect(pool.opened == 4)
        pool.closeAll()
        await listener.close()
    }

    /// Many requests outstanding on one stream at once: each gets its own reply.
    @Test func manyRequestsInFlightOnOneStreamEachGetTheirOwnReply() async throws {
        let roots = try Roots()
        let (listener, serving, client) = try await listening(roots)
        defer { serving.cancel() }
        let replies = try await client.withStream { stream in
            try await withThrowingTaskGroup(of: (Int, Message).self) { group in
                for i in 0..<64 { group.addTask { (i, try await stream.send(entry(i))) } }
                var all: [Int: Message] = [:]
                for try await (i, reply) in group { all[i] = reply }
                return all
            }
        }
        #expect(replies.count == 64)
        for (i, reply) in replies {
            #expect(reply == .chunkAck(ChunkAck(place: ChunkPlace(job: "j", path: "dirs/d\(i)", offset: 0))))
        }
        await listener.close()
    }

    /// Three chunks in flight, answered last first: each reply reaches its own request (they are
    /// matched by place, not by order). Then a reply for a chunk never sent: the stream ends with
    /// an error naming it, and the chunk still in flight is not taken as acked.
    @Test func repliesOutOfOrderReachTheirOwnRequestsAndAStrayReplyEndsTheStream() async throws {
        let stray = ChunkPlace(job: "j", path: "never-sent", offset: 0)
        let server = try await BargeServer.bind(host: "127.0.0.1", port: 0, token: Self.token, name: "scripted")
        let serving = Task {
            try await server.serve(session: { _, inbound, outbound in
                var received: [ChunkPlace] = []
                for try await frame in inbound {
                    guard case .chunkRef(let ref) = try Message(frame: frame) else { continue }
                    received.append(ref.place)
                    if received.count == 3 {
                        for place in received.reversed() {
                            try await outbound.write(Message.chunkNack(ChunkNack(place: place, reason: .need, detail: "\(place.offset)")).frame())
                        }
                    } else if received.count == 4 {
                        try await outbound.write(Message.chunkAck(ChunkAck(place: stray)).frame())
                    }
                }
            }, onError: { _, _ in })
        }
        defer { serving.cancel() }
        let client = DataPlaneClient(host: "127.0.0.1", port: server.localAddress!.port!, token: Self.token, name: "a1")
        func ref(_ i: Int) -> ChunkRef {
            ChunkRef(place: ChunkPlace(job: "j", path: "f", offset: UInt64(i) << 20), fileSize: 4 << 20, length: 1 << 20,
                     id: [UInt8](repeating: 1, count: 32), xxh: [UInt8](repeating: 2, count: 16))
        }
        try await client.withStream { stream in
            let replies = try await withThrowingTaskGroup(of: (Int, Message).self) { group in
                for i in 0..<3 { group.addTask { (i, try await stream.send(.chunkRef(ref(i)))) } }
                var all: [Int: Message] = [:]
                for try await (i, reply) in group { all[i] = reply }
                return all
            }
            for i in 0..<3 {
                #expect(replies[i] == .chunkNack(ChunkNack(place: ref(i).place, reason: .need, detail: "\(UInt64(i) << 20)")))
            }
            await #expect(throws: WireError.self) { try await stream.send(.chunkRef(ref(3))) }
            #expect(stream.isFailed)
        }
        await server.close()
    }
}
