@testable import BargeCoordinator
import BargeWire
import Testing

/// The lane gauges of a lane that stopped reporting are removed, so a finished job leaves no
/// stale rates behind; a live lane's stay.
struct CoordinatorMetricsTests {
    @Test func seriesOfSilentLanesAreRemoved() {
        let m = CoordinatorMetrics()
        let figures = LaneFigures(rttMicros: 2000, queueMicros: 100, window: 1 << 20, rate: 100_000_000)
        m.update(lane: "a1", "b1", figures, now: 100)
        m.update(lane: "a2", "b1", figures, now: 110)
        m.expireLanes(now: 100 + CoordinatorMetrics.laneExpiry + 1)
        var buffer: [UInt8] = []
        m.registry.emit(into: &buffer)
        let text = String(decoding: buffer, as: UTF8.self)
        #expect(!text.contains("source=\"a1\"") && text.contains("barge_lane_send_rate_bytes_per_second{source=\"a2\",destination=\"b1\"}"), "\(text)")
        #expect(text.contains("barge_chunk_ack_rtt_seconds_count 2"), "\(text)")
    }
}
