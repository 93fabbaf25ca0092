import BargeWire
import Synchronization

/// Running units' last progress reports, by job, with each job's sums and the total kept up to
/// date as reports come and go: a status read or the throughput gauge costs the same whatever
/// the number of units running (it used to walk every running unit of every job).
///
/// The scheduler writes it; status reads take it under its lock without waiting for the
/// scheduler's actor, which under load has a queue of agents' reports before them (at 1,000
/// agents, a status read that hopped onto the actor waited 13 ms at the median).
final class LiveProgress: Sendable {
    /// A running unit's last report and the lane that runs it.
    struct Entry {
        var report: TaskProgress
        var lane: LaneKey?
        /// When the report came (the scheduler's clock, seconds).
        var at: Double
    }

    /// A lane whose units have reported nothing for this long (agents report every 0.5 s) is not
    /// shown: its agent is gone or hung, and its last rate is no longer true. The units stay
    /// counted until the agent is marked down.
    static let laneSilence: Double = 2

    /// The agents at the two ends of a lane.
    struct LaneKey: Hashable {
        let source: String
        let destination: String
    }

    private struct State {
        var byJob: [String: [UInt64: Entry]] = [:]
        var sums: [String: (bytes: Int64, wire: Int64)] = [:]
        var totalBytes: Int64 = 0

        mutating func add(_ job: String, bytes: Int64, wire: Int64) {
            var s = sums[job] ?? (0, 0)
            s.bytes = s.bytes.addingSaturated(bytes)
            s.wire = s.wire.addingSaturated(wire)
            if byJob[job] == nil { sums.removeValue(forKey: job) } else { sums[job] = s }
            totalBytes = totalBytes.addingSaturated(bytes)
        }
    }

    private let state = Mutex(State())

    init() {}

    /// Bytes done by every running unit.
    var totalBytes: Int64 { state.withLock { $0.totalBytes } }

    /// A unit's latest report, in place of its previous one.
    func set(_ key: UnitKey, _ report: TaskProgress, lane: LaneKey? = nil, at: Double = 0) {
        state.withLock { s in
            let previous = s.byJob[key.job, default: [:]].updateValue(Entry(report: report, lane: lane, at: at), forKey: key.unit)
            s.add(key.job, bytes: Int64(report.bytesDone) - Int64(previous?.report.bytesDone ?? 0),
                  wire: Int64(report.wireBytes) - Int64(previous?.report.wireBytes ?? 0))
        }
    }

    /// Forgets a unit (done, failed or lost); returns its last report.
    @discardableResult
    func remove(_ key: UnitKey) -> TaskProgress? {
        state.withLock { s in
            guard let entry = s.byJob[key.job]?.removeValue(forKey: key.unit) else { return nil }
            if s.byJob[key.job]?.isEmpty == true { s.byJob.removeValue(forKey: key.job) }
            s.add(key.job, bytes: -Int64(entry.report.bytesDone), wire: -Int64(entry.report.wireBytes))
            return entry.report
        }
    }

    /// Forgets every unit of a job that ended.
    func remove(job: String) {
        state.withLock { s in
            s.byJob.removeValue(forKey: job)
            if let sums = s.sums.removeValue(forKey: job) { s.totalBytes = s.totalBytes.addingSaturated(sums.bytes == .min ? .max : -sums.bytes) }
        }
    }

    /// A job's running units' bytes done and bytes sent.
    func sums(of job: String) -> (bytes: Int64, wire: Int64) { state.withLock { $0.sums[job] ?? (0, 0) } }

    /// A running unit's last report.
    func report(_ key: UnitKey) -> TaskProgress? { state.withLock { $0.byJob[key.job]?[key.unit]?.report } }

    /// A job's running units and their last reports.
    func units(of job: String) -> [UInt64: TaskProgress] {
        state.withLock { ($0.byJob[job] ?? [:]).mapValues(\.report) }
    }

    /// The figures of each lane running a unit of the job, from its latest report that carried
    /// them, sorted by source and destination; at `now`, lanes silent for `laneSilence` are left
    /// out.
    func lanes(of job: String, now: Double = 0) -> [LaneStatus] {
        let byLane = state.withLock { s in
            var byLane: [LaneKey: (status: LaneStatus, at: Double)] = [:]
            for entry in (s.byJob[job] ?? [:]).values {
                guard let lane = entry.lane, let f = entry.report.lane, entry.at >= byLane[lane]?.at ?? -.infinity else { continue }
                byLane[lane] = (LaneStatus(source: lane.source, destination: lane.destination, figures: f), entry.at)
            }
            return byLane.values.filter { now - $0.at <= Self.laneSilence }.map(\.status)
        }
        return byLane.sorted { ($0.source, $0.destination) < ($1.source, $1.destination) }
    }
}
