@testable import BargeAgent
import BargeBench
import BargeDigest
import BargeFlow
import BargeStore
import BargeWire
import Foundation
import Testing

/// The destination's chunk index at work: partial copies that outlive their agent, and chunks
/// sent by reference instead of by value.
struct DedupTests {
    static let token = try! ClusterToken(bytes: Array("dedup-test-token-0123456789abc".utf8))

    func index(_ roots: Roots) throws -> ChunkIndex {
        try ChunkIndex(path: roots.url.appendingPathComponent("index.sqlite").path, root: roots.destination)
    }

    func chunk(_ bytes: [UInt8]) -> (id: [UInt8], xxh: [UInt8]) {
        bytes.withUnsafeBytes { b in
            let sha = SHA256Hasher()
            sha.update(b)
            return (sha.finalize().bytes, XXH3.hash128(b).canonicalBytes)
        }
    }

    /// The receiving side of two agents, b1 and b2, sharing the destination root, each with its
    /// own chunk index under `.barge` and the other's as a sibling.
    func twoAgentsSharing(_ roots: Roots) throws -> (DestinationFiles, DestinationFiles) {
        let state = roots.destination + "/.barge"
        let agents = try ["b1", "b2"].map { name in
            try FileManager.default.createDirectory(atPath: state + "/" + name, withIntermediateDirectories: true)
            let index = try ChunkIndex(path: state + "/" + name + "/" + ChunkIndex.fileName, root: roots.destination)
            return DestinationFiles(index: index, siblings: SiblingIndexes(root: roots.destination, own: index.path))
        }
        return (agents[0], agents[1])
    }

    func write(_ files: DestinationFiles, _ target: RootedPath, _ bytes: [UInt8], at offset: UInt64, size: UInt64) throws {
        let (id, xxh) = chunk(bytes)
        try bytes.withUnsafeBytes { try files.write(job: "j", target: target, size: size, bytes: $0, at: offset, id: id, xxh: xxh) }
    }

