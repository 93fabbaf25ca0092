import BargeBench
@testable import BargeCodec
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

/// The core set without sorting gives what the greedy count over sorted counts gives.
struct CoreSetTests {
    @Test func bisectionAgreesWithTakingTheLargestCountsFirst() {
        var rng = SplitMix64(seed: 42)
        for round in 0..<2_000 {
            var counts = [UInt32](repeating: 0, count: 256)
            let distinct = 1 + Int(rng.next() % 256)
            let skew = 1 + rng.next() % 6
            for _ in 0..<(1 + Int(rng.next() % 8_000)) {
                // Skewed towards low values in some rounds, uniform in others.
                let v = Int(rng.next() % UInt64(distinct)) / Int(round % 3 == 0 ? 1 : skew)
                counts[v] += 1
            }
            let total = counts.reduce(0, +)
            let target = UInt32((Double(total) * 0.9).rounded(.up))
            var covered: UInt32 = 0, greedy = 0
            for c in counts.filter({ $0 > 0 }).sorted(by: >) where covered < target {
                covered += c
                greedy += 1
            }
            let fast = counts.withUnsafeBufferPointer { EntropySampler.coreSet($0, covering: target) }
            #expect(fast == greedy, "round \(round): \(counts.filter { $0 > 0 })")
            if fast != greedy { return }
        }
    }
}
