import BargeCoordinator
import BargeWire
import Foundation
import GRDB
import Testing

/// The journal on a real SQLite file in a temporary directory.
struct JournalTests {
    final class StateDirectory {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("barge-journal-\(UUID().uuidString)")
        var path: String { url.appendingPathComponent(Journal.fileName).path }
        init() throws { try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true) }
        deinit { try? FileManager.default.removeItem(at: url) }
    }

    func job(_ id: String, createdAt: Int64 = 1_700_000_000) -> JobRecord {
        JobRecord(id: id, sourceSite: "a", sourcePath: "ds", destinationSite: "b", destinationPath: "in/ds", createdAt: createdAt)
    }

    @Test func walFileWithFullSynchronousCommits() throws {
        let dir = try StateDirectory()
        let journal = try Journal(path: dir.path)
        #expect(try journal.pragma("synchronous") == 2)  // FULL
        try journal.insert(job("j1"))
        #expect(FileManager.default.fileExists(atPath: dir.path + "-wal"))
    }

    /// A journal a newer build migrated is refused, named, with nothing written to it: an older
    /// coordinator ran on one and lost what the newer schema held (h4 of session 49).
    @Test func aJournalANewerBuildMigratedIsRefused() throws {
        let dir = try StateDirectory()
        do {
            let journal = try Journal(path: dir.path)
            try journal.insert(job("j1"))
        }
        try DatabaseQueue(path: dir.path).write { try $0.execute(sql: "INSERT INTO grdb_migrations (identifier) VALUES ('v99: from a newer build')") }
        func migrations() throws -> [String] { try DatabaseQueue(path: dir.path).read { try String.fetchAll($0, sql: "SELECT identifier FROM grdb_migrations") } }
        let before = try migrations()
        #expect { try Journal(path: dir.path) } throws: { error in
            guard case JournalError.newer(_, let unknown, _) = error else { return false }
            return unknown == ["v99: from a newer build"] && "\(error)".contains("a newer Barge")
        }
        #expect(try migrations() == before)
    }

    @Test func stateSurvivesReopening() throws {
        let dir = try StateDirectory()
        do {
            let journal = try Journal(path: dir.path)
            try journal.insert(job("j1"))
            try journal.plan("j1", units: [UnitRecord(jobId: "j1", unitId: 0, path: "x.bin", offset: 0, length: 4096)],
                             totals: PlanTotals(bytes: 4096, files: 1, chunks: 1), now: 5)
        }
        let reopened = try Journal(path: dir.path)  // migrations run again and change nothing
        let j = try #require(try reopened.job("j1"))
        #expect(j.state == .running)
        #expect(j.bytesTotal == 4096 && j.filesTotal == 1)
        #expect(try reopened.units(job: "j1", state: .pending).count == 1)
    }

    @Test func illegalTransitionsAreRefusedAndChangeNothing() throws {
        let dir = try StateDirectory()
        let journal = try Journal(path: dir.path)
        try journal.insert(job("j1"))
        try journal.apply(.cancel, to: "j1")
        #expect(throws: JobTransitionError(from: .cancelled, event: .start)) { try journal.apply(.start, to: "j1") }
        #expect(try journal.job("j1")?.state == .cancelled)
        #expect(throws: JournalError.unknownJob("nope")) { try journal.apply(.start, to: "nope") }
        try journal.insert(job("j2"))
        try journal.apply(.fail("source agent a1 refused path ../etc: outside its root"), to: "j2")
        #expect(try journal.job("j2")?.error == "source agent a1 refused path ../etc: outside its root")
        #expect(try journal.jobs().map(\.id) == ["j1", "j2"])
    }

    /// Pages whose totals add up past Int64.max (sparse files of 64 PiB, or a peer's scan) hold
    /// the job's totals at the largest value. Before, the sum trapped the coordinator inside the
    /// journal's write, before anything was committed, so the rescan after a restart trapped again.
    @Test func plannedTotalsSaturate() throws {
        let dir = try StateDirectory()
        let journal = try Journal(path: dir.path)
        try journal.insert(job("j1"))
        let half = Int64.max / 2 + 1
        for page in 0..<3 {
            let unit = UnitRecord(jobId: "j1", unitId: Int64(page), path: "f\(page)", offset: 0, length: 1)
            try journal.plan("j1", units: [unit], totals: PlanTotals(bytes: half, files: half, chunks: half), final: page == 2, now: 5)
        }
        let j = try #require(try journal.job("j1"))
        #expect(j.bytesTotal == .max && j.filesTotal == .max && j.chunksTotal == .max && j.unitsTotal == 3)
    }

    @Test func unitsMoveThroughTheirStatesAndReportsCountOnce() throws {
        let dir = try StateDirectory()
        let journal = try Journal(path: dir.path)
        try journal.insert(job("j1"))
        let units = (0..<4).map { UnitRecord(jobId: "j1", unitId: Int64($0), path: "f\($0)", offset: 0, length: 1000) }
        try journal.plan("j1", units: units, totals: PlanTotals(bytes: 4000, files: 4, chunks: 4), now: 5)
        try journal.assign(job: "j1", unit: 0, source: "a1", destination: "b1")
        try journal.assign(job: "j1", unit: 1, source: "a2", destination: "b1")
        try journal.assign(job: "j1", unit: 2, source: "a2", destination: "b2")
        #expect(throws: JournalError.unitNotPending("j1", 0, .assigned)) { try journal.assign(job: "j1", unit: 0, source: "a2", destination: "b2") }
        let report = TaskDone(job: "j1", unit: 0, bytes: 1000, wireBytes: 600, refetched: 2,
                              codecs: [CodecUsage(codec: "lz4", chunks: 1, rawBytes: 1000, encodedBytes: 600)],
                              chunks: [ChunkReport(file: 0, offset: 0, length: 1000, id: [UInt8](repeating: 7, count: 32))])
        #expect(try journal.complete(report, now: 6) != nil)
        #expect(try journal.complete(report, now: 6) == nil)  // a duplicate report counts once…
        let j = try #require(try journal.job("j1"))
        #expect(j.bytesDone == 1000 && j.chunksDone == 1)
        #expect(j.wireBytes == 1200 && j.chunksRefetched == 4)  // …but both sendings crossed the wire, with what each sent again
        #expect(j.codecStats == [CodecUsage(codec: "lz4", chunks: 1, rawBytes: 1000, encodedBytes: 600)])
        #expect(j.state == .running)
        // b1 dies: the scheduler releases unit 1 (held by b1); unit 2 (a2 → b2) and done unit 0 stay.
        try journal.commitNow([.release(UnitKey(job: "j1", unit: 1), retry: true, attempts: 1)])
        #expect(try journal.units(job: "j1", state: .pending).map(\.unitId) == [1, 3])
        #expect(try journal.units(job: "j1", state: .assigned).map(\.unitId) == [2])
        #expect(try journal.units(job: "j1", state: .done).map(\.unitId) == [0])
        #expect(try journal.units(job: "j1", state: .done)[0].destinationAgent == "b1")  // verify asks the agent that finished it
        try journal.assign(job: "j1", unit: 1, source: "a1", destination: "b2")
        #expect(try journal.units(job: "j1").first { $0.unitId == 1 }?.attempts == 2)
        // A report for a unit put back to pending (its agent kept working while it was away) counts.
        try journal.releaseAllAssigned()
        #expect(try journal.complete(TaskDone(job: "j1", unit: 2, bytes: 1000, wireBytes: 1000, refetched: 0, codecs: [], chunks: []), now: 7) != nil)
        #expect(try journal.units(job: "j1", state: .done).map(\.unitId) == [0, 2])
    }

    @Test func theLastUnitFinishesTheJobAndRecordsTheManifest() throws {
        let dir = try StateDirectory()
        let journal = try Journal(path: dir.path)
        try journal.insert(job("j1"))
        let entry = FileEntry(path: "in/ds/f", kind: .file, size: 10, mode: 0o600, mtimeSeconds: 1, mtimeNanoseconds: 0)
        try journal.plan("j1", units: [UnitRecord(jobId: "j1", unitId: 0, kind: .files, files: [TaskFile(sourcePath: "ds/f", entry: entry, length: 10, finish: true)])],
                         totals: PlanTotals(bytes: 10, files: 1, chunks: 1), now: 5)
        #expect(try journal.units(job: "j1")[0].files[0].entry == entry)  // the unit's files survive the JSON column
        try journal.assign(job: "j1", unit: 0, source: "a1", destination: "b1")
        let done = try #require(try journal.complete(TaskDone(job: "j1", unit: 0, bytes: 10, wireBytes: 10, refetched: 0, codecs: [],
                                                              chunks: [ChunkReport(file: 0, offset: 0, length: 10, id: [UInt8](repeating: 1, count: 32))]), now: 9))
        #expect(done.state == .succeeded && done.filesDone == 1 && done.finishedAt == 9)
        // The manifest is one blob on the unit, not a row per chunk.
        let unit = try #require(try journal.units(job: "j1").first)
        #expect(UnitManifest.decode(try #require(unit.manifest)) == [ChunkReport(file: 0, offset: 0, length: 10, id: [UInt8](repeating: 1, count: 32))])
        #expect(try journal.chunks(job: "j1").isEmpty)
    }

    @Test func anEmptyPlanSucceedsAtOnce() throws {
        let dir = try StateDirectory()
        let journal = try Journal(path: dir.path)
        try journal.insert(job("j1"))
        try journal.plan("j1", units: [], totals: PlanTotals(bytes: 0, files: 0, chunks: 0), now: 5)
        #expect(try journal.job("j1")?.state == .succeeded)
    }

    @Test func resumeTakesAFailedJobBackWithoutRedoingDoneUnits() throws {
        let dir = try StateDirectory()
        let journal = try Journal(path: dir.path)
        try journal.insert(job("j1"))
        let units = (0..<3).map { UnitRecord(jobId: "j1", unitId: Int64($0), path: "f\($0)", offset: 0, length: 1000) }
        try journal.plan("j1", units: units, totals: PlanTotals(bytes: 3000, files: 3, chunks: 3), now: 5)
        for u in 0..<3 { try journal.assign(job: "j1", unit: Int64(u), source: "a1", destination: "b1") }
        #expect(try journal.complete(TaskDone(job: "j1", unit: 0, bytes: 1000, wireBytes: 1000, refetched: 0, codecs: [], chunks: []), now: 6) != nil)
        try journal.end("j1", .fail("unit 1 failed 3 times; last: write in/f1: ENOSPC (No space left on device)"), now: 7)
        #expect(throws: JobTransitionError(from: .running, event: .resume(planned: true))) {
            try journal.insert(job("j2")); try journal.plan("j2", units: units.map { UnitRecord(jobId: "j2", unitId: $0.unitId, path: $0.path, offset: 0, length: 1000) },
                                                              totals: PlanTotals(bytes: 3000, files: 3, chunks: 3), now: 5)
            try journal.resume("j2")
        }
        let resumed = try journal.resume("j1")
        #expect(resumed.state == .running && resumed.error == nil && resumed.finishedAt == nil && resumed.bytesDone == 1000)
        #expect(try journal.units(job: "j1", state: .done).map(\.unitId) == [0])
        let pending = try journal.units(job: "j1", state: .pending)
        #expect(pending.map(\.unitId) == [1, 2])
        #expect(pending.allSatisfy { $0.attempts == 0 && $0.sourceAgent == nil && $0.destinationAgent == nil })
        // A job that failed at its scan was never planned: it is queued, to be scanned again.
        try journal.insert(job("j3"))
        try journal.end("j3", .fail("scan failed"), now: 8)
        #expect(try journal.resume("j3").state == .queued)
    }
}

