import BargeWire

/// What a source agent does for one unit: its steps in order, handed out one at a time, and per
/// file the chunks still to be acked before its `file done`. Steps are added as they become known,
/// so that a file cut by content can send its first chunks while the rest is still being scanned.
/// Pure, so it is tested without sockets.
public struct UnitPlan: Sendable {
    public enum Step: Hashable, Sendable {
        /// A directory or symbolic link to create.
        case entry(file: Int)
        /// A chunk of a file's range.
        case chunk(file: Int, offset: UInt64, length: Int)
        /// `file done` for a file with no chunk in this unit (an empty file).
        case finish(file: Int)
        /// Small files whole, in one `file batch` (each file's single chunk, or none when empty).
        case batch(files: [Int])

        /// The files' bytes it sends, before encoding (what a cap paces), given each file's size.
        public func bytes(size: (Int) -> UInt64) -> Int {
            switch self {
            case .chunk(_, _, let length): length
            case .batch(let files): files.reduce(0) { $0 + Int(clamping: size($1)) }
            case .entry, .finish: 0
            }
        }
    }

    /// What a stream is to do next.
    public enum Next: Equatable, Sendable {
        case step(Step)
        /// Every step known so far is handed out, and more are to come.
        case wait
        /// Every step is handed out, and no more will come.
        case end
    }

    private let files: [TaskFile]
    private let chunkSize: UInt64
    public private(set) var steps: [Step] = []
    private var handedOut = 0
    /// Per file: chunks added and not yet acked.
    private var unacked: [Int]
    /// Per file: its last chunk is added (the one that reaches the end of its range).
    private var whole: [Bool]
    /// No step will be added.
    public private(set) var complete = false
    /// Small files gathered for the next batch step, and their bytes.
    private var gathering: [Int] = []
    private var gatheredBytes: UInt64 = 0
    /// A batch step holds at most this many files and (but for its first file) bytes; 0 files:
    /// no batches, every file goes as chunks.
    public let batchFiles: Int
    public let batchBytes: UInt64

    /// Each batch costs the destination a group commit (`syncfs`, then an `fsync` per directory
    /// it renamed in), an index transaction and a reply. At 64 files and 1 MiB, 20,000 files of
    /// 1-32 KiB made about 590 commits and took 2.9-3.2 s on loopback; at 256 files and 4 MiB,
    /// 2.1-2.5 s (the destination's CPU fell from 2.2-2.8 s to 2.0-2.2). 512 and 8 MiB did no
    /// better, and a batch must stay under the 16 MiB frame limit (twice `batchBytes` at most).
    /// The cost is memory: the agents' peak RSS over that job rose from 218 to 254 MiB at the
    /// source and from 124 to 163 MiB at the destination (the send budget still bounds the bytes
    /// held in batches).
    public static let defaultBatchFiles = 256
    public static let defaultBatchBytes: UInt64 = 4 << 20

    public init(_ task: TaskAssign, batchFiles: Int = Self.defaultBatchFiles, batchBytes: UInt64 = Self.defaultBatchBytes) {
        files = task.files
        chunkSize = UInt64(task.chunkSize)
        unacked = [Int](repeating: 0, count: task.files.count)
        whole = [Bool](repeating: false, count: task.files.count)
        self.batchFiles = batchFiles
        self.batchBytes = batchBytes
    }

    /// A file that goes whole in a batch: a regular file finished in this unit, in one chunk at
    /// most, and no larger than a batch's bytes (so a batch stays near `2 × batchBytes`, far under
    /// the frame limit, whatever the chunk size: it may be 16 MiB).
    private func batchable(_ f: TaskFile) -> Bool { Self.batchable(f, chunkSize: chunkSize, batchFiles: batchFiles, batchBytes: batchBytes) }

    static func batchable(_ f: TaskFile, chunkSize: UInt64, batchFiles: Int = defaultBatchFiles, batchBytes: UInt64 = defaultBatchBytes) -> Bool {
        batchFiles > 0 && f.entry.kind == .file && f.finish && !f.repair && f.offset == 0 && f.length == f.entry.size
            && f.entry.size <= min(chunkSize, batchBytes)
    }

    /// Adds file `i`'s steps that need no scan: its entry (a directory or symbolic link), its one
    /// chunk (`verify --repair`: exactly one chunk of the manifest, whatever its length), or its
    /// fixed-size chunks.
    public mutating func addSteps(file i: Int) {
        let f = files[i]
        switch f.entry.kind {
        case .directory, .symlink:
            steps.append(.entry(file: i))
        case .file:
            if batchable(f) {
                // Counted like its one chunk, so that sent as a chunk (to a peer without batches)
                // it is finished after its ack.
                if f.entry.size > 0 { unacked[i] += 1 }
                whole[i] = true
                if !gathering.isEmpty, gathering.count == batchFiles || gatheredBytes + f.entry.size > batchBytes { gather() }
                gathering.append(i)
                gatheredBytes += f.entry.size
                return
            }
            if f.repair {
                addChunk(file: i, offset: f.offset, length: Int(f.length))
                return
            }
            var offset = f.offset
            while offset < end(of: i) {
                let length = min(chunkSize, end(of: i) - offset)
                addChunk(file: i, offset: offset, length: Int(length))
                offset += length
            }
            endOfScan(file: i)
        }
    }

    /// Adds a chunk of file `i`; the one that reaches the end of the file's range is its last.
    public mutating func addChunk(file i: Int, offset: UInt64, length: Int) {
        steps.append(.chunk(file: i, offset: offset, length: length))
        unacked[i] += 1
        if offset + UInt64(length) >= end(of: i) { whole[i] = true }
    }

    /// File `i` has no more chunks: one with none (an empty file) gets its `file done` step.
    public mutating func endOfScan(file i: Int) {
        guard !whole[i] else { return }
        whole[i] = true
        if unacked[i] == 0, files[i].finish { steps.append(.finish(file: i)) }
    }

    /// The files gathered so far become a batch step.
    private mutating func gather() {
        if !gathering.isEmpty { steps.append(.batch(files: gathering)) }
        gathering = []
        gatheredBytes = 0
    }

    /// No more steps will be added.
    public mutating func end() {
        gather()
        complete = true
    }

    /// What `next()` would answer, without handing a step out.
    public var peek: Next {
        guard handedOut < steps.count else { return complete ? .end : .wait }
        return .step(steps[handedOut])
    }

    public mutating func next() -> Next {
        guard handedOut < steps.count else { return complete ? .end : .wait }
        defer { handedOut += 1 }
        return .step(steps[handedOut])
    }

    /// Records an acked chunk of `file`; true when it was the file's last.
    public mutating func acked(file i: Int) -> Bool {
        unacked[i] -= 1
        return unacked[i] == 0 && whole[i]
    }

    private func end(of i: Int) -> UInt64 { files[i].offset + files[i].length }
}
