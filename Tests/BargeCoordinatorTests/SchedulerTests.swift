import BargeCoordinator
import BargeWire
import Foundation
import Testing

/// The scheduler with a real journal and agents stood in for by the message streams it writes to.
struct SchedulerTests {
    /// Wall-clock seconds the test moves by hand.
    final class TestClock: @unchecked Sendable {
        private let lock = NSLock()
        private var t = 1_700_000_000.0
        var now: Double { lock.withLock { t } }
        func advance(_ seconds: Double) { lock.withLock { t += seconds } }
    }

    final class Fixture {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("barge-scheduler-\(UUID().uuidString)")
        let clock = TestClock()
        let scheduler: Scheduler
        init() throws {
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            scheduler = Scheduler(journal: try Journal(path: dir.appendingPathComponent(Journal.fileName).path), now: { [clock] in clock.now })
        }

        /// A failed unit waits out its backoff (at most 30 s) before it is handed out again.
        func afterBackoff(_ job: String) async throws {
            await scheduler.flush()
            await scheduler.tick()
            // Assignments live in the scheduler's memory, not in the journal.
            #expect(await scheduler.unitsHeld == 0, "handed out again before its backoff")
            clock.advance(31)
            await scheduler.tick()
        }
        deinit { try? FileManager.default.removeItem(at: dir) }

        func agent(_ name: String, site: String, version: UInt8 = 1, maxInFlight: UInt32 = 2) async -> AsyncStream<Message>.AsyncIterator {
            let (stream, sink) = AsyncStream.makeStream(of: Message.self)
            _ = await scheduler.attach(Register(name: name, site: site, root: "/r", dataHost: "127.0.0.1", dataPort: 9, maxInFlight: maxInFlight), sink: sink, version: version)
            return stream.makeAsyncIterator()
        }

        /// `oneFileJob`, and its unit reported done: the job has succeeded. Nil (recorded) when it
        /// did not.
        func succeededOneFileJob(_ id: String) async throws -> AsyncStream<Message>.AsyncIterator? {
            var a1 = try await oneFileJob(id)
            guard case .taskAssign(let task) = await a1.next() else { Issue.record("no task"); return nil }
            await scheduler.received(.taskDone(TaskDone(job: id, unit: task.unit, bytes: 3, wireBytes: 3, refetched: 0, codecs: [], chunks: [],
                                                        assignment: task.assignment)), from: "a1")
            await scheduler.flush()
            guard try await scheduler.status(id)?.state == .succeeded else { Issue.record("job \(id) did not succeed"); return nil }
            return a1
        }

        /// a1 (site a) and b1 (site b) attached, and job `id` of one 3-byte file `f` submitted and
        /// scanned by a1: a1's messages from there on.
        func oneFileJob(_ id: String) async throws -> AsyncStream<Message>.AsyncIterator {
            var a1 = await agent("a1", site: "a")
            _ = await agent("b1", site: "b")
            _ = try await scheduler.submit(SubmitRequest(source: .init(site: "a", path: "f"), destination: .init(site: "b", path: "f")), id: id)
            guard case .scanRequest(let scan) = await a1.next() else { throw CancellationError() }
            let file = FileEntry(path: "", kind: .file, size: 3, mode: 0o644, mtimeSeconds: 1, mtimeNanoseconds: 0)
            await scheduler.received(.scanReply(ScanReply(request: scan.request, final: true, entries: [file])), from: "a1")
            return a1
        }
    }

    @Test func aScanWhoseAgentDiesIsAskedOfAnother() async throws {
        let f = try Fixture()
        var a1 = await f.agent("a1", site: "a")
        var a2 = await f.agent("a2", site: "a")
        _ = await f.agent("b1", site: "b")
        let job = try await f.scheduler.submit(SubmitRequest(source: .init(site: "a", path: "ds"), destination: .init(site: "b", path: "ds")), id: "j-1")
        guard case .scanRequest = await a1.next() else { Issue.record("a1 was not asked to scan"); return }
        try await f.scheduler.agentsDown(["a1"])
        guard case .scanRequest(let again) = await a2.next() else { Issue.record("a2 was not asked to scan"); return }
        #expect(again.path == "ds")
        // a2 answers: a file of 3 bytes; the job is planned and its unit assigned to a2 → b1.
        let file = FileEntry(path: "", kind: .file, size: 3, mode: 0o644, mtimeSeconds: 1, mtimeNanoseconds: 0)
        await f.scheduler.received(.scanReply(ScanReply(request: again.request, final: true, entries: [file])), from: "a2")
        guard case .taskAssign(let task) = await a2.next() else { Issue.record("no task"); return }
        #expect(task.destination.name == "b1")
        #expect(task.files.map(\.entry.path) == ["ds"])
        #expect(try await f.scheduler.status(job.id)?.state == .running)
        // A retryable failure puts the unit back; the same lane gets it again.
        await f.scheduler.received(.taskFailed(TaskFailed(job: job.id, unit: task.unit, retryable: true, reason: "stream dropped")), from: "a2")
        try await f.afterBackoff(job.id)
        guard case .taskAssign(let retry) = await a2.next() else { Issue.record("no retry"); return }
        #expect(retry.unit == task.unit)
        #expect(try await f.scheduler.status(job.id)?.unitRetries == 1)
        #expect(await f.scheduler.metrics.render().contains("barge_unit_retries_total 1"))
        await f.scheduler.received(.taskDone(TaskDone(job: job.id, unit: task.unit, bytes: 3, wireBytes: 43, refetched: 0, codecs: [],
                                                      chunks: [ChunkReport(file: 0, offset: 0, length: 3, id: [UInt8](repeating: 1, count: 32))])), from: "a2")
        await f.scheduler.flush()
        let done = try #require(try await f.scheduler.status(job.id))
        #expect(done.state == .succeeded && done.bytesDone == 3 && done.filesDone == 1)
    }

