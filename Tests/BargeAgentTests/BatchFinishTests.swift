import BargeAgent
import BargeStore
import BargeWire
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import Testing

/// `files done` (protocol version 6): a batch of small files finished together, with grouped
/// durability and one chunk-index transaction.
struct BatchFinishTests {
    func chunk(_ source: ChunkSource, _ path: String, size: Int, job: String = "j") throws -> ChunkData {
        try source.chunk(sourcePath: path, offset: 0, length: size, fileSize: UInt64(size), destination: ChunkPlace(job: job, path: "in/" + path, offset: 0))
    }

    @Test func aBatchFinishesEveryCompleteFileAndNamesTheOneThatIsNot() throws {
        let roots = try Roots()
        let index = try ChunkIndex(path: roots.url.appendingPathComponent("index.sqlite").path, root: roots.destination)
        let receiver = ChunkReceiver(root: roots.destination, files: DestinationFiles(index: index))
        let source = ChunkSource(root: roots.source)
        var batch: [FilesDone.File] = []
        for i in 0..<20 {
            let dir = "d\(i % 3)"
            try FileManager.default.createDirectory(atPath: roots.source + "/" + dir, withIntermediateDirectories: true)
            let size = 1000 + i * 37
            try Data((0..<size).map { UInt8(truncatingIfNeeded: $0 &* (i + 1)) }).write(to: URL(fileURLWithPath: "\(roots.source)/\(dir)/f\(i)"))
            // File 7 never gets its bytes.
            if i != 7 { #expect(receiver.receive(try chunk(source, "\(dir)/f\(i)", size: size)) == .chunkAck(ChunkAck(place: ChunkPlace(job: "j", path: "in/\(dir)/f\(i)", offset: 0)))) }
            batch.append(FilesDone.File(path: "in/\(dir)/f\(i)", size: UInt64(size), mode: 0o640, mtimeSeconds: 1_600_000_000 + Int64(i), mtimeNanoseconds: 9))
        }
        // An empty file needs no chunk; a path outside the root is refused on its own.
        batch.append(FilesDone.File(path: "in/empty", size: 0, mode: 0o600, mtimeSeconds: 1_600_000_000, mtimeNanoseconds: 0))
        batch.append(FilesDone.File(path: "../escape", size: 0, mode: 0o600, mtimeSeconds: 1_600_000_000, mtimeNanoseconds: 0))
        guard case .filesDoneReply(let reply) = receiver.handle(.filesDone(FilesDone(job: "j", files: batch))) else {
            Issue.record("no files done reply")
            return
        }
        #expect(reply.refused.map(\.index) == [7, 21])
        #expect(reply.refused.first?.reason == .incomplete)
        #expect(reply.refused.last?.reason == .refusedPath)
        for i in 0..<20 where i != 7 {
            let dir = "d\(i % 3)"
            let path = "\(roots.destination)/in/\(dir)/f\(i)"
            #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == Data(contentsOf: URL(fileURLWithPath: "\(roots.source)/\(dir)/f\(i)")))
            var st = stat()
            #expect(stat(path, &st) == 0 && st.st_mode & 0o7777 == 0o640 && st.st_mtim.tv_sec == 1_600_000_000 + i && st.st_mtim.tv_nsec == 9)
        }
        #expect(FileManager.default.fileExists(atPath: roots.destination + "/in/empty"))
        #expect(!FileManager.default.fileExists(atPath: roots.destination + "/in/d1/f7"), "the incomplete file has no final name")
        let left = try FileManager.default.subpathsOfDirectory(atPath: roots.destination + "/in").filter { $0.hasSuffix(PartialFileWriter.suffix) }
        #expect(left.isEmpty, "no partial copy is left but the incomplete file's, which never opened: \(left)")
        // The index recorded the batch: the finished files' chunks are held.
        #expect(try index.ids(paths: ["in/d0/f0", "in/d2/f5"]).count == 2)
    }
}

extension BatchFinishTests {
    /// The same batch finished twice at once (a source killed and started again sends it anew
    /// while this agent still finishes the first): every file ends finished, and a file the
    /// other finish holds sealed is refused as `incomplete` (asked again, it is found finished),
    /// never as a refused path, which used to fail the whole job ("its partial copy is already
    /// closed"). Racy by nature: 5 rounds of 300 files make the overlap near certain.
    @Test func aBatchFinishedTwiceAtOnceRefusesNothingForGood() throws {
        let roots = try Roots()
        let files = DestinationFiles(index: try ChunkIndex(path: roots.url.appendingPathComponent("index.sqlite").path, root: roots.destination))
        let receiver = ChunkReceiver(root: roots.destination, files: files)
        let source = ChunkSource(root: roots.source)
        var reasons: [ChunkNack.Reason] = []
        for round in 0..<5 {
            var batch: [FilesDone.File] = []
            for i in 0..<300 {
                let path = "r\(round)/f\(i)"
                try FileManager.default.createDirectory(atPath: roots.source + "/r\(round)", withIntermediateDirectories: true)
                try Data(repeating: UInt8(i % 251), count: 100 + i).write(to: URL(fileURLWithPath: roots.source + "/" + path))
                _ = receiver.receive(try chunk(source, path, size: 100 + i))
                batch.append(FilesDone.File(path: "in/" + path, size: UInt64(100 + i), mode: 0o644, mtimeSeconds: 1_600_000_000, mtimeNanoseconds: 0))
            }
            let message = Message.filesDone(FilesDone(job: "j", files: batch))
            let replies = NIOLockedValueBox<[Message?]>([])
            let root = roots.destination
            // Two threads, one receiver each (as two connections have), sharing the agent's files.
            DispatchQueue.concurrentPerform(iterations: 2) { _ in
                let reply = ChunkReceiver(root: root, files: files).handle(message)
                replies.withLockedValue { $0.append(reply) }
            }
            for case .filesDoneReply(let reply)? in replies.withLockedValue({ $0 }) {
                reasons += reply.refused.map(\.reason)
                for r in reply.refused where r.reason != .incomplete { Issue.record("refused for good: \(r.detail)") }
            }
            for i in 0..<300 {
                #expect(FileManager.default.fileExists(atPath: "\(roots.destination)/in/r\(round)/f\(i)"), "round \(round), file \(i)")
            }
        }
        #expect(reasons.allSatisfy { $0 == .incomplete }, "\(Set(reasons))")
        let left = try FileManager.default.subpathsOfDirectory(atPath: roots.destination + "/in").filter { $0.hasSuffix(PartialFileWriter.suffix) }
        #expect(left.isEmpty, "\(left)")
    }
}