/// The single-change calls the tests above were written with, each one batch of its own.
extension Journal {
    func plan(_ id: String, units: [UnitRecord], totals: PlanTotals, final: Bool = true, now: Double) throws {
        try commitNow([.plan(job: id, units: units, totals: totals, mark: units.last?.path, final: final, now: now)])
    }

    func assign(job id: String, unit: Int64, source: String, destination: String) throws {
        let outcome = try commitNow([.assign(UnitKey(job: id, unit: UInt64(unit)), source: source, destination: destination)])
        if !outcome.stale.isEmpty { throw JournalError.unitNotPending(id, unit, try units(job: id).first { $0.unitId == unit }?.state ?? .pending) }
    }

    /// The job, when this report counted for the first time.
    func complete(_ report: TaskDone, now: Double) throws -> JobRecord? {
        let outcome = try commitNow([.complete(report, now: now)])
        return outcome.firstCompletions.isEmpty ? nil : try job(report.job)
    }
}

extension JournalTests {
    @Test func aBatchCommitsTogetherAndPagesSeeItsChanges() throws {
        let dir = try StateDirectory()
        let journal = try Journal(path: dir.path)
        try journal.insert(job("j1"))
        let units = (0..<10).map { UnitRecord(jobId: "j1", unitId: Int64($0), path: "f\($0)", offset: 0, length: 100) }
        let work = SchedulingPolicy.Refill(job: "j1", kind: .work(after: nil), limit: 4)
        let first = try journal.commitNow([
            .plan(job: "j1", units: units, totals: PlanTotals(bytes: 1000, files: 10, chunks: 10), mark: "f9", final: true, now: 5),
            .assign(UnitKey(job: "j1", unit: 0), source: "a1", destination: "b1"),
            .assign(UnitKey(job: "j1", unit: 1), source: "a1", destination: "b1"),
        ], refills: [work])
        // The page is read after the batch: the two assigned units are not pending any more.
        #expect(first.pages.count == 1 && first.pages[0].units.map(\.unitId) == [2, 3, 4, 5])
        #expect(first.stale.isEmpty)
        let done = TaskDone(job: "j1", unit: 0, bytes: 100, wireBytes: 50, refetched: 0, codecs: [], chunks: [])
        let second = try journal.commitNow([
            .complete(done, now: 6), .complete(done, now: 6),  // a report that came twice counts once
            .release(UnitKey(job: "j1", unit: 1), retry: true, attempts: 1),
            .assign(UnitKey(job: "j1", unit: 0), source: "a1", destination: "b1"),  // done meanwhile: refused
        ], refills: [SchedulingPolicy.Refill(job: "j1", kind: .work(after: 5), limit: 100)])
        #expect(second.firstCompletions.keys.map(\.unit) == [0])
        #expect(second.stale == [UnitKey(job: "j1", unit: 0)])
        #expect(second.pages[0].units.map(\.unitId) == [6, 7, 8, 9])
        let j = try #require(try journal.job("j1"))
        #expect(j.bytesDone == 100 && j.wireBytes == 100 && j.unitsDone == 1 && j.unitsTotal == 10 && j.unitRetries == 1 && j.filesDone == 0)
        #expect(j.scanMark == "f9" && j.planned)
        #expect(try journal.openWork(job: "j1") == 9)
    }

