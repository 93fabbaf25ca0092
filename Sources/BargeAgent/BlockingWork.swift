import Dispatch

/// Runs blocking or long CPU-bound work on a Dispatch thread rather than on Swift's cooperative
/// pool, whose few threads (one per core) also carry the agent's streams and reports: an
/// `fsync` there stalls every stream that waits for a thread meanwhile.
enum BlockingWork {
    static func run<T: Sendable>(on queue: DispatchQueue = .global(qos: .userInitiated),
                                 _ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            queue.async { continuation.resume(with: Result { try body() }) }
        }
    }

    /// Where source units find their content-defined cut points: one scan at a time, in the order
    /// the units started.
    static let cutPoints = DispatchQueue(label: "barge.cut-points", qos: .userInitiated)
}
