import BargeWire
import CoreMetrics
import Prometheus

/// The coordinator's counters for `GET /metrics`, in Prometheus text through swift-metrics and
/// swift-prometheus. Each coordinator has its own registry (no global bootstrap), so several can
/// run in one process, as in tests.
public final class CoordinatorMetrics: Sendable {
    public let registry = PrometheusCollectorRegistry()
    private let factory: PrometheusMetricsFactory
    private let bytesSent: CoreMetrics.Counter
    private let bytesReceived: CoreMetrics.Counter
    private let chunksDone: CoreMetrics.Counter
    private let chunksRefetched: CoreMetrics.Counter
    private let throughput: CoreMetrics.Gauge
    private let unitsInFlight: CoreMetrics.Gauge
    private let unitRetries: CoreMetrics.Counter
    private let dedupBytes: CoreMetrics.Counter

    public init() {
        factory = PrometheusMetricsFactory(registry: registry)
        bytesSent = CoreMetrics.Counter(label: "barge_wire_bytes_sent_total", factory: factory)
        bytesReceived = CoreMetrics.Counter(label: "barge_bytes_received_total", factory: factory)
        chunksDone = CoreMetrics.Counter(label: "barge_chunks_done_total", factory: factory)
        chunksRefetched = CoreMetrics.Counter(label: "barge_chunks_refetched_total", factory: factory)
        throughput = CoreMetrics.Gauge(label: "barge_throughput_bytes_per_second", factory: factory)
        unitsInFlight = CoreMetrics.Gauge(label: "barge_units_in_flight", factory: factory)
        unitRetries = CoreMetrics.Counter(label: "barge_unit_retries_total", factory: factory)
        dedupBytes = CoreMetrics.Counter(label: "barge_dedup_bytes_total", factory: factory)
    }

    func record(_ done: TaskDone) {
        bytesSent.increment(by: Int64(done.wireBytes))
        bytesReceived.increment(by: Int64(done.bytes))
        chunksDone.increment(by: Int64(done.chunks.count))
        chunksRefetched.increment(by: Int64(done.refetched))
        dedupBytes.increment(by: Int64(done.dedupBytes))
        for c in done.codecs {
            CoreMetrics.Counter(label: "barge_codec_raw_bytes_total", dimensions: [("codec", c.codec)], factory: factory).increment(by: Int64(c.rawBytes))
            CoreMetrics.Counter(label: "barge_codec_encoded_bytes_total", dimensions: [("codec", c.codec)], factory: factory).increment(by: Int64(c.encodedBytes))
        }
    }

    func update(throughput bytesPerSecond: Double) {
        throughput.record(bytesPerSecond)
    }

    func retried(_ units: Int) {
        unitRetries.increment(by: Int64(units))
    }

    func update(unitsInFlight units: Int) {
        unitsInFlight.record(units)
    }

    /// A lane's congestion figures, from its units' progress reports.
    func update(lane source: String, _ destination: String, _ f: LaneFigures) {
        let dims = [("source", source), ("destination", destination)]
        CoreMetrics.Gauge(label: "barge_lane_rtt_seconds", dimensions: dims, factory: factory).record(Double(f.rttMicros) / 1e6)
        CoreMetrics.Gauge(label: "barge_lane_queueing_delay_seconds", dimensions: dims, factory: factory).record(Double(f.queueMicros) / 1e6)
        CoreMetrics.Gauge(label: "barge_lane_window_bytes", dimensions: dims, factory: factory).record(Double(f.window))
        CoreMetrics.Gauge(label: "barge_lane_send_rate_bytes_per_second", dimensions: dims, factory: factory).record(Double(f.rate))
    }

    /// The exposition text.
    public func render() -> String {
        var buffer: [UInt8] = []
        registry.emit(into: &buffer)
        return String(decoding: buffer, as: UTF8.self)
    }
}
