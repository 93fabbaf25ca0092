import BargeChunk
import BargeCoordinator
import BargeDigest
import BargeWire
import Foundation
import Testing

/// `verify` as a background, paged operation whose progress is journaled: a coordinator that dies
/// in the middle resumes at the page it was on.
struct VerificationTests {
    static func id(_ unit: UInt64) -> [UInt8] { SHA256.hash(Array("chunk \(unit)".utf8)).bytes }

    @Test func aVerificationGoesPageByPageAndResumesAfterARestart() async throws {
        let f = try SchedulerTests.Fixture()
        var a1 = await f.agent("a1", site: "a", version: WireVersion.acks)
        _ = await f.agent("b1", site: "b", version: WireVersion.assignments)  // no quick check: nothing answers it here
        let files = 300  // 40 MiB each: a unit each, so three pages of 128 units
        let ids = try await Self.transfer("j-v", files: (0..<files).map { (String(format: "f%03d", $0), 40 << 20) }, f, &a1)
        #expect(try await f.scheduler.status("j-v")?.state == .succeeded)

        // b1 answers the first page, then the coordinator dies while it waits for the second.
        var b1 = await Self.reattach("b1", site: "b", f)
        let started = try await f.scheduler.startVerify("j-v", repair: false)
        #expect(started.state == "running" && started.chunksTotal == files)
        guard case .verifyRequest(let first) = await Self.nextVerify(&b1) else { Issue.record("no verify request"); return }
        #expect(first.files.count == 128 && first.chunks.count == 128)
        await f.scheduler.received(.verifyReply(VerifyReply(request: first.request, bytesChecked: 128 << 20, mismatches: [])), from: "b1")
        guard case .verifyRequest = await Self.nextVerify(&b1) else { Issue.record("no second page"); return }
        let midway = try #require(try await f.scheduler.verification("j-v"))
        #expect(midway.state == "running" && midway.chunksChecked == 128)

        // The restarted coordinator, on the same journal, goes on from the second page.
        let restarted = Scheduler(journal: try Journal(path: f.dir.appendingPathComponent(Journal.fileName).path), now: { [clock = f.clock] in clock.now })
        let (b2Stream, b2Sink) = AsyncStream.makeStream(of: Message.self)
        _ = await restarted.attach(Register(name: "b1", site: "b", root: "/r", dataHost: "127.0.0.1", dataPort: 9, maxInFlight: 2), sink: b2Sink, version: WireVersion.acks)
        try await restarted.recoverAfterRestart()
        var again = b2Stream.makeAsyncIterator()
        var checked = 128
        while checked < files {
            guard case .verifyRequest(let r) = await Self.nextVerify(&again) else { Issue.record("no page after the restart"); return }
            #expect(r.chunks.allSatisfy { !first.chunks.map(\.id).contains($0.id) }, "a page checked twice")
            checked += r.chunks.count
            await restarted.received(.verifyReply(VerifyReply(request: r.request, bytesChecked: UInt64(r.chunks.count) << 20, mismatches: [])), from: "b1")
        }
        var outcome = try #require(try await restarted.verification("j-v"))
        for _ in 0..<100 where outcome.state == "running" {
            try await Task.sleep(for: .milliseconds(20))
            outcome = try #require(try await restarted.verification("j-v"))
        }
        #expect(outcome.state == "succeeded" && outcome.ok)
        #expect(outcome.chunksChecked == files && outcome.filesChecked == files && outcome.bytesChecked == UInt64(files) << 20)
        // The Merkle root is the whole manifest's, in unit order, though it was computed in two runs.
        let all = ids.keys.sorted().compactMap { SHA256Digest(bytes: ids[$0]!) }
        #expect(outcome.merkleRoot == MerkleTree.root(all).description)
    }

