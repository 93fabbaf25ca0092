import BargeBench
import BargeCodec
import Testing

struct EntropyTests {
    func profile(_ bytes: [UInt8]) -> EntropyProfile {
        var sampler = EntropySampler()
        return sampler.profile(bytes)
    }

    @Test func zerosHaveNoEntropy() {
        let p = profile([UInt8](repeating: 0, count: 4096))
        #expect(p.entropy == 0)
        #expect(p.distinctBytes == 1)
        #expect(p.coreSet == 1)
        #expect(p.planeEntropy == [0, 0, 0])
    }

    @Test func everyByteValueEquallyOftenIsEightBits() {
        let p = profile((0..<8192).map { UInt8(truncatingIfNeeded: $0) })
        #expect(p.entropy == 8)
        #expect(p.distinctBytes == 256)
        #expect(p.coreSet == 231)  // ⌈0.9 × 256⌉ values of equal frequency
        #expect(p.sampleLength == 8192)
    }

    @Test func twoAlternatingBytesAreOneBitAndZeroPerPlane() {
        let p = profile((0..<4096).map { $0 % 2 == 0 ? 0x41 : 0x42 })
        #expect(abs(p.entropy - 1) < 0.001)  // 1 bit plus a Miller–Madow term of 1/(2N ln 2)
        #expect(p.distinctBytes == 2)
        #expect(p.coreSet == 2)
        #expect(p.planeEntropy(stride: 2) == 0)
    }

    @Test func fourEquallyLikelyBytesAreTwoBits() {
        let p = profile((0..<4096).map { UInt8(($0 * 7) % 4) })
        #expect(abs(p.entropy - 2) < 0.001)
    }

    /// Large chunks are sampled, 16 bytes every 256 or more, capped at 8 KiB.
    @Test func largeChunksAreSampledWithinEightKiB() {
        #expect(profile([UInt8](repeating: 1, count: 64 * 1024)).sampleLength == 4096)
        #expect(profile([UInt8](repeating: 1, count: 16 << 20)).sampleLength <= 8192)
        #expect(profile([UInt8](repeating: 1, count: 16 << 20)).sampleLength >= 8000)
    }

    @Test func randomDataLooksIncompressible() {
        let p = profile(SampleData.random(bytes: 1 << 20))
        #expect(p.entropy > 7.95)
        #expect(p.coreSet > 200)
        #expect(p.looksIncompressible)
    }

    @Test(arguments: [(SampleData.Kind.float32, 4), (.float64, 8), (.int16, 2), (.text, 1)])
    func typedArraysShowTheirStride(_ kind: SampleData.Kind, _ stride: Int) {
        let p = profile(SampleData.generate(kind, bytes: 1 << 20))
        #expect(p.bestStride == stride, "\(kind): \(p)")
        #expect(!p.looksIncompressible)
    }

    @Test func textHasASmallCoreSet() {
        let p = profile(SampleData.text(bytes: 1 << 20))
        #expect(p.entropy > 3.5 && p.entropy < 5)
        #expect(p.coreSet < 40)
    }
}
