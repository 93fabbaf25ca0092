/// The bytes of a file written so far, as disjoint ranges merged as they come: what a partial
/// copy holds, whatever the chunks it came in. Pure.
///
/// Why ranges and not a sum of chunk lengths: chunks of one partial copy need not share
/// boundaries. An earlier run's chunks, taken back after a restart, were cut from the file as it
/// was then; when the source has changed since, this run's content-defined cuts fall elsewhere,
/// and the sum counted the bytes under both twice (a 60 MB file showed 64.7 MB arrived, and its
/// finish was refused at every attempt, for good).
struct ByteRanges: Equatable {
    /// Disjoint, sorted, and never touching (touching ranges are one).
    private(set) var spans: [(start: UInt64, end: UInt64)] = []
    /// Bytes covered.
    private(set) var total: UInt64 = 0

    static func == (a: ByteRanges, b: ByteRanges) -> Bool {
        a.total == b.total && a.spans.elementsEqual(b.spans) { $0.start == $1.start && $0.end == $1.end }
    }

    /// Adds [offset, offset + length), merging what it overlaps or touches. O(log n) to find its
    /// place; the spans it swallows are removed (chunks arriving in order keep one span).
    mutating func insert(_ offset: UInt64, _ length: UInt64) {
        guard length > 0 else { return }
        let start = offset, end = offset + length
        // The first span that ends at or after `start` (it touches or overlaps, or lies beyond).
        var lo = 0, hi = spans.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if spans[mid].end < start { lo = mid + 1 } else { hi = mid }
        }
        let first = lo
        // The first span that starts after `end`.
        hi = spans.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if spans[mid].start <= end { lo = mid + 1 } else { hi = mid }
        }
        let past = lo
        var merged = (start: start, end: end)
        if first < past {
            merged.start = min(start, spans[first].start)
            merged.end = max(end, spans[past - 1].end)
            for s in spans[first..<past] { total -= s.end - s.start }
        }
        spans.replaceSubrange(first..<past, with: [merged])
        total += merged.end - merged.start
    }

    /// Whether every byte of [offset, offset + length) is covered.
    func contains(_ offset: UInt64, _ length: UInt64) -> Bool {
        guard length > 0 else { return true }
        // The last span that starts at or before `offset`.
        var lo = 0, hi = spans.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if spans[mid].start <= offset { lo = mid + 1 } else { hi = mid }
        }
        return lo > 0 && spans[lo - 1].end >= offset + length
    }

    /// Whether any byte of [offset, offset + length) is covered.
    func overlaps(_ offset: UInt64, _ length: UInt64) -> Bool {
        guard length > 0 else { return false }
        // The last span that starts before the range's end.
        var lo = 0, hi = spans.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if spans[mid].start < offset + length { lo = mid + 1 } else { hi = mid }
        }
        return lo > 0 && spans[lo - 1].end > offset
    }
}
