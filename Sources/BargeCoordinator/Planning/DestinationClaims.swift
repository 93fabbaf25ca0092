import BargeStore

/// The destinations of queued transfer jobs that have not started, site by site: the one a job
/// submitted later must wait behind when its destination overlaps (`JobPath.overlaps`), for
/// `Scheduler.startQueuedJobs`. A question costs as many lookups as the path has components,
/// not a comparison per waiting job: a script that queues ten thousand jobs would otherwise cost
/// a hundred million comparisons on every submit.
public struct DestinationClaims: Sendable {
    /// Site → a claimed path → the first job that claimed it.
    private var at: [String: [PathKey: String]] = [:]
    /// Site → a directory above a claimed path → the first job that claimed a path below it.
    private var above: [String: [PathKey: String]] = [:]

    public init() {}

    /// The root (""), each directory above `path` (normalized), then `path` itself.
    public static func lineage(_ path: String) -> [PathKey] {
        guard !path.isEmpty else { return [PathKey("")] }
        var line = [PathKey("")]
        var i = path.utf8.startIndex
        while i < path.utf8.endIndex {
            if path.utf8[i] == UInt8(ascii: "/") { line.append(PathKey(path[..<i])) }
            i = path.utf8.index(after: i)
        }
        line.append(PathKey(path))
        return line
    }

    /// `job` waits with its destination `path` at `site`; an earlier claim of the same place stays.
    public mutating func claim(site: String, path: String, job: String) {
        let line = Self.lineage(path)
        at[site, default: [:]][line.last!] = at[site]?[line.last!] ?? job
        for p in line.dropLast() { above[site, default: [:]][p] = above[site]?[p] ?? job }
    }

    /// A job whose claim is at, inside or above `path` at `site`, if any.
    public func holder(site: String, path: String) -> String? {
        let line = Self.lineage(path)
        if let claims = at[site] {
            for p in line { if let job = claims[p] { return job } }
        }
        return above[site]?[line.last!]
    }
}
