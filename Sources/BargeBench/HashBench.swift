import BargeChunk
import BargeCodec
import BargeDigest

/// `barge bench hash`: XXH3-128, SHA-256, FastCDC (cut points), AES-256-GCM (which seals every
/// frame) and ChaCha20-Poly1305 (the other AEAD the security issue allows), on an in-memory buffer
/// of `bufferSize` bytes, hashed or sealed repeatedly for `seconds` each. GB/s is 10⁹ bytes per
/// second.
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
        // FastCDC's cut points with Barge's parameters, over 32 MiB chunk after chunk (the bytes
        // up to each chunk's minimum are skipped, as when a source agent plans a unit).
        let cdc = FastCDC.standard
        let cdcRate = rate(over: SampleData.random(bytes: 32 << 20, seed: 43)) { raw in
            var offset = 0
            while offset < raw.count {
                offset += cdc.cut(UnsafeRawBufferPointer(rebasing: raw[offset...]))
                sink &+= UInt64(offset)
            }
        }
        // The AEADs: AES-256-GCM seals every frame; ChaCha20-Poly1305 is the other the security
        // issue allows, measured beside it.
        func sealRate(_ algorithm: AEADAlgorithm) -> Double {
            guard let aead = try? AESGCM(key: [UInt8](repeating: 7, count: AESGCM.keyLength), encrypting: true, algorithm: algorithm) else { return 0 }
            var out = [UInt8](repeating: 0, count: bufferSize + AESGCM.tagLength)
            var nonce = [UInt8](repeating: 0, count: AESGCM.nonceLength)
            var n: UInt64 = 0
            return rate { raw in
                n &+= 1
                withUnsafeBytes(of: n.bigEndian) { nonce.replaceSubrange(4..<12, with: $0) }
                out.withUnsafeMutableBytes { try? aead.seal(raw, aad: [], nonce: nonce, into: $0) }
                sink &+= UInt64(out[0])
            }
        }
        let aes = sealRate(.aes256GCM), chacha = sealRate(.chacha20Poly1305)
        blackHole(sink)
        return Report(results: [Result(algorithm: "xxh3-128", gbPerS: xxh), Result(algorithm: "sha256", gbPerS: shaRate),
                                Result(algorithm: "fastcdc", gbPerS: cdcRate),
                                Result(algorithm: "aes-256-gcm", gbPerS: aes), Result(algorithm: "chacha20-poly1305", gbPerS: chacha)],
                      bufferSize: bufferSize)

        func rate(over bytes: [UInt8]? = nil, _ body: (UnsafeRawBufferPointer) -> Void) -> Double {
            (bytes ?? buffer).withUnsafeBytes { raw in
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
