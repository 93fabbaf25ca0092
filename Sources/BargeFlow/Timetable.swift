/// A bandwidth cap that follows the week, as people write it for busy hours:
///
/// ```
/// 100MiB/s                                 always 100 MiB/s
/// Mon-Fri 08:00-18:00 100MiB/s             weekdays in office hours; no cap otherwise
/// Mon-Fri 08:00-18:00 100MiB/s, 18:00 off  the same, written out
/// 08:00 50MB/s, 12:00 1Gbit/s, 23:00 off   every day
/// Sat,Sun 500MiB/s                         weekends all day
/// ```
///
/// Entries are separated by commas. Each is: optional days (`Mon`…`Sun`, ranges like `Mon-Fri`,
/// lists like `Sat,Sun` joined without spaces, or `*`), an optional time (`HH:MM`) or range
/// (`HH:MM-HH:MM`), and a rate or `off`. An entry with a time starts its rate then, and holds until
/// the next start on the same days; a range also ends itself (back to no cap). An entry with no
/// time is a whole-day cap; one with neither days nor time is the cap whenever nothing else says.
/// Times are the agent's local time. Pure: the caller gives the day and minute.
public struct Timetable: Hashable, Sendable {
    /// A rate (or nil: no cap) from a minute of the week on.
    public struct Change: Hashable, Sendable {
        public var minuteOfWeek: Int
        /// The cap from then on; nil with `revert` false is `off` (no cap).
        public var rate: Double?
        /// The end of a range: back to the timetable's fallback.
        public var revert = false
    }

    public static let days = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
    static let week = 7 * 24 * 60

    /// Sorted by minute of the week; a later entry wins at the same minute.
    public private(set) var changes: [Change]
    /// The cap outside every entry's time: that of an entry with neither days nor time, else none.
    public private(set) var fallback: Double?

    public init(parsing text: String) throws(QuantityError) {
        var changes: [Change] = []
        var fallback: Double? = nil
        guard !text.trimmingSpaces.isEmpty else { throw QuantityError("timetable is empty") }
        let entries = text.split(separator: ",", omittingEmptySubsequences: false)
        // Commas also join day lists (`Sat,Sun 5MiB/s`): glue an entry that is only days to the next.
        var merged: [String] = []
        var pending = ""
        for raw in entries {
            let e = String(raw).trimmingSpaces
            if !e.isEmpty, !e.contains(" "), (try? Self.parseDays(e)) != nil {
                pending += pending.isEmpty ? e : "," + e
                continue
            }
            merged.append(pending.isEmpty ? e : pending + "," + e)
            pending = ""
        }
        guard pending.isEmpty else { throw QuantityError("timetable '\(text)': '\(pending)' has days but no rate") }
        for entry in merged {
            let words = entry.split(separator: " ").map(String.init)
            guard !words.isEmpty, words.count <= 3 else {
                throw QuantityError("timetable entry '\(entry)' must be [days] [HH:MM or HH:MM-HH:MM] rate, like 'Mon-Fri 08:00-18:00 100MiB/s'")
            }
            let rate = try Self.parseRate(words.last!)
            var days: [Int]? = nil
            var times: (start: Int, end: Int?)? = nil
            for word in words.dropLast() {
                if let t = try Self.parseTimes(word) {
                    guard times == nil else { throw QuantityError("timetable entry '\(entry)' has two times") }
                    times = t
                } else {
                    guard days == nil else { throw QuantityError("timetable entry '\(entry)' has two day lists") }
                    days = try Self.parseDays(word)
                }
            }
            guard let times else {
                if let days {
                    for d in days {
                        changes.append(Change(minuteOfWeek: d * 1440, rate: rate))
                        changes.append(Change(minuteOfWeek: ((d + 1) % 7) * 1440, rate: nil, revert: true))
                    }
                } else {
                    fallback = rate
                }
                continue
            }
            for d in days ?? Array(0..<7) {
                changes.append(Change(minuteOfWeek: d * 1440 + times.start, rate: rate))
                if let end = times.end {
                    let endDay = end > times.start ? d : (d + 1) % 7  // 22:00-06:00 ends the next morning
                    changes.append(Change(minuteOfWeek: endDay * 1440 + end, rate: nil, revert: true))
                }
            }
        }
        // Stable: at the same minute, the entry written later wins, so `..., 18:00 off` overrides
        // the end of an earlier range, and a start overrides an end that it meets.
        self.changes = changes.enumerated().sorted { ($0.element.minuteOfWeek, $0.offset) < ($1.element.minuteOfWeek, $1.offset) }.map(\.element)
        self.fallback = fallback
    }

