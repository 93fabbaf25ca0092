import BargeBench
import BargeCodec
import BargeDigest
import Testing

/// The bit shuffle and byte delta of docs/chunk-format.md, against a naive reference written from
/// the document, and the documented vector.
struct PlaneFilterTests {
    /// Bit j of byte i of each group of 8 in a plane goes to bit i of byte j of that group's column.
    static func referenceBitShuffle(_ input: [UInt8], stride: Int) -> [UInt8] {
        let n = input.count / stride
        var planes = input
        for i in 0..<n { for k in 0..<stride { planes[k * n + i] = input[i * stride + k] } }
        var out = planes
        let groups = n / 8
        for k in 0..<stride {
            for b in 0..<8 {
                for j in 0..<groups {
                    var byte: UInt8 = 0
                    for i in 0..<8 where planes[k * n + j * 8 + i] & (1 << b) != 0 { byte |= 1 << i }
                    out[k * n + b * groups + j] = byte
                }
            }
        }
        return out
    }

    static func referenceByteDelta(_ input: [UInt8], stride: Int) -> [UInt8] {
        let n = input.count / stride
        var planes = input
        for i in 0..<n { for k in 0..<stride { planes[k * n + i] = input[i * stride + k] } }
        var out = planes
        for k in 0..<stride { for i in 1..<max(1, n) { out[k * n + i] = planes[k * n + i] &- planes[k * n + i - 1] } }
        return out
    }

    func shuffled(_ input: [UInt8], stride: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: input.count)
        input.withUnsafeBytes { i in out.withUnsafeMutableBytes { o in ByteShuffle.shuffle(i, into: o, stride: stride) } }
        return out
    }

    @Test(arguments: [2, 4, 8], [0, 7, 64, 129, 4099, 65_541])
    func bitShuffleMatchesTheReferenceAndInverts(stride: Int, count: Int) {
        let input = SampleData.generate(.float32, bytes: count, seed: UInt64(count))
        let planes = shuffled(input, stride: stride)
        var bits = [UInt8](repeating: 0, count: count)
        planes.withUnsafeBytes { p in bits.withUnsafeMutableBytes { b in PlaneFilters.bitShuffle(p, into: b, stride: stride) } }
        #expect(bits == Self.referenceBitShuffle(input, stride: stride))
        var back = [UInt8](repeating: 0, count: count)
        bits.withUnsafeBytes { b in back.withUnsafeMutableBytes { o in PlaneFilters.bitUnshuffle(b, into: o, stride: stride) } }
        #expect(back == planes)
    }

    @Test(arguments: [2, 4, 8], [0, 7, 64, 129, 4099])
    func byteDeltaMatchesTheReferenceAndInverts(stride: Int, count: Int) {
        let input = SampleData.generate(.int16, bytes: count, seed: UInt64(count))
        var planes = shuffled(input, stride: stride)
        let original = planes
        planes.withUnsafeMutableBytes { PlaneFilters.byteDelta($0, stride: stride) }
        #expect(planes == Self.referenceByteDelta(input, stride: stride))
        planes.withUnsafeMutableBytes { PlaneFilters.byteUndelta($0, stride: stride) }
        #expect(planes == original)
    }

    /// docs/chunk-format.md: the 16 bytes 00…0f with stride 2.
    @Test func theDocumentedVector() throws {
        let input = (0..<16).map { UInt8($0) }
        let planes = shuffled(input, stride: 2)
        var bits = [UInt8](repeating: 0, count: 16)
        planes.withUnsafeBytes { p in bits.withUnsafeMutableBytes { b in PlaneFilters.bitShuffle(p, into: b, stride: 2) } }
        #expect(Hex.encode(bits) == "00aaccf000000000ffaaccf000000000")
        var delta = planes
        delta.withUnsafeMutableBytes { PlaneFilters.byteDelta($0, stride: 2) }
        #expect(Hex.encode(delta) == "00020202020202020102020202020202")
        let encoder = ChunkEncoder()
        let data = [UInt8](repeating: 7, count: 4096)
        #expect(Array(try encoder.encode(data, as: try CodecSpec(name: "bitshuffle4+lz4"))[5...7]) == [1, 0, 0x24])
        #expect(Array(try encoder.encode(data, as: try CodecSpec(name: "bytedelta8+zstd-1"))[5...7]) == [2, 1, 0x38])
    }
}
