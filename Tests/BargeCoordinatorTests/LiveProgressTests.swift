import BargeWire
import Testing

@testable import BargeCoordinator

/// Running units' progress, with each job's sums kept as reports come and go.
struct LiveProgressTests {
    func report(_ job: String, _ unit: UInt64, _ bytes: UInt64, _ wire: UInt64) -> TaskProgress {
        TaskProgress(job: job, unit: unit, bytesDone: bytes, wireBytes: wire)
    }

    @Test func sumsFollowReportsRemovalsAndEndedJobs() {
        let live = LiveProgress()
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

    @Test func lanesComeFromTheLatestReportsThatCarryFigures() {
        let live = LiveProgress()
        let ab = LiveProgress.LaneKey(source: "a1", destination: "b1")
        let ac = LiveProgress.LaneKey(source: "a1", destination: "b0")
        let fast = LaneFigures(rttMicros: 1_500, queueMicros: 200, window: 4 << 20, rate: 100 << 20)
        live.set(UnitKey(job: "j", unit: 1), TaskProgress(job: "j", unit: 1, bytesDone: 1, wireBytes: 1, lane: fast), lane: ab)
        // A report without figures, or without a lane, adds no lane.
        live.set(UnitKey(job: "j", unit: 2), TaskProgress(job: "j", unit: 2, bytesDone: 1, wireBytes: 1), lane: ac)
        live.set(UnitKey(job: "j", unit: 3), TaskProgress(job: "j", unit: 3, bytesDone: 1, wireBytes: 1, lane: fast))
        #expect(live.lanes(of: "j").map(\.destination) == ["b1"])
        live.set(UnitKey(job: "j", unit: 2), TaskProgress(job: "j", unit: 2, bytesDone: 2, wireBytes: 2, lane: fast), lane: ac)
        let lanes = live.lanes(of: "j")
        #expect(lanes.map(\.destination) == ["b0", "b1"] && lanes[0].rttMs == 1.5 && lanes[0].windowBytes == 4 << 20)
        // A unit that ends takes its lane with it; other jobs see none.
        live.remove(UnitKey(job: "j", unit: 1))
        #expect(live.lanes(of: "j").map(\.destination) == ["b0"] && live.lanes(of: "k").isEmpty)
    }

    /// A lane whose units stopped reporting (its agent killed, not yet marked down) stops showing
    /// its last rate after `laneSilence`; a unit of it that reports again brings it back.
    @Test func aLaneSilentForTwoSecondsIsNotShown() {
        let live = LiveProgress()
        let ab = LiveProgress.LaneKey(source: "a1", destination: "b1")
        let figures = LaneFigures(rttMicros: 1_500, queueMicros: 200, window: 4 << 20, rate: 100 << 20)
        live.set(UnitKey(job: "j", unit: 1), TaskProgress(job: "j", unit: 1, bytesDone: 1, wireBytes: 1, lane: figures), lane: ab, at: 100)
        live.set(UnitKey(job: "j", unit: 2), TaskProgress(job: "j", unit: 2, bytesDone: 1, wireBytes: 1, lane: figures), lane: ab, at: 101)
        #expect(live.lanes(of: "j", now: 103).map(\.destination) == ["b1"])  // unit 2 spoke 2 s ago
        #expect(live.lanes(of: "j", now: 103.5).isEmpty)
        #expect(live.sums(of: "j").bytes == 2, "its units still count")
        live.set(UnitKey(job: "j", unit: 1), TaskProgress(job: "j", unit: 1, bytesDone: 2, wireBytes: 2, lane: figures), lane: ab, at: 104)
        #expect(live.lanes(of: "j", now: 104.5).map(\.destination) == ["b1"])
    }
}
