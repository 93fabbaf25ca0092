import BargeBench
import BargeCodec
import BargeDigest
import Testing

/// Malformed, truncated and hostile encoded chunks: each throws a typed error, and none crashes or
/// makes the decoder allocate past its limit.
struct HostileChunkTests {
    static let text = SampleData.text(bytes: 20_000)

    func encoded(_ spec: CodecSpec = .zstd(3)) throws -> [UInt8] {
        try ChunkEncoder().encode(Self.text, as: spec)
    }

    func decode(_ bytes: [UInt8], maxRawLength: Int = ChunkFormat.maxRawLength) throws -> [UInt8] {
        try ChunkDecoder(maxRawLength: maxRawLength).decode(bytes)
    }

    @Test func everyTruncationThrows() throws {
        let chunk = try encoded()
        for length in 0..<chunk.count {
            #expect(throws: CodecError.self) { try decode(Array(chunk[0..<length])) }
        }
        #expect(throws: CodecError.truncated(needed: ChunkHeader.size, have: 10)) { try decode(Array(chunk[0..<10])) }
    }

    @Test func trailingBytesAreRejected() throws {
        #expect(throws: CodecError.trailingBytes(2)) { try decode(try encoded() + [0, 0]) }
    }

    @Test func badMagicVersionCodecAndFilter() throws {
        var chunk = try encoded()
        chunk[0] = 0x00
        #expect(throws: CodecError.badMagic) { try decode(chunk) }
        chunk = try encoded(); chunk[4] = 9
        #expect(throws: CodecError.unsupportedVersion(9)) { try decode(chunk) }
        chunk = try encoded(); chunk[5] = 7
        #expect(throws: CodecError.unknownCodec(7)) { try decode(chunk) }
        chunk = try encoded(); chunk[7] = 3
        #expect(throws: CodecError.unknownFilter(3)) { try decode(chunk) }
        chunk = try encoded(); chunk[7] = 0x13
        #expect(throws: CodecError.unknownFilter(0x13)) { try decode(chunk) }
        chunk = try encoded(); chunk[6] = 0x7F  // zstd level 127
        #expect(throws: CodecError.self) { try decode(chunk) }
    }

    /// A header claiming 1 TiB of raw data is refused before anything is allocated for it.
    @Test func hugeRawLengthIsRefused() throws {
        var chunk = try encoded()
        let tib: UInt64 = 1 << 40
        withUnsafeBytes(of: tib.bigEndian) { chunk.replaceSubrange(8..<16, with: $0) }
        #expect(throws: CodecError.rawLengthTooLarge(claimed: tib, limit: ChunkFormat.maxRawLength)) { try decode(chunk) }
        // The limit is the decoder's to set.
        #expect(throws: CodecError.rawLengthTooLarge(claimed: UInt64(Self.text.count), limit: 1000)) {
            try decode(try encoded(), maxRawLength: 1000)
        }
    }

    @Test func hugePayloadLengthIsTruncationNotOverflow() throws {
        var chunk = try encoded()
        withUnsafeBytes(of: UInt64.max.bigEndian) { chunk.replaceSubrange(16..<24, with: $0) }
        #expect(throws: CodecError.truncated(needed: Int.max, have: chunk.count)) { try decode(chunk) }
    }

    @Test func rawLengthThatDisagreesWithThePayload() throws {
        for spec in [CodecSpec.lz4, .zstd(1), try CodecSpec(name: "shuffle4+zstd-1")] {
            var chunk = try encoded(spec)
            let wrong = UInt64(Self.text.count + 5)
            withUnsafeBytes(of: wrong.bigEndian) { chunk.replaceSubrange(8..<16, with: $0) }
            #expect(throws: CodecError.self, "\(spec)") { try decode(chunk) }
        }
        var raw = try encoded(.none)  // stored raw: lengths must agree exactly
        raw[15] &+= 1
        #expect(throws: CodecError.self) { try decode(raw) }
    }

    @Test func flippedPayloadByteIsCaught() throws {
        for spec in [CodecSpec.none, .lz4, .zstd(3), try CodecSpec(name: "shuffle2+lz4")] {
            var chunk = try encoded(spec)
            chunk[ChunkHeader.size + (chunk.count - ChunkHeader.size) / 2] ^= 0x10
            #expect(throws: CodecError.self, "\(spec)") { try decode(chunk) }
        }
        var chunk = try encoded(.none)
        chunk[ChunkHeader.size + 100] ^= 1
        let expected = XXH3.hash128(Self.text)
        var flipped = Self.text
        flipped[100] ^= 1
        #expect(throws: CodecError.digestMismatch(expected: expected, actual: XXH3.hash128(flipped))) { try decode(chunk) }
    }

    @Test func outputBufferTooSmall() throws {
        let chunk = try encoded()
        var small = [UInt8](repeating: 0, count: 100)
        #expect(throws: CodecError.outputTooSmall(needed: Self.text.count, have: 100)) {
            try chunk.withUnsafeBytes { e in try small.withUnsafeMutableBytes { try ChunkDecoder().decode(e, into: $0) } }
        }
    }

    /// Seeded mutation fuzzing: random byte flips, insertions and cuts in valid chunks of every
    /// codec. Each result either throws a CodecError or decodes to exactly the original bytes
    /// (a flip in the informational level byte is harmless).
    @Test func seededMutationFuzz() throws {
        var rng = SplitMix64(seed: 0xB4_46E)
        let sources = [Self.text, SampleData.float32Field(bytes: 6000), SampleData.random(bytes: 3000)]
        let specs = ["none", "lz4", "zstd-1", "shuffle4+zstd-1", "shuffle8+lz4", "delta4+zstd-1"].map { try! CodecSpec(name: $0) }
        let decoder = ChunkDecoder(maxRawLength: 1 << 20)
        var rejected = 0
        for round in 0..<3000 {
            let source = sources[round % sources.count]
            var chunk = try ChunkEncoder().encode(source, as: specs[round % specs.count])
            for _ in 0..<(1 + Int(rng.next() % 4)) {
                let at = Int(rng.next() % UInt64(chunk.count))
                switch rng.next() % 3 {
                case 0: chunk[at] ^= UInt8(truncatingIfNeeded: 1 | rng.next())
                case 1: chunk.insert(UInt8(truncatingIfNeeded: rng.next()), at: at)
                default: chunk.removeSubrange(at..<min(chunk.count, at + 1 + Int(rng.next() % 16)))
                }
            }
            do {
                #expect(try decoder.decode(chunk) == source)
            } catch is CodecError {
                rejected += 1
            }
        }
        #expect(rejected > 2500)
    }
}