    @Test func aJobEndsWhenItsLastUnitIsDoneAfterItsScanEnded() throws {
        let dir = try StateDirectory()
        let journal = try Journal(path: dir.path)
        try journal.insert(job("j1"))
        let done = { (u: Int64) in TaskDone(job: "j1", unit: UInt64(u), bytes: 1, wireBytes: 1, refetched: 0, codecs: [], chunks: []) }
        try journal.plan("j1", units: [UnitRecord(jobId: "j1", unitId: 0, path: "a", offset: 0, length: 1)],
                         totals: PlanTotals(bytes: 1, files: 1, chunks: 1), final: false, now: 5)
        // Every unit so far is done, but the scan goes on: the job runs.
        #expect(try journal.complete(done(0), now: 6)?.state == .running)
        let last = try journal.commitNow([.plan(job: "j1", units: [UnitRecord(jobId: "j1", unitId: 1, path: "b", offset: 0, length: 1)],
                                                totals: PlanTotals(bytes: 1, files: 1, chunks: 1), mark: "b", final: true, now: 7),
                                          .complete(done(1), now: 8)])
        #expect(last.ended.map(\.id) == ["j1"])
        #expect(try journal.job("j1")?.state == .succeeded && journal.job("j1")?.bytesTotal == 2)
        // A final page with no units for a job whose units are all done ends it too.
        try journal.insert(job("j2"))
        try journal.plan("j2", units: [], totals: PlanTotals(bytes: 0, files: 0, chunks: 0), final: false, now: 5)
        #expect(try journal.job("j2")?.state == .running)
        try journal.plan("j2", units: [], totals: PlanTotals(bytes: 0, files: 0, chunks: 0), final: true, now: 6)
        #expect(try journal.job("j2")?.state == .succeeded)
    }

