import BargeBench
import BargeCodec
import Testing

struct SelectorTests {
    static let gigabit = 125e6

    func choose(_ kind: SampleData.Kind, sendRate: Double?) -> CodecDecision {
        var sampler = EntropySampler()
        var selector = CodecSelector()
        return selector.choose(sampler.profile(SampleData.generate(kind, bytes: 1 << 20)), sendRate: sendRate)
    }

    @Test func randomIsStoredRaw() {
        let d = choose(.random, sendRate: 1e6)
        #expect(d.spec == .none)
        #expect(d.reason == .incompressible)
    }

    @Test(arguments: [(SampleData.Kind.float32, 4), (.float64, 8), (.int16, 2)])
    func floatArraysGetAShuffleFilter(_ kind: SampleData.Kind, _ stride: Int) {
        let d = choose(kind, sendRate: Self.gigabit)
        #expect(d.spec.filter.stride == stride, "\(kind) → \(d.spec)")
        #expect(d.spec.compressor != .none)
    }

    @Test func textGetsZstdOnASlowLink() {
        let d = choose(.text, sendRate: 10e6)
        guard case .zstd = d.spec.compressor else {
            Issue.record("text on a 10 MB/s link chose \(d.spec)")
            return
        }
        #expect(d.spec.filter == .none)
    }

    @Test func anUnlimitedLinkStoresEverythingRaw() {
        for kind in [SampleData.Kind.text, .float32] {
            #expect(choose(kind, sendRate: nil).spec == .none)
        }
    }

    /// Calibration overrides the priors: once zstd-1 is seen to be slow and useless on a class,
    /// the selector stops choosing it.
    @Test func calibrationChangesTheChoice() {
        var sampler = EntropySampler()
        var selector = CodecSelector()
        selector.explorationInterval = .max
        let profile = sampler.profile(SampleData.text(bytes: 1 << 20))
        let first = selector.choose(profile, sendRate: 10e6)
        for _ in 0..<3 {
            selector.record(first, rawLength: 1 << 20, encodedLength: 1 << 20, nanoseconds: 50_000_000)
        }
        let second = selector.choose(profile, sendRate: 10e6)
        #expect(second.spec != first.spec)
        #expect(selector.estimate(first.spec, for: profile).observations == 3)
        #expect(selector.estimate(first.spec, for: profile).ratio < 1.01)
    }

    /// Wall-time outliers (a chunk that waited for a core) move a codec's speed estimate a little;
    /// faster chunks move it back quickly; lasting slowness still gets through.
    @Test func aSlowChunkMovesTheSpeedEstimateLessThanAFastOne() {
        var sampler = EntropySampler()
        var selector = CodecSelector()
        let profile = sampler.profile(SampleData.text(bytes: 1 << 20))
        var d = selector.choose(profile, sendRate: 10e6)
        d.spec = .zstd(3)
        let mib = 1 << 20
        func speed() -> Double { selector.estimate(.zstd(3), for: profile).compressNanosPerByte }
        selector.record(d, rawLength: mib, encodedLength: mib / 3, nanoseconds: UInt64(7 * Double(mib)))
        #expect(abs(speed() - 7) < 1e-9)
        selector.record(d, rawLength: mib, encodedLength: mib / 3, nanoseconds: UInt64(37 * Double(mib)))  // 30 ns/B slower
        #expect(abs(speed() - 10) < 1e-6)  // a tenth of the way
        selector.record(d, rawLength: mib, encodedLength: mib / 3, nanoseconds: UInt64(Double(mib)))  // 9 ns/B faster
        #expect(abs(speed() - (10 - 0.3 * 9)) < 1e-6)  // the learning rate's share
        for _ in 0..<40 { selector.record(d, rawLength: mib, encodedLength: mib / 3, nanoseconds: UInt64(20 * Double(mib))) }
        #expect(speed() > 19)
    }

    @Test func explorationTriesAnotherCandidatePeriodically() {
        var sampler = EntropySampler()
        var selector = CodecSelector()
        selector.explorationInterval = 4
        let profile = sampler.profile(SampleData.float32Field(bytes: 1 << 20))
        let reasons = (0..<9).map { _ in selector.choose(profile, sendRate: Self.gigabit).reason }
        #expect(reasons.filter { $0 == .exploring }.count == 2)
        #expect(reasons[4] == .exploring && reasons[8] == .exploring)
    }