    /// The highest cap at any time of the week; nil when some time has none (so whatever the
    /// clock, the cap is at most this).
    public var highest: Double? {
        var rates: [Double?] = changes.map { $0.revert ? fallback : $0.rate }
        if changes.isEmpty || changes.contains(where: \.revert) { rates.append(fallback) }
        guard !rates.contains(where: { $0 == nil }) else { return nil }
        return rates.compactMap { $0 }.max()
    }

    /// The cap (bytes per second, nil for none) on `day` (0 is Monday) at `minute` after midnight.
    public func rate(day: Int, minute: Int) -> Double? {
        guard !changes.isEmpty else { return fallback }
        let now = ((day % 7) * 1440 + minute) % Self.week
        // The last change at or before now, this week; else the last of the week (it wrapped).
        let current = changes.last { $0.minuteOfWeek <= now } ?? changes.last!
        return current.revert ? fallback : current.rate
    }

    static func parseRate(_ word: String) throws(QuantityError) -> Double? {
        if word.lowercased() == "off" || word.lowercased() == "unlimited" { return nil }
        return try ByteQuantity.parseRate(word)
    }

    /// `08:00` or `08:00-18:00`; nil when the word is not a time at all.
    static func parseTimes(_ word: String) throws(QuantityError) -> (start: Int, end: Int?)? {
        guard word.first?.isNumber == true else { return nil }
        let parts = word.split(separator: "-", omittingEmptySubsequences: false).map(String.init)
        guard parts.count <= 2 else { throw QuantityError("'\(word)' is not a time or a time range like 08:00-18:00") }
        let start = try minute(parts[0])
        guard parts.count == 2 else { return (start, nil) }
        let end = try minute(parts[1])
        guard end != start else { throw QuantityError("time range '\(word)' is empty") }
        return (start, end)
    }

    static func minute(_ text: String) throws(QuantityError) -> Int {
        let hm = text.split(separator: ":", omittingEmptySubsequences: false)
        guard hm.count == 2, hm[0].count == 2, hm[1].count == 2, let h = Int(hm[0]), let m = Int(hm[1]), (0..<24).contains(h), (0..<60).contains(m) else {
            throw QuantityError("'\(text)' is not a time; write it as HH:MM, 00:00 to 23:59")
        }
        return h * 60 + m
    }

    /// `Mon`, `Mon-Fri`, `Sat,Sun`, `Fri-Mon` (wraps), `*`.
    static func parseDays(_ word: String) throws(QuantityError) -> [Int] {
        if word == "*" { return Array(0..<7) }
        var result: [Int] = []
        for part in word.split(separator: ",") {
            let ends = part.split(separator: "-").map { name -> String in
                let n = name.lowercased()
                return n.prefix(1).uppercased() + n.dropFirst().prefix(2)
            }
            guard (1...2).contains(ends.count), let a = days.firstIndex(of: ends[0]), let b = days.firstIndex(of: ends.last!) else {
                throw QuantityError("'\(word)' is not a day or a day range; use Mon Tue Wed Thu Fri Sat Sun, like Mon-Fri or Sat,Sun")
            }
            var d = a
            while true {
                if !result.contains(d) { result.append(d) }
                if d == b { break }
                d = (d + 1) % 7
            }
        }
        return result
    }
}