    @Test func resendingAFileTakesItsDoneRangesBack() throws {
        let dir = try StateDirectory()
        let journal = try Journal(path: dir.path)
        try journal.insert(job("j1"))
        let page = Planner(unitBytes: 1 << 20, chunkSize: 1 << 20).plan(
            entries: [FileEntry(path: "big", kind: .file, size: 3 << 20, mode: 0o644, mtimeSeconds: 1, mtimeNanoseconds: 0)],
            sourcePath: "ds", destinationPath: "in/ds", job: "j1")
        try journal.plan("j1", units: page.units, totals: page.totals, now: 5)
        #expect(page.units.map(\.kind) == [.finish])
        #expect(try journal.job("j1")?.unitsTotal == 4)
        // Ranges are made as pages reach them: two now, the third later.
        let made = try journal.commitNow([], refills: [SchedulingPolicy.Refill(job: "j1", kind: .work(after: nil), limit: 3)])
        #expect(made.pages[0].units.map(\.kind) == [.finish, .range, .range])
        #expect(made.pages[0].units.map(\.unitId) == [0, 1, 2])
        #expect(made.pages[0].units[0].planned.waitsFor == 3)
        let rest = try journal.commitNow([], refills: [SchedulingPolicy.Refill(job: "j1", kind: .work(after: 2), limit: 3)])
        #expect(rest.pages[0].units.map(\.unitId) == [3] && rest.pages[0].units[0].files[0].offset == 2 << 20)
        #expect(try journal.commitNow([], refills: [SchedulingPolicy.Refill(job: "j1", kind: .work(after: 3), limit: 3)]).pages[0].units.isEmpty)
        let chunk = ChunkReport(file: 0, offset: 0, length: 1 << 20, id: [UInt8](repeating: 3, count: 32))
        // The destination held the second range's bytes: they count as dedup until the resend.
        for u in 1...2 {
            _ = try journal.complete(TaskDone(job: "j1", unit: UInt64(u), bytes: 1 << 20, wireBytes: 1 << 20, refetched: 0, codecs: [], chunks: [chunk],
                                              dedupBytes: u == 2 ? 1 << 20 : 0), now: 6)
        }
        // The third found the file changed at the source and sent none of its bytes (left out):
        // the resend takes back what each range counted, not its length (which made a job's bytes
        // done negative).
        _ = try journal.complete(TaskDone(job: "j1", unit: 3, bytes: 0, wireBytes: 0, refetched: 0, codecs: [], chunks: [],
                                          leftOut: [0], firstLeftOut: "'big' changed during the transfer"), now: 6)
        #expect(try journal.job("j1")?.dedupBytes == 1 << 20 && journal.job("j1")?.bytesDone == 2 << 20)
        #expect(try journal.units(job: "j1").first?.planned.waitsFor == 0)
        let outcome = try journal.commitNow([.resend(job: "j1", finish: 0)])
        #expect(outcome.resent[UnitKey(job: "j1", unit: 0)]?.map(\.unitId) == [1, 2, 3])
        let j = try #require(try journal.job("j1"))
        #expect(j.bytesDone == 0 && j.chunksDone == 0 && j.unitsDone == 0 && j.dedupBytes == 0, "bytes \(j.bytesDone), dedup \(j.dedupBytes)")
        #expect(try journal.units(job: "j1", state: .pending).map(\.unitId) == [0, 1, 2, 3])
        #expect(try journal.units(job: "j1").first?.planned.waitsFor == 3)
    }

