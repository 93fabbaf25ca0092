import BargeTier
import BargeWire

/// Cuts a scanned tree into work units, one scan page at a time. Pure: the same pages always give
/// the same units.
///
/// - A regular file larger than `unitBytes` becomes one `finish` unit that stands for its
///   `range` units of `unitBytes` each and waits for them (so the file is renamed only once every
///   range is in). The journal makes the ranges as the scheduler reaches them: a petabyte in
///   1,024 files is planned as 1,024 rows.
/// - Smaller files and symbolic links are batched in scan order into `files` units of at most
///   `unitBytes` and `maxFilesPerUnit` entries; each file is finished within its unit. A batch
///   never spans two pages, so a page's units are complete once the page is journaled.
/// - Directories, empty ones included, go into `directories` units of one depth each (at most
///   `maxDirectoriesPerUnit` entries), which run after every other unit of the job, deepest first,
///   so their modes and mtimes are set after everything inside them is written.
///
/// The scanned entry with the empty path is the source itself: a directory (whose contents land
/// under the destination path) or a single file (which lands at the destination path, or inside it
/// when the path was given as a directory: `Builder.destination(of:kind:)`).
public struct Planner: Sendable {
    public var unitBytes: UInt64
    public var chunkSize: UInt64
    /// 1,024 by default: 20,000 small files took 5.0-5.8 s in units of 1,024 against 6.2-7.2 s in
    /// units of 256 (`cluster/bench-files.sh`), since a unit costs a have query, a `task done` and
    /// the coordinator's commit before the next assignment. Its task stays under the frame limit
    /// even with paths of 4 KiB (two per file: 8 MiB).
    public var maxFilesPerUnit: Int
    /// Directories per `directories` unit: 4,096 keeps a task under the frame limit, even with
    /// paths of 4 KiB.
    public var maxDirectoriesPerUnit: Int

    public init(unitBytes: UInt64 = 64 << 20, chunkSize: UInt64 = 1 << 20, maxFilesPerUnit: Int = 1024, maxDirectoriesPerUnit: Int = 4096) {
        precondition(chunkSize > 0 && unitBytes >= chunkSize && unitBytes % chunkSize == 0 && maxFilesPerUnit > 0 && maxDirectoriesPerUnit > 0)
        self.maxDirectoriesPerUnit = maxDirectoriesPerUnit
        self.unitBytes = unitBytes
        self.chunkSize = chunkSize
        self.maxFilesPerUnit = maxFilesPerUnit
    }

    public struct PlannedPage: Sendable {
        public var units: [UnitRecord]
        public var totals: PlanTotals
        /// Units other than directories, ranges still to be made included, for the policy's count
        /// of open work.
        public var workUnits: Int { units.reduce(0) { $0 + ($1.kind == .directories ? 0 : 1 + Int($1.rangesTotal)) } }
    }

    /// A job's plan as its scan pages arrive: unit ids continue from page to page.
    public struct Builder: Sendable {
        public let planner: Planner
        public let job: String
        public let sourcePath: String
        public let destinationPath: String
        /// Units planned so far; the next one's id within the plan (the journal numbers them).
        public private(set) var nextUnit: Int64
        /// The job's placement policy (`submit --tier`): each regular file's tier, from its path
        /// relative to the job, its size and its mtime against `now` (Unix seconds). Nil leaves
        /// placement to the destination site.
        public let placement: TierPolicy?
        public let now: Int64

        /// The destination names a directory (`b:/dst/`): a single file lands inside it.
        public let destinationIsDirectory: Bool

        public init(planner: Planner, job: String, sourcePath: String, destinationPath: String, destinationIsDirectory: Bool = false,
                    nextUnit: Int64 = 0, placement: TierPolicy? = nil, now: Int64 = 0) {
            self.planner = planner
            self.job = job
            self.sourcePath = sourcePath
            self.destinationPath = destinationPath
            self.destinationIsDirectory = destinationIsDirectory
            self.nextUnit = nextUnit
            self.placement = placement
            self.now = now
        }