    @Test func aPartialCopyOutlivesItsAgentAndOnlyGoodChunksAreKept() throws {
        let roots = try Roots()
        let target = try RootedPath.resolve("d/f", under: roots.destination)
        let a = [UInt8](repeating: 1, count: 100), b = [UInt8](repeating: 2, count: 100), c = [UInt8](repeating: 3, count: 100)
        do {
            let files = DestinationFiles(index: try index(roots))
            try write(files, target, a, at: 0, size: 300)
            try write(files, target, b, at: 100, size: 300)
            files.flush()  // what a killed agent had recorded; the process then dies without finishing
        }
        // Chunk b's bytes are damaged on disk while the agent is down.
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: target.absolute + PartialFileWriter.suffix))
        try handle.seek(toOffset: 150)
        try handle.write(contentsOf: Data([0xFF]))
        try handle.close()

        let restarted = DestinationFiles(index: try index(roots))
        try write(restarted, target, c, at: 200, size: 300)
        // a was kept; b was not, so the file is incomplete until b comes again.
        #expect(throws: DestinationFiles.Incomplete.self) {
            try restarted.finish(job: "j", target: target, size: 300, mode: 0o644, mtimeSeconds: 1, mtimeNanoseconds: 0)
        }
        try write(restarted, target, b, at: 100, size: 300)
        try restarted.finish(job: "j", target: target, size: 300, mode: 0o644, mtimeSeconds: 1, mtimeNanoseconds: 0)
        #expect(try [UInt8](Data(contentsOf: URL(fileURLWithPath: target.absolute))) == a + b + c)
        // Finished: its chunks are now known under the final name.
        #expect(try index(roots).ids(paths: ["d/f"]) == Set([chunk(a).id, chunk(b).id, chunk(c).id]))
    }

    /// A partial copy left by a run of a file that has changed since: the new run's chunks are
    /// cut elsewhere, over the old ones taken back. Each byte counts once, so the file finishes,
    /// whole and new. Before, the old and the new chunks' lengths were summed (a 60 MB file
    /// showed 64.7 MB arrived) and its finish was refused at every attempt, for good.
    @Test func aPartialCopyOfAFileThatChangedSinceFinishesWithTheNewBytes() throws {
        let roots = try Roots()
        let target = try RootedPath.resolve("d/f", under: roots.destination)
        let old = [UInt8](repeating: 1, count: 100) + [UInt8](repeating: 2, count: 100)
        do {
            let files = DestinationFiles(index: try index(roots))
            try write(files, target, Array(old[0..<100]), at: 0, size: 300)
            try write(files, target, Array(old[100..<200]), at: 100, size: 300)
            files.flush()  // an earlier run stopped here
        }
        let restarted = DestinationFiles(index: try index(roots))
        // The file changed at the source: this run's cuts fall at 0, 60, 170 and 240.
        let new = (0..<300).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }
        for (from, to) in [(60, 170), (0, 60), (240, 300), (170, 240)] {
            try write(restarted, target, Array(new[from..<to]), at: UInt64(from), size: 300)
        }
        try restarted.finish(job: "j", target: target, size: 300, mode: 0o644, mtimeSeconds: 1, mtimeNanoseconds: 0)
        #expect(try [UInt8](Data(contentsOf: URL(fileURLWithPath: target.absolute))) == new)
    }

    /// The ranges a partial copy holds: merged as they come, each byte counted once.
    @Test func byteRangesCountEachByteOnce() {
        var r = ByteRanges()
        r.insert(100, 50)                      // [100, 150)
        r.insert(0, 10)                        // [0, 10) [100, 150)
        #expect(r.total == 60 && r.spans.count == 2)
        r.insert(100, 50)                      // the same again
        #expect(r.total == 60)
        r.insert(140, 30)                      // overlaps the end: [100, 170)
        #expect(r.total == 80 && r.spans.count == 2)
        r.insert(10, 90)                       // touches both: [0, 170)
        #expect(r.total == 170 && r.spans.count == 1)
        r.insert(300, 10); r.insert(200, 10); r.insert(250, 10)
        #expect(r.spans.map(\.start) == [0, 200, 250, 300])
        r.insert(5, 400)                       // swallows everything: [0, 405)
        #expect(r.total == 405 && r.spans.count == 1)
        #expect(r.contains(0, 405) && r.contains(404, 1) && !r.contains(404, 2) && r.contains(7, 0))
        var s = ByteRanges()
        s.insert(10, 10); s.insert(30, 10)
        #expect(s.overlaps(15, 1) && s.overlaps(0, 11) && !s.overlaps(20, 10) && !s.overlaps(0, 10) && s.overlaps(19, 12))
        #expect(!s.contains(15, 20) && s.contains(30, 10))
    }

    @Test func aFinishedFileThatChangedIsNoLongerOffered() throws {
        let roots = try Roots()
        let files = DestinationFiles(index: try index(roots))
        let target = try RootedPath.resolve("f", under: roots.destination)
        let bytes = [UInt8](repeating: 9, count: 4096)
        try write(files, target, bytes, at: 0, size: 4096)
        try files.finish(job: "j", target: target, size: 4096, mode: 0o644, mtimeSeconds: 1_000, mtimeNanoseconds: 0)
        #expect(try files.heldIds(paths: ["f"]) == [chunk(bytes).id])
        try Data(repeating: 1, count: 4096).write(to: URL(fileURLWithPath: target.absolute))  // someone edits it (mtime moves)
        #expect(try files.heldIds(paths: ["f"]).isEmpty)
    }

    @Test func aReferenceToBytesThatNoLongerCheckOutIsNeeded() throws {
        let roots = try Roots()
        let files = DestinationFiles(index: try index(roots))
        let receiver = ChunkReceiver(root: roots.destination, files: files)
        let bytes = [UInt8](repeating: 5, count: 1000)
        let (id, xxh) = chunk(bytes)
        try write(files, try RootedPath.resolve("src", under: roots.destination), bytes, at: 0, size: 1000)
        let ref = ChunkRef(place: ChunkPlace(job: "j", path: "copy", offset: 0), fileSize: 1000, length: 1000, id: id, xxh: xxh)
        #expect(receiver.copy(ref) == .chunkAck(ChunkAck(place: ref.place)))
        // The same id with the wrong XXH3-128 is not taken on trust.
        let wrong = ChunkRef(place: ChunkPlace(job: "j", path: "copy2", offset: 0), fileSize: 1000, length: 1000, id: id, xxh: [UInt8](repeating: 0, count: 16))
        guard case .chunkNack(let nack) = receiver.copy(wrong) else { Issue.record("copied unverified bytes"); return }
        #expect(nack.reason == .need)
        // An id it never saw, and a path outside the root.
        let unknown = ChunkRef(place: ChunkPlace(job: "j", path: "copy3", offset: 0), fileSize: 1000, length: 1000, id: [UInt8](repeating: 7, count: 32), xxh: xxh)
        guard case .chunkNack(let n2) = receiver.copy(unknown), n2.reason == .need else { Issue.record("unknown id not needed"); return }
        let outside = ChunkRef(place: ChunkPlace(job: "j", path: "../x", offset: 0), fileSize: 1000, length: 1000, id: id, xxh: xxh)
        guard case .chunkNack(let n3) = receiver.copy(outside), n3.reason == .refusedPath else { Issue.record("escaped the root"); return }
    }

    /// A reference whose bytes this agent recorded in a partial copy that has since been
    /// finished (renamed to its final name by a finish whose record is not written yet, or by
    /// another agent sharing the root): the bytes are read under the final name, and the row is
    /// kept. Reading only the partial name, the chunk was taken for lost, its row dropped, and it
    /// went again by value (DedupProcessTests.aResyncSendsOnlyWhatChanged, in the full suite).
    @Test func aReferenceToAPartialCopyFinishedSinceIsReadUnderItsFinalName() throws {
        let roots = try Roots()
        let files = DestinationFiles(index: try index(roots))
        let receiver = ChunkReceiver(root: roots.destination, files: files)
        let bytes = [UInt8](repeating: 9, count: 4096)
        let (id, xxh) = chunk(bytes)
        let source = try RootedPath.resolve("src", under: roots.destination)
        try write(files, source, bytes, at: 0, size: 4096)
        files.flush()  // the row: a chunk of the partial copy
        try FileManager.default.moveItem(atPath: PartialFileWriter.partialPath(root: roots.destination, relative: "src"), toPath: source.absolute)
        let ref = ChunkRef(place: ChunkPlace(job: "j", path: "copy", offset: 0), fileSize: 4096, length: 4096, id: id, xxh: xxh)
        #expect(receiver.copy(ref) == .chunkAck(ChunkAck(place: ref.place)))
        #expect(try files.heldIds(paths: ["src"]) == [id], "the row stays")
    }

    /// Over real streams: a file sent twice to another path in the same job, then to the first
    /// path again in a new job, goes by reference; a file with a repeated block sends it once.
    @Test func chunksTheDestinationHoldsAreSentByReference() async throws {
        let roots = try Roots()
        let block = SampleData.random(bytes: 1 << 20, seed: 3)
        let file = block + SampleData.random(bytes: 1 << 20, seed: 4) + block + [1, 2, 3]
        let url = URL(fileURLWithPath: roots.source + "/data.bin")
        try Data(file).write(to: url)
        var st = stat()
        #expect(lstat(url.path, &st) == 0)
        func entry(_ path: String) -> TaskFile {
            TaskFile(sourcePath: "data.bin", entry: FileEntry(path: path, kind: .file, size: UInt64(file.count), mode: 0o644,
                                                             mtimeSeconds: Int64(st.st_mtim.tv_sec), mtimeNanoseconds: Int32(st.st_mtim.tv_nsec)),
                     length: UInt64(file.count), finish: true)
        }
        let listener = try await DataPlaneListener.bind(host: "127.0.0.1", port: 0, root: roots.destination, token: Self.token, name: "b1",
                                                        index: try index(roots))
        let serving = Task { try await listener.run() }
        defer { serving.cancel() }
        let sources = SourcePool { [root = roots.source] in ChunkSource(root: root) }
        func send(_ job: String, _ path: String) async throws -> TaskDone {
            let port = listener.localAddress!.port!
            let task = TaskAssign(job: job, unit: 1, destination: DataPeer(name: "b1", host: "127.0.0.1", port: UInt16(port)),
                                  codec: "none", chunkSize: 1 << 20, files: [entry(path)])
            let client = DataPlaneClient(host: "127.0.0.1", port: port, token: Self.token, name: "a1")
            return try await UnitSender(task: task, client: client, sources: sources, settings: .init(streams: 1), progress: UnitProgress()).run()
        }
        let first = try await send("j1", "one/data.bin")
        #expect(first.dedupBytes == 1 << 20, "the repeated block goes once")
        #expect(first.wireBytes < UInt64(file.count) - (1 << 20) + 4096)
        let second = try await send("j1", "two/data.bin")
        #expect(second.dedupBytes == UInt64(file.count), "every chunk was sent to this agent earlier in the job")
        let resync = try await send("j2", "one/data.bin")
        #expect(resync.dedupBytes == UInt64(file.count), "everything is at the destination already")
        #expect(resync.wireBytes < 1000)
        for path in ["one/data.bin", "two/data.bin"] {
            #expect(try [UInt8](Data(contentsOf: URL(fileURLWithPath: roots.destination + "/" + path))) == file)
        }
    }
}

