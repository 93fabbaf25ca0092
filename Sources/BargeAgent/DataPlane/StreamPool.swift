import BargeWire
import NIOConcurrencyHelpers

/// Data-plane connections to each destination agent (host and port), shared by every unit this
/// agent sends there and kept open between units and jobs. A stream is pipelined and its replies
/// are matched by place, so several units send on one connection at once: an agent keeps at most
/// `perDestination` connections to each destination (its `--streams`; without it four, or eight
/// to a destination at least 10 ms away: `longPath`), whatever the number of units running, as
/// GridFTP's `-p` or `iperf3 -P` do. Sixteen connections (four units of four
/// streams) each in slow start and then in cubic's probing overflowed the bottleneck's queue far
/// more often than four did (retransmissions, and stalls of 0.3 s while every socket recovered).
///
/// A unit asking for a stream gets an idle connection if there is one, else a new one while there
/// are fewer than the destination's `limit`, else one being opened, else the connection with the
/// fewest units on it (`place`). A failed
/// stream is closed and dropped at once (its units fail and are retried; the next unit opens a
/// new one); one no unit has used for `idleTimeout` is closed, well before either side's read
/// timeout would close it.
public final class StreamPool: Sendable {
    public let idleTimeout: Duration
    public let perDestination: Int
    private let clock = ContinuousClock()

    /// One connection, held open by its own task until `close`.
    final class Lease: Sendable {
        let stream: ChunkStream
        private let closer: AsyncStream<Void>.Continuation
        private let closed: @Sendable (ObjectIdentifier) -> Void

        init(stream: ChunkStream, closer: AsyncStream<Void>.Continuation, closed: @escaping @Sendable (ObjectIdentifier) -> Void) {
            self.stream = stream
            self.closer = closer
            self.closed = closed
        }

        func close() {
            closer.finish()
            closed(ObjectIdentifier(stream))
        }
    }

    /// Connections to one destination, with one TCP congestion control: a scavenger job's run
    /// another algorithm than a fair job's, so they are not shared.
    private struct Key: Hashable {
        let host: String
        let port: Int
        let algorithm: String?

        init(_ client: DataPlaneClient) {
            host = client.host
            port = client.port
            algorithm = client.congestionControl?.name
        }
    }

    private struct Entry {
        let lease: Lease
        /// Units sending on it now.
        var users: Int
        /// The holders (`withStream`'s `holder`) with a stream on it now, and how many each.
        var holders: [ObjectIdentifier: Int] = [:]
        /// When its last unit let it go.
        var since: ContinuousClock.Instant
    }

    private struct Destination {
        var entries: [Entry] = []
        /// Connections being opened (counted against the destination's `limit`).
        var opening = 0
        /// Units waiting for one of those to open.
        var waiting: [CheckedContinuation<Void, Never>] = []
    }

    private enum Choice {
        case use(Lease)
        case open
        case wait
    }

    /// Where a unit asking for a connection to a destination goes.
    public enum Placement: Equatable, Sendable {
        /// The open connection at this index.
        case use(Int)
        /// A new connection.
        case open
        /// Wait for one being opened.
        case wait
    }

    /// Where a unit asking for a connection goes, given the units on each open connection, which
    /// of them the asking unit is on already (`held`), and how many are opening (pure): an idle
    /// one; else a new one while fewer than `perDestination` are open or opening; else, while some
    /// are still opening, wait for one; else the one with the fewest units among those the unit
    /// is not on, else among all.
    ///
    /// Why a unit's streams go to different connections: room in the lane's window goes to the
    /// oldest unit first, so in a first job's slow start the oldest unit sends nearly all of it.
    /// Shared out by fewest units alone, its four streams went to three connections (its own
    /// first, then the first three again), and the fourth connection carried nothing until 2.4 s
    /// into a job through the delay bed at 100 ms.
    ///
    /// Why wait rather than share while connections open: a job's units (and each unit's
    /// streams) ask for connections together, while its warm-up (`warm`) is opening them. Each
    /// open wakes every waiter, and shared out at once they all went to the first connection to
    /// open (eight units over a warm-up of four: all eight on one). Through the delay test bed at
    /// 1 Gbit/s and 100 ms, a fresh cluster's first 1 GiB job ran on two of its four connections
    /// for its first second, the other two idle until its next units came; it took 12.41-12.78 s
    /// before this rule and 11.22-11.47 s with it (three turns each).
    public static func place(users: [Int], held: [Bool]? = nil, opening: Int, perDestination: Int) -> Placement {
        if let idle = users.firstIndex(of: 0) { return .use(idle) }
        if users.count + opening < perDestination { return .open }
        if opening > 0 { return .wait }
        let held = held ?? Array(repeating: false, count: users.count)
        let fewest = { (candidates: [Int]) in candidates.min(by: { users[$0] < users[$1] }) }
        guard let least = fewest(users.indices.filter { !held[$0] }) ?? fewest(Array(users.indices)) else { return .open }
        return .use(least)
    }

