import Foundation
import NIOConcurrencyHelpers

/// Wakes the requests waiting for a job to end (`GET /v1/jobs/{id}?wait=S`, a long poll), so that
/// `submit --wait` and `status --watch` learn of the end at once instead of at their next poll.
public final class JobEndSignals: Sendable {
    private struct Waiter {
        let token: UUID
        let continuation: CheckedContinuation<Void, Never>
    }

    private struct State {
        var waiters: [String: [Waiter]] = [:]
        /// Jobs that ended lately, so that a wait that starts just after the end (the caller read
        /// the state a moment before) returns at once.
        var recent: Set<String> = []
        var order: [String] = []
    }

    private let state = NIOLockedValueBox(State())
    private static let remembered = 1024

    public init() {}

    /// Requests waiting now (for tests).
    public var waiting: Int { state.withLockedValue { $0.waiters.values.reduce(0) { $0 + $1.count } } }

    /// The job ended (succeeded, failed or was cancelled): every wait on it returns.
    public func ended(_ job: String) {
        let woken = state.withLockedValue { s -> [Waiter] in
            if s.recent.insert(job).inserted {
                s.order.append(job)
                if s.order.count > Self.remembered { s.recent.remove(s.order.removeFirst()) }
            }
            return s.waiters.removeValue(forKey: job) ?? []
        }
        woken.forEach { $0.continuation.resume() }
    }

    /// The last `count` jobs that ended (and have not run again since), oldest first.
    public func latest(_ count: Int) -> [String] {
        state.withLockedValue { Array($0.order.suffix(count)) }
    }

    /// The job runs again (`resume`): a wait on it lasts until its next end.
    public func resumed(_ job: String) {
        state.withLockedValue { s in
            guard s.recent.remove(job) != nil else { return }
            s.order.removeAll { $0 == job }
        }
    }

    /// Returns when the job ends or `limit` has passed, whichever is first. The caller checks the
    /// job's state before (an ended job never signals again) and after.
    public func wait(for job: String, upTo limit: Duration) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { try? await Task.sleep(for: limit) }
            group.addTask { await self.signal(job) }
            await group.next()
            group.cancelAll()
        }
    }

    private func signal(_ job: String) async {
        let token = UUID()
        await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                let now = state.withLockedValue { s -> Bool in
                    if Task.isCancelled || s.recent.contains(job) { return true }
                    s.waiters[job, default: []].append(Waiter(token: token, continuation: c))
                    return false
                }
                if now { c.resume() }
            }
        } onCancel: {
            let mine = state.withLockedValue { s -> Waiter? in
                guard let i = s.waiters[job]?.firstIndex(where: { $0.token == token }) else { return nil }
                let waiter = s.waiters[job]!.remove(at: i)
                if s.waiters[job]!.isEmpty { s.waiters[job] = nil }
                return waiter
            }
            mine?.continuation.resume()
        }
    }
}
