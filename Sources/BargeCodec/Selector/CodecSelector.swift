#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Chunks that look alike, for calibration: the shuffle stride that suits them and their entropy in
/// half-bit steps.
public struct DataClass: Hashable, Sendable, CustomStringConvertible {
    public var stride: Int
    public var entropyBucket: Int

    init(_ profile: EntropyProfile) {
        stride = profile.bestStride
        entropyBucket = Int((profile.planeEntropy(stride: stride) * 2).rounded(.down))
    }

    public var description: String { "stride \(stride), ~\(Double(entropyBucket) / 2) bits/byte" }
}

/// What the selector chose for a chunk, and why.
public struct CodecDecision: Hashable, Sendable {
    public enum Reason: Hashable, Sendable {
        /// The sample looked random: stored raw without consulting the model.
        case incompressible
        /// The cheapest candidate under the cost model.
        case cheapest
        /// A candidate tried to refresh its calibration.
        case exploring
    }

    public var spec: CodecSpec
    public var dataClass: DataClass
    public var reason: Reason
}

/// The adaptive codec selector behind `auto`. Pure logic, no clock and no I/O: it turns a chunk's
/// entropy profile and the current send rate into a codec, and learns from the outcomes it is told.
///
/// - Random-looking chunks are stored raw.
/// - Otherwise each candidate's time per byte is estimated from per-class calibration (or a prior)
///   and the cheapest wins. On a fast link, cheap codecs win; on a slow one, strong ones.
/// - Every `explorationInterval`-th chunk of a class tries, in turn, one of the other candidates
///   whose estimated cost is within `explorationSlack` of the best, so estimates stay current.
public struct CodecSelector: Sendable {
    public var explorationInterval = 32
    public var explorationSlack = 1.5
    /// Weight of a new observation in the moving averages.
    public var learningRate = 0.3

    /// zstd levels tried beyond the usual 1, 3 and 6, with each filter: archiving (the cold
    /// tier) adds 9, where ratio matters more than speed; in transit there are none.
    public var strongerLevels: [Int] = []

    private var estimates: [DataClass: [CodecSpec: CodecEstimate]] = [:]
    private var decisions: [DataClass: Int] = [:]

    public init() {}

    /// The selector for archiving: the usual candidates and stronger zstd levels.
    public static func archiving() -> CodecSelector {
        var s = CodecSelector()
        s.strongerLevels = [9]
        return s
    }

    /// The candidates for a stride, with `strongerLevels`.
    func candidates(stride: Int) -> [CodecSpec] {
        guard !strongerLevels.isEmpty else { return Self.candidates(stride: stride) }
        let extra: [CodecSpec] = strongerLevels.flatMap { level -> [CodecSpec] in
            if stride == 1 { return [.zstd(level)] }
            return [ByteFilter.shuffle(stride: stride), .delta(stride: stride)].map { try! CodecSpec(filter: $0, compressor: .zstd(level: level)) }
        }
        return Self.candidates(stride: stride) + extra
    }

    /// The codecs considered for data of a given class. A typed class tries both filters with that
    /// stride, and keeps plain zstd-1 as a check on them.
    public static func candidates(stride: Int) -> [CodecSpec] {
        if stride == 1 {
            return [.none, .lz4, .zstd(1), .zstd(3), .zstd(6)]
        }
        let compressors: [Compressor] = [.lz4, .zstd(level: 1), .zstd(level: 3), .zstd(level: 6)]
        // Blosc's fast-link pair and Blosc2's best ratio at speed: bitshuffle then LZ4, and a
        // byte delta after the shuffle then zstd-1 (or -3).
        let planar: [CodecSpec] = [try! CodecSpec(filter: .bitshuffle(stride: stride), compressor: .lz4),
                                   try! CodecSpec(filter: .bytedelta(stride: stride), compressor: .zstd(level: 1)),
                                   try! CodecSpec(filter: .bytedelta(stride: stride), compressor: .zstd(level: 3))]
        return [.none, .zstd(1)] + [ByteFilter.shuffle(stride: stride), .delta(stride: stride)].flatMap { f in
            compressors.map { try! CodecSpec(filter: f, compressor: $0) }
        } + planar
    }

