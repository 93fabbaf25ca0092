import BargeWire

/// Running units' last progress reports, by job, with each job's sums and the total kept up to
/// date as reports come and go: a status read or the throughput gauge costs the same whatever
/// the number of units running (it used to walk every running unit of every job).
struct LiveProgress {
    private var byJob: [String: [UInt64: TaskProgress]] = [:]
    private var sums: [String: (bytes: Int64, wire: Int64)] = [:]
    /// Bytes done by every running unit.
    private(set) var totalBytes: Int64 = 0

    /// A unit's latest report, in place of its previous one.
    mutating func set(_ key: UnitKey, _ report: TaskProgress) {
        let previous = byJob[key.job, default: [:]].updateValue(report, forKey: key.unit)
        add(key.job, bytes: Int64(report.bytesDone) - Int64(previous?.bytesDone ?? 0),
            wire: Int64(report.wireBytes) - Int64(previous?.wireBytes ?? 0))
    }

    /// Forgets a unit (done, failed or lost); returns its last report.
    @discardableResult
    mutating func remove(_ key: UnitKey) -> TaskProgress? {
        guard let report = byJob[key.job]?.removeValue(forKey: key.unit) else { return nil }
        if byJob[key.job]?.isEmpty == true { byJob.removeValue(forKey: key.job) }
        add(key.job, bytes: -Int64(report.bytesDone), wire: -Int64(report.wireBytes))
        return report
    }

    /// Forgets every unit of a job that ended.
    mutating func remove(job: String) {
        byJob.removeValue(forKey: job)
        if let s = sums.removeValue(forKey: job) { totalBytes -= s.bytes }
    }

    /// A job's running units' bytes done and bytes sent.
    func sums(of job: String) -> (bytes: Int64, wire: Int64) { sums[job] ?? (0, 0) }

    /// A job's running units and their last reports.
    func units(of job: String) -> [UInt64: TaskProgress] { byJob[job] ?? [:] }

    private mutating func add(_ job: String, bytes: Int64, wire: Int64) {
        var s = sums[job] ?? (0, 0)
        s.bytes += bytes
        s.wire += wire
        if byJob[job] == nil { sums.removeValue(forKey: job) } else { sums[job] = s }
        totalBytes += bytes
    }
}
