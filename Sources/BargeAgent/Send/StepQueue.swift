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
        var abandoned = false
        change { s in
            if s.abandoned { abandoned = true } else { body(&s.plan) }
        }
        if abandoned { throw Abandoned() }
    }

    /// The planner failed: streams waiting for a step throw `failure`.
    func fail(_ failure: UnitFailure) {
        change { $0.failure = failure }
    }

    /// The unit ended: the planner stops, and streams still waiting get no step.
    func abandon() {
        change { $0.abandoned = true }
    }

    /// Changes the state and wakes every waiting stream to look again.
    private func change(_ body: (inout State) -> Void) {
        let waiting = state.withLockedValue { s -> [CheckedContinuation<Void, Never>] in
            body(&s)
            s.version += 1
            defer { s.waiting = [] }
            return s.waiting
        }
        waiting.forEach { $0.resume() }
    }

    /// The next step; nil when there is none left (or the unit was cancelled or abandoned).
    func next() async throws(UnitFailure) -> UnitPlan.Step? {
        // nil: wait for a change; .some(nil): no step is left.
        try await wait { s -> UnitPlan.Step?? in
            switch s.abandoned || Task.isCancelled ? .end : s.plan.next() {
            case .step(let step): return .some(step)
            case .end: return .some(nil)
            case .wait: return nil
            }
        }
    }

    /// Waits until a step is ready to hand out, or none is left; takes nothing.
    func ready() async throws(UnitFailure) {
        try await wait { s -> Void? in
            if s.abandoned || Task.isCancelled { return () }
            if case .wait = s.plan.peek { return nil }
            return ()
        }
    }

    /// The next step if one is ready now: `.wait` when another stream took the last one first.
    func poll() throws(UnitFailure) -> UnitPlan.Next {
        let answer = state.withLockedValue { s -> Result<UnitPlan.Next, UnitFailure> in
            if let failure = s.failure { return .failure(failure) }
            return .success(s.abandoned || Task.isCancelled ? .end : s.plan.next())
        }
        return try answer.get()
    }

    /// Waits until `count` steps are known or the plan is complete; returns how many are known
    /// (at most `count`).
    func known(atLeast count: Int) async throws(UnitFailure) -> Int {
        try await wait { s in
            let n = s.plan.steps.count
            return n >= count || s.plan.complete || s.abandoned || Task.isCancelled ? min(n, count) : nil
        }
    }

    /// Looks at the state until `look` has an answer, waiting for a change in between; throws the
    /// planner's failure.
    private func wait<T>(for look: (inout State) -> T?) async throws(UnitFailure) -> T {
        while true {
            let (answer, version) = state.withLockedValue { s -> (Result<T?, UnitFailure>, Int) in
                if let failure = s.failure { return (.failure(failure), s.version) }
                return (.success(look(&s)), s.version)
            }
            switch answer {
            case .failure(let failure): throw failure
            case .success(let value?): return value
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
            change { _ in }
        }
    }

    /// Records an acked chunk of `file`; true when it was the file's last.
    func acked(file: Int) -> Bool {
        state.withLockedValue { $0.plan.acked(file: file) }
    }
}
