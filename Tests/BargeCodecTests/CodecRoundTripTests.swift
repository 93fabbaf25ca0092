import BargeBench
import BargeCodec
import BargeDigest
import Testing

struct CodecRoundTripTests {
    static let specs: [CodecSpec] = [
        "none", "lz4", "zstd-1", "zstd-19",
        "shuffle2+lz4", "shuffle4+lz4", "shuffle8+lz4",
        "shuffle2+zstd-1", "shuffle4+zstd-3", "shuffle8+zstd-1",
        "delta2+lz4", "delta4+zstd-1", "delta8+zstd-3",
        "bitshuffle2+lz4", "bitshuffle4+lz4", "bitshuffle8+zstd-1",
        "bytedelta2+zstd-1", "bytedelta4+zstd-3", "bytedelta8+lz4",
    ].map { try! CodecSpec(name: $0) }

    struct Input: Sendable, CustomTestStringConvertible {
        let name: String
        let bytes: [UInt8]
        var testDescription: String { name }
    }

    static let edgeInputs: [Input] = [
        Input(name: "empty", bytes: []),
        Input(name: "1 byte", bytes: [0x5A]),
        Input(name: "7 bytes", bytes: [1, 2, 3, 4, 5, 6, 7]),
        Input(name: "1023 bytes of text", bytes: SampleData.text(bytes: 1023)),
        Input(name: "4099 bytes of float32", bytes: SampleData.float32Field(bytes: 4099)),
        Input(name: "65 KiB + 3 of float64", bytes: SampleData.float64Field(bytes: 65 * 1024 + 3)),
        Input(name: "64 KiB random", bytes: SampleData.random(bytes: 64 * 1024)),
        Input(name: "64 KiB zeros", bytes: [UInt8](repeating: 0, count: 64 * 1024)),
        Input(name: "int16 with odd tail", bytes: SampleData.int16Signal(bytes: 10_001)),
    ]

    @Test(arguments: specs, edgeInputs)
    func roundTrip(_ spec: CodecSpec, _ input: Input) throws {
        let encoder = ChunkEncoder(), decoder = ChunkDecoder()
        let encoded = try encoder.encode(input.bytes, as: spec)
        #expect(encoded.count <= ChunkHeader.size + input.bytes.count, "never expands past the header")
        #expect(try decoder.decode(encoded) == input.bytes)
    }

    /// The largest chunk the format allows, random and zeros, through every codec × filter.
    @Test(arguments: specs.filter { $0.compressor != .zstd(level: 19) })
    func maximumChunkSize(_ spec: CodecSpec) throws {
        let encoder = ChunkEncoder(), decoder = ChunkDecoder()
        for input in [SampleData.random(bytes: ChunkFormat.maxRawLength, seed: 9),
                      [UInt8](repeating: 0, count: ChunkFormat.maxRawLength)] {
            let encoded = try encoder.encode(input, as: spec)
            #expect(try decoder.decode(encoded) == input)
        }
        #expect(throws: CodecError.inputTooLarge(ChunkFormat.maxRawLength + 1, limit: ChunkFormat.maxRawLength)) {
            try encoder.encode([UInt8](repeating: 0, count: ChunkFormat.maxRawLength + 1), as: spec)
        }
    }

    @Test func incompressibleDataIsStoredRaw() throws {
        let random = SampleData.random(bytes: 256 * 1024)
        for spec in Self.specs {
            let encoded = try ChunkEncoder().encode(random, as: spec)
            let header = try encoded.withUnsafeBytes { try ChunkDecoder().header(of: $0) }
            #expect(header.spec == .none, "\(spec) on random data")
            #expect(encoded.count == random.count + ChunkHeader.size)
        }
    }

    @Test func compressibleDataShrinksAndKeepsItsCodec() throws {
        let text = SampleData.text(bytes: 256 * 1024)
        let encoded = try ChunkEncoder().encode(text, as: .zstd(3))
        let header = try encoded.withUnsafeBytes { try ChunkDecoder().header(of: $0) }
        #expect(header.spec == .zstd(3))
        #expect(header.rawLength == text.count)
        #expect(header.digest == XXH3.hash128(text))
        #expect(encoded.count < text.count / 2)
    }

    @Test func shuffleIsItsOwnInverse() {
        for stride in ByteFilter.strides {
            for count in [0, 1, stride - 1, stride, 3 * stride + 1, 1000] {
                let input = (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }
                var shuffled = [UInt8](repeating: 0, count: count)
                var back = [UInt8](repeating: 0, count: count)
                input.withUnsafeBytes { i in shuffled.withUnsafeMutableBytes { ByteShuffle.shuffle(i, into: $0, stride: stride) } }
                shuffled.withUnsafeBytes { s in back.withUnsafeMutableBytes { ByteShuffle.unshuffle(s, into: $0, stride: stride) } }
                #expect(back == input, "stride \(stride), \(count) bytes")
            }
        }
        // Stride 4 on two elements: plane k holds byte k of each element.
        let two: [UInt8] = [0, 1, 2, 3, 10, 11, 12, 13, 99]
        var out = [UInt8](repeating: 0, count: two.count)
        two.withUnsafeBytes { i in out.withUnsafeMutableBytes { ByteShuffle.shuffle(i, into: $0, stride: 4) } }
        #expect(out == [0, 10, 1, 11, 2, 12, 3, 13, 99])
    }

    @Test func xorDeltaIsInvertibleAndZeroesRepeats() {
        for stride in ByteFilter.strides {
            for count in [0, 1, stride + 1, 999] {
                let input = (0..<count).map { UInt8(truncatingIfNeeded: $0 / 5 &* 3) }
                var delta = [UInt8](repeating: 0, count: count)
                input.withUnsafeBytes { i in delta.withUnsafeMutableBytes { XORDelta.encode(i, into: $0, stride: stride) } }
                delta.withUnsafeMutableBytes { XORDelta.decode($0, stride: stride) }
                #expect(delta == input, "stride \(stride), \(count) bytes")
            }
        }
        // Equal neighbours become zero; the first element and the tail stay.
        let words: [UInt8] = [1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 5, 9]
        var out = [UInt8](repeating: 0, count: words.count)
        words.withUnsafeBytes { i in out.withUnsafeMutableBytes { XORDelta.encode(i, into: $0, stride: 4) } }
        #expect(out == [1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 1, 9])
    }

    @Test func codecNamesParseAndPrint() throws {
        for name in ["none", "lz4", "zstd-1", "zstd-22", "shuffle2+lz4", "shuffle8+zstd-3", "delta4+zstd-1"] {
            #expect(try CodecSpec(name: name).description == name)
        }
        #expect(try CodecSpec(name: "zstd").description == "zstd-3")
        #expect(try CodecChoice(name: "auto") == .auto)
        for bad in ["zstd-0", "zstd-23", "zstd-x", "gzip", "shuffle3+lz4", "shuffle4+none", "delta16+lz4", "delta4+none", "shuffle4+shuffle2+lz4", "+lz4", ""] {
            #expect(throws: CodecNameError.self, "\(bad)") { try CodecSpec(name: bad) }
        }
    }
}
