#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Deterministic test and benchmark data, so that a figure measured on one machine can be
/// reproduced on another. The typed fields imitate simulation and instrument output: smooth
/// structure plus noise in the low bits.
public enum SampleData {
    public enum Kind: String, CaseIterable, Sendable {
        case float32, float64, int16, text, random, zeros
    }

    public static func generate(_ kind: Kind, bytes: Int, seed: UInt64 = 1) -> [UInt8] {
        switch kind {
        case .float32: float32Field(bytes: bytes, seed: seed)
        case .float64: float64Field(bytes: bytes, seed: seed)
        case .int16: int16Signal(bytes: bytes, seed: seed)
        case .text: text(bytes: bytes, seed: seed)
        case .random: random(bytes: bytes, seed: seed)
        case .zeros: [UInt8](repeating: 0, count: bytes)
        }
    }

    /// A 2-D temperature-like field (about 290 K, smooth waves across a 1024-wide grid) plus
    /// Gaussian noise of 0.05 K, as float32.
    public static func float32Field(bytes: Int, seed: UInt64 = 1) -> [UInt8] {
        typedArray(bytes: bytes, width: 4, seed: seed) { v, out, i in
            out.storeBytes(of: Float(v).bitPattern.littleEndian, toByteOffset: i * 4, as: UInt32.self)
        }
    }

    /// The same kind of field as float64, with noise of 1e-4 relative: plenty of noisy mantissa.
    public static func float64Field(bytes: Int, seed: UInt64 = 1) -> [UInt8] {
        typedArray(bytes: bytes, width: 8, seed: seed) { v, out, i in
            out.storeBytes(of: v.bitPattern.littleEndian, toByteOffset: i * 8, as: UInt64.self)
        }
    }

    /// A 16-bit digitiser trace: a slow oscillation of ±8000 counts with a few counts of noise.
    public static func int16Signal(bytes: Int, seed: UInt64 = 1) -> [UInt8] {
        var rng = SplitMix64(seed: seed)
        let n = bytes / 2
        var out = [UInt8](repeating: 0, count: bytes)
        out.withUnsafeMutableBytes { raw in
            for i in 0..<n {
                let t = Double(i)
                let v = 8000 * sin(t / 700) * cos(t / 5300) + 40 * sin(t / 37) + rng.nextGaussian() * 3
                raw.storeBytes(of: Int16(clamping: Int(v.rounded())).littleEndian, toByteOffset: i * 2, as: Int16.self)
            }
            for i in (n * 2)..<bytes { raw[i] = UInt8(truncatingIfNeeded: rng.next()) }
        }
        return out
    }

    private static func typedArray(bytes: Int, width: Int, seed: UInt64,
                                   store: (Double, UnsafeMutableRawBufferPointer, Int) -> Void) -> [UInt8] {
        var rng = SplitMix64(seed: seed)
        let n = bytes / width
        let noise = width == 4 ? 0.05 : 290e-4
        var out = [UInt8](repeating: 0, count: bytes)
        out.withUnsafeMutableBytes { raw in
            for i in 0..<n {
                let x = Double(i % 1024), y = Double(i / 1024)
                let v = 290 + 12 * sin(x / 97) * cos(y / 61) + 3 * sin((x + 2 * y) / 23) + rng.nextGaussian() * noise
                store(v, raw, i)
            }
            for i in (n * width)..<bytes { raw[i] = UInt8(truncatingIfNeeded: rng.next()) }
        }
        return out
    }

    /// English-like text: words drawn with a Zipf-like skew, in sentences and lines.
    public static func text(bytes: Int, seed: UInt64 = 1) -> [UInt8] {
        let words = """
            the of and to in is that for it as was with be by on not he this are or his from at which \
            but have an they you were her she there been one all we their has would when if so no will \
            data transfer cluster node chunk network storage compression latency throughput sample \
            experiment detector simulation model result energy particle beam temperature pressure \
            measurement analysis observed value error estimate field grid solver mesh boundary flux
            """.split(separator: " ").map { Array($0.utf8) }
        var rng = SplitMix64(seed: seed)
        var out = [UInt8]()
        out.reserveCapacity(bytes + 32)
        var inSentence = 0
        while out.count < bytes {
            // Squaring a uniform draw skews towards the common words at the front of the list.
            let u = Double(rng.next() >> 11) / Double(1 << 53)
            var w = words[Int(u * u * Double(words.count))]
            if inSentence == 0, let first = w.first { w[0] = first & 0xDF }
            out.append(contentsOf: w)
            inSentence += 1
            if inSentence > 6 + Int(rng.next() % 12) {
                out.append(contentsOf: rng.next() % 4 == 0 ? Array(".\n".utf8) : Array(". ".utf8))
                inSentence = 0
            } else {
                out.append(rng.next() % 11 == 0 ? UInt8(ascii: ",") : UInt8(ascii: " "))
                if out.last == UInt8(ascii: ",") { out.append(UInt8(ascii: " ")) }
            }
        }
        out.removeLast(out.count - bytes)
        return out
    }

    public static func random(bytes: Int, seed: UInt64 = 1) -> [UInt8] {
        var rng = SplitMix64(seed: seed)
        var out = [UInt8](repeating: 0, count: bytes)
        out.withUnsafeMutableBytes { raw in
            var i = 0
            while i + 8 <= bytes {
                raw.storeBytes(of: rng.next(), toByteOffset: i, as: UInt64.self)
                i += 8
            }
            while i < bytes { raw[i] = UInt8(truncatingIfNeeded: rng.next()); i += 1 }
        }
        return out
    }
}

/// SplitMix64: a tiny, fast, well-mixed generator, enough for test data (not for secrets).
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A standard normal draw (Box–Muller).
    public mutating func nextGaussian() -> Double {
        let u1 = max(Double(next() >> 11) / Double(1 << 53), .leastNonzeroMagnitude)
        let u2 = Double(next() >> 11) / Double(1 << 53)
        return (-2 * log(u1)).squareRoot() * cos(2 * .pi * u2)
    }
}