/// Streams of one unit racing on the same bytes: one sends them, the others wait for its ack and
/// send a reference.
struct ConcurrentDedupTests {
    @Test func aBlockRepeatedAcrossParallelStreamsCrossesTheWireOnce() async throws {
        let roots = try Roots()
        let block = SampleData.random(bytes: 1 << 20, seed: 11)
        let file = block + block + block + block + block + block
        try Data(file).write(to: URL(fileURLWithPath: roots.source + "/rep.bin"))
        var st = stat()
        #expect(lstat(roots.source + "/rep.bin", &st) == 0)
        let index = try ChunkIndex(path: roots.url.appendingPathComponent("index.sqlite").path, root: roots.destination)
        let listener = try await DataPlaneListener.bind(host: "127.0.0.1", port: 0, root: roots.destination, token: DedupTests.token, name: "b1", index: index)
        let serving = Task { try await listener.run() }
        defer { serving.cancel() }
        let port = listener.localAddress!.port!
        let entry = FileEntry(path: "rep.bin", kind: .file, size: UInt64(file.count), mode: 0o644,
                              mtimeSeconds: Int64(st.st_mtim.tv_sec), mtimeNanoseconds: Int32(st.st_mtim.tv_nsec))
        let task = TaskAssign(job: "j", unit: 1, destination: DataPeer(name: "b1", host: "127.0.0.1", port: UInt16(port)), codec: "none",
                              chunkSize: 1 << 20, files: [TaskFile(sourcePath: "rep.bin", entry: entry, length: UInt64(file.count), finish: true)])
        let done = try await UnitSender(task: task, client: DataPlaneClient(host: "127.0.0.1", port: port, token: DedupTests.token, name: "a1"),
                                        sources: SourcePool { [root = roots.source] in ChunkSource(root: root) },
                                        settings: .init(streams: 6, contentDefinedAbove: nil), progress: UnitProgress()).run()
        #expect(done.dedupBytes == 5 << 20)
        #expect(done.wireBytes < (1 << 20) + 4096)
        #expect(try [UInt8](Data(contentsOf: URL(fileURLWithPath: roots.destination + "/rep.bin"))) == file)
    }
}