    /// `sendRate` is the link's rate in bytes per second, or nil when it is unlimited;
    /// `parallelism`, how many chunks are compressed at once on separate cores.
    public mutating func choose(_ profile: EntropyProfile, sendRate: Double?, parallelism: Double = 1) -> CodecDecision {
        let dataClass = DataClass(profile)
        if profile.looksIncompressible {
            return CodecDecision(spec: .none, dataClass: dataClass, reason: .incompressible)
        }
        let wire = sendRate.map { $0 > 0 ? 1e9 / $0 : .infinity } ?? 0
        let scored = candidates(stride: dataClass.stride).map { spec in
            let e = estimate(spec, dataClass, profile)
            return (spec: spec, estimate: e, cost: e.cost(wireNanosPerByte: wire, parallelism: parallelism))
        }
        let best = scored.min { $0.cost < $1.cost }!
        let n = decisions[dataClass, default: 0]
        decisions[dataClass] = n + 1
        if n > 0, n % explorationInterval == 0 {
            // Take turns among the other candidates near the best, cheapest first, so that every
            // one is re-measured now and then and one bad measurement cannot rule a codec out
            // for good. `none` needs no measuring: its ratio is 1 and its cost a copy.
            let near = scored
                .filter { $0.cost <= best.cost * explorationSlack && $0.spec != best.spec && $0.spec != .none }
                .sorted { $0.cost < $1.cost }
            if !near.isEmpty {
                let turn = n / explorationInterval - 1
                return CodecDecision(spec: near[turn % near.count].spec, dataClass: dataClass, reason: .exploring)
            }
        }
        return CodecDecision(spec: best.spec, dataClass: dataClass, reason: .cheapest)
    }

    /// Learns from an encoded chunk: `encodedLength` includes the header, `nanoseconds` is the
    /// encoder's time. A chunk the chosen codec could not shrink was stored raw; its ratio of about
    /// 1 and the time spent trying are exactly what the estimate should learn.
    public mutating func record(_ decision: CodecDecision, rawLength: Int, encodedLength: Int, nanoseconds: UInt64) {
        guard rawLength > 0, decision.reason != .incompressible else { return }
        let ratio = Double(rawLength) / Double(max(1, encodedLength))
        let speed = Double(nanoseconds) / Double(rawLength)
        estimates[decision.dataClass, default: [:]][decision.spec, default: CodecPriors.estimate(decision.spec, profile: .neutral)]
            .learn(ratio: ratio, compressNanosPerByte: speed, weight: learningRate)
    }

    /// Learns decompression speed, where the decoder runs in the same process (benchmarks, tests).
    public mutating func recordDecode(_ decision: CodecDecision, rawLength: Int, nanoseconds: UInt64) {
        guard rawLength > 0, decision.reason != .incompressible else { return }
        estimates[decision.dataClass, default: [:]][decision.spec, default: CodecPriors.estimate(decision.spec, profile: .neutral)]
            .learn(decompressNanosPerByte: Double(nanoseconds) / Double(rawLength), weight: learningRate)
    }

    /// The current belief about `spec` on data like `profile`.
    public func estimate(_ spec: CodecSpec, for profile: EntropyProfile) -> CodecEstimate {
        estimate(spec, DataClass(profile), profile)
    }

    /// A candidate's own calibration, or else its prior with the ratio scaled by how far the class's
    /// calibrated candidates' ratios turned out from theirs. The priors' ratios come from order-0
    /// entropy, which cannot see what LZ matching finds (int16 deltas: a prior of 1.3 against 2.7
    /// measured); an unscaled prior makes every untried codec look far worse than the one tried
    /// first, and exploration (one chunk in `explorationInterval`) is slow to correct it.
    private func estimate(_ spec: CodecSpec, _ dataClass: DataClass, _ profile: EntropyProfile) -> CodecEstimate {
        if let known = estimates[dataClass]?[spec] { return known }
        var prior = CodecPriors.estimate(spec, profile: profile)
        guard spec.compressor != .none, let scale = ratioCalibration(dataClass, profile) else { return prior }
        prior.ratio = max(1, prior.ratio * scale)
        return prior
    }

    /// The geometric mean, over a class's calibrated compressing candidates, of measured ÷ prior
    /// ratio; nil before any is calibrated. Speeds are not scaled: one codec's speed says little
    /// about another's (a filter written in Swift against zstd in C, say).
    private func ratioCalibration(_ dataClass: DataClass, _ profile: EntropyProfile) -> Double? {
        var logRatio = 0.0, n = 0.0
        for (spec, e) in estimates[dataClass] ?? [:] where spec.compressor != .none && e.observations > 0 {
            logRatio += log(e.ratio / CodecPriors.estimate(spec, profile: profile).ratio)
            n += 1
        }
        return n > 0 ? exp(logRatio / n) : nil
    }
}

extension EntropyProfile {
    /// A mid-entropy profile: the prior used when an estimate is created by an observation alone.
    static let neutral = EntropyProfile(entropy: 6, distinctBytes: 256, coreSet: 128, planeEntropy: [6, 6, 6], sampleLength: 0)
}
