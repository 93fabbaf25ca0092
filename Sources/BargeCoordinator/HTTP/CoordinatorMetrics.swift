import BargeWire
import Foundation
import Prometheus
import Synchronization

/// The coordinator's metrics for `GET /metrics`, in Prometheus text through swift-prometheus.
/// Every family has HELP and TYPE (`promtool check metrics` passes). Each coordinator has its own
/// registry, so several can run in one process, as in tests.
///
/// - Counters grow with reports: bytes and chunks, by codec and by agent, retries, and errors
///   by reason.
/// - Gauges: jobs and agents by state (set at each scrape), units in flight, the recent
///   throughput, and each lane's congestion figures. A lane's series are removed once it has not
///   reported for `laneExpiry`: a finished job leaves no stale rates behind.
/// - Histograms: chunk-ack RTT (each lane report's smoothed RTT) and unit duration (assignment
///   to `task done`).
public final class CoordinatorMetrics: Sendable {
    public let registry = PrometheusCollectorRegistry()
    /// A lane silent this long has its series removed.
    public static let laneExpiry: Double = 15

    private let bytesSent: Counter
    private let bytesReceived: Counter
    private let chunksDone: Counter
    private let chunksRefetched: Counter
    private let throughput: Gauge
    private let unitsInFlight: Gauge
    private let unitRetries: Counter
    private let dedupBytes: Counter
    private let rtt: ValueHistogram
    private let unitDuration: ValueHistogram

    private struct LaneSeries {
        var gauges: [Gauge]
        var seen: Double
    }
    private struct LaneKey: Hashable {
        let source: String
        let destination: String
    }
    private let lanes = Mutex<[LaneKey: LaneSeries]>([:])

    /// The counters with one label that every report adds to, kept once made: the registry's
    /// lookup (a lock, the name and labels hashed) was a tenth of the scheduler's time per report.
    private enum LabelledCounter: Hashable {
        case codecRawBytes, codecEncodedBytes, agentBytesSent, agentBytesReceived
    }
    private struct SeriesKey: Hashable {
        let family: LabelledCounter
        let label: String
    }
    private let labelled = Mutex<[SeriesKey: Counter]>([:])

    private func counter(_ family: LabelledCounter, _ label: String) -> Counter {
        let key = SeriesKey(family: family, label: label)
        if let known = labelled.withLock({ $0[key] }) { return known }
        let made = switch family {
        case .codecRawBytes:
            registry.makeCounter(descriptor: Self.name("barge_codec_raw_bytes", "total", "Bytes before compression, by the codec that sent them."),
                                 labels: [("codec", label)])
        case .codecEncodedBytes:
            registry.makeCounter(descriptor: Self.name("barge_codec_encoded_bytes", "total", "Bytes after compression, by the codec that sent them."),
                                 labels: [("codec", label)])
        case .agentBytesSent:
            registry.makeCounter(descriptor: Self.name("barge_agent_bytes_sent", "total", "Bytes an agent sent on the data plane (after compression)."),
                                 labels: [("agent", label)])
        case .agentBytesReceived:
            registry.makeCounter(descriptor: Self.name("barge_agent_bytes_received", "total", "File bytes an agent received and stored."),
                                 labels: [("agent", label)])
        }
        labelled.withLock { $0[key] = made }
        return made
    }
    /// When each unit held now was assigned, by job: forgotten when the job ends (a unit held
    /// when its job was cancelled, or released and never assigned again, reports nothing).
    private let assignedAt = Mutex<[String: [UInt64: Double]]>([:])

