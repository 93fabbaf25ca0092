import BargeChunk
import BargeWire

/// What a source agent does for one unit, in order: the steps, and per file how many chunks must
/// be acked before its `file done`. Pure, so it is tested without sockets.
public struct UnitPlan: Sendable {
    public enum Step: Hashable, Sendable {
        /// A directory or symbolic link to create.
        case entry(file: Int)
        /// A chunk of a file's range.
        case chunk(file: Int, offset: UInt64, length: Int)
        /// `file done` for a file with no chunk in this unit (an empty file).
        case finish(file: Int)
    }

    public let steps: [Step]
    /// Chunks per file index.
    public let chunksPerFile: [Int]

    /// `spans` gives a file's chunks when they are not fixed-size (content-defined chunking reads
    /// the file to find them); nil means fixed chunks of the task's chunk size.
    public init(_ task: TaskAssign, spans: (Int) throws -> [ChunkSpan]? = { _ in nil }) rethrows {
        var steps: [Step] = []
        var counts = [Int](repeating: 0, count: task.files.count)
        let size = UInt64(task.chunkSize)
        for (i, f) in task.files.enumerated() {
            switch f.entry.kind {
            case .directory, .symlink:
                steps.append(.entry(file: i))
            case .file:
                if f.repair {
                    // `verify --repair`: the range is exactly one chunk of the manifest, whatever its length.
                    steps.append(.chunk(file: i, offset: f.offset, length: Int(f.length)))
                    counts[i] = 1
                    continue
                }
                if let spans = try spans(i) {
                    steps += spans.map { .chunk(file: i, offset: $0.offset, length: $0.length) }
                    counts[i] = spans.count
                    if counts[i] == 0, f.finish { steps.append(.finish(file: i)) }
                    continue
                }
                var offset = f.offset
                let end = f.offset + f.length
                while offset < end {
                    let length = min(size, end - offset)
                    steps.append(.chunk(file: i, offset: offset, length: Int(length)))
                    counts[i] += 1
                    offset += length
                }
                if counts[i] == 0, f.finish { steps.append(.finish(file: i)) }
            }
        }
        self.steps = steps
        chunksPerFile = counts
    }
}
