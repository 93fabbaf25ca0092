import BargeFlow
import NIOConcurrencyHelpers

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An agent's `--bwlimit`: one token bucket for all the wire bytes it sends, every unit and
/// stream together, whose rate follows a `Timetable` (a plain rate is a timetable with one entry).
/// The timetable is looked at again every second, in the agent's local time.
public final class RateLimiter: Sendable {
    private struct State {
        var bucket: TokenBucket
        var checked: UInt64?
    }
    public let timetable: Timetable
    /// The part of the timetable's rate this limiter allows (a job's cap shared among the agents
    /// sending its units).
    public let share: Double
    private let state: NIOLockedValueBox<State>
    private let clock: @Sendable () -> UInt64
    private let localTime: @Sendable () -> (day: Int, minute: Int)

    /// `spec`: `40MiB/s`, `off`, or a timetable such as `Mon-Fri 08:00-18:00 100MiB/s, 18:00 off`.
    public init(_ spec: String, share: Double = 1, clock: @escaping @Sendable () -> UInt64 = RateLimiter.monotonicNow,
                localTime: @escaping @Sendable () -> (day: Int, minute: Int) = RateLimiter.localWeekMinute) throws(QuantityError) {
        timetable = try Timetable(parsing: spec)
        self.share = share
        self.clock = clock
        self.localTime = localTime
        state = NIOLockedValueBox(State(bucket: TokenBucket(rate: nil)))
    }

    /// The cap in force now (bytes per second), nil for none.
    public var currentRate: Double? { state.withLockedValue { $0.bucket.rate } }

    /// Waits until `bytes` more may go on the wire.
    public func charge(_ bytes: Int) async {
        await sleep(take(bytes))
    }

    /// Takes `bytes` without waiting: the debt is waited out by the next `charge`. For bytes
    /// sent while holding what others share (a connection's write slot), whose wait would hold
    /// them up too.
    /// Returns how long the charge would have waited (nanoseconds).
    @discardableResult
    public func chargeLater(_ bytes: Int) -> UInt64 {
        take(bytes)
    }

    /// Gives back `bytes` charged before and not sent.
    public func refund(_ bytes: Int) {
        let now = clock()
        state.withLockedValue { $0.bucket.give(bytes, now: now) }
    }

    private func take(_ bytes: Int) -> UInt64 {
        let now = clock()
        return state.withLockedValue { s -> UInt64 in
            if s.checked.map({ now >= $0 + 1_000_000_000 }) ?? true {
                let (day, minute) = localTime()
                let rate = timetable.rate(day: day, minute: minute).map { $0 * share }
                if rate != s.bucket.rate { s.bucket.setRate(rate, now: now) }
                s.checked = now
            }
            return s.bucket.take(bytes, now: now)
        }
    }

    private func sleep(_ wait: UInt64) async {
        if wait > 0 { try? await Task.sleep(for: .nanoseconds(Int64(min(wait, UInt64(Int64.max))))) }
    }

    public static let monotonicNow: @Sendable () -> UInt64 = {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    /// Monday is day 0.
    public static let localWeekMinute: @Sendable () -> (day: Int, minute: Int) = {
        var t = time(nil)
        var parts = tm()
        localtime_r(&t, &parts)
        return ((Int(parts.tm_wday) + 6) % 7, Int(parts.tm_hour) * 60 + Int(parts.tm_min))
    }
}
