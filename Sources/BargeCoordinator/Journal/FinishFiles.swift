import BargeWire
import Synchronization

/// The file of each large file's `finish` unit, which never changes once planned. A page of
/// ranges is made from up to one file per destination agent (500 with 1,000 agents), and each
/// page read and decoded all of those rows again: a fifth of the cost of making a range. Only
/// the journal's writer uses it; at `limit` entries it starts over.
final class FinishFiles: Sendable {
    static let limit = 65_536
    private let files = Mutex<[UnitKey: TaskFile]>([:])

    /// The file of a finish unit, read with `read` the first time.
    func file(_ key: UnitKey, read: () throws -> TaskFile?) throws -> TaskFile? {
        if let known = files.withLock({ $0[key] }) { return known }
        guard let file = try read() else { return nil }
        files.withLock { files in
            if files.count >= Self.limit { files.removeAll(keepingCapacity: true) }
            files[key] = file
        }
        return file
    }

    /// Forgets the files of jobs that were pruned.
    func forget(jobs: Set<String>) {
        guard !jobs.isEmpty else { return }
        files.withLock { files in files = files.filter { !jobs.contains($0.key.job) } }
    }
}