    /// Each file a unit left out is named with the agent's reason (protocol 23); a report that
    /// gives the first's alone (an agent before 23) names the others by path.
    @Test func filesLeftOutAreNamedWithEachReason() async throws {
        let dir = try StateDirectory()
        let journal = try Journal(path: dir.path)
        try journal.insert(job("j1"))
        let entries = (0..<6).map { FileEntry(path: "f\($0)", kind: .file, size: 10, mode: 0o644, mtimeSeconds: 1, mtimeNanoseconds: 0) }
        let page = Planner(unitBytes: 1 << 20, chunkSize: 1 << 20, maxFilesPerUnit: 3).plan(entries: entries, sourcePath: "ds", destinationPath: "in/ds", job: "j1")
        try journal.plan("j1", units: page.units, totals: page.totals, now: 5)
        let units = try journal.commitNow([], refills: [SchedulingPolicy.Refill(job: "j1", kind: .work(after: nil), limit: 8)]).pages[0].units
        #expect(units.count == 2 && units.allSatisfy { $0.files.count == 3 })
        _ = try journal.complete(TaskDone(job: "j1", unit: UInt64(units[0].unitId), bytes: 10, wireBytes: 10, refetched: 0, codecs: [], chunks: [],
                                          leftOut: [0, 2], firstLeftOut: "'ds/f0' vanished", laterLeftOut: ["'ds/f2' was deleted"]), now: 6)
        _ = try journal.complete(TaskDone(job: "j1", unit: UInt64(units[1].unitId), bytes: 10, wireBytes: 10, refetched: 0, codecs: [], chunks: [],
                                          leftOut: [1, 2], firstLeftOut: "'ds/f4' vanished"), now: 6)
        let named = try await journal.untransferable(job: "j1", limit: 10, after: nil)
        #expect(named.entries.count == 4)
        #expect(Array(named.entries.prefix(3)) == ["'ds/f0' vanished", "'ds/f2' was deleted", "'ds/f4' vanished"], "\(named.entries)")
        #expect(named.entries[3].hasPrefix("'ds/f5' was left out at the source during the transfer"), "\(named.entries)")
        #expect(try journal.job("j1")?.untransferableEntries == 4)
    }

    /// Ranges done are counted per file once per batch; a resend in the same batch sees the
    /// completions before it, and a completion after it counts again.
    @Test func aBatchCountsItsRangesDoneAroundAResend() throws {
        let dir = try StateDirectory()
        let journal = try largeFiles(2, of: 3 << 20, in: dir)
        let page = try journal.commitNow([], refills: [SchedulingPolicy.Refill(job: "j1", kind: .work(after: nil), limit: 8, spread: 2)]).pages[0].units
        let ranges = page.filter { $0.kind == .range }
        #expect(ranges.count == 6)
        let chunk = ChunkReport(file: 0, offset: 0, length: 1 << 20, id: [UInt8](repeating: 3, count: 32))
        func done(_ r: UnitRecord) -> JournalChange {
            .complete(TaskDone(job: "j1", unit: UInt64(r.unitId), bytes: 1 << 20, wireBytes: 1 << 20, refetched: 0, codecs: [], chunks: [chunk]), now: 6, unit: r)
        }
        let first = ranges.filter { $0.finishUnit == 0 }, second = ranges.filter { $0.finishUnit == 1 }
        // Two ranges of the first file done, then the file sent again, then one of them done again;
        // the second file's three ranges done.
        _ = try journal.commitNow([done(first[0]), done(first[1]), .resend(job: "j1", finish: 0), done(first[0])] + second.map(done))
        let finishes = try journal.units(job: "j1").filter { $0.kind == .finish }
        #expect(finishes.map(\.rangesDone) == [1, 3])
        #expect(finishes.map(\.planned.waitsFor) == [2, 0])
    }

