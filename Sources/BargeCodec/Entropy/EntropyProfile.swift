/// What a cheap sample says about a chunk's bytes.
public struct EntropyProfile: Hashable, Sendable {
    /// Order-0 Shannon entropy of the sample, in bits per byte (0...8), with the Miller–Madow
    /// correction for small samples.
    public var entropy: Double
    /// How many of the 256 byte values occur in the sample.
    public var distinctBytes: Int
    /// How many byte values, taken most frequent first, cover 90% of the sample. Text has a small
    /// core set; random data needs about 230 of 256.
    public var coreSet: Int
    /// The mean entropy of the byte planes at stride 2, 4 and 8 (index 0, 1, 2): the entropy the
    /// compressor sees after a byte shuffle with that stride.
    public var planeEntropy: [Double]
    /// Bytes in the sample.
    public var sampleLength: Int

    public init(entropy: Double, distinctBytes: Int, coreSet: Int, planeEntropy: [Double], sampleLength: Int) {
        self.entropy = entropy
        self.distinctBytes = distinctBytes
        self.coreSet = coreSet
        self.planeEntropy = planeEntropy
        self.sampleLength = sampleLength
    }

    public func planeEntropy(stride: Int) -> Double {
        switch stride {
        case 2: planeEntropy[0]
        case 4: planeEntropy[1]
        case 8: planeEntropy[2]
        default: entropy
        }
    }

    /// Above this many bits per byte (of 8) on every view, a chunk is treated as incompressible.
    public static let incompressible = 7.9

    /// The shuffle stride whose planes look most compressible, or 1 when shuffling does not help.
    /// Sub-planes never look worse than their parent plane, so a wider stride must beat a narrower
    /// one by a margin to be chosen: float32 picks 4, not 8.
    public var bestStride: Int {
        let margin = 0.15
        var best = 1
        var bestEntropy = entropy - 0.5  // shuffling must save at least half a bit per byte
        for s in ByteFilter.strides {
            let e = planeEntropy(stride: s)
            if e < bestEntropy - (best == 1 ? 0 : margin) {
                best = s
                bestEntropy = e
            }
        }
        return best
    }

    /// True when neither the bytes nor any byte plane look compressible.
    public var looksIncompressible: Bool {
        entropy >= Self.incompressible && planeEntropy.allSatisfy { $0 >= Self.incompressible - 0.2 }
    }
}