    /// A unit that fails on its data plane (its destination agent died and came back, five
    /// times) is not charged an attempt each time: the job goes on, and the unit's own failures
    /// still end it after three. Before, each death of the destination used an attempt of every
    /// unit it was receiving, and the third failed the job.
    @Test func failuresOnTheDataPlaneAreNotChargedAsAttempts() async throws {
        let f = try Fixture()
        var a1 = try await f.oneFileJob("j-lane")
        let job = "j-lane"
        for _ in 0..<5 {
            guard case .taskAssign(let task) = await a1.next() else { Issue.record("no task"); return }
            await f.scheduler.received(.taskFailed(TaskFailed(job: job, unit: task.unit, retryable: true,
                                                              reason: "data plane to b1 at 127.0.0.1:9: the peer agent closed the connection",
                                                              assignment: task.assignment, lane: true)), from: "a1")
            try await f.afterBackoff(job)
        }
        await f.scheduler.flush()
        #expect(try await f.scheduler.status(job)?.state == .running)
        for _ in 0..<3 {
            guard case .taskAssign(let task) = await a1.next() else { Issue.record("no task"); return }
            await f.scheduler.received(.taskFailed(TaskFailed(job: job, unit: task.unit, retryable: true, reason: "ENOSPC at b1",
                                                              assignment: task.assignment)), from: "a1")
            try await f.afterBackoff(job)
        }
        await f.scheduler.flush()
        let failed = try #require(try await f.scheduler.status(job))
        // The attempts given back are told too.
        #expect(failed.state == .failed && failed.error?.contains("failed 3 times (and 5 more on its data plane, not counted); last: ENOSPC at b1") == true,
                "\(failed.error ?? "")")
    }

    /// A scan page that names entries no walk makes (an empty, `.` or `..` component, a leading
    /// `/`: a hostile or broken source agent) has them left out and counted as untransferable,
    /// with why; the rest is planned. Before, they were planned into task assigns
    /// (`ds/../escape`), and only the agents refused them.
    @Test func scannedEntriesThatAreNotBelowTheSourceAreLeftOut() async throws {
        let f = try Fixture()
        var a1 = await f.agent("a1", site: "a")
        _ = await f.agent("b1", site: "b")
        _ = try await f.scheduler.submit(SubmitRequest(source: .init(site: "a", path: "ds"), destination: .init(site: "b", path: "ds")), id: "j-x")
        guard case .scanRequest(let scan) = await a1.next() else { Issue.record("no scan"); return }
        let entries = [FileEntry(path: "", kind: .directory, mode: 0o755, mtimeSeconds: 1, mtimeNanoseconds: 0)]
            + ["ok", "../escape", "/abs", "a//b", "a/./b", "d/"].map { FileEntry(path: $0, kind: .file, size: 3, mode: 0o644, mtimeSeconds: 1, mtimeNanoseconds: 0) }
        await f.scheduler.received(.scanReply(ScanReply(request: scan.request, final: true, entries: entries)), from: "a1")
        await f.scheduler.flush()
        let job = try #require(try await f.scheduler.status("j-x"))
        #expect(job.untransferableEntries == 5 && job.firstUntransferable?.contains("not a path below the job's source") == true, "\(job)")
        var planned: [String] = []
        while planned.count < 2, case .taskAssign(let t)? = await Self.next(.taskAssign, &a1) {
            planned += t.files.map(\.entry.path)
            await f.scheduler.received(.taskDone(TaskDone(job: "j-x", unit: t.unit, bytes: 3, wireBytes: 3, refetched: 0, codecs: [], chunks: [],
                                                          assignment: t.assignment)), from: "a1")
            await f.scheduler.flush()
            if try await f.scheduler.status("j-x")?.state.isTerminal == true { break }
        }
        #expect(Set(planned).isSubset(of: ["ds", "ds/ok"]) && planned.contains("ds/ok"), "\(planned)")
    }

    static func next(_ type: MessageType, _ agent: inout AsyncStream<Message>.AsyncIterator) async -> Message? {
        var m = await agent.next()
        while let x = m, x.type != type { m = await agent.next() }
        return m
    }

    @Test func aUnitThatKeepsFailingFailsTheJobWithItsReason() async throws {
        let f = try Fixture()
        var a1 = try await f.oneFileJob("j-2")
        let job = "j-2"
        for _ in 0..<3 {
            guard case .taskAssign(let task) = await a1.next() else { Issue.record("no task"); return }
            await f.scheduler.received(.taskFailed(TaskFailed(job: job, unit: task.unit, retryable: true, reason: "ENOSPC at b1")), from: "a1")
            try await f.afterBackoff(job)
        }
        await f.scheduler.flush()
        let failed = try #require(try await f.scheduler.status(job))
        #expect(failed.state == .failed)
        #expect(failed.error?.contains("failed 3 times; last: ENOSPC at b1") == true)
        guard case .cancelJob = await a1.next() else { Issue.record("agents were not told to stop the job"); return }
    }

    /// `barge_units_in_flight` goes back to 0 when a job with a unit out is cancelled: it was set
    /// only when work was handed out, and said 1 after the cancel while the agents held none (a
    /// black-box review, h3).
    @Test func unitsInFlightFollowACancel() async throws {
        let f = try Fixture()
        var a1 = try await f.oneFileJob("j-c")
        guard case .taskAssign = await a1.next() else { Issue.record("no task"); return }
        let metrics = await f.scheduler.metrics
        #expect(metrics.render().contains("barge_units_in_flight 1"))
        _ = try await f.scheduler.cancel("j-c")
        let after = metrics.render()
        #expect(after.contains("barge_units_in_flight 0"), "\(after)")
    }

    /// Agents are told when a job succeeds too (`cancel job`), and forget it: a destination
    /// kept, with their descriptors, the files of a unit that failed there and that another
    /// agent of its site finished, for as long as it ran.
    @Test func everyAgentIsToldWhenAJobSucceeds() async throws {
        let f = try Fixture()
        guard var a1 = try await f.succeededOneFileJob("j-ok") else { return }
        var told = false
        while let m = await Self.task(&a1) {
            if case .cancelJob(let c) = m, c.job == "j-ok" { told = true; break }
        }
        #expect(told)
    }

    /// An agent that registers again is told of the jobs that ended while it was cut off: one
    /// stopped (SIGSTOP) when a job ended missed its `cancel job`, and kept that job's files
    /// open for good (h1 of session 50).
    @Test(.timeLimit(.minutes(1))) func anAgentThatRegistersAgainIsToldOfJobsThatEndedMeanwhile() async throws {
        let f = try Fixture()
        guard try await f.succeededOneFileJob("j-ok") != nil else { return }
        var b1 = await f.agent("b1", site: "b")
        guard case .cancelJob(let c) = await b1.next() else { Issue.record("b1 was not told the job ended"); return }
        #expect(c.job == "j-ok")
    }
}

