import BargeAgent
import BargeBench
import BargeStore
import BargeWire
import Foundation
import NIOCore
import Testing

/// Units sent over real loopback streams to a data-plane listener.
struct UnitSenderTests {
    static let token = try! ClusterToken(bytes: Array("unit-sender-test-token-012345".utf8))

    func entry(_ path: String, of url: URL) throws -> FileEntry {
        var st = stat()
        #expect(lstat(url.path, &st) == 0)
        return FileEntry(path: path, kind: .file, size: UInt64(st.st_size), mode: UInt32(st.st_mode & 0o7777),
                         mtimeSeconds: Int64(st.st_mtim.tv_sec), mtimeNanoseconds: Int32(st.st_mtim.tv_nsec))
    }

    func send(_ files: [TaskFile], roots: Roots, listener: DataPlaneListener, streams: Int = 3) async throws(UnitFailure) -> TaskDone {
        let task = TaskAssign(job: "j", unit: 1, destination: DataPeer(name: "b1", host: "127.0.0.1", port: UInt16(listener.localAddress!.port!)),
                              codec: "zstd-1", chunkSize: 1 << 20, files: files)
        let client = DataPlaneClient(host: "127.0.0.1", port: listener.localAddress!.port!, token: Self.token, name: "a1")
        let sources = SourcePool { [root = roots.source] in ChunkSource(root: root) }
        return try await UnitSender(task: task, client: client, sources: sources, settings: .init(streams: streams), progress: UnitProgress()).run()
    }

    /// A connection that closed under a request is said in words (a review read NIO's "I/O on
    /// closed channel" as the reason a job failed after a network outage).
    /// A destination out of descriptors (EMFILE, ENFILE) is the lane's moment, given back; other
    /// write failures (a full disk) count as the unit's (h7 of session 49).
    @Test func aDestinationOutOfDescriptorsIsTheLanesMoment() {
        #expect(UnitSender.isOutOfDescriptors("create ds/d1/f1.barge-partial: errno 24 (Too many open files)"))
        #expect(UnitSender.isOutOfDescriptors("open directory ds/d2: errno 23 (Too many open files in system)"))
        #expect(!UnitSender.isOutOfDescriptors("write ds/f.barge-partial: ENOSPC (No space left on device)"))
    }

