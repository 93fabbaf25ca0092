import BargeAgent
import BargeBench
import BargeChunk
import BargeCodec
import BargeWire
import Foundation
import Testing

/// A chunk of a sparse file's hole is made without reading or hashing it (`Holes`): the same
/// chunk, id and checksum as the same zeros read from a file that holds them, and a chunk of
/// data beside it is read as ever.
struct SparseSourceTests {
    @Test func aHolesChunkIsThatOfItsZeros() throws {
        let roots = try Roots()
        let size = 8 << 20
        let sparse = roots.source + "/sparse.img", dense = roots.source + "/dense.img"
        let fd = open(sparse, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        #expect(fd >= 0 && ftruncate(fd, off_t(size)) == 0)
        let island = SampleData.random(bytes: 5000, seed: 3)
        #expect(island.withUnsafeBytes { pwrite(fd, $0.baseAddress, island.count, off_t(3 << 20)) } == island.count)
        #expect(Holes.contain(fd, from: 0, length: 1 << 20), "the file system keeps no holes: the test proves nothing")
        close(fd)
        var bytes = [UInt8](repeating: 0, count: size)
        bytes.replaceSubrange((3 << 20)..<((3 << 20) + island.count), with: island)
        try Data(bytes).write(to: URL(fileURLWithPath: dense))
        for codec in [CodecChoice.auto, .fixed(.none)] {
            let source = ChunkSource(root: roots.source, codec: codec)
            for (offset, length) in [(0, 1 << 20), (1 << 20, 1 << 20), (3 << 20, 1 << 20), ((4 << 20) + 17, 3 << 20)] {
                let place = ChunkPlace(job: "j", path: "x", offset: UInt64(offset))
                let a = try source.prepare(sourcePath: "sparse.img", offset: UInt64(offset), length: length, fileSize: UInt64(size), destination: place)
                let b = try source.prepare(sourcePath: "dense.img", offset: UInt64(offset), length: length, fileSize: UInt64(size), destination: place)
                let same = a.id == b.id && a.xxh == b.xxh
                #expect(same, "\(codec) \(length) bytes at \(offset)")
                #expect(a.encoded == b.encoded, "\(codec) \(length) bytes at \(offset)")
            }
        }
    }
}
