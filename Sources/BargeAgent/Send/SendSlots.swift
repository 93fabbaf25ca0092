import DequeModule
import NIOConcurrencyHelpers

/// The units a source agent sends at once (`--max-units`). The agent registers room for as many
/// again, so the coordinator assigns the next units before the running ones end: each waits here,
/// and takes a slot as soon as a running unit has handed its last step to a stream. Its have query
/// and first chunks then overlap the tail of the unit before it (the last chunks in flight, the
/// `files done` and its `fsync`, the report to the coordinator) instead of following that tail
/// across an idle link: at 50 ms RTT, four units that ended together left the link idle for
/// 0.7–1.2 s between them.
public final class SendSlots: Sendable {
    private struct State {
        var free: Int
        var waiting: Deque<(id: UInt64, continuation: CheckedContinuation<Void, Error>)> = []
        var nextID: UInt64 = 0
    }
    private let state: NIOLockedValueBox<State>
    public let count: Int

    public init(_ count: Int) {
        self.count = max(1, count)
        state = NIOLockedValueBox(State(free: max(1, count)))
    }

    /// Slots free now (for tests and logs).
    public var free: Int { state.withLockedValue { $0.free } }
    /// Units waiting for a slot now (for tests).
    public var waitingForTest: Int { state.withLockedValue { $0.waiting.count } }

    /// Waits for a slot, first come first served. Throws `CancellationError` when the task is
    /// cancelled while it waits (it then holds none).
    public func acquire() async throws -> Slot {
        let id = state.withLockedValue { s -> UInt64 in
            s.nextID += 1
            return s.nextID
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, Error>) in
                let now = state.withLockedValue { s -> Bool in
                    if Task.isCancelled { return false }
                    if s.free > 0 && s.waiting.isEmpty {
                        s.free -= 1
                        return true
                    }
                    s.waiting.append((id, c))
                    return false
                }
                if now { c.resume() } else if Task.isCancelled && !isWaiting(id) { c.resume(throwing: CancellationError()) }
            }
        } onCancel: {
            let cancelled = state.withLockedValue { s -> CheckedContinuation<Void, Error>? in
                guard let i = s.waiting.firstIndex(where: { $0.id == id }) else { return nil }
                return s.waiting.remove(at: i).continuation
            }
            cancelled?.resume(throwing: CancellationError())
        }
        return Slot(self)
    }

    private func isWaiting(_ id: UInt64) -> Bool {
        state.withLockedValue { s in s.waiting.contains { $0.id == id } }
    }

    fileprivate func give() {
        let next = state.withLockedValue { s -> CheckedContinuation<Void, Error>? in
            if let first = s.waiting.popFirst() { return first.continuation }
            s.free += 1
            return nil
        }
        next?.resume()
    }

    /// One unit's hold on a slot: released once, by the first `release`.
    public final class Slot: Sendable {
        private let slots: SendSlots
        private let held = NIOLockedValueBox(true)

        fileprivate init(_ slots: SendSlots) { self.slots = slots }

        public func release() {
            let was = held.withLockedValue { h -> Bool in
                defer { h = false }
                return h
            }
            if was { slots.give() }
        }

        deinit { release() }
    }
}
