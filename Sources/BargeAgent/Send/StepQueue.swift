import NIOConcurrencyHelpers

/// A unit's plan, shared by its streams while the planner fills it in: a stream that finds no
/// step ready waits for the next one (or for the plan's end, its failure, or its own cancellation).
final class StepQueue: Sendable {
    private struct State {
        var plan: UnitPlan
        var waiting: [CheckedContinuation<Void, Never>] = []
        var failure: UnitFailure?
        /// The unit ended before its plan did: the planner stops at its next addition.
        var abandoned = false
        /// Counts changes, so that a stream parks only if nothing changed since it looked.
        var version = 0
    }
    private let state: NIOLockedValueBox<State>

    /// The unit stopped while its plan was still being made.
    struct Abandoned: Error {}

    init(_ plan: UnitPlan) {
        state = NIOLockedValueBox(State(plan: plan))
    }

    /// The planner adds steps (or ends the plan); waiting streams look again.
    func update(_ body: (inout UnitPlan) -> Void) throws(Abandoned) {
        let waiting = state.withLockedValue { s -> [CheckedContinuation<Void, Never>]? in
            guard !s.abandoned else { return nil }
            body(&s.plan)
            s.version += 1
            defer { s.waiting = [] }
            return s.waiting
        }
        guard let waiting else { throw Abandoned() }
        waiting.forEach { $0.resume() }
    }

    /// The planner failed: streams waiting for a step throw `failure`.
    func fail(_ failure: UnitFailure) {
        wake { $0.failure = failure }
    }

    /// The unit ended: the planner stops, and streams still waiting get no step.
    func abandon() {
        wake { $0.abandoned = true }
    }

    private func wake(_ change: (inout State) -> Void) {
        let waiting = state.withLockedValue { s -> [CheckedContinuation<Void, Never>] in
            change(&s)
            s.version += 1
            defer { s.waiting = [] }
            return s.waiting
        }
        waiting.forEach { $0.resume() }
    }

    /// The next step; nil when there is none left (or the unit was cancelled or abandoned).
    func next() async throws(UnitFailure) -> UnitPlan.Step? {
        while true {
            let (now, version) = state.withLockedValue { s -> (Result<UnitPlan.Next, UnitFailure>, Int) in
                if let failure = s.failure { return (.failure(failure), s.version) }
                return (.success(s.abandoned || Task.isCancelled ? .end : s.plan.next()), s.version)
            }
            switch now {
            case .failure(let failure): throw failure
            case .success(.step(let step)): return step
            case .success(.end): return nil
            case .success(.wait): await waitForChange(since: version)
            }
        }
    }

    /// Waits until `count` steps are known or the plan is complete; returns how many are known
    /// (at most `count`).
    func known(atLeast count: Int) async throws(UnitFailure) -> Int {
        while true {
            let (now, version) = state.withLockedValue { s -> (Result<Int?, UnitFailure>, Int) in
                if let failure = s.failure { return (.failure(failure), s.version) }
                let n = s.plan.steps.count
                return (.success(n >= count || s.plan.complete || s.abandoned || Task.isCancelled ? min(n, count) : nil), s.version)
            }
            switch now {
            case .failure(let failure): throw failure
            case .success(let n?): return n
            case .success(nil): await waitForChange(since: version)
            }
        }
    }

    /// Returns once the plan has changed since `version` (at once if it has, or if the caller is
    /// cancelled).
    private func waitForChange(since version: Int) async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                let parked = state.withLockedValue { s -> Bool in
                    guard !Task.isCancelled, s.version == version else { return false }
                    s.waiting.append(c)
                    return true
                }
                if !parked { c.resume() }
            }
        } onCancel: {
            wake { _ in }
        }
    }

    /// Records an acked chunk of `file`; true when it was the file's last.
    func acked(file: Int) -> Bool {
        state.withLockedValue { $0.plan.acked(file: file) }
    }
}
