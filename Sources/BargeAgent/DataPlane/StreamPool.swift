import BargeWire
import NIOConcurrencyHelpers

/// Data-plane connections kept open between units, per destination agent (host and port). A unit
/// takes one (authenticated already, with the TCP window it grew on the last unit) or opens one,
/// and gives it back when it ends well; a stream that failed, or that a unit left in a failure, is
/// closed rather than reused. Connections idle for `idleTimeout` are closed, well before either
/// side's read timeout would close them.
public final class StreamPool: Sendable {
    public let idleTimeout: Duration
    private let clock = ContinuousClock()

    /// One connection, held open by its own task until `close`.
    final class Lease: Sendable {
        let stream: ChunkStream
        private let closer: AsyncStream<Void>.Continuation

        init(stream: ChunkStream, closer: AsyncStream<Void>.Continuation) {
            self.stream = stream
            self.closer = closer
        }

        func close() { closer.finish() }
    }

    private struct Key: Hashable {
        let host: String
        let port: Int
    }

    private struct Idle {
        let lease: Lease
        let since: ContinuousClock.Instant
    }

    private let idle = NIOLockedValueBox<[Key: [Idle]]>([:])
    private let counts = NIOLockedValueBox((opened: 0, reused: 0))

    public init(idleTimeout: Duration = .seconds(30)) {
        self.idleTimeout = idleTimeout
    }

    /// Connections opened and reused so far (for tests and logs).
    public var opened: Int { counts.withLockedValue { $0.opened } }
    public var reused: Int { counts.withLockedValue { $0.reused } }
    /// Connections waiting in the pool now.
    public var idleCount: Int { idle.withLockedValue { $0.values.reduce(0) { $0 + $1.count } } }

    /// Runs `body` on a pooled stream to `client`'s agent. The stream goes back to the pool if
    /// `body` returns and the stream is still sound; it is closed if `body` throws.
    public func withStream<Result: Sendable>(_ client: DataPlaneClient, _ body: (ChunkStream) async throws -> Result) async throws -> Result {
        let key = Key(host: client.host, port: client.port)
        let lease = try await take(key, client)
        let result: Result
        do {
            result = try await body(lease.stream)
        } catch {
            lease.close()
            throw error
        }
        give(lease, key)
        return result
    }

    /// Closes every idle connection (the agent is stopping).
    public func closeAll() {
        let all = idle.withLockedValue { i in
            defer { i.removeAll() }
            return i.values.flatMap { $0 }
        }
        all.forEach { $0.lease.close() }
    }

    private func take(_ key: Key, _ client: DataPlaneClient) async throws -> Lease {
        sweep()
        let found = idle.withLockedValue { i -> Lease? in
            while let entry = i[key]?.popLast() {
                if !entry.lease.stream.isFailed { return entry.lease }
                entry.lease.close()
            }
            return nil
        }
        if let found {
            counts.withLockedValue { $0.reused += 1 }
            return found
        }
        counts.withLockedValue { $0.opened += 1 }
        return try await open(client)
    }

    private func give(_ lease: Lease, _ key: Key) {
        guard !lease.stream.isFailed else {
            lease.close()
            return
        }
        idle.withLockedValue { $0[key, default: []].append(Idle(lease: lease, since: clock.now)) }
        sweep()
    }

    /// Closes connections idle too long, or failed while they waited.
    private func sweep() {
        let now = clock.now, limit = idleTimeout
        let stale = idle.withLockedValue { i -> [Lease] in
            var stale: [Lease] = []
            for key in Array(i.keys) {
                let (keep, drop) = i[key]!.reduce(into: ([Idle](), [Idle]())) { acc, e in
                    if e.lease.stream.isFailed || now - e.since > limit { acc.1.append(e) } else { acc.0.append(e) }
                }
                stale += drop.map(\.lease)
                i[key] = keep.isEmpty ? nil : keep
            }
            return stale
        }
        stale.forEach { $0.close() }
    }

    /// Opens a connection held by its own task, which ends when the lease is closed.
    private func open(_ client: DataPlaneClient) async throws -> Lease {
        let handoff = Handoff()
        return try await withCheckedThrowingContinuation { (c: CheckedContinuation<Lease, Error>) in
            handoff.set(c)
            Task {
                do {
                    try await client.withStream { stream in
                        let (closed, closer) = AsyncStream<Void>.makeStream()
                        handoff.resume(.success(Lease(stream: stream, closer: closer)))
                        for await _ in closed {}
                    }
                    handoff.resume(.failure(CoordinatorConnectionError.closed))
                } catch {
                    handoff.resume(.failure(error))
                }
            }
        }
    }

    /// Hands the new lease (or the error) to the waiting unit once.
    private final class Handoff: Sendable {
        private let state = NIOLockedValueBox<CheckedContinuation<Lease, Error>?>(nil)

        func set(_ c: CheckedContinuation<Lease, Error>) { state.withLockedValue { $0 = c } }

        func resume(_ result: Swift.Result<Lease, Error>) {
            let c = state.withLockedValue { s -> CheckedContinuation<Lease, Error>? in
                defer { s = nil }
                return s
            }
            c?.resume(with: result)
        }
    }
}
