/// Delays between retries: doubling from `initial` up to `maximum`, with "full jitter" (a random
/// delay between half and all of the step) so that agents cut off together do not return together.
/// Pure: the random fraction is passed in.
public struct ExponentialBackoff: Sendable {
    public let initial: Duration
    public let maximum: Duration
    public private(set) var attempt = 0

    public init(initial: Duration = .milliseconds(250), maximum: Duration = .seconds(30)) {
        precondition(initial > .zero && maximum >= initial)
        self.initial = initial
        self.maximum = maximum
    }

    /// The next delay; `fraction` is a uniform random number in 0...1.
    public mutating func next(fraction: Double) -> Duration {
        defer { attempt += 1 }
        return delay(attempt: attempt, fraction: fraction)
    }

    /// The delay before retry number `attempt` (from 0), as `next` gives it.
    public func delay(attempt: Int, fraction: Double) -> Duration {
        var step = initial
        for _ in 0..<min(max(0, attempt), 62) where step < maximum { step *= 2 }
        step = min(step, maximum)
        return step * (0.5 + 0.5 * min(1, max(0, fraction)))
    }

    /// After a success: the next failure starts again from `initial`.
    public mutating func reset() { attempt = 0 }
}
