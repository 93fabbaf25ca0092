/// When to try again what failed: after `first` seconds, then twice as long after each further
/// failure, at most `longest`; at once for what never failed. Times are monotonic seconds.
struct RetryTimes<Key: Hashable> {
    let first: Double
    let longest: Double
    private var failures: [Key: (count: Int, due: Double)] = [:]

    init(first: Double, longest: Double) {
        self.first = first
        self.longest = longest
    }

    var waiting: Int { failures.count }

    func isDue(_ key: Key, now: Double) -> Bool {
        failures[key].map { now >= $0.due } ?? true
    }

    /// Records a failure; returns how many in a row, and the wait before the next try.
    mutating func failed(_ key: Key, now: Double) -> (count: Int, wait: Double) {
        let count = (failures[key]?.count ?? 0) + 1
        let wait = min(longest, first * Double(1 << min(count - 1, 30)))
        failures[key] = (count, now + wait)
        return (count, wait)
    }

    mutating func succeeded(_ key: Key) {
        failures[key] = nil
    }

    /// Forgets every key not in `keys` (gone, or done by other means).
    mutating func keep(only keys: Set<Key>) {
        if !failures.isEmpty { failures = failures.filter { keys.contains($0.key) } }
    }
}
