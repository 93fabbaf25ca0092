@testable import BargeCoordinator
import BargeWire
import Testing

/// An agent's share of a verification page goes out in requests of about 4 MiB: a page of 128
/// units of 1,024 small files each, with paths of 70 bytes, made one request past the frame
/// limit (16 MiB), and the verification failed after five tries.
struct VerifySlicesTests {
    @Test func aLargeShareIsCutIntoRequestsUnderTheirBudgetWithEachFilesChunks() {
        var batch = Scheduler.VerifyBatch()
        let id = [UInt8](repeating: 0xAB, count: 32)
        for i in 0..<131_072 {
            let path = "archive/2024/experiment-042/raw/detector-03/frame-\(String(repeating: "0", count: 10))\(i).tif"
            batch.files.append(TaskFile(sourcePath: path, entry: FileEntry(path: path, kind: .file, size: 100, mode: 0o644, mtimeSeconds: 1, mtimeNanoseconds: 0),
                                        length: 100, finish: true))
            // Every tenth file has two chunks, one in twenty none (empty).
            for k in 0..<(i % 20 == 0 ? 0 : i % 10 == 0 ? 2 : 1) {
                batch.chunks.append(ChunkReport(file: UInt32(i), offset: UInt64(k * 50), length: 50, id: id))
            }
        }
        let slices = Scheduler.slices(of: batch, attributes: true)
        #expect(slices.count >= 4, "\(slices.count)")
        var nextFile = 0, nextChunk = 0
        for s in slices {
            #expect(s.files.lowerBound == nextFile && s.chunks.lowerBound == nextChunk)
            (nextFile, nextChunk) = (s.files.upperBound, s.chunks.upperBound)
            // Each chunk goes with its own file.
            #expect(batch.chunks[s.chunks].allSatisfy { s.files.contains(Int($0.file)) })
            let bytes = batch.files[s.files].reduce(0) { $0 + 2 + $1.entry.path.utf8.count + 8 + 20 } + s.chunks.count * 48
            #expect(bytes <= Scheduler.verifyRequestBytes, "\(bytes)")
        }
        #expect(nextFile == batch.files.count && nextChunk == batch.chunks.count)
        // A small share is one request.
        var small = Scheduler.VerifyBatch()
        small.files = Array(batch.files.prefix(3))
        small.chunks = batch.chunks.filter { $0.file < 3 }
        #expect(Scheduler.slices(of: small, attributes: false).map(\.files) == [0..<3])
    }
}
