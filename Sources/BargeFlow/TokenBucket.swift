/// A token bucket over injected monotonic time, charged in bytes: tokens accrue at `rate` bytes
/// per second up to `burst`. `take` charges the bytes at once (the balance may go negative, so a
/// large chunk is never refused) and says how long to wait before sending them, which keeps the
/// long-run rate at `rate` however the sends are sized. Pure: the caller sleeps.
public struct TokenBucket: Sendable {
    /// Bytes per second; nil for no limit.
    public private(set) var rate: Double?
    /// The most that can be sent back to back after an idle spell.
    public let burst: Double
    private var balance: Double
    private var last: UInt64?

    public init(rate: Double?, burst: Double = 256 * 1024) {
        self.rate = rate
        self.burst = burst
        balance = burst
    }

    /// Charges `bytes` at `now` (monotonic nanoseconds); returns the nanoseconds to wait before
    /// sending them (0 when the balance covers them).
    public mutating func take(_ bytes: Int, now: UInt64) -> UInt64 {
        guard let rate else { return 0 }
        refill(now, rate)
        balance -= Double(bytes)
        // Held under UInt64's range: a cap shared by many senders can be a tiny fraction of a
        // byte per second, and the wait for a debt at it once trapped every sender.
        return balance >= 0 ? 0 : UInt64(min((-balance / rate * 1e9).rounded(.up), 9e18))
    }

    /// A new rate from `now` on (a timetable's change, or `barge set`); tokens earned at the old
    /// rate are kept.
    public mutating func setRate(_ newRate: Double?, now: UInt64) {
        if let rate { refill(now, rate) }
        if newRate == nil { balance = burst }
        rate = newRate
        last = now
    }

    /// Gives back `bytes` taken before (a step that sent less than it was charged for), whole:
    /// clamped to the burst, what a step charged ahead and did not send was lost, and a cap on
    /// compressible data went under its rate.
    public mutating func give(_ bytes: Int, now: UInt64) {
        guard let rate else { return }
        refill(now, rate)
        balance += Double(bytes)
    }

    /// Forgets what is owed (a sender that waited as long as it will and sent anyway).
    public mutating func clearDebt(now: UInt64) {
        if let rate { refill(now, rate) }
        balance = max(balance, 0)
    }

    /// Time earns tokens up to the burst; a balance above it (bytes given back) is kept until spent.
    private mutating func refill(_ now: UInt64, _ rate: Double) {
        if let last, now > last, balance < burst { balance = min(burst, balance + Double(now - last) / 1e9 * rate) }
        last = max(last ?? now, now)
    }
}