    private struct State {
        var destinations: [Key: Destination] = [:]
        /// The least RTT a connection to each destination has measured (kept when its
        /// connections close, for the next job's `limit`).
        var leastRTT: [Key: UInt64] = [:]
        var opened = 0
        var reused = 0
    }

    private let state = NIOLockedValueBox(State())

    /// Told each connection that closes (by its stream's identity): the lanes stop counting its
    /// socket's window. A unit ending does not close the connections it used.
    private let closed: @Sendable (ObjectIdentifier) -> Void

    /// `idleTimeout` 45 s by default, well before either end's read timer (120 s, or twice the
    /// stall timeout) closes a connection nothing came on. A connection kept
    /// keeps what TCP learnt of the path: through the delay bed at 1 Gbit/s and 100 ms a 1 GiB job
    /// on new connections took 11.2-11.5 s, and on connections a job before had used, 10.3-10.7 s
    /// (slow start from ten segments to a quarter of the path's bandwidth-delay product each is
    /// about eight round trips). At 30 s, jobs half a minute apart each started cold.
    public init(idleTimeout: Duration = .seconds(45), perDestination: Int = 4, longPath: Int? = nil,
                closed: @escaping @Sendable (ObjectIdentifier) -> Void = { _ in },
                measure: (@Sendable (ChunkStream) async -> UInt64?)? = nil) {
        self.idleTimeout = idleTimeout
        self.perDestination = max(1, perDestination)
        self.longPath = longPath.map { max(1, $0) }
        self.closed = closed
        self.measure = measure ?? { await $0.probe?.sample()?.minRTT }
        // Swept on a timer too, not only as units take and give back connections: after a job,
        // with no unit to come, the idle ones stayed open until the destination's read timer
        // closed them at 120 s and logged "nothing received for too long", four times an agent
        // (h2 of session 50, 6 of 6).
        let period = max(.milliseconds(10), idleTimeout / 3)
        let task = Task { [weak self] in
            while !Task.isCancelled {
                try? await Task.sleep(for: period)
                guard let self else { return }
                self.sweep()
            }
        }
        sweeper.withLockedValue { $0 = task }
    }

    deinit { sweeper.withLockedValue { $0?.cancel() } }

    /// The timer that sweeps idle connections (`sweep`), every third of `idleTimeout`.
    private let sweeper = NIOLockedValueBox<Task<Void, Never>?>(nil)

    /// Connections to a destination at least `longPathRTT` away (nil: `perDestination` to every
    /// destination, as `--streams` asks). Through the delay test bed at 1 Gbit/s, eight
    /// connections carried a 1 GiB job faster than four at 50 and 100 ms in both pairs of runs
    /// taking turns (0.97, 0.97 of `iperf3 -P 4` at 50 ms against 0.94, 0.95; at 100 ms 0.97,
    /// 0.96 against 0.95, 0.95), and as fast at 20 ms (0.98–0.99 both): a loss stalls the
    /// chunks behind it on one connection, and with eight each carries less. On loopback eight
    /// took 1.96–2.10 s and 3.7–3.9 CPU-s for 1 GiB against 1.76–1.92 s and 3.3–3.6 CPU-s with
    /// four, so near destinations keep four.
    public let longPath: Int?

    /// The least RTT past which a destination is far (`longPath`): between a LAN's fraction of a
    /// millisecond and the 20 ms where four and eight connections did as well.
    public static let longPathRTT: UInt64 = 10_000_000

    /// A new connection's least RTT (its handshake's, `tcpi_min_rtt`), nil where unknown.
    private let measure: @Sendable (ChunkStream) async -> UInt64?

    /// How many connections a destination gets: `longPath` once a connection to it measured a
    /// least RTT of `longPathRTT` or more, else `perDestination`.
    private func limit(_ s: State, _ key: Key) -> Int {
        guard let longPath, let rtt = s.leastRTT[key], rtt >= Self.longPathRTT else { return perDestination }
        return longPath
    }

    /// The streams a unit to `client`'s agent sends on: as many as the pool keeps connections
    /// to it.
    public func streams(to client: DataPlaneClient) -> Int {
        let key = Key(client)
        return state.withLockedValue { limit($0, key) }
    }

    /// Connections opened and reused so far (for tests and logs).
    public var opened: Int { state.withLockedValue { $0.opened } }
    public var reused: Int { state.withLockedValue { $0.reused } }
    /// Connections open and used by no unit now.
    public var idleCount: Int { state.withLockedValue { $0.destinations.values.reduce(0) { $0 + $1.entries.filter { $0.users == 0 }.count } } }
    /// Connections open now, in use or not.
    public var openCount: Int { state.withLockedValue { $0.destinations.values.reduce(0) { $0 + $1.entries.count } } }