    /// A `verify --repair` whose source agent (or destination agent) reconnects while its repair
    /// unit runs. A reconnected source's `holding` has the unit dropped as unknown, so its report
    /// never comes; a reconnected destination's copy may have lost it. The repair is sent again on
    /// the new connections (the old unit dropped at a source still connected), and the
    /// verification ends, counting the page's mismatch and repair once. Before, it waited for that
    /// report for ever.
    @Test(.timeLimit(.minutes(1)), arguments: ["a1", "b1"])
    func aRepairWhoseAgentReconnectsIsSentAgainAndTheVerificationEnds(reconnecting: String) async throws {
        let f = try SchedulerTests.Fixture()
        var a1 = await f.agent("a1", site: "a", version: WireVersion.acks)
        _ = await f.agent("b1", site: "b", version: WireVersion.assignments)
        _ = try await Self.transfer("j-r", files: [("f0", 1 << 20), ("f1", 1 << 20)], f, &a1)
        #expect(try await f.scheduler.status("j-r")?.state == .succeeded)

        var b1 = await Self.reattach("b1", site: "b", f)
        _ = try await f.scheduler.startVerify("j-r", repair: true)
        guard case .verifyRequest(let first) = await Self.nextVerify(&b1) else { Issue.record("no verify request"); return }
        await f.scheduler.received(.verifyReply(VerifyReply(request: first.request, bytesChecked: 2 << 20,
                                                            mismatches: [.init(file: 0, offset: 0, length: 1 << 20, reason: VerifyReply.chunkDiffers)])), from: "b1")
        guard case .taskAssign(let lost) = await Self.next(.taskAssign, &a1) else { Issue.record("no repair unit"); return }
        #expect(lost.files.count == 1 && lost.files[0].repair)

        // The agent reconnects before the repair is reported.
        if reconnecting == "a1" {
            a1 = await Self.reattach("a1", site: "a", f)
        } else {
            b1 = await Self.reattach("b1", site: "b", f)
            // a1, still connected, is told to drop the repair it runs for the old connection.
            guard case .taskDrop(let dropped) = await Self.next(.taskDrop, &a1) else { Issue.record("the old repair was not dropped"); return }
            #expect(dropped.unit == lost.unit)
        }
        guard case .taskAssign(let repair) = await Self.next(.taskAssign, &a1) else { Issue.record("no repair on the new connection"); return }
        #expect(repair.unit != lost.unit && repair.files.count == 1 && repair.files[0].repair)
        await f.scheduler.received(.taskDone(TaskDone(job: "j-r", unit: repair.unit, bytes: 1 << 20, wireBytes: 1, refetched: 0, codecs: [],
                                                      chunks: [ChunkReport(file: 0, offset: 0, length: 1 << 20, id: Self.id(1))], assignment: repair.assignment)), from: "a1")
        guard case .verifyRequest(let last) = await Self.nextVerify(&b1) else { Issue.record("no second check"); return }
        await f.scheduler.received(.verifyReply(VerifyReply(request: last.request, bytesChecked: 2 << 20, mismatches: [])), from: "b1")
        var outcome = try #require(try await f.scheduler.verification("j-r"))
        for _ in 0..<200 where outcome.state == "running" {
            try await Task.sleep(for: .milliseconds(20))
            outcome = try #require(try await f.scheduler.verification("j-r"))
        }
        #expect(outcome.state == "succeeded", "\(outcome)")
        // The page's bytes, its mismatch and its repair once.
        #expect(outcome.chunksChecked == outcome.chunksTotal && outcome.filesChecked == 2 && outcome.bytesChecked == 2 << 20
                && outcome.mismatchCount == 1 && outcome.repaired == 1 && outcome.remainingCount == 0, "\(outcome)")
    }

    /// A coordinator that dies while a page's repair runs, restarted on the same journal, sends
    /// the mismatches that page's first pass found again, then checks the page a second time: the
    /// verification counts the mismatch and its repair once. Before, it checked the page anew,
    /// found clean what the first run had repaired, and reported a store never damaged (0
    /// mismatches, 0 repaired).
    @Test(.timeLimit(.minutes(1)))
    func aRepairInterruptedByARestartGoesOnAndCountsWhatTheFirstPassFound() async throws {
        let f = try SchedulerTests.Fixture()
        var a1 = await f.agent("a1", site: "a", version: WireVersion.acks)
        _ = await f.agent("b1", site: "b", version: WireVersion.assignments)
        _ = try await Self.transfer("j-rr", files: [("f0", 1 << 20), ("f1", 1 << 20)], f, &a1)
        var b1 = await Self.reattach("b1", site: "b", f)
        _ = try await f.scheduler.startVerify("j-rr", repair: true)
        guard case .verifyRequest(let first) = await Self.nextVerify(&b1) else { Issue.record("no verify request"); return }
        let damaged = try #require(first.chunks.first)
        let path = first.files[Int(damaged.file)].path
        await f.scheduler.received(.verifyReply(VerifyReply(request: first.request, bytesChecked: 2 << 20,
                                                            mismatches: [.init(file: damaged.file, offset: damaged.offset, length: UInt64(damaged.length), reason: VerifyReply.chunkDiffers),
                                                                         // A chunk it was not asked about (5 GiB, which the source would have read whole): left out.
                                                                         .init(file: damaged.file, offset: 4096, length: 5 << 30, reason: VerifyReply.chunkDiffers)])), from: "b1")
        guard case .taskAssign(let lost) = await Self.next(.taskAssign, &a1) else { Issue.record("no repair unit"); return }
        #expect(lost.files.map(\.entry.path) == [path] && lost.files.map(\.length) == [UInt64(damaged.length)])

        // The coordinator dies here; the one restarted on its journal goes on with the repair.
        let restarted = Scheduler(journal: try Journal(path: f.dir.appendingPathComponent(Journal.fileName).path), now: { [clock = f.clock] in clock.now })
        let (aStream, aSink) = AsyncStream.makeStream(of: Message.self)
        let (bStream, bSink) = AsyncStream.makeStream(of: Message.self)
        _ = await restarted.attach(Register(name: "a1", site: "a", root: "/r", dataHost: "127.0.0.1", dataPort: 9, maxInFlight: 2), sink: aSink, version: WireVersion.acks)
        _ = await restarted.attach(Register(name: "b1", site: "b", root: "/r", dataHost: "127.0.0.1", dataPort: 9, maxInFlight: 2), sink: bSink, version: WireVersion.acks)
        try await restarted.recoverAfterRestart()
        var a = aStream.makeAsyncIterator()
        var b = bStream.makeAsyncIterator()
        guard case .taskAssign(let repair) = await Self.next(.taskAssign, &a) else { Issue.record("no repair after the restart"); return }
        #expect(repair.files.map(\.entry.path) == [path] && repair.files[0].repair)
        await restarted.received(.taskDone(TaskDone(job: "j-rr", unit: repair.unit, bytes: 1 << 20, wireBytes: 1, refetched: 0, codecs: [],
                                                    chunks: [ChunkReport(file: 0, offset: 0, length: 1 << 20, id: Self.id(1))], assignment: repair.assignment)), from: "a1")
        guard case .verifyRequest(let second) = await Self.nextVerify(&b) else { Issue.record("no second check"); return }
        await restarted.received(.verifyReply(VerifyReply(request: second.request, bytesChecked: 2 << 20, mismatches: [])), from: "b1")
        var outcome = try #require(try await restarted.verification("j-rr"))
        for _ in 0..<200 where outcome.state == "running" {
            try await Task.sleep(for: .milliseconds(20))
            outcome = try #require(try await restarted.verification("j-rr"))
        }
        #expect(outcome.state == "succeeded" && outcome.chunksChecked == outcome.chunksTotal && outcome.filesChecked == 2 && outcome.bytesChecked == 2 << 20
                && outcome.mismatchCount == 1 && outcome.repaired == 1 && outcome.remainingCount == 0, "\(outcome)")
        #expect(outcome.mismatches.map(\.path) == [path])
    }

    /// Submits `job` (a:ds → b:ds) with `files` (name, size) and plays the source agent until the
    /// job ends, each unit reporting one chunk whose id is `id(unit)`; returns those ids by unit.
    static func transfer(_ job: String, files: [(String, UInt64)], _ f: SchedulerTests.Fixture,
                         _ a1: inout AsyncStream<Message>.AsyncIterator) async throws -> [UInt64: [UInt8]] {
        _ = try await f.scheduler.submit(SubmitRequest(source: .init(site: "a", path: "ds"), destination: .init(site: "b", path: "ds")), id: job)
        guard case .scanRequest(let scan) = await a1.next() else { Issue.record("no scan"); return [:] }
        let entries = [FileEntry(path: "", kind: .directory, mode: 0o755, mtimeSeconds: 1, mtimeNanoseconds: 0)]
            + files.map { FileEntry(path: $0.0, kind: .file, size: $0.1, mode: 0o644, mtimeSeconds: 1, mtimeNanoseconds: 0) }
        await f.scheduler.received(.scanReply(ScanReply(request: scan.request, final: true, entries: entries)), from: "a1")
        var ids: [UInt64: [UInt8]] = [:]
        while try await f.scheduler.status(job)?.state.isTerminal == false, let m = await a1.next() {
            guard case .taskAssign(let t) = m else { continue }
            let chunks = t.files.first?.entry.kind == .file ? [ChunkReport(file: 0, offset: 0, length: 1 << 20, id: Self.id(t.unit))] : []
            if !chunks.isEmpty { ids[t.unit] = Self.id(t.unit) }
            await f.scheduler.received(.taskDone(TaskDone(job: job, unit: t.unit, bytes: t.files[0].length, wireBytes: 1, refetched: 0, codecs: [],
                                                          chunks: chunks, assignment: t.assignment)), from: "a1")
            await f.scheduler.flush()
        }
        return ids
    }

    /// The agent `name` registers (again) on a new connection that speaks acks; its messages.
    static func reattach(_ name: String, site: String, _ f: SchedulerTests.Fixture) async -> AsyncStream<Message>.AsyncIterator {
        let (stream, sink) = AsyncStream.makeStream(of: Message.self)
        _ = await f.scheduler.attach(Register(name: name, site: site, root: "/r", dataHost: "127.0.0.1", dataPort: 9, maxInFlight: 2), sink: sink, version: WireVersion.acks)
        return stream.makeAsyncIterator()
    }

    static func next(_ type: MessageType, _ agent: inout AsyncStream<Message>.AsyncIterator) async -> Message? {
        var m = await agent.next()
        while let x = m, x.type != type { m = await agent.next() }
        return m
    }

    static func nextVerify(_ agent: inout AsyncStream<Message>.AsyncIterator) async -> Message? {
        var m = await agent.next()
        while let x = m, x.type != .verifyRequest { m = await agent.next() }
        return m
    }
}
