import BargeFlow
import Testing

struct TokenBucketTests {
    /// A sender that sends as fast as the bucket lets it, on a simulated clock: over 10 s it moves
    /// the rate × 10 s within ±5% (the target), whatever its chunk sizes.
    @Test(arguments: [4096, 1 << 20, 3_000_001])
    func tenSecondsAtTheCapWithinFivePercent(chunk: Int) {
        let rate = 40.0 * 1024 * 1024
        var bucket = TokenBucket(rate: rate)
        var now: UInt64 = 1_000_000_000
        let end = now + 10_000_000_000
        var sent = 0
        while true {
            let wait = bucket.take(chunk, now: now)
            now += wait
            if now > end { break }
            sent += chunk
            now += 50_000  // the send itself
        }
        let ratio = Double(sent) / (rate * 10)
        #expect(abs(ratio - 1) <= 0.05, "\(ratio)")
    }

    @Test func idleTimeEarnsAtMostOneBurstAndAChangedRateAppliesAtOnce() {
        var bucket = TokenBucket(rate: 1_000_000, burst: 100_000)
        #expect(bucket.take(100_000, now: 0) == 0)
        #expect(bucket.take(100_000, now: 0) == 100_000_000)  // 0.1 s for the next 100 kB
        // An hour idle earns one burst, not an hour of bytes.
        #expect(bucket.take(100_000, now: 3_600_000_000_000) == 0)
        #expect(bucket.take(1, now: 3_600_000_000_000) > 0)
        bucket.setRate(nil, now: 3_600_000_000_000)
        #expect(bucket.take(1 << 30, now: 3_600_000_000_001) == 0)
        bucket.setRate(2_000_000, now: 3_600_000_000_002)
        #expect(bucket.take(300_000, now: 3_600_000_000_002) == 100_000_000)  // burst 100 kB, then 200 kB at 2 MB/s
    }

    /// Bytes charged ahead and given back are kept whole, above the burst too, until spent:
    /// clamped to the burst, a cap charged a chunk ahead per step went under its rate on
    /// compressible data.
    @Test func bytesGivenBackAreKeptWholeUntilSpent() {
        var bucket = TokenBucket(rate: 1_000_000, burst: 100_000)
        #expect(bucket.take(1_000_000, now: 0) == 900_000_000)  // 0.9 s of debt after the burst
        bucket.give(1_000_000, now: 0)  // nothing was sent after all
        #expect(bucket.take(100_000, now: 0) == 0)
        // An hour later, still one burst: idle time earns no more than it.
        #expect(bucket.take(100_000, now: 3_600_000_000_000) == 0)
        bucket.give(500_000, now: 3_600_000_000_000)
        #expect(bucket.take(500_000, now: 3_600_000_000_001) == 0)
        #expect(bucket.take(100_000, now: 3_600_000_000_002) > 0)
    }

    /// A debt at a tiny rate (a cap shared by a million senders) asks for a wait held under
    /// UInt64's range, however long: the conversion once trapped every sender of the job.
    @Test func aDebtAtATinyRateAsksForALongWaitWithoutTrapping() {
        var bucket = TokenBucket(rate: 1e-6, burst: 1)
        #expect(bucket.take(1, now: 0) == 0)
        let wait = bucket.take(16 << 20, now: 0)
        #expect(wait >= 9_000_000_000_000_000_000)
        #expect(bucket.take(16 << 20, now: 1) >= 9_000_000_000_000_000_000)
    }
}

struct TimetableTests {
    static let mib = 1024.0 * 1024

    func minute(_ hh: Int, _ mm: Int = 0) -> Int { hh * 60 + mm }

    @Test func officeHoursOnWeekdays() throws {
        let t = try Timetable(parsing: "Mon-Fri 08:00-18:00 100MiB/s, 18:00 off")
        #expect(t.rate(day: 0, minute: minute(9)) == 100 * Self.mib)
        #expect(t.rate(day: 4, minute: minute(17, 59)) == 100 * Self.mib)
        #expect(t.rate(day: 4, minute: minute(18)) == nil)
        #expect(t.rate(day: 2, minute: minute(7, 59)) == nil)
        #expect(t.rate(day: 5, minute: minute(9)) == nil, "Saturday")
        #expect(t.rate(day: 6, minute: minute(23, 59)) == nil)
    }

    @Test func changePointsHoldUntilTheNextAndWrapAroundTheWeek() throws {
        let t = try Timetable(parsing: "08:00 50MB/s, 12:00 1Gbit/s, 23:00 off")
        #expect(t.rate(day: 3, minute: minute(8)) == 50e6)
        #expect(t.rate(day: 3, minute: minute(13)) == 125e6)
        #expect(t.rate(day: 3, minute: minute(23, 30)) == nil)
        #expect(t.rate(day: 0, minute: minute(3)) == nil, "Sunday's 23:00 still holds on Monday night")
        let night = try Timetable(parsing: "22:00-06:00 1GB/s, 5MB/s")
        #expect(night.rate(day: 1, minute: minute(23)) == 1e9)
        #expect(night.rate(day: 2, minute: minute(5, 59)) == 1e9, "a range past midnight ends the next morning")
        #expect(night.rate(day: 2, minute: minute(6)) == 5e6, "then back to the fallback")
        #expect(try Timetable(parsing: "100MiB/s").rate(day: 6, minute: 0) == 100 * Self.mib)
        let weekend = try Timetable(parsing: "Sat,Sun 500MiB/s, 10MiB/s")
        #expect(weekend.rate(day: 5, minute: minute(12)) == 500 * Self.mib)
        #expect(weekend.rate(day: 6, minute: minute(0)) == 500 * Self.mib)
        #expect(weekend.rate(day: 0, minute: minute(0)) == 10 * Self.mib)
    }

    @Test(arguments: [
        ("", "timetable is empty"),
        ("Mon-Fri 08:00-18:00", "is not a rate"),
        ("Funday 100MiB/s", "is not a day"),
        ("25:00 100MiB/s", "is not a time"),
        ("08:00-08:00 1MB/s", "is empty"),
        ("Mon Tue 1MB/s", "two day lists"),
        ("08:00 09:00 1MB/s", "two times"),
        ("Sat,Sun", "has days but no rate"),
        ("08:00 -5MB/s", "is not a rate"),
        ("Mon-Fri 08:00-18:00 100MiB/s extra", "must be [days]"),
    ])
    func badTimetablesGetClearErrors(text: String, message: String) {
        #expect { try Timetable(parsing: text) } throws: { error in
            "\(error)".contains(message)
        }
    }

    /// A timetable's highest cap: nil when some time of the week has none.
    @Test func aTimetablesHighestCap() throws {
        let mib = 1_048_576.0
        #expect(try Timetable(parsing: "10MiB/s").highest == 10 * mib)
        #expect(try Timetable(parsing: "08:00 50MiB/s, 12:00 20MiB/s").highest == 50 * mib)
        #expect(try Timetable(parsing: "Mon-Fri 08:00-18:00 100MiB/s, 5MiB/s").highest == 100 * mib)
        #expect(try Timetable(parsing: "Mon-Fri 08:00-18:00 100MiB/s").highest == nil)  // no cap at night
        #expect(try Timetable(parsing: "Sat,Sun 500MiB/s").highest == nil)
        #expect(try Timetable(parsing: "08:00 50MiB/s, 23:00 off").highest == nil)
    }
}
