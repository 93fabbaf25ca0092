import NIOConcurrencyHelpers

/// The most chunk data an agent holds read and not yet answered, over all its lanes (`--send-memory`).
/// A sender takes a chunk's room here, then in its lane's window, before it reads the chunk, and
/// gives it back when the chunk is answered; so what an agent holds in memory to send is bounded
/// by this budget whatever its lanes' windows, units and streams. Waiters are served in order;
/// a chunk larger than the whole budget still goes when nothing else is held.
///
/// In order of arrival, not oldest unit first as a stream's write slots and a lane's window: the
/// budget is the agent's, over all its lanes, and oldest first would let an old unit's workers,
/// waiting here for a slow lane's window, take all of it from the units of a free lane. Each
/// lane's write slots (taken before the budget, oldest unit first) already decide which units'
/// workers wait here.
public final class SendBudget: Sendable {
    private struct State {
        var held = 0
        var waiting: [(bytes: Int, continuation: CheckedContinuation<Void, Never>)] = []
        var peak = 0
    }
    public let limit: Int
    private let state = NIOLockedValueBox(State())

    public static let defaultLimit = 64 << 20
    public static let leastLimit = 16 << 20

    public init(limit: Int = SendBudget.defaultLimit) {
        self.limit = max(1, limit)
    }

    /// Waits until `bytes` more fit (after those already waiting), and holds them.
    public func take(_ bytes: Int) async {
        let now = state.withLockedValue { s -> Bool in
            guard s.waiting.isEmpty, fits(s, bytes) else { return false }
            hold(&s, bytes)
            return true
        }
        if now { return }
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let resume = state.withLockedValue { s -> [CheckedContinuation<Void, Never>] in
                s.waiting.append((bytes, c))
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

    private func admit(_ s: inout State) -> [CheckedContinuation<Void, Never>] {
        var admitted: [CheckedContinuation<Void, Never>] = []
        while let first = s.waiting.first, fits(s, first.bytes) {
            s.waiting.removeFirst()
            hold(&s, first.bytes)
            admitted.append(first.continuation)
        }
        return admitted
    }
}