        /// Where the scanned entry at `relative` (of `kind`) lands: under the destination path,
        /// the source itself (`relative` empty) at it, except a single file sent into a
        /// directory, which lands inside it under its own name.
        public func destination(of relative: String, kind: FileEntry.Kind) -> String {
            if relative.isEmpty, kind != .directory, destinationIsDirectory, !sourcePath.isEmpty {
                return JobPath.join(destinationPath, JobPath.name(sourcePath))
            }
            return JobPath.join(destinationPath, relative)
        }

        public mutating func page(_ entries: [FileEntry]) -> PlannedPage {
            let p = planner
            var units: [UnitRecord] = []
            var batch: [TaskFile] = []
            var batchBytes: UInt64 = 0
            var directories: [Int: [TaskFile]] = [:]
            var totals = PlanTotals(bytes: 0, files: 0, chunks: 0)

            func add(_ kind: UnitKind, _ files: [TaskFile], depth: Int64 = 0, ranges: UInt64 = 0) {
                var unit = UnitRecord(jobId: job, unitId: nextUnit, kind: kind, files: files, depth: depth)
                unit.rangesTotal = Int64(ranges)
                unit.rangeBytes = ranges > 0 ? Int64(p.unitBytes) : 0
                units.append(unit)
                nextUnit += 1
            }
            func flush() {
                if !batch.isEmpty { add(.files, batch) }
                batch = []
                batchBytes = 0
            }

            for e in entries {
                let tier: Placement? = placement.map { policy in
                    // A single file: the policy sees the name it lands under.
                    e.kind != .file ? .hot : policy.tier(for: FileFacts(path: e.path.isEmpty ? JobPath.name(destination(of: e.path, kind: e.kind)) : e.path,
                                                                        size: e.size, mtime: e.mtimeSeconds), now: now) == .cold ? .cold : .hot
                }
                var entry = e
                entry.path = destination(of: e.path, kind: e.kind)
                let source = JobPath.join(sourcePath, e.path)
                switch e.kind {
                case .directory:
                    let depth = e.path.isEmpty ? 0 : e.path.utf8.count { $0 == UInt8(ascii: "/") } + 1
                    directories[depth, default: []].append(TaskFile(sourcePath: source, entry: entry, length: 0, finish: true))
                case .symlink, .file:
                    totals.files += 1
                    totals.bytes = totals.bytes.addingSaturated(Int64(e.size))
                    totals.chunks = totals.chunks.addingSaturated(Int64((e.size + p.chunkSize - 1) / p.chunkSize))
                    if e.kind == .file, e.size > p.unitBytes {
                        add(.finish, [TaskFile(sourcePath: source, entry: entry, offset: 0, length: 0, finish: true, tier: tier)],
                            ranges: (e.size + p.unitBytes - 1) / p.unitBytes)
                        continue
                    }
                    if batch.count == p.maxFilesPerUnit || batchBytes + e.size > p.unitBytes { flush() }
                    batch.append(TaskFile(sourcePath: source, entry: entry, length: e.size, finish: true, tier: tier))
                    batchBytes += e.size
                }
            }
            flush()
            let perUnit = p.maxDirectoriesPerUnit
            for depth in directories.keys.sorted(by: >) {
                let list = directories[depth]!.sorted { $0.entry.path < $1.entry.path }
                var start = 0
                while start < list.count {
                    let end = min(start + perUnit, list.count)
                    add(.directories, Array(list[start..<end]), depth: Int64(depth))
                    start = end
                }
            }
            return PlannedPage(units: units, totals: totals)
        }
    }

    /// A whole scan planned as one page (for tests and small tools).
    public func plan(entries: [FileEntry], sourcePath: String, destinationPath: String, job: String = "") -> PlannedPage {
        var builder = Builder(planner: self, job: job, sourcePath: sourcePath, destinationPath: destinationPath)
        return builder.page(entries)
    }
}