    /// A journal with job `j1` planned: `count` files of `size` bytes, in ranges of 1 MiB.
    func largeFiles(_ count: Int, of size: UInt64, in dir: StateDirectory) throws -> Journal {
        let journal = try Journal(path: dir.path)
        try journal.insert(job("j1"))
        let entries = (0..<count).map { FileEntry(path: "f\($0)", kind: .file, size: size, mode: 0o644, mtimeSeconds: 1, mtimeNanoseconds: 0) }
        let page = Planner(unitBytes: 1 << 20, chunkSize: 1 << 20).plan(entries: entries, sourcePath: "ds", destinationPath: "in/ds", job: "j1")
        try journal.plan("j1", units: page.units, totals: page.totals, now: 5)
        return journal
    }

    /// A page takes ranges from as many files as it is asked to spread over (one per destination
    /// agent, each file staying with one), round robin, oldest files first.
    @Test func aPageSpreadsItsRangesOverTheFilesItIsAskedFor() throws {
        let dir = try StateDirectory()
        let journal = try largeFiles(12, of: 4 << 20, in: dir)
        // The 12 finish units come first, then 10 ranges spread over 10 files.
        let wide = try journal.commitNow([], refills: [SchedulingPolicy.Refill(job: "j1", kind: .work(after: nil), limit: 22, spread: 10)]).pages[0].units
        let ranges = wide.filter { $0.kind == .range }
        #expect(ranges.count == 10)
        #expect(Set(ranges.map(\.finishUnit)).count == 10, "\(ranges.map(\.finishUnit))")
        // Spread over 2: the next ranges alternate between the two oldest files with ranges to make.
        let narrow = try journal.commitNow([], refills: [SchedulingPolicy.Refill(job: "j1", kind: .work(after: UInt64(wide.last!.unitId)), limit: 6, spread: 2)])
            .pages[0].units
        #expect(narrow.count == 6 && Set(narrow.map(\.finishUnit)).count == 2)
        #expect(narrow.map(\.files[0].offset) == [1, 1, 2, 2, 3, 3].map { UInt64($0) << 20 })
    }

    /// A unit's files are stored in their wire form; rows written as JSON text by earlier versions
    /// still read, and a damaged value is an error, not an empty unit.
    @Test func aUnitsFilesReadBackWhateverFormTheyWereStoredIn() throws {
        let dir = try StateDirectory()
        let journal = try Journal(path: dir.path)
        try journal.insert(job("j1"))
        let file = TaskFile(sourcePath: "ds/é b", entry: FileEntry(path: "in/ds/é b", kind: .file, size: 10, mode: 0o640, mtimeSeconds: 7, mtimeNanoseconds: 9),
                            offset: 2, length: 8, finish: true)
        try journal.plan("j1", units: [UnitRecord(jobId: "j1", unitId: 0, kind: .files, files: [file]),
                                      UnitRecord(jobId: "j1", unitId: 1, kind: .files, files: [file, file])],
                         totals: PlanTotals(bytes: 20, files: 2, chunks: 2), now: 5)
        #expect(try journal.units(job: "j1").map(\.files) == [[file], [file, file]])
        let db = try DatabaseQueue(path: dir.path)
        #expect(try db.read { try String.fetchOne($0, sql: "SELECT typeof(files) FROM units WHERE unitId = 0") } == "blob")
        let json = String(decoding: try JSONEncoder().encode([file]), as: UTF8.self)
        try db.write { try $0.execute(sql: "UPDATE units SET files = ? WHERE unitId = 1", arguments: [json]) }
        #expect(try journal.units(job: "j1").map(\.files) == [[file], [file]])
        try db.write { try $0.execute(sql: "UPDATE units SET files = ? WHERE unitId = 1", arguments: [Data([0, 0, 0, 9, 1])]) }
        #expect(throws: JournalError.self) { try journal.units(job: "j1") }
    }