/// Which coordinator errors end an agent and which it rides out by connecting again.
struct AgentRunnerTests {
    @Test func onlyErrorsRetryingCannotFixAreFatal() {
        let idle = ErrorMessage(code: .unexpectedMessage, reason: "nothing received for too long; closing the connection")
        #expect(!AgentRunner.isFatal(CoordinatorConnectionError.dropped(idle)), "a registered connection closed by the coordinator is retried")
        #expect(!AgentRunner.isFatal(CoordinatorConnectionError.closed))
        // A listener that gave the connection's handshake slot away after the agent sent its
        // `auth` says busy in reply to `register`: the agent stopped for good (review of session 53).
        #expect(!AgentRunner.isFatal(CoordinatorConnectionError.refused(ErrorMessage(code: .busy, reason: "all 128 handshake slots are held"))))
        #expect(AgentRunner.isFatal(CoordinatorConnectionError.refused(ErrorMessage(code: .unexpectedMessage, reason: "name in use"))))
        #expect(AgentRunner.isFatal(HandshakeFailure(error: ErrorMessage(code: .authenticationFailed, reason: "wrong token"))))
        // A registration damaged on its way (one flipped bit): sent again, not the agent's end.
        for code in [ErrorCode.sealBroken, .checksumMismatch, .badMagic, .malformedFrame, .frameTooLarge] {
            #expect(!AgentRunner.isFatal(CoordinatorConnectionError.refused(ErrorMessage(code: code, reason: "sealed register frame rejected"))), "\(code)")
        }
        // A handshake a slow path held past the coordinator's limit: connected again, not the
        // agent's end (h1 of session 49); and so from a coordinator before the code existed.
        #expect(!AgentRunner.isFatal(CoordinatorConnectionError.refused(ErrorMessage(code: .timedOut, reason: "handshake not finished within 10000 ms"))))
        #expect(!AgentRunner.isFatal(CoordinatorConnectionError.refused(ErrorMessage(code: .unexpectedMessage, reason: "handshake not finished within 10000 ms"))))
    }
}

