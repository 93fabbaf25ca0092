import BargeCodec
import BargeAgent
import BargeBench
import BargeDigest
import BargeStore
import BargeWire
import Foundation
import NIOCore
import Testing

/// The send and receive ends of the data plane, joined through real wire frames but no sockets.
struct DataPlaneTests {
    /// Through the frame codec and back, as the socket would carry it.
    func overTheWire(_ message: Message) throws -> Message {
        var buffer = ByteBuffer()
        buffer.writeFrame(message.frame())
        return try Message(frame: try #require(try buffer.readFrame(maxPayloadLength: Frame.defaultMaxPayload)))
    }

    /// `FrameCipher` lays chunk frames out for the destination's O_DIRECT writes with numbers of
    /// its own (the wire knows neither the codec nor the store): they must be theirs.
    @Test func theCiphersPlacementMatchesTheStoreAndTheChunkFormat() {
        #expect(FrameCipher.placement == PartialFileWriter.directAlignment)
        #expect(ChunkData.encodedHeaderLength == ChunkHeader.size)
    }

    @Test func filesArriveIdenticalAndOnlyCorruptChunksAreSentAgain() throws {
        let roots = try Roots()
        let files: [(String, [UInt8])] = [("ds/field.f32", SampleData.float32Field(bytes: (3 << 20) + 12345)),
                                           ("ds/notes.txt", SampleData.text(bytes: 700_000))]
        for (path, bytes) in files {
            try FileManager.default.createDirectory(atPath: roots.source + "/ds", withIntermediateDirectories: true)
            try Data(bytes).write(to: URL(fileURLWithPath: roots.source + "/" + path))
        }
        var rng = SplitMix64(seed: 77)
        let source = ChunkSource(root: roots.source, corruptFraction: 0.3, random: { rng.next() })
        let receiver = ChunkReceiver(root: roots.destination)
        var sent = 0, refetched = 0
        for (path, bytes) in files {
            var offset = 0
            while offset < bytes.count {
                let length = min(1 << 20, bytes.count - offset)
                let place = ChunkPlace(job: "j-1", path: "in/" + path, offset: UInt64(offset))
                var attempts = 0
                while true {
                    attempts += 1
                    let chunk = try source.chunk(sourcePath: path, offset: UInt64(offset), length: length, fileSize: UInt64(bytes.count), destination: place)
                    sent += 1
                    let reply = try overTheWire(receiver.receive(try #require({ if case .chunkData(let d) = try overTheWire(.chunkData(chunk)) { d } else { nil } }())))
                    if case .chunkAck(let ack) = reply { #expect(ack.place == place); break }
                    guard case .chunkNack(let nack) = reply, nack.reason == .corrupt, attempts < 20 else {
                        Issue.record("unexpected reply \(reply)"); return
                    }
                    #expect(!FileManager.default.fileExists(atPath: roots.destination + "/in/" + path), "nothing under the final name")
                    refetched += 1
                }
                offset += length
            }
            let finished = receiver.finish(FileDone(place: ChunkPlace(job: "j-1", path: "in/" + path, offset: 0), size: UInt64(bytes.count),
                                                    mode: 0o640, mtimeSeconds: 1_600_000_000, mtimeNanoseconds: 5))
            #expect(finished == .chunkAck(ChunkAck(place: ChunkPlace(job: "j-1", path: "in/" + path, offset: 0))))
            #expect(try [UInt8](Data(contentsOf: URL(fileURLWithPath: roots.destination + "/in/" + path))) == bytes)
        }
        #expect(refetched > 0, "the fault injection corrupted chunks")
        #expect(sent == 5 + refetched, "only corrupt chunks were sent again")
    }

    @Test func hostileChunksAreNackedAndWriteNothing() throws {
        let roots = try Roots()
        try Data(SampleData.text(bytes: 5000)).write(to: URL(fileURLWithPath: roots.source + "/a.txt"))
        let source = ChunkSource(root: roots.source)
        let receiver = ChunkReceiver(root: roots.destination)
        func reply(_ chunk: ChunkData) -> ChunkNack.Reason? {
            if case .chunkNack(let n) = receiver.receive(chunk) { return n.reason }
            return nil
        }
        let good = try source.chunk(sourcePath: "a.txt", offset: 0, length: 5000, fileSize: 5000,
                                    destination: ChunkPlace(job: "j", path: "a.txt", offset: 0))
        var escape = good
        escape.place.path = "../outside.txt"
        #expect(reply(escape) == .refusedPath)
        var truncated = good
        truncated.encoded = good.encoded.getSlice(at: 0, length: good.encoded.readableBytes - 1)!
        #expect(reply(truncated) == .corrupt)
        var overrun = good
        overrun.place.offset = 4000
        #expect(reply(overrun) == .malformed)
        var flipped = good
        let at = flipped.encoded.readerIndex + ChunkHeader.size + 100
        flipped.encoded.setInteger(flipped.encoded.getInteger(at: at, as: UInt8.self)! ^ 1, at: at)
        #expect(reply(flipped) == .corrupt)  // a stored chunk is checked in place, before anything is written
        #expect(try FileManager.default.contentsOfDirectory(atPath: roots.destination).isEmpty, "nothing written")
        #expect(!FileManager.default.fileExists(atPath: roots.url.appendingPathComponent("outside.txt").path))
        #expect(reply(good) == nil)
    }

    @Test func aSourceFileThatChangedIsReported() throws {
        let roots = try Roots()
        let url = URL(fileURLWithPath: roots.source + "/a.txt")
        try Data(SampleData.text(bytes: 100)).write(to: url)
        let shrank = #expect(throws: SourceChanged.self) {
            try ChunkSource(root: roots.source).chunk(sourcePath: "a.txt", offset: 0, length: 200, fileSize: 200,
                                                     destination: ChunkPlace(job: "j", path: "a.txt", offset: 0))
        }
        #expect(shrank?.description.contains("the scan saw 200") == true)
        // Same size, new mtime: rewritten in place since the scan.
        #expect(throws: SourceChanged.self) {
            try ChunkSource(root: roots.source).chunk(sourcePath: "a.txt", offset: 0, length: 100, fileSize: 100, mtime: (1, 0),
                                                     destination: ChunkPlace(job: "j", path: "a.txt", offset: 0))
        }
        // Unchanged: fine.
        var st = stat()
        #expect(stat(url.path, &st) == 0)
        _ = try ChunkSource(root: roots.source).chunk(sourcePath: "a.txt", offset: 0, length: 100, fileSize: 100,
                                                      mtime: (Int64(st.st_mtim.tv_sec), Int32(st.st_mtim.tv_nsec)),
                                                      destination: ChunkPlace(job: "j", path: "a.txt", offset: 0))
        #expect(throws: StoreError.self) {
            try ChunkSource(root: roots.source).chunk(sourcePath: "../etc/passwd", offset: 0, length: 10, fileSize: 10,
                                                     destination: ChunkPlace(job: "j", path: "x", offset: 0))
        }
    }
}
