/// What the selector believes about one codec on one class of data: the ratio it reaches and the
/// time it takes per raw byte to compress and to decompress.
public struct CodecEstimate: Hashable, Sendable {
    public var ratio: Double
    public var compressNanosPerByte: Double
    public var decompressNanosPerByte: Double
    /// Chunks this estimate has learnt from; 0 for a prior.
    public var observations: Int

    public init(ratio: Double, compressNanosPerByte: Double, decompressNanosPerByte: Double, observations: Int = 0) {
        self.ratio = ratio
        self.compressNanosPerByte = compressNanosPerByte
        self.decompressNanosPerByte = decompressNanosPerByte
        self.observations = observations
    }

    /// Time per raw byte through a pipeline whose stages (compress at the sender, the link,
    /// decompress at the receiver) overlap, so the slowest stage sets the pace. `parallelism`
    /// chunks are compressed (and decompressed) at once, on as many cores, so those stages go that
    /// many times faster than one chunk's time says. CPU time hidden behind the link is still not
    /// free (it is taken from the other streams and from the receiver), so a tenth of it is added.
    /// `wireNanosPerByte` is 0 on an unlimited link.
    public func cost(wireNanosPerByte: Double, parallelism: Double = 1) -> Double {
        let cpu = compressNanosPerByte + decompressNanosPerByte
        let p = max(1, parallelism)
        return max(compressNanosPerByte / p, wireNanosPerByte / ratio, decompressNanosPerByte / p) + Self.cpuWeight * cpu
    }

    /// The share of a codec's CPU time added to its cost although the pipeline hides it.
    static let cpuWeight = 0.05

    /// Exponentially weighted moving average towards an observation (the first replaces the prior).
    ///
    /// A chunk's compression time is wall time: its CPU time plus whatever it waited for a core.
    /// Those waits come in bursts (every stream's next chunk is ready at once, the receiver
    /// decompresses on the same cores) and inflate single chunks two or three times. A slower
    /// observation therefore moves the estimate only `slowerWeight` of the way, a faster one the
    /// full `weight`: a few unlucky chunks no longer rule a codec out for the rest of a job (seen:
    /// text sent with lz4 at 2.1 for 70 MB, after zstd-1 and zstd-3 measured 2–3 times their usual
    /// time for a moment), while lasting contention still raises the estimate within tens of chunks.
    mutating func learn(ratio observedRatio: Double, compressNanosPerByte observedSpeed: Double, weight: Double) {
        if observations == 0 {
            ratio = observedRatio
            compressNanosPerByte = observedSpeed
        } else {
            ratio += weight * (observedRatio - ratio)
            let w = observedSpeed > compressNanosPerByte ? min(weight, Self.slowerWeight) : weight
            compressNanosPerByte += w * (observedSpeed - compressNanosPerByte)
        }
        observations += 1
    }

    /// The weight of a compression time slower than the estimate.
    static let slowerWeight = 0.1

    mutating func learn(decompressNanosPerByte observed: Double, weight: Double) {
        decompressNanosPerByte += (observations == 0 ? 1 : weight) * (observed - decompressNanosPerByte)
    }
}

/// The starting point before any chunk of a class has been seen: ratios from the sample's entropy,
/// speeds from typical figures for one x86-64 core. Calibration replaces them after one chunk.
public enum CodecPriors {
    public static func estimate(_ spec: CodecSpec, profile: EntropyProfile) -> CodecEstimate {
        let h = profile.planeEntropy(stride: spec.filter.stride)
        // What an order-0 entropy coder would reach; LZ matching adds to it on real data.
        let order0 = min(16, 8 / max(h, 0.5))
        // Filter passes cost time both ways. The sample's plane entropy cannot see what XOR delta
        // adds on smooth data, so delta gets a small bonus and is tried early; calibration settles it.
        let shuffle: Double, bonus: Double
        switch spec.filter {
        case .none: (shuffle, bonus) = (0, 1)
        case .shuffle: (shuffle, bonus) = (0.35, 1)
        case .delta: (shuffle, bonus) = (0.5, 1.04)
        // A bit shuffle costs a second pass, and helps LZ4 most (its runs of equal bits); a
        // byte delta is cheap, and helps smooth fields as XOR delta does.
        case .bitshuffle: (shuffle, bonus) = (1.0, 1.06)
        case .bytedelta: (shuffle, bonus) = (0.45, 1.04)
        }
        switch spec.compressor {
        case .none:
            return CodecEstimate(ratio: 1, compressNanosPerByte: 0.08, decompressNanosPerByte: 0.08)
        case .lz4:
            return CodecEstimate(ratio: bonus * (1 + (order0 - 1) * 0.5), compressNanosPerByte: 1.5 + shuffle, decompressNanosPerByte: 0.25 + shuffle)
        case .zstd(let level):
            let speed: Double = level <= 1 ? 2.5 : level <= 3 ? 4.5 : level <= 6 ? 11 : 4.0 * Double(level)
            let gain = 1 + 0.025 * Double(min(level, 9))
            return CodecEstimate(ratio: bonus * order0 * gain, compressNanosPerByte: speed + shuffle, decompressNanosPerByte: 1.0 + shuffle)
        }
    }
}
