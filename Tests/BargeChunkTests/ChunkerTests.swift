import BargeBench
@testable import BargeChunk
import BargeDigest
import Foundation
import Testing

struct ChunkerTests {
    static let small = FastCDC(minSize: 4 << 10, avgSize: 16 << 10, maxSize: 64 << 10)

    func chunks(_ bytes: [UInt8], _ strategy: ChunkingStrategy) throws -> [(ChunkSpan, [UInt8])] {
        let file = try TemporaryFile(bytes)
        var out: [(ChunkSpan, [UInt8])] = []
        try FileChunkReader(path: file.path, strategy: strategy).forEachChunk { span, b in out.append((span, Array(b))) }
        return out
    }

    @Test func fixedSizeCutsEvenlyWithAShortTail() throws {
        let data = SampleData.random(bytes: 10_000)
        let c = try chunks(data, .fixed(size: 4096))
        #expect(c.map(\.0.length) == [4096, 4096, 1808])
        #expect(c.map(\.0.offset) == [0, 4096, 8192])
        #expect(c.flatMap(\.1) == data)
    }

    /// `cut` rolls four bytes per step; its cut points must be the bytewise ones exactly, or
    /// chunks stored by earlier versions would no longer match. Every parameter set, data kind
    /// and window length (so every tail of 0–3 bytes, and cuts on each of the four bytes).
    @Test(arguments: [FastCDC(minSize: 64, avgSize: 128, maxSize: 256), FastCDC(minSize: 100, avgSize: 1000, maxSize: 3001),
                      ChunkerTests.small, FastCDC.standard])
    func fourBytesAtATimeCutWhereOneAtATimeDoes(_ cdc: FastCDC) throws {
        var cutsByOffset = [0, 0, 0, 0]
        for kind in [SampleData.Kind.random, .text, .float32, .zeros] {
            let data = SampleData.generate(kind, bytes: cdc.maxSize * 6 + 7, seed: 9)
            data.withUnsafeBytes { raw in
                var offset = 0
                while offset < raw.count {
                    let window = UnsafeRawBufferPointer(rebasing: raw[offset...])
                    let fast = cdc.cut(window), slow = cdc.cutBytewise(window)
                    #expect(fast == slow, "\(kind) at \(offset): \(fast) against \(slow)")
                    if fast > cdc.minSize, fast < min(window.count, cdc.maxSize) { cutsByOffset[(fast - cdc.minSize - 1) % 4] += 1 }
                    offset += fast
                }
                for length in stride(from: cdc.minSize - 1, through: min(raw.count, cdc.maxSize + 5), by: cdc.maxSize < 1 << 20 ? max(1, cdc.maxSize / 97) : cdc.maxSize / 13) {
                    let window = UnsafeRawBufferPointer(rebasing: raw[..<length])
                    #expect(cdc.cut(window) == cdc.cutBytewise(window), "\(kind), window of \(length)")
                }
            }
        }
        if cdc.maxSize < 1 << 20 { #expect(cutsByOffset.allSatisfy { $0 > 0 }, "cuts on each byte of a step: \(cutsByOffset)") }
    }

    @Test func emptyFileHasNoChunks() throws {
        #expect(try chunks([], .fixed(size: 4096)).isEmpty)
        #expect(try chunks([], .fastCDC(Self.small)).isEmpty)
        let empty = try TemporaryFile()
        let manifest = try FileManifest.build(path: empty.path, strategy: .fastCDC(Self.small))
        #expect(manifest.chunks.isEmpty)
        #expect(manifest.root == SHA256.hash([UInt8]()))
    }

    @Test(arguments: [SampleData.Kind.random, .text, .float32, .zeros])
    func fastCDCReassemblesWithinBounds(_ kind: SampleData.Kind) throws {
        let data = SampleData.generate(kind, bytes: 3 << 20)
        let c = try chunks(data, .fastCDC(Self.small))
        #expect(c.flatMap(\.1) == data)
        for (i, (span, _)) in c.enumerated() {
            #expect(span.length <= Self.small.maxSize)
            if i < c.count - 1 { #expect(span.length >= Self.small.minSize) }
        }
        if kind != .zeros {
            // Normalised chunking keeps the mean near the target.
            let mean = Double(data.count) / Double(c.count)
            #expect(mean > Double(Self.small.avgSize) * 0.6 && mean < Double(Self.small.avgSize) * 1.6, "mean \(mean)")
        }
    }

    /// The property deduplication depends on: inserting bytes near the start moves only the
    /// boundaries close to it, so almost every later chunk keeps its id.
    @Test(arguments: [1, 100, 5000])
    func fastCDCBoundariesSurviveAPrefixInsertion(inserted: Int) throws {
        let data = SampleData.random(bytes: 4 << 20, seed: 3)
        let edited = SampleData.random(bytes: inserted, seed: 4) + data
        let before = Set(try chunks(data, .fastCDC(Self.small)).map { SHA256.hash($0.1) })
        let after = try chunks(edited, .fastCDC(Self.small)).map { SHA256.hash($0.1) }
        let kept = after.filter(before.contains).count
        #expect(Double(kept) / Double(after.count) > 0.95, "\(kept) of \(after.count) chunks unchanged")
        // Fixed-size chunking, by contrast, loses every chunk to the shift.
        let fixedBefore = Set(try chunks(data, .fixed(size: 16 << 10)).map { SHA256.hash($0.1) })
        let fixedAfter = try chunks(edited, .fixed(size: 16 << 10)).map { SHA256.hash($0.1) }
        #expect(fixedAfter.filter(fixedBefore.contains).count == 0)
    }

    @Test func cutPointsDoNotDependOnTheBuffer() throws {
        // The same bytes as a whole file and as a range inside a larger file cut identically.
        let data = SampleData.text(bytes: 1 << 20)
        let padded = SampleData.random(bytes: 777) + data + SampleData.random(bytes: 999)
        let file = try TemporaryFile(padded)
        var ranged: [ChunkSpan] = []
        try FileChunkReader(path: file.path, strategy: .fastCDC(Self.small))
            .forEachChunk(from: 777, length: UInt64(data.count)) { span, _ in ranged.append(span) }
        let whole = try chunks(data, .fastCDC(Self.small)).map(\.0)
        #expect(ranged.map { ChunkSpan(offset: $0.offset - 777, length: $0.length) } == whole)
    }

    /// A source agent plans a unit from `forEachSpan`, which reads only the bytes that decide
    /// each cut; the chunks must be the ones `forEachChunk` cuts from every byte, or the
    /// destination's chunks and the cold store's would not match. Every data kind, whole files
    /// and ranges that start and end off any boundary, chunks that end at the maximum or at the
    /// range's end, and a range too short to hash at all.
    @Test(arguments: [ChunkerTests.small, FastCDC(minSize: 1000, avgSize: 4099, maxSize: 16_500), FastCDC.standard])
    func spansReadOnlyWhatDecidesTheCutsAndMatchTheChunks(_ cdc: FastCDC) throws {
        for kind in [SampleData.Kind.random, .text, .float32, .zeros] {
            let data = SampleData.generate(kind, bytes: cdc.maxSize * 5 + 4321, seed: 17)
            let file = try TemporaryFile(data)
            let reader = try FileChunkReader(path: file.path, strategy: .fastCDC(cdc))
            let size = UInt64(data.count)
            for (start, length) in [(UInt64(0), size), (333, size - 333 - 77), (5, UInt64(cdc.minSize) / 2), (99, UInt64(cdc.maxSize) + 1)] {
                var expected: [ChunkSpan] = []
                try reader.forEachChunk(from: start, length: length) { span, _ in expected.append(span) }
                var spans: [ChunkSpan] = []
                try reader.forEachSpan(from: start, length: length) { spans.append($0) }
                #expect(spans == expected, "\(kind), \(length) bytes from \(start)")
            }
        }
    }

    /// A sparse file's holes are not read to find its cut points (`Holes`): the spans are
    /// still those `forEachChunk` cuts from every byte, zeros read from the holes included,
    /// whatever the holes' sizes and where the data lies in them.
    @Test(arguments: [ChunkerTests.small, FastCDC.standard])
    func spansOfASparseFileAreThoseOfItsBytes(_ cdc: FastCDC) throws {
        let file = try TemporaryFile([])
        let size = UInt64(cdc.maxSize) * 40 + 12_345
        let fd = open(file.path, O_RDWR | O_CLOEXEC)
        #expect(fd >= 0 && ftruncate(fd, off_t(size)) == 0)
        // Islands of data: at the start, unaligned in the middle, across a maximum's boundary, at the end.
        for (at, count) in [(UInt64(0), 3000), (UInt64(cdc.maxSize) * 7 + 1234, cdc.minSize + 17), (UInt64(cdc.maxSize) * 20 - 500, 1000),
                            (size - 700, 700)] {
            let bytes = SampleData.random(bytes: count, seed: at)
            #expect(bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, count, off_t(at)) } == count)
        }
        fsync(fd)
        #expect(Holes.contain(fd, from: UInt64(cdc.maxSize) * 10, length: UInt64(cdc.maxSize)), "the file system keeps no holes: the test proves nothing")
        close(fd)
        let reader = try FileChunkReader(path: file.path, strategy: .fastCDC(cdc))
        for (start, length) in [(UInt64(0), size), (4096, size - 8192), (UInt64(cdc.maxSize) * 7, UInt64(cdc.maxSize) * 3 + 5)] {
            var expected: [ChunkSpan] = []
            try reader.forEachChunk(from: start, length: length) { span, _ in expected.append(span) }
            var spans: [ChunkSpan] = []
            try reader.forEachSpan(from: start, length: length) { spans.append($0) }
            #expect(spans == expected, "\(length) bytes from \(start)")
        }
    }

    /// Fixed-size spans are `forEachChunk`'s too, found without a read.
    @Test func fixedSpansAreTheFixedChunks() throws {
        let file = try TemporaryFile(SampleData.random(bytes: 10_000))
        let reader = try FileChunkReader(path: file.path, strategy: .fixed(size: 4096))
        for (start, length) in [(UInt64(0), UInt64(10_000)), (100, 8192), (5, 3)] {
            var expected: [ChunkSpan] = []
            try reader.forEachChunk(from: start, length: length) { span, _ in expected.append(span) }
            var spans: [ChunkSpan] = []
            try reader.forEachSpan(from: start, length: length) { spans.append($0) }
            #expect(spans == expected, "\(length) bytes from \(start)")
        }
    }

    /// `FastCDC.Search` fed in pieces of any size, even one byte, finds `cut`'s cut.
    @Test func theSearchFindsTheCutWhateverThePieces() {
        let cdc = FastCDC(minSize: 1000, avgSize: 4099, maxSize: 16_500)
        for kind in [SampleData.Kind.random, .text, .zeros] {
            let data = SampleData.generate(kind, bytes: cdc.maxSize * 4, seed: 23)
            data.withUnsafeBytes { raw in
                var offset = 0
                while offset < raw.count {
                    let window = UnsafeRawBufferPointer(rebasing: raw[offset...])
                    let expected = cdc.cut(window)
                    for pieceSize in [1, 3, 1000, 4096, 1 << 20] {
                        var search = FastCDC.Search(cdc, available: window.count)
                        while search.cut == nil {
                            let n = min(pieceSize, search.wanted)
                            search.feed(UnsafeRawBufferPointer(rebasing: window[search.position..<(search.position + n)]))
                        }
                        #expect(search.cut == expected, "\(kind) at \(offset), pieces of \(pieceSize)")
                    }
                    offset += expected
                }
            }
        }
    }

    /// A file that shrank under the plan is an error, not a short plan.
    @Test func spansOfAShrunkFileAreAnError() throws {
        let file = try TemporaryFile(SampleData.random(bytes: 100_000))
        #expect(throws: ChunkingError.shortFile(path: file.path, expected: 200_000, actual: 100_000)) {
            try FileChunkReader(path: file.path, strategy: .fastCDC(Self.small)).forEachSpan(from: 0, length: 200_000) { _ in }
        }
    }

    /// Offsets past 4 GiB, in a sparse file, with memory bounded by the reader's buffer.
    @Test func rangesBeyondFourGiBInASparseFile() throws {
        let file = try TemporaryFile()
        let payload = SampleData.text(bytes: 300_000)
        let at: UInt64 = (5 << 30) + 12345
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: file.path))
        try handle.seek(toOffset: at)
        try handle.write(contentsOf: Data(payload))
        try handle.close()
        let reader = try FileChunkReader(path: file.path, strategy: .fastCDC(Self.small))
        #expect(reader.bufferCapacity == 1 << 20)
        var got: [UInt8] = []
        var spans: [ChunkSpan] = []
        try reader.forEachChunk(from: at) { span, b in spans.append(span); got += b }
        #expect(got == payload)
        #expect(spans.first?.offset == at)
    }

    @Test func aRangePastTheEndIsAnError() throws {
        let file = try TemporaryFile(SampleData.random(bytes: 1000))
        #expect(throws: ChunkingError.shortFile(path: file.path, expected: 2000, actual: 1000)) {
            try FileChunkReader(path: file.path, strategy: .fixed(size: 256)).forEachChunk(from: 0, length: 2000) { _, _ in }
        }
        // A range that starts past the end: the error gives the file's size, not where the read
        // stood ("it ended at 1500 bytes" for a file of 1000 misled a review).
        #expect(throws: ChunkingError.shortFile(path: file.path, expected: 2000, actual: 1000)) {
            try FileChunkReader(path: file.path, strategy: .fixed(size: 256)).forEachChunk(from: 1500, length: 500) { _, _ in }
        }
    }

    @Test func missingFileAndBadParametersAreErrors() throws {
        #expect(throws: ChunkingError.io(path: "/nonexistent/barge", operation: "open", errno: ENOENT)) {
            try FileChunkReader(path: "/nonexistent/barge", strategy: .fixed(size: 10)).forEachChunk { _, _ in }
        }
        #expect(throws: ChunkingError.self) { try FileChunkReader(path: "x", strategy: .fixed(size: 0)) }
        #expect(throws: ChunkingError.self) { try FileChunkReader(path: "x", strategy: .fixed(size: 64 << 20)) }
        #expect(throws: ChunkingError.self) {
            try FileChunkReader(path: "x", strategy: .fastCDC(FastCDC(minSize: 1 << 20, avgSize: 1 << 19, maxSize: 1 << 21)))
        }
    }
}

