import BargeCodec
import BargeDigest
import Testing

/// The byte-level example of docs/chunk-format.md; the digest is `xxhsum -H2` of "barge".
struct ChunkFormatVectorTests {
    static let vector = Hex.decode(
        "424743" + "4b" + "01000000" + "0000000000000005" + "0000000000000005"
            + "f0b072bbada2c4fc7dff8eb0581b8a00" + "6261726765")!

    @Test func storedChunkMatchesTheDocumentedBytes() throws {
        #expect(try ChunkEncoder().encode(Array("barge".utf8), as: .none) == Self.vector)
        #expect(try ChunkDecoder().decode(Self.vector) == Array("barge".utf8))
    }

    @Test func filterAndLevelBytes() throws {
        let data = [UInt8](repeating: 7, count: 4096)
        let delta = try ChunkEncoder().encode(data, as: try CodecSpec(name: "delta8+zstd-5"))
        #expect(Array(delta[5...7]) == [2, 5, 0x18])
        let shuffle = try ChunkEncoder().encode(data, as: try CodecSpec(name: "shuffle2+lz4"))
        #expect(Array(shuffle[5...7]) == [1, 0, 2])
    }
}