    /// SQLite's "unable to open database file" (error 14) while the destination is out of
    /// descriptors names errno 24 as a store error does, so the source gives the attempt back;
    /// elsewhere (a chunk index that is gone) it stays SQLite's words, and counts. Before, it
    /// always counted, and a destination that took over a stopped sibling's files at its limit
    /// failed the job, 2 of 2 times (h1 of session 50).
    @Test func anIndexThatCannotOpenAtTheLimitIsTheLanesMoment() throws {
        let error = try #require(throws: (any Error).self) {
            _ = try ChunkIndex(path: "/nonexistent-\(UInt64.random(in: 0...UInt64.max))/index.sqlite", root: "/tmp")
        }
        let atLimit = StoreError.describing(error, outOfDescriptors: { EMFILE })
        #expect(atLimit.contains("unable to open database file") && UnitSender.isOutOfDescriptors(atLimit), "\(atLimit)")
        #expect(!UnitSender.isOutOfDescriptors(StoreError.describing(error)), "not out of descriptors now")
        #expect(StoreError.outOfDescriptors() == nil)
    }

    @Test func aDataPlaneThatClosedIsSaidInWords() {
        let said = UnitSender.dataPlaneFailure(ChannelError.ioOnClosedChannel, to: "b1", at: "10.0.0.2:7471")
        #expect(said == "data plane to b1 at 10.0.0.2:7471: the connection closed (the network between the agents, or b1, went away)", "\(said)")
    }

    @Test func aUnitOverSeveralStreamsFinishesEachFileOnceComplete() async throws {
        let roots = try Roots()
        let big = URL(fileURLWithPath: roots.source + "/big.f32"), empty = URL(fileURLWithPath: roots.source + "/empty")
        let bytes = SampleData.float32Field(bytes: (4 << 20) + 99)
        try Data(bytes).write(to: big)
        try Data().write(to: empty)
        let listener = try await DataPlaneListener.bind(host: "127.0.0.1", port: 0, root: roots.destination, token: Self.token, name: "b1")
        let serving = Task { try await listener.run() }
        defer { serving.cancel() }
        let done = try await send([TaskFile(sourcePath: "big.f32", entry: try entry("out/big.f32", of: big), length: UInt64(bytes.count), finish: true),
                                   TaskFile(sourcePath: "empty", entry: try entry("out/empty", of: empty), length: 0, finish: true)],
                                  roots: roots, listener: listener)
        #expect(done.bytes == UInt64(bytes.count))
        #expect(done.chunks.count == 5 && done.chunks.map(\.offset) == [0, 1 << 20, 2 << 20, 3 << 20, 4 << 20])
        #expect(done.codecs.first { $0.codec == "zstd-1" }?.chunks == 4)  // the 99-byte tail does not shrink and goes raw
        #expect(done.wireBytes < UInt64(bytes.count))
        #expect(try Data(contentsOf: URL(fileURLWithPath: roots.destination + "/out/big.f32")) == Data(bytes))
        #expect(FileManager.default.fileExists(atPath: roots.destination + "/out/empty"))
        #expect(listener.files.openCount == 0)
    }

    /// As rsync reports a file that failed its check and goes on: the unit is done without it,
    /// names it in `task done` with why, and never finishes it.
    /// A unit to a destination its pool finds far once the first connection opens (the RTT is
    /// given here, as the delay test bed would have it) adds streams on the connections the pool
    /// opened meanwhile: eight connections, of which at least four were handed to the unit after
    /// they opened idle. The file arrives whole.
    @Test func aUnitToAFarDestinationAddsStreamsOnceItKnows() async throws {
        let roots = try Roots()
        let url = URL(fileURLWithPath: roots.source + "/far.bin")
        let bytes = SampleData.random(bytes: (12 << 20) + 5)
        try Data(bytes).write(to: url)
        let listener = try await DataPlaneListener.bind(host: "127.0.0.1", port: 0, root: roots.destination, token: Self.token, name: "b1")
        let serving = Task { try await listener.run() }
        defer { serving.cancel() }
        let port = listener.localAddress!.port!
        let task = TaskAssign(job: "j", unit: 1, destination: DataPeer(name: "b1", host: "127.0.0.1", port: UInt16(port)), codec: "none",
                              chunkSize: 1 << 20, files: [TaskFile(sourcePath: "far.bin", entry: try entry("out/far.bin", of: url), length: UInt64(bytes.count), finish: true)])
        let client = DataPlaneClient(host: "127.0.0.1", port: port, token: Self.token, name: "a1")
        let pool = StreamPool(perDestination: 4, longPath: 8, measure: { _ in 50_000_000 })
        let done = try await UnitSender(task: task, client: client, sources: SourcePool { [root = roots.source] in ChunkSource(root: root) },
                                        settings: .init(streams: 4, longPathStreams: 8, contentDefinedAbove: nil), progress: UnitProgress(), pool: pool).run()
        #expect(done.bytes == UInt64(bytes.count))
        #expect(try Data(contentsOf: URL(fileURLWithPath: roots.destination + "/out/far.bin")) == Data(bytes))
        #expect(pool.opened == 8, "\(pool.opened) connections opened")
        #expect(pool.reused >= 4, "the streams added after the first answer took the idle connections: \(pool.reused)")
        pool.closeAll()
    }

    @Test func aSourceFileChangedSinceTheScanIsLeftOutAndNeverFinished() async throws {
        let roots = try Roots()
        let url = URL(fileURLWithPath: roots.source + "/log.txt")
        try Data(SampleData.text(bytes: 3 << 20)).write(to: url)
        let scanned = try entry("out/log.txt", of: url)
        // Appended to after the scan.
        let handle = try FileHandle(forWritingTo: url)
        try handle.seekToEnd()
        try handle.write(contentsOf: Data("one more line\n".utf8))
        try handle.close()
        let listener = try await DataPlaneListener.bind(host: "127.0.0.1", port: 0, root: roots.destination, token: Self.token, name: "b1")
        let serving = Task { try await listener.run() }
        defer { serving.cancel() }
        let done = try await send([TaskFile(sourcePath: "log.txt", entry: scanned, length: scanned.size, finish: true)], roots: roots, listener: listener)
        #expect(done.leftOut == [0])
        #expect(done.firstLeftOut.contains("source file 'log.txt' changed during the transfer (size \(scanned.size + 14), the scan saw \(scanned.size))"), "\(done.firstLeftOut)")
        #expect(!FileManager.default.fileExists(atPath: roots.destination + "/out/log.txt"), "never under its final name")
    }

    /// Files that became something else after the scan are left out with words, and the rest of
    /// the unit is sent: one replaced by a FIFO, one by a unix socket, and one whose directory was
    /// swapped for a symbolic link out of the root ("moved to scratch and linked back"). Before,
    /// each failed the job ("errno 29 (Illegal seek)"), and every resume again.
    @Test func filesReplacedByAFIFOASocketOrALinkOutOfTheRootAreLeftOut() async throws {
        let roots = try Roots()
        let fm = FileManager.default
        try fm.createDirectory(atPath: roots.source + "/d", withIntermediateDirectories: true)
        var files: [TaskFile] = []
        for name in ["fifo", "socket", "d/moved", "kept"] {
            let url = URL(fileURLWithPath: roots.source + "/" + name)
            try Data(SampleData.random(bytes: (2 << 20) + 3, seed: UInt64(name.count))).write(to: url)
            let e = try entry("out/" + name, of: url)
            files.append(TaskFile(sourcePath: name, entry: e, length: e.size, finish: true))
        }
        try fm.removeItem(atPath: roots.source + "/fifo")
        #expect(mkfifo(roots.source + "/fifo", 0o644) == 0)
        try fm.removeItem(atPath: roots.source + "/socket")
        let sock = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(sock) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let socketPath = roots.source + "/socket"
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: socketPath.utf8.prefix(raw.count - 1))
        }
        let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(sock, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        #expect(bound == 0)
        let outside = roots.source + "-outside"
        try fm.createDirectory(atPath: outside, withIntermediateDirectories: true)
        try Data("outside".utf8).write(to: URL(fileURLWithPath: outside + "/moved"))
        try fm.moveItem(atPath: roots.source + "/d", toPath: roots.source + "/d-away")
        try fm.createSymbolicLink(atPath: roots.source + "/d", withDestinationPath: outside)
        let listener = try await DataPlaneListener.bind(host: "127.0.0.1", port: 0, root: roots.destination, token: Self.token, name: "b1")
        let serving = Task { try await listener.run() }
        defer { serving.cancel() }
        let done = try await send(files, roots: roots, listener: listener)
        #expect(done.leftOut == [0, 1, 2], "\(done.firstLeftOut)")
        #expect(done.firstLeftOut.contains("'fifo' is no longer a regular file at the source"), "\(done.firstLeftOut)")
        // The others say why too (protocol 23; before, only the first did).
        #expect(done.laterLeftOut.count == 2 && done.laterLeftOut[0].contains("'socket' is no longer a regular file at the source")
            && done.laterLeftOut[1].contains("'d/moved' is no longer below the source"), "\(done.laterLeftOut)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: roots.destination + "/out/kept")) == Data(contentsOf: URL(fileURLWithPath: roots.source + "/kept")))
        for name in ["fifo", "socket", "d/moved"] { #expect(!fm.fileExists(atPath: roots.destination + "/out/" + name), "\(name) never under its final name") }
        // Each alone says why.
        let socketOnly = try await send([files[1]], roots: roots, listener: listener)
        #expect(socketOnly.firstLeftOut.contains("'socket' is no longer a regular file at the source"), "\(socketOnly.firstLeftOut)")
        let linked = try await send([files[2]], roots: roots, listener: listener)
        #expect(linked.firstLeftOut.contains("'d/moved' is no longer below the source"), "\(linked.firstLeftOut)")
    }

    /// Sends a file of `bytes` random bytes, as one unit with one stream and a 1 s stall timeout,
    /// to a peer that completes the handshake and then runs `session`; returns the unit's
    /// failure and how long it took to come.
    func sendToSilentPeer(bytes: Int, session: @escaping @Sendable (NIOAsyncChannelInboundStream<Frame>) async throws -> Void)
        async throws -> (UnitFailure?, Duration) {
        let roots = try Roots()
        let url = URL(fileURLWithPath: roots.source + "/f.bin")
        try Data(SampleData.random(bytes: bytes)).write(to: url)
        let silent = try await BargeServer.bind(host: "127.0.0.1", port: 0, token: Self.token, name: "b1")
        let serving = Task { try await silent.serve(session: { _, inbound, _ in try await session(inbound) }, onError: { _, _ in }) }
        defer { serving.cancel() }
        let port = silent.localAddress!.port!
        let task = TaskAssign(job: "j", unit: 1, destination: DataPeer(name: "b1", host: "127.0.0.1", port: UInt16(port)),
                              codec: "none", chunkSize: 1 << 20,
                              files: [TaskFile(sourcePath: "f.bin", entry: try entry("f.bin", of: url), length: UInt64(bytes), finish: true)])
        let client = DataPlaneClient(host: "127.0.0.1", port: port, token: Self.token, name: "a1", stallTimeout: .seconds(1))
        let started = ContinuousClock.now
        let failure = await #expect(throws: UnitFailure.self) {
            _ = try await UnitSender(task: task, client: client, sources: SourcePool { [root = roots.source] in ChunkSource(root: root) },
                                     settings: .init(streams: 1), progress: UnitProgress()).run()
        }
        return (failure, ContinuousClock.now - started)
    }

    @Test func aStalledStreamFailsTheUnitSoThatItIsRetried() async throws {
        // A peer that reads everything and never answers.
        let (failure, took) = try await sendToSilentPeer(bytes: 100_000) { inbound in for try await _ in inbound {} }
        #expect(failure?.retryable == true)
        // 1 s alone; the bound only tells the stall timer from a hang (the default timeout is 120 s),
        // with room for a machine busy with the rest of the suite.
        #expect(took < .seconds(60))
    }

    /// The same with a peer that has stopped reading (SIGSTOP, a hung host): the socket fills,
    /// the stall timer's error frame cannot be written, and the connection must close anyway
    /// (`closeAfterWriting`). A file of 48 MiB fills the peer's buffers and the socket's.
    @Test func aStreamToAPeerThatStoppedReadingFailsTheUnit() async throws {
        let (failure, took) = try await sendToSilentPeer(bytes: 48 << 20) { _ in try await Task.sleep(for: .seconds(600)) }
        #expect(failure?.retryable == true)
        // 1 s, then at most 2 s for the error frame; the bound tells it from a hang.
        #expect(took < .seconds(30))
    }

    /// A finish whose agent was stopped while it ran (its fence says so once the bytes are
    /// durable) names nothing: the file stays partial and unsealed, refused as incomplete, and a
    /// later finish (the unit's, on a connection from after the stop) names it.
    @Test func aFinishStoppedBeforeItNamesFilesLeavesThemPartial() throws {
        let roots = try Roots()
        let files = DestinationFiles()
        let target = try RootedPath.resolve("d/f", under: roots.destination)
        try [UInt8](repeating: 7, count: 300).withUnsafeBytes { try files.write(job: "j", target: target, size: 300, bytes: $0, at: 0) }
        let dir = roots.destination + "/d"
        var before = stat()
        #expect(stat(dir, &before) == 0)
        #expect(throws: DestinationFiles.Incomplete.self) {
            try files.finish(job: "j", target: target, size: 300, mode: 0o600, mtimeSeconds: 1, mtimeNanoseconds: 0, mayName: { false })
        }
        #expect(!FileManager.default.fileExists(atPath: target.absolute))
        var after = stat()
        #expect(stat(dir, &after) == 0 && after.st_mtim.tv_sec == before.st_mtim.tv_sec && after.st_mtim.tv_nsec == before.st_mtim.tv_nsec,
                "the directory changed")
        try files.finish(job: "j", target: target, size: 300, mode: 0o600, mtimeSeconds: 1, mtimeNanoseconds: 0)
        #expect(try Data(contentsOf: URL(fileURLWithPath: target.absolute)).count == 300)
    }

    @Test func finishingAFileWithMissingBytesIsRefused() throws {
        let roots = try Roots()
        let files = DestinationFiles()
        let target = try RootedPath.resolve("f", under: roots.destination)
        try [UInt8](repeating: 7, count: 100).withUnsafeBytes { try files.write(job: "j", target: target, size: 300, bytes: $0, at: 0) }
        try [UInt8](repeating: 7, count: 100).withUnsafeBytes { try files.write(job: "j", target: target, size: 300, bytes: $0, at: 0) }  // resent: counts once
        #expect(throws: DestinationFiles.Incomplete.self) {
            try files.finish(job: "j", target: target, size: 300, mode: 0o644, mtimeSeconds: 1, mtimeNanoseconds: 0)
        }
        #expect(!FileManager.default.fileExists(atPath: target.absolute))
        try [UInt8](repeating: 8, count: 200).withUnsafeBytes { try files.write(job: "j", target: target, size: 300, bytes: $0, at: 100) }
        try files.finish(job: "j", target: target, size: 300, mode: 0o640, mtimeSeconds: 1, mtimeNanoseconds: 0)
        #expect(try Data(contentsOf: URL(fileURLWithPath: target.absolute)).count == 300)
    }

    @Test func entriesAreMadeAndReportsWaitForTheNextConnection() throws {
        let roots = try Roots()
        let receiver = ChunkReceiver(root: roots.destination)
        let link = FileEntry(path: "a/b/link", kind: .symlink, mode: 0o777, mtimeSeconds: 1_000_000, mtimeNanoseconds: 5, linkTarget: "../../outside/x")
        #expect(receiver.makeEntry(MakeEntry(job: "j", entry: link)) == .chunkAck(ChunkAck(place: ChunkPlace(job: "j", path: "a/b/link", offset: 0))))
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: roots.destination + "/a/b/link") == "../../outside/x")
        // A file may not be written through that link afterwards: it leads outside the root.
        let through = receiver.makeEntry(MakeEntry(job: "j", entry: FileEntry(path: "a/b/link/d", kind: .directory, mode: 0o755, mtimeSeconds: 1, mtimeNanoseconds: 0)))
        guard case .chunkNack(let nack) = through else { Issue.record("\(through)"); return }
        #expect(nack.reason == .refusedPath)
        let dir = FileEntry(path: "a", kind: .directory, mode: 0o700, mtimeSeconds: 1_200_000_000, mtimeNanoseconds: 9)
        #expect(receiver.makeEntry(MakeEntry(job: "j", entry: dir)) == .chunkAck(ChunkAck(place: ChunkPlace(job: "j", path: "a", offset: 0))))
        var st = stat()
        #expect(stat(roots.destination + "/a", &st) == 0 && st.st_mode & 0o7777 == 0o700 && st.st_mtim.tv_sec == 1_200_000_000 && st.st_mtim.tv_nsec == 9)

        let outbox = Outbox()
        outbox.send(.taskProgress(TaskProgress(job: "j", unit: 1, bytesDone: 1, wireBytes: 1)))  // stale by the next connection: dropped
        outbox.send(.taskFailed(TaskFailed(job: "j", unit: 1, retryable: true, reason: "x")))
        #expect(outbox.waitingCount == 1)
    }
}