/// The agent's `--bwlimit`: a timetable followed by the clock.
struct RateLimiterTests {
    final class Fake: @unchecked Sendable {
        var now: UInt64 = 5_000_000_000
        var day = 2, minute = 9 * 60
    }

    @Test func theCapFollowsTheTimetable() async throws {
        let fake = Fake()
        let limiter = try RateLimiter("Mon-Fri 08:00-18:00 1MB/s, 18:00 off", clock: { fake.now }, localTime: { (fake.day, fake.minute) })
        await limiter.charge(1000)
        #expect(limiter.currentRate == 1e6)
        fake.minute = 19 * 60
        await limiter.charge(1000)
        #expect(limiter.currentRate == 1e6, "looked at again only after a second")
        fake.now += 1_000_000_000
        await limiter.charge(1000)
        #expect(limiter.currentRate == nil)
        #expect(throws: QuantityError.self) { try RateLimiter("Mon-Fri 8am 1MB/s") }
    }
}

extension DedupTests {
    /// Two agents sharing a root: a chunk that one of them wrote is copied locally by the other,
    /// which finds it in the first one's index (read-only).
    @Test func anAgentFindsChunksInTheIndexOfAnotherAgentSharingItsRoot() throws {
        let roots = try Roots()
        let (b1, b2) = try twoAgentsSharing(roots)
        let bytes = [UInt8](repeating: 7, count: 4096)
        let target = try RootedPath.resolve("d/f", under: roots.destination)
        try write(b1, target, bytes, at: 0, size: 4096)
        try b1.finish(job: "j", target: target, size: 4096, mode: 0o644, mtimeSeconds: 1_700_000_000, mtimeNanoseconds: 0)
        let (id, xxh) = chunk(bytes)
        #expect(try b2.heldIds(paths: ["d/f"]) == [id])
        let copy = try RootedPath.resolve("e/g", under: roots.destination)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 16)
        defer { buffer.deallocate() }
        #expect(try b2.copyLocal(job: "j2", target: copy, size: 4096, offset: 0, length: 4096, id: id, xxh: xxh, buffer: buffer))
        try b2.finish(job: "j2", target: copy, size: 4096, mode: 0o644, mtimeSeconds: 1_700_000_000, mtimeNanoseconds: 0)
        #expect(FileManager.default.contents(atPath: copy.absolute) == Data(bytes))
    }
}