    /// Runs `body` on a stream to `client`'s agent, shared with other units. The stream stays in
    /// the pool after `body`, unless it has failed. `holder` names the unit asking (any object
    /// that lives as long as it), so that its streams go to different connections where they can.
    public func withStream<Result: Sendable>(_ client: DataPlaneClient, holder: ObjectIdentifier? = nil,
                                             _ body: (ChunkStream) async throws -> Result) async throws -> Result {
        let key = Key(client)
        let lease = try await acquire(key, client, holder: holder)
        defer { release(lease, key, holder: holder) }
        return try await body(lease.stream)
    }

    /// Closes the connections to `host`:`port` whose requests have gone unanswered for `quiet`
    /// (`ChunkStream.unanswered`); returns how many. The requests on them fail at once, so the
    /// units that sent them, stopped because the coordinator took their destination for down,
    /// end and give back the agent's send budget: otherwise they waited for the stall timeout,
    /// and the budget they held stopped the agent's other units, to other destinations too.
    @discardableResult
    public func closeUnanswered(to host: String, port: Int, quiet: Duration) -> Int {
        let stuck = state.withLockedValue { s -> [Lease] in
            var stuck: [Lease] = []
            for key in s.destinations.keys where key.host == host && key.port == port {
                let (keep, drop) = s.destinations[key]!.entries.reduce(into: ([Entry](), [Entry]())) { acc, e in
                    if e.lease.stream.unanswered(for: quiet) { acc.1.append(e) } else { acc.0.append(e) }
                }
                stuck += drop.map(\.lease)
                s.destinations[key]!.entries = keep
            }
            return stuck
        }
        stuck.forEach {
            $0.stream.failUnanswered(quiet)
            $0.close()
        }
        return stuck.count
    }

    /// Closes every connection (the agent is stopping).
    public func closeAll() {
        let all = state.withLockedValue { s in
            defer { for k in s.destinations.keys { s.destinations[k]!.entries.removeAll() } }
            return s.destinations.values.flatMap { $0.entries.map(\.lease) }
        }
        all.forEach { $0.close() }
    }

