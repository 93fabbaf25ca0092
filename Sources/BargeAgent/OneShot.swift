import NIOConcurrencyHelpers

/// A value set once, by one task, and awaited by others; later sets are ignored.
final class OneShot<Value: Sendable>: Sendable {
    private struct State {
        var result: Result<Value, Error>?
        var waiting: [CheckedContinuation<Value, Error>] = []
    }
    private let state = NIOLockedValueBox(State())

    func set(_ result: Result<Value, Error>) {
        let waiting = state.withLockedValue { s -> [CheckedContinuation<Value, Error>] in
            guard s.result == nil else { return [] }
            s.result = result
            defer { s.waiting.removeAll() }
            return s.waiting
        }
        waiting.forEach { $0.resume(with: result) }
    }

    var value: Value {
        get async throws {
            try await withCheckedThrowingContinuation { c in
                let ready = state.withLockedValue { s -> Result<Value, Error>? in
                    if s.result == nil { s.waiting.append(c) }
                    return s.result
                }
                if let ready { c.resume(with: ready) }
            }
        }
    }
}