extension DedupTests {
    /// Two agents sharing a root, each given part of one file (a range still running when the
    /// coordinator restarted went to one, the rest to the other): the finish, at either, takes
    /// the other's recorded chunks whose bytes check out, so the file need not be sent again.
    /// A recorded chunk whose bytes on disk no longer match is not taken, and the finish is
    /// refused as before.
    @Test func aFinishTakesTheChunksAnotherAgentSharingTheRootWroteIntoThePartialCopy() throws {
        let roots = try Roots()
        let (b1, b2) = try twoAgentsSharing(roots)
        let first = [UInt8](repeating: 1, count: 4096), second = [UInt8](repeating: 2, count: 4096), third = [UInt8](repeating: 3, count: 4096)
        let target = try RootedPath.resolve("d/f", under: roots.destination)
        try write(b1, target, first, at: 0, size: 12288)
        try write(b1, target, second, at: 4096, size: 12288)
        b1.flush()
        try write(b2, target, third, at: 8192, size: 12288)
        try b2.finish(job: "j", target: target, size: 12288, mode: 0o644, mtimeSeconds: 1_700_000_000, mtimeNanoseconds: 0)
        #expect(FileManager.default.contents(atPath: target.absolute) == Data(first + second + third))
        #expect(!FileManager.default.fileExists(atPath: PartialFileWriter.partialPath(of: target)))

        // The same, but the bytes of b1's second chunk changed on disk after it recorded them.
        let other = try RootedPath.resolve("d/g", under: roots.destination)
        try write(b1, other, first, at: 0, size: 12288)
        try write(b1, other, second, at: 4096, size: 12288)
        b1.flush()
        try write(b2, other, third, at: 8192, size: 12288)
        let handle = try #require(FileHandle(forWritingAtPath: PartialFileWriter.partialPath(of: other)))
        try handle.seek(toOffset: 5000)
        try handle.write(contentsOf: Data([9]))
        try handle.close()
        #expect(throws: DestinationFiles.Incomplete.self) {
            try b2.finish(job: "j", target: other, size: 12288, mode: 0o644, mtimeSeconds: 1_700_000_000, mtimeNanoseconds: 0)
        }
        #expect(!FileManager.default.fileExists(atPath: other.absolute))
    }
}