    private func acquire(_ key: Key, _ client: DataPlaneClient, holder: ObjectIdentifier?) async throws -> Lease {
        while true {
            sweep()
            var failed: [Lease] = []
            defer { failed.forEach { $0.close() } }
            let choice = state.withLockedValue { s -> Choice in
                var d = s.destinations[key] ?? Destination()
                defer { s.destinations[key] = d }
                // A failed stream is never handed out; its units let go of it in their own time.
                failed = d.entries.filter { $0.lease.stream.isFailed }.map(\.lease)
                d.entries.removeAll { $0.lease.stream.isFailed }
                let held = holder.map { h in d.entries.map { $0.holders[h] != nil } }
                switch Self.place(users: d.entries.map(\.users), held: held, opening: d.opening, perDestination: limit(s, key)) {
                case .use(let i):
                    d.entries[i].users += 1
                    if let holder { d.entries[i].holders[holder, default: 0] += 1 }
                    s.reused += 1
                    return .use(d.entries[i].lease)
                case .open:
                    d.opening += 1
                    s.opened += 1
                    return .open
                case .wait:
                    return .wait
                }
            }
            switch choice {
            case .use(let lease):
                return lease
            case .wait:
                await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                    // An open may have ended since the choice: then look again at once.
                    let now = state.withLockedValue { s -> Bool in
                        guard let d = s.destinations[key], d.opening > 0 else { return true }
                        s.destinations[key]!.waiting.append(c)
                        return false
                    }
                    if now { c.resume() }
                }
            case .open:
                return try await openCounted(key, client, users: 1, holder: holder)
            }
        }
    }

    /// Opens connections to `client`'s agent until it has its `limit`, open or opening, with
    /// no unit on them: a job is about to send there (`warm lanes`), and its first unit will find
    /// them ready, or opening, instead of opening its own after its assignment. They are idle
    /// connections like any other: used by the next unit, closed after `idleTimeout` if none
    /// comes. One that fails to open is forgotten; a unit then opens its own. Returns how many it
    /// started to open (none where the destination already has its connections).
    @discardableResult
    public func warm(_ client: DataPlaneClient) -> Int {
        sweep()
        let key = Key(client)
        var failed: [Lease] = []
        let count = state.withLockedValue { s -> Int in
            var d = s.destinations[key] ?? Destination()
            defer { s.destinations[key] = d }
            // As `acquire`: a failed stream is dropped even while a unit still holds it, so that
            // it takes no place among the destination's connections.
            failed = d.entries.filter { $0.lease.stream.isFailed }.map(\.lease)
            d.entries.removeAll { $0.lease.stream.isFailed }
            let n = max(0, limit(s, key) - d.entries.count - d.opening)
            d.opening += n
            s.opened += n
            return n
        }
        failed.forEach { $0.close() }
        for _ in 0..<count {
            Task { _ = try? await self.openCounted(key, client, users: 0) }
        }
        return count
    }

    /// Opens a connection counted in its destination's `opening`, adds it to the pool with
    /// `users` units on it, and wakes the units waiting for an open to end.
    private func openCounted(_ key: Key, _ client: DataPlaneClient, users: Int, holder: ObjectIdentifier? = nil) async throws -> Lease {
        let result: Swift.Result<Lease, Error>
        do { result = .success(try await open(client)) } catch { result = .failure(error) }
        let rtt: UInt64? = if case .success(let lease) = result, longPath != nil { await measure(lease.stream) } else { nil }
        var farther = false
        let waiting = state.withLockedValue { s -> [CheckedContinuation<Void, Never>] in
            if let rtt {
                let before = limit(s, key)
                s.leastRTT[key] = min(s.leastRTT[key] ?? rtt, rtt)
                farther = limit(s, key) > before
            }
            s.destinations[key]!.opening -= 1
            if case .success(let lease) = result {
                s.destinations[key]!.entries.append(Entry(lease: lease, users: users, holders: holder.map { [$0: 1] } ?? [:], since: clock.now))
            }
            defer { s.destinations[key]!.waiting.removeAll() }
            return s.destinations[key]!.waiting
        }
        waiting.forEach { $0.resume() }
        // The destination turned out to be far: its other connections open now, for the units
        // already sending there (`UnitSender` adds streams once its first has its answer).
        if farther { warm(client) }
        return try result.get()
    }

    private func release(_ lease: Lease, _ key: Key, holder: ObjectIdentifier?) {
        let now = clock.now
        let failed = state.withLockedValue { s -> Bool in
            guard let i = s.destinations[key]?.entries.firstIndex(where: { $0.lease === lease }) else { return true }
            s.destinations[key]!.entries[i].users -= 1
            if let holder {
                let left = (s.destinations[key]!.entries[i].holders[holder] ?? 1) - 1
                s.destinations[key]!.entries[i].holders[holder] = left > 0 ? left : nil
            }
            s.destinations[key]!.entries[i].since = now
            guard lease.stream.isFailed else { return false }
            s.destinations[key]!.entries.remove(at: i)
            return true
        }
        if failed { lease.close() }
        sweep()
    }

    /// Closes connections no unit has used for `idleTimeout`, and failed ones no unit is on.
    private func sweep() {
        let now = clock.now, limit = idleTimeout
        let stale = state.withLockedValue { s -> [Lease] in
            var stale: [Lease] = []
            for key in Array(s.destinations.keys) {
                var d = s.destinations[key]!
                let (keep, drop) = d.entries.reduce(into: ([Entry](), [Entry]())) { acc, e in
                    if e.users == 0 && (e.lease.stream.isFailed || now - e.since > limit) { acc.1.append(e) } else { acc.0.append(e) }
                }
                stale += drop.map(\.lease)
                d.entries = keep
                s.destinations[key] = d.entries.isEmpty && d.opening == 0 && d.waiting.isEmpty ? nil : d
            }
            return stale
        }
        stale.forEach { $0.close() }
    }

    /// Opens a connection held by its own task, which ends when the lease is closed. A
    /// destination that answers `busy` (its listener holds its most connections, or its most in
    /// their handshake: a flood, a slow-loris) is asked again, for up to `busyPatience`: before,
    /// the refusal failed the unit, and three of them failed the job within 2 s.
    private func open(_ client: DataPlaneClient) async throws -> Lease {
        let closed = closed
        let handoff = OneShot<Lease>()
        Task {
            var pause = Duration.milliseconds(100), waited = Duration.zero
            while true {
                do {
                    try await client.withStream { stream in
                        let (closing, closer) = AsyncStream<Void>.makeStream()
                        handoff.set(.success(Lease(stream: stream, closer: closer, closed: closed)))
                        for await _ in closing {}
                    }
                    handoff.set(.failure(PeerClosed()))
                } catch let refused as HandshakeFailure where refused.error.code == .busy && waited < Self.busyPatience && !Task.isCancelled {
                    try? await Task.sleep(for: pause)
                    waited += pause
                    pause = min(pause * 2, .seconds(2))
                    continue
                } catch {
                    handoff.set(.failure(error))
                }
                return
            }
        }
        return try await handoff.value
    }

    /// How long a destination that answers `busy` is asked again before the unit fails.
    static let busyPatience = Duration.seconds(30)
}