extension SchedulerTests {
    /// An agent that registers again draining (told to drain before a coordinator restart or a
    /// lost connection, and not restarted since: protocol 21) stays draining: it is given no
    /// scan, and is told it is drained once its `holding` shows it holds nothing. Before, the
    /// registration made it up, the drain was forgotten, and no `drained` ever came (h3 of
    /// session 50).
    @Test(.timeLimit(.minutes(1))) func anAgentThatRegistersAgainDrainingStaysDraining() async throws {
        let f = try Fixture()
        let (stream, sink) = AsyncStream.makeStream(of: Message.self)
        _ = await f.scheduler.attach(Register(name: "a1", site: "a", root: "/r", dataHost: "127.0.0.1", dataPort: 9, maxInFlight: 2, draining: true),
                                     sink: sink, version: WireVersion.drainKept)
        var a1 = stream.makeAsyncIterator()
        var a2 = await f.agent("a2", site: "a", version: WireVersion.drainKept)
        _ = await f.agent("b1", site: "b")
        _ = try await f.scheduler.submit(SubmitRequest(source: .init(site: "a", path: "f"), destination: .init(site: "b", path: "f")), id: "j-d")
        guard case .scanRequest = await Self.next(.scanRequest, &a2) else { Issue.record("a2 was not asked to scan"); return }
        await f.scheduler.tick()
        await f.scheduler.received(.holding(Holding(units: [])), from: "a1")
        await f.scheduler.tick()
        sink.finish()
        var told: [Message] = []
        while let m = await a1.next() { told.append(m) }
        #expect(!told.contains { $0.type == .scanRequest || $0.type == .taskAssign }, "\(told)")
        #expect(told.contains { if case .drain(let d) = $0 { d.finished } else { false } }, "\(told)")
    }

