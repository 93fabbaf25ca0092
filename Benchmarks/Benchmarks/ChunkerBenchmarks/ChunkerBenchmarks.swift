import BargeBench
import BargeChunk
import Benchmark
import Foundation

// One operation chunks a 64 MiB file (from the page cache after the first pass):
// throughput ×67.1 is MB/s. FastCDC's cost is the gear hash over every byte past each minimum.

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(metrics: [.wallClock, .throughput], maxDuration: .seconds(3), maxIterations: 1000)

    let path = FileManager.default.temporaryDirectory.appendingPathComponent("barge-chunker-bench.bin").path
    try! Data(SampleData.random(bytes: 64 << 20)).write(to: URL(fileURLWithPath: path))

    for (name, strategy) in [("fixed 1 MiB", ChunkingStrategy.fixed(size: 1 << 20)), ("FastCDC 512K/1M/4M", .fastCDC(.standard))] {
        let reader = try! FileChunkReader(path: path, strategy: strategy)
        Benchmark("\(name) 64 MiB file") { benchmark in
            for _ in benchmark.scaledIterations {
                var chunks = 0
                try! reader.forEachChunk { _, _ in chunks += 1 }
                blackHole(chunks)
            }
        }
    }
    // Generated once, outside the measured closure (which runs once per sample).
    let data = SampleData.random(bytes: 64 << 20, seed: 5)
    Benchmark("FastCDC cut points only, 64 MiB in memory") { benchmark in
        for _ in benchmark.scaledIterations {
            data.withUnsafeBytes { raw in
                var at = 0
                while at < raw.count {
                    at += FastCDC.standard.cut(UnsafeRawBufferPointer(rebasing: raw[at...]))
                }
                blackHole(at)
            }
        }
    }
}
