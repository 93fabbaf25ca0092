/// How many requests without a valid token (401) the audit trail records one by one: at most
/// `rate` a second after a burst of `burst`. Anyone who can reach the port can send them, and each
/// added a record (300 with a 60 KB path added 18 MB in 3 s). Those past the budget are counted,
/// and the next one recorded says how many went unrecorded before it.
struct RefusalThrottle {
    let rate: Double
    let burst: Double
    private var tokens: Double
    private var last: Double?
    private var unrecorded = 0

    init(rate: Double = 10, burst: Double = 100) {
        self.rate = rate
        self.burst = burst
        tokens = burst
    }

    /// A refused request at `now` (seconds): whether to record it, and if so how many refused
    /// requests before it were not.
    mutating func admit(now: Double) -> (record: Bool, unrecordedBefore: Int) {
        if let last, now > last { tokens = min(burst, tokens + (now - last) * rate) }
        last = max(last ?? now, now)
        guard tokens >= 1 else {
            unrecorded += 1
            return (false, 0)
        }
        tokens -= 1
        defer { unrecorded = 0 }
        return (true, unrecorded)
    }
}
