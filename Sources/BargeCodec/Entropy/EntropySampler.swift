/// Samples a chunk cheaply and measures its entropy: 16 bytes every 256 bytes, at most 8 KiB in all
/// (the spacing widens on large chunks so the sample stays within 8 KiB). A chunk of 8 KiB or less
/// is read whole.
///
/// One pass fills eight histograms, one per byte position modulo 8. The histograms for stride 4, 2
/// and 1 are sums of those, so sampling touches each sampled byte once.
public struct EntropySampler {
    public static let pieceLength = 16
    public static let minimumSpacing = 256
    public static let maxSampleLength = 8192

    private var histograms = [UInt32](repeating: 0, count: 8 * 256)

    public init() {}

    public mutating func profile(_ bytes: UnsafeRawBufferPointer) -> EntropyProfile {
        for i in histograms.indices { histograms[i] = 0 }
        let sampled = histograms.withUnsafeMutableBufferPointer { h in Self.fill(h, from: bytes) }
        return histograms.withUnsafeBufferPointer { h in Self.measure(h, sampled: sampled) }
    }

    public mutating func profile(_ bytes: [UInt8]) -> EntropyProfile {
        bytes.withUnsafeBytes { profile($0) }
    }

    /// Fills the eight position-mod-8 histograms; returns how many bytes were sampled.
    private static func fill(_ h: UnsafeMutableBufferPointer<UInt32>, from bytes: UnsafeRawBufferPointer) -> Int {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return 0 }
        let count = bytes.count
        if count <= maxSampleLength {
            for i in 0..<count { h[(i & 7) &<< 8 | Int(base.load(fromByteOffset: i, as: UInt8.self))] &+= 1 }
            return count
        }
        // Spacing: a multiple of 16 (so pieces stay aligned to every stride), at least 256, and wide
        // enough that the pieces fit in maxSampleLength.
        let pieces = maxSampleLength / pieceLength
        var spacing = max(minimumSpacing, (count + pieces - 1) / pieces)
        spacing = (spacing + pieceLength - 1) / pieceLength * pieceLength
        var offset = 0
        var sampled = 0
        while offset + pieceLength <= count {
            for k in 0..<pieceLength {
                h[(k & 7) &<< 8 | Int(base.load(fromByteOffset: offset &+ k, as: UInt8.self))] &+= 1
            }
            sampled += pieceLength
            offset += spacing
        }
        return sampled
    }

    private static func measure(_ h: UnsafeBufferPointer<UInt32>, sampled: Int) -> EntropyProfile {
        guard sampled > 0 else {
            return EntropyProfile(entropy: 0, distinctBytes: 0, coreSet: 0, planeEntropy: [0, 0, 0], sampleLength: 0)
        }
        var whole = [UInt32](repeating: 0, count: 256)
        var planes: [Double] = []
        // Stride 8: the eight histograms as they are. Stride 4 and 2: sums of 2 and 4 of them.
        var stride8 = 0.0, stride4 = 0.0, stride2 = 0.0
        var h4 = [UInt32](repeating: 0, count: 4 * 256)
        for p in 0..<8 {
            var hp = [UInt32](repeating: 0, count: 256)
            for b in 0..<256 {
                let c = h[p << 8 | b]
                hp[b] = c
                h4[(p & 3) << 8 | b] &+= c
                whole[b] &+= c
            }
            stride8 += entropy(hp)
        }
        var h2 = [UInt32](repeating: 0, count: 2 * 256)
        for p in 0..<4 {
            stride4 += entropy(Array(h4[(p << 8)..<((p + 1) << 8)]))
            for b in 0..<256 { h2[(p & 1) << 8 | b] &+= h4[p << 8 | b] }
        }
        for p in 0..<2 { stride2 += entropy(Array(h2[(p << 8)..<((p + 1) << 8)])) }
        planes = [stride2 / 2, stride4 / 4, stride8 / 8]

        let sorted = whole.sorted(by: >)
        var covered: UInt32 = 0, core = 0
        let target = UInt32((Double(sampled) * 0.9).rounded(.up))
        while covered < target { covered &+= sorted[core]; core += 1 }
        return EntropyProfile(
            entropy: entropy(whole), distinctBytes: whole.lazy.filter { $0 > 0 }.count, coreSet: core,
            planeEntropy: planes, sampleLength: sampled)
    }

    /// Order-0 entropy in bits per symbol, Miller–Madow corrected, capped at 8:
    /// H = log2(N) − Σ c·log2(c) / N + (K − 1) / (2N ln 2), with K the distinct symbols.
    static func entropy(_ counts: [UInt32]) -> Double {
        var n: UInt32 = 0, k = 0
        var sum = 0.0
        for c in counts where c > 0 {
            n &+= c
            k += 1
            sum += CLogC.value(c)
        }
        guard n > 0 else { return 0 }
        let nd = Double(n)
        let h = log2(nd) - sum / nd + Double(k - 1) / (2 * nd * 0.693_147_180_559_945_3)
        return min(8, max(0, h))
    }
}

/// c·log2(c) for every count a sample can hold, computed once.
enum CLogC {
    static let table: [Double] = (0...EntropySampler.maxSampleLength).map { c in c == 0 ? 0 : Double(c) * log2(Double(c)) }

    @inline(__always)
    static func value(_ c: UInt32) -> Double {
        Int(c) < table.count ? table[Int(c)] : Double(c) * log2(Double(c))
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