    @Test func adaptiveEncoderRoundTripsAndLearns() throws {
        var ticks: UInt64 = 0
        let encoder = AdaptiveEncoder(sendRate: Self.gigabit, clock: { ticks += 1_000_000; return ticks })
        let data = SampleData.float32Field(bytes: 1 << 20)
        var out = [UInt8](repeating: 0, count: ChunkFormat.maxEncodedLength(rawLength: data.count))
        let (header, decision) = try data.withUnsafeBytes { r in try out.withUnsafeMutableBytes { try encoder.encode(r, into: $0) } }
        #expect(header.spec == decision.spec)
        #expect(header.encodedLength < data.count * 3 / 4)
        #expect(try ChunkDecoder().decode(Array(out[0..<header.encodedLength])) == data)
        var sampler = EntropySampler()
        let learnt = encoder.selector.estimate(decision.spec, for: sampler.profile(data))
        #expect(learnt.observations == 1)
        #expect(abs(learnt.compressNanosPerByte - 1e6 / Double(1 << 20)) < 1e-9)  // one mock tick per encode
    }

    /// Priors come from order-0 entropy, which cannot see LZ matches: once one codec of a class is
    /// measured at twice its prior's ratio, the untried ones are taken to be twice theirs too, so
    /// that they are not ruled out against it.
    @Test func untriedCodecsScaleWithWhatTheClassMeasured() {
        var sampler = EntropySampler()
        var selector = CodecSelector()
        let profile = sampler.profile(SampleData.int16Signal(bytes: 1 << 20))
        let tried = selector.choose(profile, sendRate: 50e6)
        let untried = CodecSelector.candidates(stride: tried.dataClass.stride).first { $0 != tried.spec && $0.compressor != .none }!
        let before = selector.estimate(untried, for: profile)
        let prior = selector.estimate(tried.spec, for: profile)
        let encoded = Int(Double(1 << 20) / (2 * prior.ratio))
        selector.record(tried, rawLength: 1 << 20, encodedLength: encoded, nanoseconds: UInt64(3 * prior.compressNanosPerByte * Double(1 << 20)))
        let after = selector.estimate(untried, for: profile)
        #expect(after.observations == 0)
        #expect(abs(after.ratio / before.ratio - 2) < 0.01, "\(untried): \(before.ratio) → \(after.ratio)")
        #expect(after.compressNanosPerByte == before.compressNanosPerByte)  // one codec's speed says nothing of another's
        #expect(selector.estimate(.none, for: profile).ratio == 1)
    }

    /// With chunks compressed on several cores at once, the compression stage goes that many times
    /// faster; the CPU it uses still counts a little (a twentieth).
    @Test func parallelStreamsShortenTheCPUStages() {
        let e = CodecEstimate(ratio: 2, compressNanosPerByte: 10, decompressNanosPerByte: 1)
        #expect(abs(e.cost(wireNanosPerByte: 10) - 10.55) < 1e-9)                  // compression sets the pace
        #expect(abs(e.cost(wireNanosPerByte: 10, parallelism: 2) - 5.55) < 1e-9)  // compression and link even
        #expect(abs(e.cost(wireNanosPerByte: 10, parallelism: 8) - 5.55) < 1e-9)  // the link sets the pace
    }

    /// An agent's streams share one selector: what one encoder measures, the others know.
    @Test func encodersSharingASelectorPoolWhatTheyLearn() throws {
        let shared = SharedSelector()
        let a = AdaptiveEncoder(sendRate: Self.gigabit, selector: shared)
        let b = AdaptiveEncoder(sendRate: Self.gigabit, selector: shared)
        let data = SampleData.float32Field(bytes: 1 << 20)
        var out = [UInt8](repeating: 0, count: ChunkFormat.maxEncodedLength(rawLength: data.count))
        let (_, decision) = try data.withUnsafeBytes { r in try out.withUnsafeMutableBytes { try a.encode(r, into: $0) } }
        var sampler = EntropySampler()
        #expect(b.selector.estimate(decision.spec, for: sampler.profile(data)).observations == 1)
        #expect(AdaptiveEncoder(sendRate: Self.gigabit).selector.estimate(decision.spec, for: sampler.profile(data)).observations == 0)
    }
}