    /// Jobs into one destination run one at a time in the order they were submitted, whatever
    /// their ids, so the files left are the last one's. Seen before: three jobs submitted within
    /// a second; when the first ended, the third (its id sorted first) started, found every file
    /// current, "succeeded" in 0.05 s, and the second then wrote its own files over them.
    @Test(.timeLimit(.minutes(1))) func jobsIntoOneDestinationStartInTheOrderTheyWereSubmitted() async throws {
        let f = try Fixture()
        var a1 = await f.agent("a1", site: "a")
        _ = await f.agent("b1", site: "b")
        let ids = ["j-zz-first", "j-mm-second", "j-aa-third"]
        for (n, id) in ids.enumerated() {
            _ = try await f.scheduler.submit(SubmitRequest(source: .init(site: "a", path: "s\(n + 1)"), destination: .init(site: "b", path: "copy")), id: id)
        }
        for (n, id) in ids.enumerated() {
            // The job before, which succeeded, is told to the agents first.
            var next = await a1.next()
            while case .cancelJob(let c) = next, n > 0, c.job == ids[n - 1] { next = await a1.next() }
            guard case .scanRequest(let scan) = next else { Issue.record("no scan for \(id)"); return }
            #expect(scan.path == "s\(n + 1)", "job \(n + 1) should scan now, not the one of \(scan.path)")
            for later in ids[(n + 1)...] { #expect(f.scheduler.waitsForOverlap(later)?.contains("job \(id) writes to an overlapping destination") == true) }
            let file = FileEntry(path: "", kind: .file, size: 3, mode: 0o644, mtimeSeconds: 1, mtimeNanoseconds: 0)
            await f.scheduler.received(.scanReply(ScanReply(request: scan.request, final: true, entries: [file])), from: "a1")
            guard case .taskAssign(let task) = await a1.next() else { Issue.record("no task for \(id)"); return }
            #expect(task.job == id)
            await f.scheduler.received(.taskDone(TaskDone(job: id, unit: task.unit, bytes: 3, wireBytes: 43, refetched: 0, codecs: [],
                                                          chunks: [ChunkReport(file: 0, offset: 0, length: 3, id: [UInt8](repeating: 1, count: 32))])), from: "a1")
            await f.scheduler.flush()
            #expect(try await f.scheduler.status(id)?.state == .succeeded)
        }
    }

    /// A job that cannot start yet (no agent of its source site is up) still goes first: a later
    /// job into an overlapping destination waits for it rather than writing before it.
    @Test(.timeLimit(.minutes(1))) func aJobSubmittedLaterWaitsBehindAnOverlappingOneThatHasNotStarted() async throws {
        let f = try Fixture()
        var a1 = await f.agent("a1", site: "a")
        var c1 = await f.agent("c1", site: "c")
        _ = await f.agent("b1", site: "b")
        _ = try await f.scheduler.submit(SubmitRequest(source: .init(site: "c", path: "old"), destination: .init(site: "b", path: "copy")), id: "j-first")
        guard case .scanRequest = await c1.next() else { Issue.record("c1 was not asked to scan"); return }
        try await f.scheduler.agentsDown(["c1"])
        #expect(try await f.scheduler.status("j-first")?.state == .queued)
        _ = try await f.scheduler.submit(SubmitRequest(source: .init(site: "a", path: "new"), destination: .init(site: "b", path: "copy/sub")), id: "j-later")
        #expect(f.scheduler.waitsForOverlap("j-later")?.contains("job j-first") == true)
        // An unrelated destination goes at once.
        _ = try await f.scheduler.submit(SubmitRequest(source: .init(site: "a", path: "new"), destination: .init(site: "b", path: "apart")), id: "j-apart")
        guard case .scanRequest(let scan) = await a1.next() else { Issue.record("no scan"); return }
        #expect(scan.path == "new" && f.scheduler.waitsForOverlap("j-apart") == nil)
        // Cancelled, the first lets the later one go.
        _ = try await f.scheduler.cancel("j-first")
        guard case .cancelJob(let cancel) = await a1.next(), cancel.job == "j-first" else { Issue.record("a1 was not told of the cancel"); return }
        guard case .scanRequest(let next) = await a1.next() else { Issue.record("the later job did not start"); return }
        #expect(next.path == "new" && f.scheduler.waitsForOverlap("j-later") == nil)
    }

    /// A job that failed and is resumed finishes its files, then its directories.
    @Test func aResumedJobFinishesItsDirectories() async throws {
        let f = try Fixture()
        var a1 = await f.agent("a1", site: "a")
        _ = await f.agent("b1", site: "b")
        let job = try await f.scheduler.submit(SubmitRequest(source: .init(site: "a", path: "ds"), destination: .init(site: "b", path: "ds")), id: "j-3")
        guard case .scanRequest(let scan) = await a1.next() else { Issue.record("no scan"); return }
        let entries = [FileEntry(path: "", kind: .directory, mode: 0o755, mtimeSeconds: 1, mtimeNanoseconds: 0),
                       FileEntry(path: "f", kind: .file, size: 3, mode: 0o644, mtimeSeconds: 1, mtimeNanoseconds: 0)]
        await f.scheduler.received(.scanReply(ScanReply(request: scan.request, final: true, entries: entries)), from: "a1")
        for _ in 0..<3 {
            guard case .taskAssign(let task) = await a1.next() else { Issue.record("no task"); return }
            await f.scheduler.received(.taskFailed(TaskFailed(job: job.id, unit: task.unit, retryable: true, reason: "ENOSPC")), from: "a1")
            try await f.afterBackoff(job.id)
        }
        await f.scheduler.flush()
        #expect(try await f.scheduler.status(job.id)?.state == .failed)
        guard case .cancelJob = await a1.next() else { Issue.record("no cancel"); return }
        #expect(try await f.scheduler.resume(job.id).state == .running)
        var kinds: [Int] = []
        for _ in 0..<2 {
            guard case .taskAssign(let task) = await a1.next() else { Issue.record("no task after resume"); return }
            kinds.append(task.files.count)
            await f.scheduler.received(.taskDone(TaskDone(job: job.id, unit: task.unit, bytes: task.files[0].length, wireBytes: 3, refetched: 0,
                                                          codecs: [], chunks: [])), from: "a1")
        }
        await f.scheduler.flush()
        #expect(try await f.scheduler.status(job.id)?.state == .succeeded)
    }
}

extension SchedulerTests {
    /// A report from an earlier assignment of a unit counts its work but does not end the current
    /// assignment: directories wait until the current one answers too.
    @Test func aStaleReportDoesNotFreeTheCurrentAssignment() async throws {
        let f = try Fixture()
        var a1 = await f.agent("a1", site: "a", version: WireVersion.assignments)
        _ = await f.agent("b1", site: "b")
        let job = try await f.scheduler.submit(SubmitRequest(source: .init(site: "a", path: "ds"), destination: .init(site: "b", path: "ds")), id: "j-4")
        guard case .scanRequest(let scan) = await a1.next() else { Issue.record("no scan"); return }
        let entries = [FileEntry(path: "", kind: .directory, mode: 0o755, mtimeSeconds: 1, mtimeNanoseconds: 0),
                       FileEntry(path: "f", kind: .file, size: 3, mode: 0o644, mtimeSeconds: 1, mtimeNanoseconds: 0)]
        await f.scheduler.received(.scanReply(ScanReply(request: scan.request, final: true, entries: entries)), from: "a1")
        guard case .taskAssign(let first) = await Self.task(&a1) else { Issue.record("no task"); return }
        #expect(first.assignment == 1)
        await f.scheduler.received(.taskFailed(TaskFailed(job: job.id, unit: first.unit, retryable: true, reason: "stalled", assignment: 1)), from: "a1")
        try await f.afterBackoff(job.id)
        guard case .taskAssign(let second) = await Self.task(&a1) else { Issue.record("no retry"); return }
        #expect(second.unit == first.unit && second.assignment == 2)
        // The first assignment finished after all: its report counts, and a stale failure is ignored.
        let done = TaskDone(job: job.id, unit: first.unit, bytes: 3, wireBytes: 3, refetched: 0, codecs: [], chunks: [], assignment: 1)
        await f.scheduler.received(.taskDone(done), from: "a1")
        await f.scheduler.received(.taskFailed(TaskFailed(job: job.id, unit: first.unit, retryable: true, reason: "old", assignment: 1)), from: "a1")
        await f.scheduler.flush()
        #expect(try await f.scheduler.status(job.id)?.filesDone == 1)
        #expect(await f.scheduler.unitsHeld == 1)  // the second assignment still runs: no directories yet
        var second2 = done
        second2.assignment = 2
        await f.scheduler.received(.taskDone(second2), from: "a1")
        await f.scheduler.flush()
        guard case .taskAssign(let dirs) = await Self.task(&a1) else { Issue.record("no directories"); return }
        #expect(dirs.files.map(\.entry.kind) == [.directory])
    }

    /// The next message other than `job settings`.
    static func task(_ agent: inout AsyncStream<Message>.AsyncIterator) async -> Message? {
        var next = await agent.next()
        while case .jobSettings = next { next = await agent.next() }
        return next
    }
}

extension SchedulerTests {
    /// A scheduler on a real journal whose units are 1 MiB (a 2 MiB file is two ranges and a
    /// finish), with source agent a1 (its messages in `a1`) and destination agent b1, each taking
    /// four units at once.
    final class LargeFiles {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("barge-scheduler-\(UUID().uuidString)")
        let clock = TestClock()
        let scheduler: Scheduler
        let a1: AsyncStream<Message>.AsyncIterator

        init(version: UInt8) async throws {
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            scheduler = Scheduler(journal: try Journal(path: dir.appendingPathComponent(Journal.fileName).path),
                                  planner: Planner(unitBytes: 1 << 20, chunkSize: 1 << 20), now: { [clock] in clock.now })
            let (stream, sink) = AsyncStream.makeStream(of: Message.self)
            _ = await scheduler.attach(Register(name: "a1", site: "a", root: "/r", dataHost: "127.0.0.1", dataPort: 9, maxInFlight: 4), sink: sink,
                                       version: version)
            let (_, bsink) = AsyncStream.makeStream(of: Message.self)
            _ = await scheduler.attach(Register(name: "b1", site: "b", root: "/r", dataHost: "127.0.0.1", dataPort: 9, maxInFlight: 4), sink: bsink,
                                       version: version)
            a1 = stream.makeAsyncIterator()
        }
        deinit { try? FileManager.default.removeItem(at: dir) }