    /// The queries the scheduler runs at every page and report search an index; none scans the
    /// units table (a petabyte job has millions of rows).
    @Test func theSchedulersQueriesSearchAnIndex() throws {
        let dir = try StateDirectory()
        _ = try Journal(path: dir.path)
        let db = try DatabaseQueue(path: dir.path)
        let queries = [
            "SELECT * FROM units WHERE jobId = 'j' AND state = 'pending' AND unitId > 5 AND kind != 'directories' ORDER BY unitId LIMIT 512",
            "SELECT * FROM units WHERE jobId = 'j' AND kind = 'directories' AND state = 'pending' AND (depth < 3 OR (depth = 3 AND unitId < 9)) ORDER BY depth DESC, unitId DESC LIMIT 512",
            "SELECT * FROM units WHERE jobId = 'j' AND kind = 'directories' AND state = 'pending' ORDER BY depth DESC, unitId DESC LIMIT 512",
            "SELECT * FROM units WHERE jobId = 'j' AND kind = 'finish' AND rangesMade < rangesTotal ORDER BY unitId LIMIT 4",
            "UPDATE units SET state = 'done', manifest = x'00', lastReport = 1 WHERE jobId = 'j' AND unitId = 3 AND state != 'done' RETURNING kind",
            "UPDATE units SET state = 'assigned' WHERE jobId = 'j' AND unitId = 3 AND state = 'pending'",
            "SELECT * FROM units WHERE jobId = 'j' AND finishUnit = 2 AND kind = 'range' AND state = 'done' ORDER BY unitId",
            "SELECT * FROM units WHERE jobId = 'j' AND state = 'done' AND unitId >= 0 ORDER BY unitId LIMIT 100",
            // A batch's counters of many units, added at once.
            "UPDATE units SET rangesDone = rangesDone + 1 WHERE jobId = 'j' AND unitId IN (SELECT value FROM json_each('[1,5,9]'))",
            "SELECT unitId, rangesMade, rangesTotal, rangeBytes FROM units WHERE jobId = 'j' AND kind = 'finish' AND rangesMade < rangesTotal ORDER BY unitId LIMIT 4",
        ]
        for sql in queries {
            let plan = try db.read { try Row.fetchAll($0, sql: "EXPLAIN QUERY PLAN " + sql) }.map { $0["detail"] as String }
            #expect(!plan.contains { $0.hasPrefix("SCAN units") }, "\(sql): \(plan)")
            #expect(!plan.contains { $0.contains("TEMP B-TREE") }, "\(sql): \(plan)")
        }
    }

    @Test func rangesOfManyLargeFilesAreAllMade() throws {
        let dir = try StateDirectory()
        // Nine files of three ranges each: more files than are made at once.
        let journal = try largeFiles(9, of: 3 << 20, in: dir)
        // A restarted coordinator counts the ranges not made yet as open work.
        #expect(try journal.openWork(job: "j1") == 9 + 27)
        var after: UInt64?
        var ranges = 0
        while true {
            let got = try journal.commitNow([], refills: [SchedulingPolicy.Refill(job: "j1", kind: .work(after: after), limit: 5)]).pages[0].units
            ranges += got.count { $0.kind == .range }
            if got.count < 5 { break }
            after = UInt64(got.last!.unitId)
        }
        #expect(ranges == 27)
    }

    @Test func jobsComeInPagesAndOldOnesArePruned() async throws {
        let dir = try StateDirectory()
        let journal = try Journal(path: dir.path)
        for i in 0..<7 { try journal.insert(job("j\(i)", createdAt: 1_700_000_000 + Int64(i % 3))) }
        var seen: [String] = []
        var after: String?
        repeat {
            let page = try journal.jobs(limit: 3, after: after)
            #expect(page.count <= 3)
            seen += page.map(\.id)
            after = page.count == 3 ? page.last?.id : nil
        } while after != nil
        #expect(seen == (try journal.jobs()).map(\.id) && Set(seen).count == 7)
        #expect(throws: JournalError.unknownJob("nope")) { try journal.jobs(limit: 3, after: "nope") }
        try journal.plan("j0", units: [UnitRecord(jobId: "j0", unitId: 0, path: "a", offset: 0, length: 1)],
                         totals: PlanTotals(bytes: 1, files: 1, chunks: 1), now: 5)
        try journal.end("j0", .cancel, now: 100)
        try journal.end("j1", .cancel, now: 300)
        #expect(try await journal.prune(endedBefore: 200) == ["j0"])
        #expect(try journal.job("j0") == nil && journal.units(job: "j0").isEmpty)
        #expect(try journal.job("j1") != nil && journal.job("j2") != nil)  // ended later; never ended
    }

    /// Pruning gives its space back to the file system (incremental auto-vacuum), and a journal
    /// made before that is converted once when it opens, keeping its jobs.
    @Test func prunedJobsSpaceGoesBackToTheFileSystem() async throws {
        let dir = try StateDirectory()
        let journal = try Journal(path: dir.path)
        #expect(try journal.pragma("auto_vacuum") == 2)  // INCREMENTAL
        let name = String(repeating: "n", count: 200)
        for j in 0..<20 {
            try journal.insert(job("j\(j)"))
            let units = (0..<1_000).map { UnitRecord(jobId: "j\(j)", unitId: Int64($0), path: "d/\(name)\($0)", offset: 0, length: 1) }
            try journal.plan("j\(j)", units: units, totals: PlanTotals(bytes: 1_000, files: 1_000, chunks: 1_000), now: 5)
            try journal.end("j\(j)", .cancel, now: j == 0 ? 500 : 100)
        }
        let full = journal.sizeOnDisk()
        #expect(full > 4_000_000)
        #expect(try await journal.prune(endedBefore: 200).count == 19)
        let pages = try await journal.reclaim()
        #expect(pages > 500)
        let after = journal.sizeOnDisk()
        #expect(after < full / 4, "\(after) bytes on disk after pruning 19 of 20 jobs, \(full) before")
        #expect(try journal.units(job: "j0").count == 1_000)
        #expect(try await journal.reclaim() == 0)
    }

