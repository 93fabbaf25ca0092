/// The scheduler's units in memory (each running job's window, held and retrying units), by
/// job: a job that ends lets go of its own in proportion to them, not to every job's.
struct UnitRecords {
    private var byJob: [String: [UInt64: UnitRecord]] = [:]

    subscript(key: UnitKey) -> UnitRecord? {
        get { byJob[key.job]?[key.unit] }
        set {
            if let newValue {
                byJob[key.job, default: [:]][key.unit] = newValue
            } else {
                removeValue(forKey: key)
            }
        }
    }

    mutating func removeValue(forKey key: UnitKey) {
        guard byJob[key.job]?.removeValue(forKey: key.unit) != nil else { return }
        if byJob[key.job]?.isEmpty == true { byJob.removeValue(forKey: key.job) }
    }

    mutating func removeAll(job: String) {
        byJob.removeValue(forKey: job)
    }
}
