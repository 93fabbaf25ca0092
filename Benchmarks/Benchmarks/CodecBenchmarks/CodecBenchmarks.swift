import BargeBench
import BargeCodec
import BargeDigest
import Benchmark

// One operation is one 1 MiB chunk, so throughput in operations per second ×1.048576 is MB/s.
// Compare `Selector choose` with `zstd-1 compress` on the same data for the selector's overhead.

let chunk = 1 << 20

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(metrics: [.wallClock, .throughput], maxDuration: .seconds(2), maxIterations: 100_000)

    let inputs: [(String, [UInt8])] = [
        ("float32", SampleData.float32Field(bytes: chunk)),
        ("float64", SampleData.float64Field(bytes: chunk)),
        ("int16", SampleData.int16Signal(bytes: chunk)),
        ("text", SampleData.text(bytes: chunk)),
        ("random", SampleData.random(bytes: chunk)),
    ]
    let codecs = ["none", "lz4", "zstd-1", "zstd-3", "shuffle4+zstd-1", "delta4+zstd-1", "delta8+zstd-1"]

    for (dataName, data) in inputs {
        let digest = XXH3.hash128(data)
        for name in codecs {
            let spec = try! CodecSpec(name: name)
            let encoder = ChunkEncoder(), decoder = ChunkDecoder()
            let encoded = try! encoder.encode(data, as: spec, digest: digest)
            var out = [UInt8](repeating: 0, count: ChunkFormat.maxEncodedLength(rawLength: chunk))

            Benchmark("\(name) compress \(dataName)") { benchmark in
                for _ in benchmark.scaledIterations {
                    data.withUnsafeBytes { raw in
                        out.withUnsafeMutableBytes { o in blackHole(try! encoder.encode(raw, as: spec, digest: digest, into: o)) }
                    }
                }
            }
            Benchmark("\(name) decompress \(dataName)") { benchmark in
                for _ in benchmark.scaledIterations {
                    encoded.withUnsafeBytes { e in
                        out.withUnsafeMutableBytes { o in blackHole(try! decoder.decode(e, into: o, verify: false)) }
                    }
                }
            }
        }

        let auto = AdaptiveEncoder(sendRate: 125e6)
        Benchmark("auto compress \(dataName)") { benchmark in
            var out = [UInt8](repeating: 0, count: ChunkFormat.maxEncodedLength(rawLength: chunk))
            for _ in benchmark.scaledIterations {
                data.withUnsafeBytes { raw in
                    out.withUnsafeMutableBytes { o in blackHole(try! auto.encode(raw, digest: digest, into: o)) }
                }
            }
        }
        let selector = AdaptiveEncoder(sendRate: 125e6)
        Benchmark("Selector choose \(dataName)") { benchmark in
            for _ in benchmark.scaledIterations {
                data.withUnsafeBytes { raw in blackHole(selector.choose(raw)) }
            }
        }
    }
}