        /// Job `id`: a directory holding one 2 MiB file (two ranges, its finish, the directory),
        /// scanned by a1. Returns the job's id.
        func submitOneLargeFile(_ id: String, _ a1: inout AsyncStream<Message>.AsyncIterator) async throws -> String {
            let job = try await scheduler.submit(SubmitRequest(source: .init(site: "a", path: "ds"), destination: .init(site: "b", path: "ds")), id: id)
            guard case .scanRequest(let scan) = await a1.next() else { throw CancellationError() }
            let entries = [FileEntry(path: "", kind: .directory, mode: 0o755, mtimeSeconds: 1, mtimeNanoseconds: 0),
                           FileEntry(path: "f", kind: .file, size: 2 << 20, mode: 0o644, mtimeSeconds: 1, mtimeNanoseconds: 0)]
            await scheduler.received(.scanReply(ScanReply(request: scan.request, final: true, entries: entries)), from: "a1")
            return job.id
        }

        /// `t` stalls at a1 and, after its backoff, is assigned again: its second assignment.
        func stallAndAssignAgain(_ t: TaskAssign, _ a1: inout AsyncStream<Message>.AsyncIterator) async throws -> TaskAssign {
            await scheduler.received(.taskFailed(TaskFailed(job: t.job, unit: t.unit, retryable: true, reason: "stalled", assignment: t.assignment)), from: "a1")
            await scheduler.flush()
            clock.advance(31)
            await scheduler.tick()
            guard case .taskAssign(let again) = await SchedulerTests.task(&a1) else { throw CancellationError() }
            #expect(again.unit == t.unit && again.assignment == t.assignment + 1)
            return again
        }

        /// The value of the metric `name` (a family without labels), as rendered.
        func metric(_ name: String) async -> String? {
            await scheduler.metrics.render().split(separator: "\n").first { $0.hasPrefix(name + " ") }.map { String($0.dropFirst(name.count + 1)) }
        }

