import BargeBench
import BargeDigest
import Benchmark

// One operation hashes one 1 MiB buffer: throughput ×1.048576 is MB/s. The references are
// `xxhsum -b` and `openssl speed -evp sha256` (see cluster/bench-reference.sh).

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(metrics: [.wallClock, .throughput], maxDuration: .seconds(2), maxIterations: 1_000_000)
    let data = SampleData.random(bytes: 1 << 20)

    Benchmark("XXH3-128 1 MiB") { benchmark in
        for _ in benchmark.scaledIterations { data.withUnsafeBytes { blackHole(XXH3.hash128($0)) } }
    }
    Benchmark("XXH3-64 1 MiB") { benchmark in
        for _ in benchmark.scaledIterations { data.withUnsafeBytes { blackHole(XXH3.hash64($0)) } }
    }
    let sha = SHA256Hasher()
    Benchmark("SHA-256 1 MiB") { benchmark in
        for _ in benchmark.scaledIterations {
            data.withUnsafeBytes { sha.update($0) }
            blackHole(sha.finalize())
        }
    }
    Benchmark("HMAC-SHA256 1 MiB") { benchmark in
        for _ in benchmark.scaledIterations {
            let mac = try! HMACSHA256(key: Array("cluster token".utf8))
            data.withUnsafeBytes { try! mac.update($0) }
            blackHole(try! mac.finalize())
        }
    }
}