extension DedupTests {
    /// Two agents sharing a root both hold a whole file in the same partial copy (its finish ran
    /// at both, one of them from before a coordinator restart): the first finish gives it its
    /// name, and the second finds it in place rather than failing on the rename.
    @Test func aFileFinishedByAnotherAgentSharingTheRootIsInPlaceForTheSecondFinish() throws {
        let roots = try Roots()
        let (b1, b2) = try twoAgentsSharing(roots)
        let bytes = [UInt8](repeating: 5, count: 8192)
        let target = try RootedPath.resolve("d/f", under: roots.destination)
        try write(b1, target, bytes, at: 0, size: 8192)
        try write(b2, target, bytes, at: 0, size: 8192)
        try b1.finish(job: "j", target: target, size: 8192, mode: 0o644, mtimeSeconds: 1_700_000_000, mtimeNanoseconds: 5)
        try b2.finish(job: "j", target: target, size: 8192, mode: 0o644, mtimeSeconds: 1_700_000_000, mtimeNanoseconds: 5)
        #expect(FileManager.default.contents(atPath: target.absolute) == Data(bytes))

        // A name that meanwhile holds another file (written since, with its own mtime) is not
        // taken for this one: the second finish fails, as before.
        let other = try RootedPath.resolve("d/g", under: roots.destination)
        try write(b1, other, bytes, at: 0, size: 8192)
        try write(b2, other, bytes, at: 0, size: 8192)
        try b1.finish(job: "j", target: other, size: 8192, mode: 0o644, mtimeSeconds: 1_700_000_000, mtimeNanoseconds: 5)
        try FileManager.default.removeItem(atPath: other.absolute)
        try Data(repeating: 6, count: 8192).write(to: URL(fileURLWithPath: other.absolute))
        #expect(throws: StoreError.self) {
            try b2.finish(job: "j", target: other, size: 8192, mode: 0o644, mtimeSeconds: 1_700_000_000, mtimeNanoseconds: 5)
        }
        #expect(FileManager.default.contents(atPath: other.absolute) == Data(repeating: 6, count: 8192))
    }

    /// b1 has a file open and has written part of it; b2, sharing the root, writes all of it and
    /// finishes it; b1's next chunk finds it finished (acked, not counted). b1's finish of the
    /// file is then done, not refused as incomplete at every attempt (which failed a job in a
    /// crash run); a late chunk after it is acked without a new partial copy.
    @Test func aFinishOfAFileAnotherAgentFinishedWhileItWasOpenHereIsDone() throws {
        let roots = try Roots()
        let (b1, b2) = try twoAgentsSharing(roots)
        let half = [UInt8](repeating: 3, count: 4096)
        /// b1 writes the first half of `path`; b2 writes it all and finishes it (mtime 7 ns); b1's
        /// second half finds it finished; then b1's finish, naming `mtimeNanoseconds`.
        func finishedAtB2WhileOpenAtB1(_ path: String, finishNaming mtimeNanoseconds: Int32) throws -> (RootedPath, [Int: Error]) {
            let target = try RootedPath.resolve(path, under: roots.destination)
            try write(b1, target, half, at: 0, size: 8192)
            try write(b2, target, half, at: 0, size: 8192)
            try write(b2, target, half, at: 4096, size: 8192)
            try b2.finish(job: "j", target: target, size: 8192, mode: 0o644, mtimeSeconds: 1_700_000_000, mtimeNanoseconds: 7)
            #expect(throws: DestinationFiles.AlreadyFinished.self) { try write(b1, target, half, at: 4096, size: 8192) }
            return (target, b1.finish(job: "j", batch: [DestinationFiles.Finish(target: target, file: FilesDone.File(
                path: path, size: 8192, mode: 0o644, mtimeSeconds: 1_700_000_000, mtimeNanoseconds: mtimeNanoseconds))]))
        }
        let (target, failures) = try finishedAtB2WhileOpenAtB1("d/f", finishNaming: 7)
        #expect(failures.isEmpty, "\(failures)")
        #expect(throws: DestinationFiles.AlreadyFinished.self) { try write(b1, target, half, at: 0, size: 8192) }
        #expect(FileManager.default.contents(atPath: target.absolute) == Data(half + half))
        #expect(TreeSupportLite.partials(roots.destination).isEmpty)
        // Not taken for done: the same name finished elsewhere with another mtime.
        let (_, refused) = try finishedAtB2WhileOpenAtB1("d/g", finishNaming: 9)
        #expect(refused[0] is DestinationFiles.Incomplete, "\(refused)")
    }
}

/// `.barge-partial` names left under a root.
enum TreeSupportLite {
    static func partials(_ root: String) -> [String] {
        (FileManager.default.enumerator(atPath: root)?.allObjects as? [String] ?? []).filter { $0.hasSuffix(".barge-partial") }
    }
}
