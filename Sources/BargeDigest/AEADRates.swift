/// How fast this machine seals with each AEAD, and the choice two machines make from their rates.
///
/// Which AEAD is cheaper depends on the CPU and on the libcrypto build: here (OpenSSL 3.0, an
/// AMD EPYC with AES-NI and VAES) ChaCha20-Poly1305 seals 1 MiB at 3.7 GB/s and AES-256-GCM at
/// 2.8 GB/s, while newer libcrypto builds run AES-GCM on the same vector units at several times
/// that. So neither is fixed: from protocol version 13 each side of a handshake sends its rates
/// (`Challenge`, `Auth`) and both pick the AEAD whose slower side is fastest (`choose`).
public struct AEADRates: Hashable, Sendable, CustomStringConvertible {
    /// Sealing rate, in units of 10 MB/s (so at most 655 GB/s); 0 asks the peer not to use it.
    public var aes256GCM: UInt16
    public var chacha20Poly1305: UInt16

    public init(aes256GCM: UInt16, chacha20Poly1305: UInt16) {
        self.aes256GCM = aes256GCM
        self.chacha20Poly1305 = chacha20Poly1305
    }

    public subscript(_ algorithm: AEADAlgorithm) -> UInt16 {
        switch algorithm {
        case .aes256GCM: aes256GCM
        case .chacha20Poly1305: chacha20Poly1305
        }
    }

    public var description: String {
        "AES-256-GCM \(Double(aes256GCM) / 100) GB/s, ChaCha20-Poly1305 \(Double(chacha20Poly1305) / 100) GB/s"
    }

    /// The AEAD a connection between `a` and `b` uses: the one whose slower side seals fastest,
    /// AES-256-GCM on a tie. Symmetric, so both ends choose alike from the same two rates.
    public static func choose(_ a: AEADRates, _ b: AEADRates) -> AEADAlgorithm {
        let chacha = min(a.chacha20Poly1305, b.chacha20Poly1305), aes = min(a.aes256GCM, b.aes256GCM)
        return chacha > aes ? .chacha20Poly1305 : .aes256GCM
    }

    /// This process's rates: measured once, on first use (about 2 ms: each AEAD seals 64 KiB
    /// sixteen times, best of three). `BARGE_AEAD=aes-256-gcm` or `chacha20-poly1305` names one
    /// instead (the other's rate is then 0), for tests and side-by-side benchmarks.
    public static let local: AEADRates = {
        switch getenv("BARGE_AEAD").map({ String(cString: $0) }) {
        case "aes-256-gcm"?: return AEADRates(aes256GCM: 1, chacha20Poly1305: 0)
        case "chacha20-poly1305"?: return AEADRates(aes256GCM: 0, chacha20Poly1305: 1)
        default: return measure()
        }
    }()

    static func measure() -> AEADRates {
        let input = [UInt8](repeating: 0x5A, count: 64 << 10)
        var output = [UInt8](repeating: 0, count: input.count + AESGCM.tagLength)
        let key = [UInt8](repeating: 7, count: AESGCM.keyLength)
        func rate(_ algorithm: AEADAlgorithm) -> UInt16 {
            guard let aead = try? AESGCM(key: key, encrypting: true, algorithm: algorithm) else { return 0 }
            var best = Double.infinity
            var nonce = [UInt8](repeating: 0, count: AESGCM.nonceLength)
            for _ in 0..<3 {
                var t0 = timespec(), t1 = timespec()
                clock_gettime(CLOCK_MONOTONIC, &t0)
                for i in 0..<16 {
                    nonce[11] = UInt8(i)
                    let ok: Bool = input.withUnsafeBytes { src in
                        output.withUnsafeMutableBytes { dst in (try? aead.seal(src, aad: [], nonce: nonce, into: dst)) != nil }
                    }
                    if !ok { return 0 }
                }
                clock_gettime(CLOCK_MONOTONIC, &t1)
                best = min(best, Double(t1.tv_sec - t0.tv_sec) + Double(t1.tv_nsec - t0.tv_nsec) / 1e9)
            }
            let gbPerS = Double(16 * input.count) / max(best, 1e-9) / 1e9
            return UInt16(min(max(gbPerS * 100, 1), Double(UInt16.max)))
        }
        return AEADRates(aes256GCM: rate(.aes256GCM), chacha20Poly1305: rate(.chacha20Poly1305))
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