struct ManifestTests {
    @Test func merkleRootFollowsItsDefinition() {
        let ids = (0..<3).map { SHA256.hash([UInt8($0)]) }
        func h(_ parts: [UInt8]...) -> SHA256Digest { SHA256.hash(parts.flatMap { $0 }) }
        let leaves = ids.map { h([0], $0.bytes) }
        let left = h([1], leaves[0].bytes, leaves[1].bytes)
        #expect(MerkleTree.root(ids) == h([1], left.bytes, leaves[2].bytes))
        #expect(MerkleTree.root([ids[0]]) == leaves[0])
        #expect(MerkleTree.root(ids) != MerkleTree.root([ids[1], ids[0], ids[2]]))
    }

    /// The streaming form gives the same root at every size, and resumes from its saved state.
    @Test func theAccumulatorMatchesTheTreeAtEverySize() throws {
        let ids = (0..<130).map { SHA256.hash([UInt8($0), 7]) }
        var acc = MerkleAccumulator()
        #expect(acc.root == MerkleTree.root([]))
        for n in 1...ids.count {
            acc.add(ids[n - 1])
            #expect(acc.root == MerkleTree.root(Array(ids[0..<n])), "\(n) ids")
            if n % 17 == 0 { acc = try #require(MerkleAccumulator(encoded: acc.encoded)) }
        }
        #expect(acc.count == 130)
        #expect(MerkleAccumulator(encoded: [1, 2, 3]) == nil)
    }

    @Test func manifestHashesEachChunk() throws {
        let data = SampleData.float32Field(bytes: 300_000)
        let file = try TemporaryFile(data)
        let m = try FileManifest.build(path: file.path, strategy: .fixed(size: 100_000))
        #expect(m.chunks.count == 3)
        #expect(m.length == 300_000)
        for c in m.chunks {
            let bytes = Array(data[Int(c.span.offset)..<Int(c.span.offset) + c.span.length])
            #expect(c.id == SHA256.hash(bytes))
            #expect(c.xxh128 == XXH3.hash128(bytes))
        }
        var edited = data
        edited[150_000] ^= 1
        let editedFile = try TemporaryFile(edited)
        let m2 = try FileManifest.build(path: editedFile.path, strategy: .fixed(size: 100_000))
        #expect(m2.root != m.root)
        #expect(m2.chunks[0].id == m.chunks[0].id && m2.chunks[1].id != m.chunks[1].id)
    }
}