    static func name(_ metric: String, _ unit: String = "", _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: metric, unitName: unit, helpText: help)
    }

    public init() {
        let r = registry
        bytesSent = r.makeCounter(descriptor: Self.name("barge_wire_bytes_sent", "total", "Bytes sent on the data plane (after compression), all jobs."))
        bytesReceived = r.makeCounter(descriptor: Self.name("barge_bytes_received", "total", "Bytes of file data delivered to destinations (before compression), all jobs."))
        chunksDone = r.makeCounter(descriptor: Self.name("barge_chunks_done", "total", "Chunks delivered and verified."))
        chunksRefetched = r.makeCounter(descriptor: Self.name("barge_chunks_refetched", "total", "Chunks sent again after the destination found them corrupt."))
        throughput = r.makeGauge(descriptor: Self.name("barge_throughput_bytes_per_second", "", "File bytes moved per second over the last few seconds, all jobs."))
        unitsInFlight = r.makeGauge(descriptor: Self.name("barge_units_in_flight", "", "Work units assigned to agents and not yet reported done."))
        unitRetries = r.makeCounter(descriptor: Self.name("barge_unit_retries", "total", "Work units handed out again after a failure or a lost agent."))
        dedupBytes = r.makeCounter(descriptor: Self.name("barge_dedup_bytes", "total", "Bytes delivered by reference instead of sent."))
        rtt = r.makeValueHistogram(descriptor: Self.name("barge_chunk_ack_rtt", "seconds", "Smoothed round-trip time of chunk acks, one observation per lane report."),
                                   buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5])
        unitDuration = r.makeValueHistogram(descriptor: Self.name("barge_unit_duration", "seconds", "Time from a unit's assignment to its task done."),
                                            buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900])
        r.makeGauge(descriptor: Self.name("barge_build_info", "", "This coordinator's build: always 1, with the version as a label."),
                    labels: [("version", BargeBuild.version)]).set(Int64(1))
        for reason in ErrorReason.allCases { error(reason, count: 0) }
        set(jobs: [:], agents: [:])
    }

    /// What a counted error was.
    public enum ErrorReason: String, CaseIterable, Sendable {
        /// A chunk the destination refused as corrupt (sent again).
        case nack
        /// A unit that failed on its lane.
        case unitFailure = "unit_failure"
        /// An API request with a missing, wrong or under-privileged token.
        case authentication
        /// A journal commit that failed (a full disk, an I/O error at the coordinator's
        /// `--state`); tried again with backoff, jobs waiting meanwhile.
        case journal
    }

    public func error(_ reason: ErrorReason, count: Int = 1) {
        registry.makeCounter(descriptor: Self.name("barge_errors", "total", "Errors, by reason: corrupt chunks nacked, unit failures, API authentication failures, failed journal commits."),
                             labels: [("reason", reason.rawValue)]).increment(by: Int64(count))
    }

    /// Jobs and agents by state, set before each scrape.
    public func set(jobs: [String: Int], agents: [String: Int]) {
        for state in ["queued", "running", "succeeded", "failed", "cancelled"] {
            registry.makeGauge(descriptor: Self.name("barge_jobs", "", "Jobs in the journal, by state."), labels: [("state", state)]).set(Int64(jobs[state] ?? 0))
        }
        for state in ["up", "draining", "down"] {
            registry.makeGauge(descriptor: Self.name("barge_agents", "", "Agents known to the coordinator, by state."), labels: [("state", state)]).set(Int64(agents[state] ?? 0))
        }
    }

    func assigned(job: String, unit: UInt64, now: Double) {
        assignedAt.withLock { $0[job, default: [:]][unit] = now }
    }

    /// A unit's report: its wire bytes, and when it is the unit's `first` completion, its bytes,
    /// chunks and codecs too.
    /// Wire bytes a running unit reported (`task progress`), counted as they move: counted only
    /// when its unit ended, the rate a scrape showed came in steps of whole units, and a unit
    /// cancelled or failed never counted what it had sent (a black-box review).
    func sent(wire bytes: Int64, source: String?) {
        guard bytes > 0 else { return }
        bytesSent.increment(by: bytes)
        if let source { counter(.agentBytesSent, source).increment(by: bytes) }
    }

    /// `wireCounted`: the unit's wire bytes already counted from its progress (`sent`).
    func record(_ done: TaskDone, first: Bool, source: String?, destination: String?, now: Double, wireCounted: UInt64 = 0) {
        sent(wire: Int64(done.wireBytes) - Int64(min(wireCounted, done.wireBytes)), source: source)
        if let started = assignedAt.withLock({ $0[done.job]?.removeValue(forKey: done.unit) }) {
            unitDuration.record(max(0, now - started))
        }
        // Chunks sent again crossed the wire whichever assignment sent them, as the journal counts them.
        chunksRefetched.increment(by: Int64(done.refetched))
        if done.refetched > 0 { error(.nack, count: Int(done.refetched)) }
        guard first else { return }
        bytesReceived.increment(by: Int64(done.bytes))
        chunksDone.increment(by: Int64(done.chunks.count))
        dedupBytes.increment(by: Int64(done.dedupBytes))
        for c in done.codecs {
            counter(.codecRawBytes, c.codec).increment(by: Int64(c.rawBytes))
            counter(.codecEncodedBytes, c.codec).increment(by: Int64(c.encodedBytes))
        }
        if let destination { counter(.agentBytesReceived, destination).increment(by: Int64(done.bytes)) }
    }

    func update(throughput bytesPerSecond: Double) {
        throughput.set(bytesPerSecond)
    }

    func retried(_ units: Int) {
        unitRetries.increment(by: Int64(units))
    }

    func failed(job: String, unit: UInt64) {
        error(.unitFailure)
        _ = assignedAt.withLock { $0[job]?.removeValue(forKey: unit) }
    }

    /// A job ended: its units' assignment times go.
    func forget(job: String) {
        _ = assignedAt.withLock { $0.removeValue(forKey: job) }
    }

    func update(unitsInFlight units: Int) {
        unitsInFlight.set(Int64(units))
    }

    /// A lane's congestion figures, from its units' progress reports.
    func update(lane source: String, _ destination: String, _ f: LaneFigures, now: Double) {
        let labels = [("source", source), ("destination", destination)]
        let r = registry
        let gauges = [
            r.makeGauge(descriptor: Self.name("barge_lane_rtt", "seconds", "A lane's smoothed chunk-ack round-trip time."), labels: labels),
            r.makeGauge(descriptor: Self.name("barge_lane_queueing_delay", "seconds", "A lane's queueing delay: RTT above its minimum."), labels: labels),
            r.makeGauge(descriptor: Self.name("barge_lane_window_bytes", "", "A lane's congestion window."), labels: labels),
            r.makeGauge(descriptor: Self.name("barge_lane_send_rate_bytes_per_second", "", "A lane's send rate."), labels: labels),
        ]
        gauges[0].set(Double(f.rttMicros) / 1e6)
        gauges[1].set(Double(f.queueMicros) / 1e6)
        gauges[2].set(Double(f.window))
        gauges[3].set(Double(f.rate))
        if f.rttMicros > 0 { rtt.record(Double(f.rttMicros) / 1e6) }
        lanes.withLock { $0[LaneKey(source: source, destination: destination)] = LaneSeries(gauges: gauges, seen: now) }
    }

    /// Removes the series of lanes silent for `laneExpiry` seconds.
    func expireLanes(now: Double) {
        let stale = lanes.withLock { lanes -> [LaneSeries] in
            let old = lanes.filter { now - $0.value.seen > Self.laneExpiry }
            for key in old.keys { lanes.removeValue(forKey: key) }
            return Array(old.values)
        }
        for series in stale { series.gauges.forEach(registry.unregisterGauge) }
    }

    /// The exposition text.
    public func render() -> String {
        expireLanes(now: Date().timeIntervalSince1970)
        var buffer: [UInt8] = []
        registry.emit(into: &buffer)
        return String(decoding: buffer, as: UTF8.self)
    }
}