        /// `t`'s `task done`, answering `assignment` (by default its own).
        static func done(_ t: TaskAssign, wireBytes: UInt64, assignment: UInt32? = nil) -> Message {
            .taskDone(TaskDone(job: t.job, unit: t.unit, bytes: t.files[0].length, wireBytes: wireBytes, refetched: 0, codecs: [], chunks: [],
                               assignment: assignment ?? t.assignment))
        }
    }
}

extension SchedulerTests {
    /// Large files whose ranges fail the job; resumed, every range, finish and directory goes.
    @Test func aResumedJobOfLargeFilesFinishes() async throws {
        let f = try await LargeFiles(version: 4)
        let (clock, scheduler) = (f.clock, f.scheduler)
        var a1 = f.a1
        let job = try await scheduler.submit(SubmitRequest(source: .init(site: "a", path: "ds"), destination: .init(site: "b", path: "ds")), id: "j-5")
        guard case .scanRequest(let scan) = await a1.next() else { Issue.record("no scan"); return }
        let entries = [FileEntry(path: "", kind: .directory, mode: 0o755, mtimeSeconds: 1, mtimeNanoseconds: 0)]
            + (0..<4).map { FileEntry(path: "f\($0)", kind: .file, size: 2 << 20, mode: 0o644, mtimeSeconds: 1, mtimeNanoseconds: 0) }
        await scheduler.received(.scanReply(ScanReply(request: scan.request, final: true, entries: entries)), from: "a1")
        // Every range fails until the job fails.
        var failedJob = false
        while !failedJob {
            guard let m = await Self.task(&a1) else { break }
            switch m {
            case .taskAssign(let t):
                await scheduler.received(.taskFailed(TaskFailed(job: job.id, unit: t.unit, retryable: true, reason: "ENOSPC", assignment: t.assignment)), from: "a1")
                await scheduler.flush()
                clock.advance(31)
                await scheduler.tick()
            case .cancelJob: failedJob = true
            default: break
            }
        }
        #expect(try await scheduler.status(job.id)?.state == .failed)
        _ = try await scheduler.resume(job.id)
        var kinds: [FileEntry.Kind] = []
        var open = 0
        repeat {
            guard case .taskAssign(let t) = await Self.task(&a1) else { Issue.record("no task after resume"); return }
            kinds.append(t.files[0].entry.kind)
            // Late reports of the first run's assignments change nothing.
            if t.assignment > 1 {
                // Both a late failure and a late success of the earlier assignment, in the same batch
                // as the current one's report: the unit is done once.
                await scheduler.received(.taskFailed(TaskFailed(job: job.id, unit: t.unit, retryable: true, reason: "cancelled", assignment: t.assignment - 1)), from: "a1")
                await scheduler.received(.taskDone(TaskDone(job: job.id, unit: t.unit, bytes: t.files[0].length, wireBytes: 1, refetched: 0, codecs: [],
                                                            chunks: [], assignment: t.assignment - 1)), from: "a1")
            }
            await scheduler.received(.taskDone(TaskDone(job: job.id, unit: t.unit, bytes: t.files[0].length, wireBytes: 1, refetched: 0, codecs: [],
                                                        chunks: [], assignment: t.assignment)), from: "a1")
            await scheduler.flush()
            open = await scheduler.unitsHeld
        } while kinds.last != .directory && kinds.count < 20
        let state = await scheduler.describe(job.id)
        #expect(kinds.filter { $0 == .directory }.count == 1 && kinds.count == 4 * 2 + 4 + 1, "\(kinds) \(open) \(state)")
        #expect(try await scheduler.status(job.id)?.state == .succeeded)
    }
}

extension SchedulerTests {
    /// A large file is sent again in full (its finish was refused) while one of its ranges still
    /// runs its second assignment, the first's report having counted already (as after a
    /// coordinator restart): that assignment's report is still the current one, the range lets
    /// go of its lane, and the job goes on to its directories. Before, re-reading the ranges for
    /// the second sending reset the count of the range's assignments, its report was taken for a
    /// stale one, and the range held its lane forever.
    @Test(.timeLimit(.minutes(1)))
    func aRangeStillRunningWhenItsFileIsSentAgainStillAnswers() async throws {
        let f = try await LargeFiles(version: WireVersion.assignments)
        let (clock, scheduler) = (f.clock, f.scheduler)
        var a1 = f.a1
        let job = try await f.submitOneLargeFile("j-6", &a1)
        func done(_ t: TaskAssign) -> Message { LargeFiles.done(t, wireBytes: 1) }
        guard case .taskAssign(let r0) = await Self.task(&a1), case .taskAssign(let r1) = await Self.task(&a1) else { Issue.record("no ranges"); return }
        // The first range stalls and goes again, as its second assignment.
        let r0again = try await f.stallAndAssignAgain(r0, &a1)
        // The second range is done, and the first one's first assignment finished after all: its
        // report counts, and the file's finish goes.
        await scheduler.received(done(r1), from: "a1")
        await scheduler.received(done(r0), from: "a1")
        await scheduler.flush()
        guard case .taskAssign(let finish) = await Self.task(&a1) else { Issue.record("no finish"); return }
        #expect(finish.unit != r0.unit && finish.unit != r1.unit && finish.files.count == 1)
        // The finish is refused (the file's bytes are not all where it went): sent again in full.
        await scheduler.received(.taskFailed(TaskFailed(job: job, unit: finish.unit, retryable: true, reason: "refused", assignment: finish.assignment)),
                                 from: "a1")
        await scheduler.flush()
        // The first range's second assignment, still running, answers: it is the current one.
        await scheduler.received(done(r0again), from: "a1")
        await scheduler.flush()
        // The rest goes: the second range again, the finish again, then the directory.
        var kinds: [FileEntry.Kind] = []
        while kinds.last != .directory && kinds.count < 10 {
            clock.advance(31)
            await scheduler.tick()
            guard case .taskAssign(let t) = await Self.task(&a1) else { Issue.record("no task"); return }
            kinds.append(t.files[0].entry.kind)
            await scheduler.received(done(t), from: "a1")
            await scheduler.flush()
        }
        let queue = await scheduler.describe(job)
        #expect(kinds == [.file, .file, .directory], "\(queue)")
        #expect(await scheduler.unitsHeld == 0)
        #expect(try await scheduler.status(job)?.state == .succeeded)
    }
}

extension SchedulerTests {
    /// `flush` (and so `cancel`, `resume` and `prune`) returns once what was decided before it is
    /// journaled, even while agents keep the commit loop busy without a pause.
    @Test func flushReturnsWhileAgentsKeepTheCommitsGoing() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("barge-scheduler-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        // A unit per file: far more units than the test lets finish.
        let scheduler = Scheduler(journal: try Journal(path: dir.appendingPathComponent(Journal.fileName).path),
                                  planner: Planner(maxFilesPerUnit: 1))
        var agents: [(name: String, stream: AsyncStream<Message>)] = []
        for i in 0..<8 {
            for site in ["a", "b"] {
                let (stream, sink) = AsyncStream.makeStream(of: Message.self)
                _ = await scheduler.attach(Register(name: "\(site)\(i)", site: site, root: "/r", dataHost: "127.0.0.1", dataPort: 9, maxInFlight: 2),
                                           sink: sink, version: WireVersion.supported.upperBound)
                agents.append(("\(site)\(i)", stream))
            }
        }
        let job = try await scheduler.submit(SubmitRequest(source: .init(site: "a", path: "ds"), destination: .init(site: "b", path: "ds")), id: "j-busy")
        // Agents that answer every task at once, for as long as the test runs.
        let answering = agents.map { agent in
            Task {
                for await m in agent.stream {
                    switch m {
                    case .scanRequest(let r):
                        for page in 0..<20 {
                            let entries = (0..<10_000).map {
                                FileEntry(path: String(format: "f%07d", page * 10_000 + $0), kind: .file, size: 0, mode: 0o644, mtimeSeconds: 1, mtimeNanoseconds: 0)
                            }
                            let root = page == 0 ? [FileEntry(path: "", kind: .directory, mode: 0o755, mtimeSeconds: 1, mtimeNanoseconds: 0)] : []
                            await scheduler.received(.scanReply(ScanReply(request: r.request, final: page == 19, entries: root + entries)), from: agent.name)
                        }
                    case .compareRequest(let r):
                        await scheduler.received(.compareReply(CompareReply(request: r.request, unchanged: r.entries.map { _ in false })), from: agent.name)
                    case .taskAssign(let t):
                        await scheduler.received(.taskDone(TaskDone(job: t.job, unit: t.unit, bytes: 0, wireBytes: 0, refetched: 0, codecs: [], chunks: [],
                                                                    assignment: t.assignment)), from: agent.name)
                    default: break
                    }
                }
            }
        }
        defer { for t in answering { t.cancel() } }
        // Wait until units are being done, then flush a few times while they go on.
        while (try await scheduler.status(job.id)?.unitsDone ?? 0) < 10 { try await Task.sleep(for: .milliseconds(20)) }
        for _ in 0..<3 {
            let before = try #require(try await scheduler.status(job.id)).unitsDone
            let batches = await scheduler.batchesCommitted
            await scheduler.flush()
            // The batch committed and being carried out, the one committing and the one
            // collecting: not every batch until a pause.
            #expect(await scheduler.batchesCommitted - batches <= 3)
            #expect(await scheduler.unitsHeld > 0, "the agents should still be busy")
            #expect(try #require(try await scheduler.status(job.id)).unitsDone >= before)
        }
        let cancelled = try await scheduler.cancel(job.id)
        #expect(cancelled.state == .cancelled)
    }
}

extension SchedulerTests {
    /// The messages an agent gets until its first `task assign`, which ends the list.
    static func untilTask(_ agent: inout AsyncStream<Message>.AsyncIterator) async -> [Message] {
        var seen: [Message] = []
        while let m = await agent.next() {
            seen.append(m)
            if case .taskAssign = m { break }
        }
        return seen
    }