    @Test func aJournalWithoutAutoVacuumIsConvertedWhenItOpens() throws {
        let dir = try StateDirectory()
        do {
            let journal = try Journal(path: dir.path)
            try journal.insert(job("kept"))
        }
        do {
            var unchecked = Configuration()
        unchecked.foreignKeysEnabled = false  // as the journal's own connections
        let raw = try DatabaseQueue(path: dir.path, configuration: unchecked)
            try raw.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA auto_vacuum = NONE; VACUUM") }
            #expect(try raw.read { db in try Int.fetchOne(db, sql: "PRAGMA auto_vacuum") } == 0)
        }
        let journal = try Journal(path: dir.path)
        #expect(try journal.pragma("auto_vacuum") == 2)
        #expect(try journal.job("kept") != nil)
    }

    /// A prune removes the jobs' rows first, then their units in steps: a `resume` after that
    /// finds no job (before, the units went first, and a resume in between ran a job with part of
    /// its units gone, for ever). A prune cut short before the units went is finished by the next.
    @Test func aPruneRemovesTheJobFirstAndAPruneCutShortIsFinishedByTheNext() async throws {
        let dir = try StateDirectory()
        let journal = try Journal(path: dir.path)
        try journal.insert(job("j0"))
        try journal.plan("j0", units: (0..<25).map { UnitRecord(jobId: "j0", unitId: Int64($0), path: "f\($0)", offset: 0, length: 1) },
                         totals: PlanTotals(bytes: 25, files: 25, chunks: 25), now: 5)
        try journal.end("j0", .cancel, now: 100)
        #expect(try await journal.prune(endedBefore: 200) == ["j0"])
        #expect(throws: (any Error).self) { try journal.resume("j0") }
        #expect(try journal.units(job: "j0").isEmpty)
        // As a crash leaves it: the job's row gone, its id in `pruning`, its units still there.
        var unchecked = Configuration()
        unchecked.foreignKeysEnabled = false  // as the journal's own connections
        let raw = try DatabaseQueue(path: dir.path, configuration: unchecked)
        try await raw.write { db in
            try db.execute(sql: "INSERT INTO pruning (jobId) VALUES ('jx')")
            for u in 0..<3 { try db.execute(sql: "INSERT INTO units (jobId, unitId, path, offset, length, state) VALUES ('jx', ?, 'p', 0, 1, 'pending')", arguments: [u]) }
        }
        #expect(try journal.units(job: "jx").count == 3)
        #expect(try await journal.prune(endedBefore: 200).isEmpty)
        #expect(try journal.units(job: "jx").isEmpty)
        #expect(try await raw.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM pruning") } == 0)
    }

    /// Every entry a job could not transfer is named, in the order found, up to `namedLimit`;
    /// the count goes on past it, and a prune takes the names with the job.
    @Test func entriesNotTransferredAreNamedUpToTheLimitAndPrunedWithTheJob() async throws {
        let dir = try StateDirectory()
        let journal = try Journal(path: dir.path)
        try journal.insert(job("j0"))
        let first = (0..<Int(Journal.namedLimit) - 2).map { "'ds/f\($0)' is not a regular file" }
        _ = try journal.commitNow([.untransferable(job: "j0", entries: first)])
        _ = try journal.commitNow([.untransferable(job: "j0", entries: ["a", "b", "c", "d"])])
        #expect(try journal.job("j0")?.untransferableEntries == Journal.namedLimit + 2)
        #expect(try journal.job("j0")?.firstUntransferable == first[0])
        var named: [String] = []
        var after: Int64?
        repeat {
            let page = try await journal.untransferable(job: "j0", limit: 3_000, after: after)
            #expect(page.named == Journal.namedLimit)
            named += page.entries
            after = page.next
        } while after != nil
        #expect(named == first + ["a", "b"])
        try journal.end("j0", .cancel, now: 100)
        #expect(try await journal.prune(endedBefore: 200) == ["j0"])
        #expect(try await journal.untransferable(job: "j0", limit: 10, after: nil).named == 0)
    }

    /// A job's elapsed time leaves out the time it stood failed before a resume (its rate was
    /// its bytes over the night it stood failed too).
    @Test func theTimeAJobStoodEndedIsNotTimeItRan() async throws {
        let dir = try StateDirectory()
        let journal = try Journal(path: dir.path)
        try journal.insert(job("j0"))
        try journal.plan("j0", units: [UnitRecord(jobId: "j0", unitId: 0, path: "f", offset: 0, length: 1)],
                         totals: PlanTotals(bytes: 1, files: 1, chunks: 1), now: 10)
        try journal.end("j0", .fail("disk full"), now: 20)
        _ = try journal.resume("j0", now: 3_620)
        try journal.end("j0", .cancel, now: 3_630)
        let record = try #require(try journal.job("j0"))
        #expect(record.idleSeconds == 3_600)
        #expect(JobStatus(record).elapsed() == 20)
    }
}
