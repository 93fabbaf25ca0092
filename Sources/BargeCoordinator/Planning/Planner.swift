import BargeWire

/// Cuts a scanned tree into work units. Pure: the same scan always gives the same plan.
///
/// - A regular file larger than `unitBytes` becomes `range` units of `unitBytes` each, plus a
///   `finish` unit that waits for them (so the file is renamed only once every range is in).
/// - Smaller files and symbolic links are batched in scan order into `files` units of at most
///   `unitBytes` and `maxFilesPerUnit` entries; each file is finished within its unit.
/// - Directories, empty ones included, go last into `directories` units of at most
///   `maxFilesPerUnit × 16` entries, deepest first, each waiting for every unit before it (`*`), so
///   their modes and mtimes are set after everything inside them is written.
///
/// The scanned entry with the empty path is the source itself: a directory (whose contents land
/// under the destination path) or a single file (which lands at the destination path).
public struct Planner: Sendable {
    public var unitBytes: UInt64
    public var chunkSize: UInt64
    public var maxFilesPerUnit: Int

    public init(unitBytes: UInt64 = 64 << 20, chunkSize: UInt64 = 1 << 20, maxFilesPerUnit: Int = 256) {
        precondition(chunkSize > 0 && unitBytes >= chunkSize && unitBytes % chunkSize == 0 && maxFilesPerUnit > 0)
        self.unitBytes = unitBytes
        self.chunkSize = chunkSize
        self.maxFilesPerUnit = maxFilesPerUnit
    }

    public struct Plan: Sendable {
        public var units: [(kind: UnitKind, files: [TaskFile], dependsOn: String?)]
        public var totals: PlanTotals
    }

    public func plan(entries: [FileEntry], sourcePath: String, destinationPath: String) -> Plan {
        var units: [(kind: UnitKind, files: [TaskFile], dependsOn: String?)] = []
        var batch: [TaskFile] = []
        var batchBytes: UInt64 = 0
        var directories: [TaskFile] = []
        var totals = PlanTotals(bytes: 0, files: 0, chunks: 0)

        func flush() {
            if !batch.isEmpty { units.append((.files, batch, nil)) }
            batch = []
            batchBytes = 0
        }

        for e in entries {
            var entry = e
            entry.path = JobPath.join(destinationPath, e.path)
            let source = JobPath.join(sourcePath, e.path)
            switch e.kind {
            case .directory:
                directories.append(TaskFile(sourcePath: source, entry: entry, length: 0, finish: true))
            case .symlink, .file:
                totals.files += 1
                totals.bytes += Int64(e.size)
                totals.chunks += Int64((e.size + chunkSize - 1) / chunkSize)
                if e.kind == .file, e.size > unitBytes {
                    var offset: UInt64 = 0
                    while offset < e.size {
                        let length = min(unitBytes, e.size - offset)
                        units.append((.range, [TaskFile(sourcePath: source, entry: entry, offset: offset, length: length, finish: false)], nil))
                        offset += length
                    }
                    units.append((.finish, [TaskFile(sourcePath: source, entry: entry, offset: 0, length: 0, finish: true)], entry.path))
                    continue
                }
                if batch.count == maxFilesPerUnit || batchBytes + e.size > unitBytes { flush() }
                batch.append(TaskFile(sourcePath: source, entry: entry, length: e.size, finish: true))
                batchBytes += e.size
            }
        }
        flush()
        // Deepest first: a child's entry is created before its parent's mtime is set.
        directories.sort { $0.entry.path.utf8.count != $1.entry.path.utf8.count ? $0.entry.path.utf8.count > $1.entry.path.utf8.count : $0.entry.path < $1.entry.path }
        let perUnit = maxFilesPerUnit * 16  // keeps a task well under the frame limit
        var start = 0
        while start < directories.count {
            let end = min(start + perUnit, directories.count)
            units.append((.directories, Array(directories[start..<end]), "*"))
            start = end
        }
        return Plan(units: units, totals: totals)
    }
}
