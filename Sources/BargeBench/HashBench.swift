import BargeCodec
import BargeDigest

/// `barge bench hash`: XXH3-128 and SHA-256 throughput on an in-memory buffer of `bufferSize`
/// bytes, hashed repeatedly for `seconds` each. GB/s is 10⁹ bytes per second.
public struct HashBench {
    public struct Report: Codable, Sendable {
        public var results: [Result]
        public var bufferSize: Int
    }

    public struct Result: Codable, Sendable {
        public var algorithm: String
        public var gbPerS: Double
    }

    public var bufferSize = 1 << 20
    public var seconds = 1.0

    public init() {}

    public func run() -> Report {
        let buffer = SampleData.random(bytes: bufferSize, seed: 42)
        var sink: UInt64 = 0
        let xxh = rate { raw in sink &+= XXH3.hash128(raw).low }
        let sha = SHA256Hasher()
        let shaRate = rate { raw in
            sha.update(raw)
            sink &+= UInt64(sha.finalize().bytes[0])
        }
        blackHole(sink)
        return Report(results: [Result(algorithm: "xxh3-128", gbPerS: xxh), Result(algorithm: "sha256", gbPerS: shaRate)],
                      bufferSize: bufferSize)

        func rate(_ body: (UnsafeRawBufferPointer) -> Void) -> Double {
            buffer.withUnsafeBytes { raw in
                body(raw)  // warm up
                var rounds = 0
                let start = MonotonicClock.now()
                var now = start
                while Double(now - start) < seconds * 1e9 {
                    for _ in 0..<8 { body(raw) }
                    rounds += 8
                    now = MonotonicClock.now()
                }
                return (Double(rounds * raw.count) / Double(now - start) * 1000).rounded() / 1000
            }
        }
    }
}

/// Keeps a value alive so that the optimiser cannot drop the work that produced it.
@inline(never)
func blackHole(_ value: UInt64) {
    withExtendedLifetime(value) {}
}
