import BargeDigest

/// `auto`: samples each chunk, lets the `CodecSelector` choose, encodes, and feeds the measured
/// time and size back to the selector. One per worker thread, like `ChunkEncoder`. The time is
/// wall time: when the cores are busy (sender and receiver on one machine, or many streams), a
/// codec's waits for a core are part of what it costs. (Thread CPU time was tried: it made
/// compression look cheap on loopback, where storing raw wins, and did not help on a slow link.)
public final class AdaptiveEncoder {
    /// The link's send rate in bytes per second, from the flow controller; nil when unlimited.
    public var sendRate: Double?
    /// Chunks compressed at once on separate cores: the agent's streams, up to its cores.
    public var parallelism: Double
    /// The selector, possibly shared with other encoders (an agent's streams).
    public let shared: SharedSelector
    public var selector: CodecSelector { shared.snapshot }
    public let encoder: ChunkEncoder
    private var sampler = EntropySampler()
    private let clock: () -> UInt64

    public init(sendRate: Double? = nil, parallelism: Double = 1, selector: SharedSelector = SharedSelector(),
                encoder: ChunkEncoder = ChunkEncoder(), clock: @escaping () -> UInt64 = MonotonicClock.now) {
        self.sendRate = sendRate
        self.parallelism = parallelism
        self.shared = selector
        self.encoder = encoder
        self.clock = clock
    }

    /// Chooses a codec for `raw` without encoding it.
    public func choose(_ raw: UnsafeRawBufferPointer) -> CodecDecision {
        let profile = sampler.profile(raw)
        return shared.withSelector { $0.choose(profile, sendRate: sendRate, parallelism: parallelism) }
    }

    /// Encodes `raw` with the codec the selector picks; see `ChunkEncoder.encode` for `digest` and `out`.
    public func encode(_ raw: UnsafeRawBufferPointer, digest: XXH128Digest? = nil,
                       into out: UnsafeMutableRawBufferPointer) throws(CodecError) -> (header: ChunkHeader, decision: CodecDecision) {
        let decision = choose(raw)
        return (try encode(raw, as: decision, digest: digest, into: out), decision)
    }

    /// Encodes `raw` as `decision` (from `choose`) says and feeds the measurement back.
    public func encode(_ raw: UnsafeRawBufferPointer, as decision: CodecDecision, digest: XXH128Digest? = nil,
                       into out: UnsafeMutableRawBufferPointer) throws(CodecError) -> ChunkHeader {
        let start = clock()
        let header = try encoder.encode(raw, as: decision.spec, digest: digest, into: out)
        let nanoseconds = clock() &- start
        shared.withSelector { $0.record(decision, rawLength: raw.count, encodedLength: header.encodedLength, nanoseconds: nanoseconds) }
        return header
    }

    /// Tells the selector that a chunk it chose to store raw was stored in place, at no cost.
    public func recordStored(_ decision: CodecDecision, rawLength: Int) {
        shared.withSelector { $0.record(decision, rawLength: rawLength, encodedLength: rawLength + ChunkHeader.size, nanoseconds: 0) }
    }

    /// Tells the selector how long decoding a chunk it chose took (benchmarks and tests decode in-process).
    public func recordDecode(_ decision: CodecDecision, rawLength: Int, nanoseconds: UInt64) {
        shared.withSelector { $0.recordDecode(decision, rawLength: rawLength, nanoseconds: nanoseconds) }
    }
}