    /// `warm lanes` (version 12): as a job starts, the source agent is told to open its
    /// connections to the destination agent the first unit goes to, once, before its
    /// assignment. An agent of version 11 is told nothing.
    @Test(arguments: [WireVersion.warmLanes, WireVersion.agentBuild])
    func aStartingJobWarmsItsFirstLane(version: UInt8) async throws {
        let f = try Fixture()
        var a1 = await f.agent("a1", site: "a", version: version)
        // Version 4 at the destination: no quick check to answer here.
        _ = await f.agent("b1", site: "b", version: WireVersion.assignments)
        _ = try await f.scheduler.submit(SubmitRequest(source: .init(site: "a", path: "ds"), destination: .init(site: "b", path: "ds")), id: "j-warm")
        guard case .scanRequest(let scan) = await a1.next() else { Issue.record("a1 was not asked to scan"); return }
        let file = FileEntry(path: "", kind: .file, size: 3, mode: 0o644, mtimeSeconds: 1, mtimeNanoseconds: 0)
        await f.scheduler.received(.scanReply(ScanReply(request: scan.request, final: true, entries: [file])), from: "a1")
        let seen = await Self.untilTask(&a1)
        guard case .taskAssign(let task) = seen.last else { Issue.record("no task: \(seen)"); return }
        let warmed = seen.compactMap { m -> WarmLanes? in if case .warmLanes(let w) = m { w } else { nil } }
        if version >= WireVersion.warmLanes {
            #expect(warmed == [WarmLanes(destinations: [task.destination])])
            #expect(task.destination == DataPeer(name: "b1", host: "127.0.0.1", port: 9))
        } else {
            #expect(warmed.isEmpty)
        }
    }
}

extension SchedulerTests {
    /// A coordinator started again sends the rest of a large file to the destination agent that
    /// wrote its ranges done so far, where the partial copy is, even with another agent of the
    /// site that would otherwise come first, and even when that agent registers again after the
    /// other one. (The pins were in memory only: with two agents sharing a root, the rest could
    /// go to the other one, whose finish was refused, and the whole file was sent again.) An
    /// agent that does not come back is waited for a while (`formerDestinationGrace`), then the
    /// file goes elsewhere.
    @Test(arguments: [true, false])
    func aRestartedCoordinatorSendsTheRestOfAFileWhereItsPartialCopyIs(holderComesBack: Bool) async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("barge-scheduler-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let clock = TestClock()
        let path = dir.appendingPathComponent(Journal.fileName).path
        func scheduler() throws -> Scheduler {
            Scheduler(journal: try Journal(path: path), planner: Planner(unitBytes: 1 << 20, chunkSize: 1 << 20), now: { [clock] in clock.now })
        }
        func attach(_ s: Scheduler, _ name: String, site: String, port: UInt16) async -> AsyncStream<Message>.AsyncIterator {
            let (stream, sink) = AsyncStream.makeStream(of: Message.self)
            _ = await s.attach(Register(name: name, site: site, root: "/r", dataHost: "127.0.0.1", dataPort: port, maxInFlight: 4), sink: sink,
                               version: WireVersion.assignments)
            return stream.makeAsyncIterator()
        }
        // Before the restart only b2 is up at the destination: the file's ranges go there.
        let first = try scheduler()
        var a1 = await attach(first, "a1", site: "a", port: 8)
        _ = await attach(first, "b2", site: "b", port: 10)
        let job = try await first.submit(SubmitRequest(source: .init(site: "a", path: "ds"), destination: .init(site: "b", path: "ds")), id: "j-7")
        guard case .scanRequest(let scan) = await a1.next() else { Issue.record("no scan"); return }
        let entries = [FileEntry(path: "", kind: .directory, mode: 0o755, mtimeSeconds: 1, mtimeNanoseconds: 0),
                       FileEntry(path: "f", kind: .file, size: 4 << 20, mode: 0o644, mtimeSeconds: 1, mtimeNanoseconds: 0)]
        await first.received(.scanReply(ScanReply(request: scan.request, final: true, entries: entries)), from: "a1")
        guard case .taskAssign(let r0) = await Self.task(&a1) else { Issue.record("no range"); return }
        #expect(r0.destination.name == "b2")
        await first.received(.taskDone(TaskDone(job: job.id, unit: r0.unit, bytes: r0.files[0].length, wireBytes: 1, refetched: 0, codecs: [],
                                                chunks: [], assignment: r0.assignment)), from: "a1")
        await first.flush()

        // Started again: b1 registers first, and by name and load it would take the file.
        let restarted = try scheduler()
        var again = await attach(restarted, "a1", site: "a", port: 8)
        _ = await attach(restarted, "b1", site: "b", port: 9)
        try await restarted.recoverAfterRestart()
        await restarted.flush()
        if holderComesBack {
            _ = await attach(restarted, "b2", site: "b", port: 10)
        } else {
            // b2 never comes back: after the wait the file goes to b1 (and is sent whole there).
            clock.advance(11)
            await restarted.tick()
        }
        let holder = holderComesBack ? "b2" : "b1"
        var destinations: [String] = []
        var kinds: [FileEntry.Kind] = []
        while kinds.last != .directory && kinds.count < 10 {
            guard case .taskAssign(let t) = await Self.task(&again) else { Issue.record("no task after the restart"); return }
            destinations.append(t.destination.name)
            kinds.append(t.files[0].entry.kind)
            await restarted.received(.taskDone(TaskDone(job: job.id, unit: t.unit, bytes: t.files[0].length, wireBytes: 1, refetched: 0, codecs: [],
                                                        chunks: [], assignment: t.assignment)), from: "a1")
            await restarted.flush()
        }
        // Three ranges and the finish went to one agent; the directory may go anywhere.
        #expect(kinds.filter { $0 == .file }.count == 4, "\(kinds)")
        #expect(Array(destinations.dropLast()) == Array(repeating: holder, count: 4), "\(destinations)")
        #expect(try await restarted.status(job.id)?.state == .succeeded)
    }
}

extension SchedulerTests {
    /// The metrics count a unit's report as the job's figures do. The same report again (its
    /// acknowledgement lost on a reconnect, so the agent sends it once more) counts nowhere;
    /// an earlier assignment's report of a unit whose current assignment then answers counts
    /// its bytes once and both assignments' wire bytes. Before, the repeat counted twice.
    @Test(.timeLimit(.minutes(1)))
    func aReportThatComesAgainCountsOnceInTheMetrics() async throws {
        let f = try await LargeFiles(version: WireVersion.assignments)
        let scheduler = f.scheduler
        var a1 = f.a1
        let job = try await f.submitOneLargeFile("j-m", &a1)
        func done(_ t: TaskAssign) -> Message { LargeFiles.done(t, wireBytes: 1000) }
        func metric(_ name: String) async -> String? { await f.metric(name) }
        guard case .taskAssign(let r0) = await Self.task(&a1), case .taskAssign(let r1) = await Self.task(&a1) else { Issue.record("no ranges"); return }
        // Wire bytes count as a unit reports them moving; its end adds only the rest.
        await scheduler.received(.taskProgress(TaskProgress(job: job, unit: r0.unit, bytesDone: 1 << 19, wireBytes: 400)), from: "a1")
        #expect(await metric("barge_wire_bytes_sent_total") == "400")
        // r0 reports twice in one batch, then once more in a later one.
        await scheduler.received(done(r0), from: "a1")
        await scheduler.received(done(r0), from: "a1")
        await scheduler.flush()
        await scheduler.received(done(r0), from: "a1")
        await scheduler.flush()
        #expect(await metric("barge_bytes_received_total") == "\(1 << 20)")
        #expect(await metric("barge_wire_bytes_sent_total") == "1000")
        // r1 stalls and goes again; its first assignment answers after all, then its second.
        let r1again = try await f.stallAndAssignAgain(r1, &a1)
        await scheduler.received(done(r1), from: "a1")
        await scheduler.flush()
        await scheduler.received(done(r1again), from: "a1")
        await scheduler.received(done(r1again), from: "a1")
        await scheduler.flush()
        #expect(await metric("barge_bytes_received_total") == "\(2 << 20)")
        #expect(await metric("barge_wire_bytes_sent_total") == "3000")
        let status = try #require(try await scheduler.status(job))
        #expect(status.bytesDone == 2 << 20 && status.wireBytes == 3000, "the job's figures: \(status.bytesDone), \(status.wireBytes)")
    }
}

extension SchedulerTests {
    /// An assignment that failed after reporting progress has that progress's wire bytes in the
    /// job's figures and the metrics; its late `task done` (the unit went again meanwhile) adds
    /// only the rest. Before, it counted its wire bytes in full once more: 1,600 for 1,000.
    @Test(.timeLimit(.minutes(1)))
    func aFailedAssignmentsLateReportCountsItsWireBytesOnce() async throws {
        let f = try await LargeFiles(version: WireVersion.assignments)
        let scheduler = f.scheduler
        var a1 = f.a1
        let job = try await f.submitOneLargeFile("j-w", &a1)
        func metric(_ name: String) async -> String? { await f.metric(name) }
        guard case .taskAssign(let r0) = await Self.task(&a1), case .taskAssign(let r1) = await Self.task(&a1) else { Issue.record("no ranges"); return }
        await scheduler.received(.taskProgress(TaskProgress(job: job, unit: r1.unit, bytesDone: 1 << 19, wireBytes: 600)), from: "a1")
        let r1again = try await f.stallAndAssignAgain(r1, &a1)
        #expect(await metric("barge_wire_bytes_sent_total") == "600")
        #expect(try await scheduler.status(job)?.wireBytes == 600)
        await scheduler.received(LargeFiles.done(r1, wireBytes: 1000), from: "a1")
        await scheduler.flush()
        #expect(await metric("barge_wire_bytes_sent_total") == "1000")
        #expect(try await scheduler.status(job)?.wireBytes == 1000)
        await scheduler.received(LargeFiles.done(r1again, wireBytes: 1000), from: "a1")
        await scheduler.received(LargeFiles.done(r0, wireBytes: 1000), from: "a1")
        await scheduler.flush()
        #expect(await metric("barge_wire_bytes_sent_total") == "3000")
        let status = try #require(try await scheduler.status(job))
        #expect(status.bytesDone == 2 << 20 && status.wireBytes == 3000, "the job's figures: \(status.bytesDone), \(status.wireBytes)")
    }
}

extension SchedulerTests {
    /// An attempt ended by an agent of its lane going down is the path's, not the unit's: it does
    /// not count against the unit's attempts. Seen before: the network between a1 and b1 went down
    /// twice for 40 s; b1 missed its heartbeats both times, and each time the unit went back to
    /// pending with its attempt counted. Its third assignment's one failure (a connection to b1
    /// that had closed during the outage) then failed the job: "unit 0 failed 3 times", with one
    /// failure ever logged.
    @Test(.timeLimit(.minutes(1))) func aUnitWhoseDestinationWentDownTwiceStillHasItsAttempts() async throws {
        let f = try Fixture()
        var a1 = try await f.oneFileJob("j-outages")
        let job = "j-outages"
        func nextAssign() async -> TaskAssign? {
            while let m = await a1.next() { if case .taskAssign(let t) = m { return t } }
            return nil
        }
        guard let first = await nextAssign() else { Issue.record("no task"); return }
        // Two outages: b1 misses its heartbeats, comes back, and the unit is assigned again.
        for _ in 0..<2 {
            #expect(try await f.scheduler.agentsDown(["b1"]) == 1)
            await f.scheduler.flush()
            _ = await f.agent("b1", site: "b")
            guard let again = await nextAssign() else { Issue.record("not assigned again"); return }
            #expect(again.unit == first.unit)
        }
        // One failure of the data plane after the outages: retried, not the job's end.
        await f.scheduler.received(.taskFailed(TaskFailed(job: job, unit: first.unit, retryable: true,
                                                          reason: "data plane to b1 at 127.0.0.1:9: the connection closed")), from: "a1")
        await f.scheduler.flush()
        let after = try #require(try await f.scheduler.status(job))
        #expect(after.state == .running, "failed with \(after.error ?? "")")
        try await f.afterBackoff(job)
        guard let retry = await nextAssign() else { Issue.record("no retry"); return }
        #expect(retry.unit == first.unit)
        await f.scheduler.received(.taskDone(TaskDone(job: job, unit: retry.unit, bytes: 3, wireBytes: 43, refetched: 0, codecs: [],
                                                      chunks: [ChunkReport(file: 0, offset: 0, length: 3, id: [UInt8](repeating: 1, count: 32))])), from: "a1")
        await f.scheduler.flush()
        #expect(try await f.scheduler.status(job)?.state == .succeeded)
    }
}
