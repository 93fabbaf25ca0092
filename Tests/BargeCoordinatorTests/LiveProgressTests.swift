import BargeWire
import Testing

@testable import BargeCoordinator

/// Running units' progress, with each job's sums kept as reports come and go.
struct LiveProgressTests {
    func report(_ job: String, _ unit: UInt64, _ bytes: UInt64, _ wire: UInt64) -> TaskProgress {
        TaskProgress(job: job, unit: unit, bytesDone: bytes, wireBytes: wire)
    }

    @Test func sumsFollowReportsRemovalsAndEndedJobs() {
        var live = LiveProgress()
        live.set(UnitKey(job: "a", unit: 1), report("a", 1, 100, 60))
        live.set(UnitKey(job: "a", unit: 2), report("a", 2, 50, 50))
        live.set(UnitKey(job: "b", unit: 1), report("b", 1, 7, 7))
        // A later report of a unit replaces its earlier one.
        live.set(UnitKey(job: "a", unit: 1), report("a", 1, 300, 120))
        #expect(live.sums(of: "a") == (350, 170))
        #expect(live.totalBytes == 357)
        #expect(live.remove(UnitKey(job: "a", unit: 2))?.bytesDone == 50)
        #expect(live.remove(UnitKey(job: "a", unit: 2)) == nil)
        #expect(live.sums(of: "a") == (300, 120) && live.totalBytes == 307)
        #expect(live.units(of: "a").keys.sorted() == [1])
        live.remove(job: "a")
        #expect(live.sums(of: "a") == (0, 0) && live.units(of: "a").isEmpty && live.totalBytes == 7)
        _ = live.remove(UnitKey(job: "b", unit: 1))
        #expect(live.totalBytes == 0 && live.sums(of: "b") == (0, 0))
    }
}
