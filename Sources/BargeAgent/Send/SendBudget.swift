import NIOConcurrencyHelpers

/// The most chunk data an agent holds read and not yet answered, over all its lanes (`--send-memory`).
/// A sender takes a chunk's room here, then in its lane's window, before it reads the chunk, and
/// gives it back when the chunk is answered; so what an agent holds in memory to send is bounded
/// by this budget whatever its lanes' windows, units and streams. A chunk larger than the whole
/// budget still goes when nothing else is held.
///
/// Waiters are served oldest unit first (`order`, as in the lane's window), each unit's in the
/// order they came. Served in arrival order, the units an agent ran at once each held an equal
/// share and so ran out of chunks together: through the delay bed at 100 ms the link then stood
/// idle while they finished, reported, and the next units asked the destination what it held
/// (0.5-0.7 s, three times in a 1 GiB job). Oldest first, the oldest units run ahead and end
/// one by one while the younger ones keep the link busy.
public final class SendBudget: Sendable {
    private struct Waiter {
        var order: UInt64
        var bytes: Int
        var continuation: CheckedContinuation<Void, Never>
    }
    private struct State {
        var held = 0
        var waiting: [Waiter] = []
        var peak = 0
    }
    public let limit: Int
    private let state = NIOLockedValueBox(State())

    public static let defaultLimit = 64 << 20
    public static let leastLimit = 16 << 20

    public init(limit: Int = SendBudget.defaultLimit) {
        self.limit = max(1, limit)
    }

    /// Waits until `bytes` more fit (after those already waiting for units as old or older than
    /// `order`), and holds them.
    public func take(_ bytes: Int, order: UInt64 = 0) async {
        let now = state.withLockedValue { s -> Bool in
            guard s.waiting.allSatisfy({ $0.order > order }), fits(s, bytes) else { return false }
            hold(&s, bytes)
            return true
        }
        if now { return }
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let resume = state.withLockedValue { s -> [CheckedContinuation<Void, Never>] in
                s.waiting.append(Waiter(order: order, bytes: bytes, continuation: c))
                return admit(&s)
            }
            resume.forEach { $0.resume() }
        }
    }

    /// What was held for a chunk becomes `to` bytes (0: given back).
    public func resize(from: Int, to: Int) {
        guard from != to else { return }
        let resume = state.withLockedValue { s -> [CheckedContinuation<Void, Never>] in
            s.held += to - from
            s.peak = max(s.peak, s.held)
            return to < from ? admit(&s) : []
        }
        resume.forEach { $0.resume() }
    }

    public func give(_ bytes: Int) { resize(from: bytes, to: 0) }

    /// Bytes held now, and the most held at once (for tests and the trace).
    public var held: Int { state.withLockedValue { $0.held } }
    public var peak: Int { state.withLockedValue { $0.peak } }
    public var waiters: Int { state.withLockedValue { $0.waiting.count } }

    private func fits(_ s: State, _ bytes: Int) -> Bool { s.held == 0 || s.held + bytes <= limit }

    private func hold(_ s: inout State, _ bytes: Int) {
        s.held += bytes
        s.peak = max(s.peak, s.held)
    }

    /// Takes waiters in, oldest unit first (the first of its waiters to come), while they fit;
    /// the caller resumes them. A walk over the waiters, at most one per worker of the agent.
    private func admit(_ s: inout State) -> [CheckedContinuation<Void, Never>] {
        var admitted: [CheckedContinuation<Void, Never>] = []
        while let i = s.waiting.indices.min(by: { s.waiting[$0].order < s.waiting[$1].order }), fits(s, s.waiting[i].bytes) {
            let w = s.waiting.remove(at: i)
            hold(&s, w.bytes)
            admitted.append(w.continuation)
        }
        return admitted
    }
}
