import BargeCoordinator
import BargeWire
import Foundation
import Testing

/// The journal on a real SQLite file in a temporary directory.
struct JournalTests {
    final class StateDirectory {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("barge-journal-\(UUID().uuidString)")
        var path: String { url.appendingPathComponent(Journal.fileName).path }
        init() throws { try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true) }
        deinit { try? FileManager.default.removeItem(at: url) }
    }

    func job(_ id: String) -> JobRecord {
        JobRecord(id: id, sourceSite: "a", sourcePath: "ds", destinationSite: "b", destinationPath: "in/ds", createdAt: 1_700_000_000)
    }

    @Test func walFileWithFullSynchronousCommits() throws {
        let dir = try StateDirectory()
        let journal = try Journal(path: dir.path)
        #expect(try journal.pragma("synchronous") == 2)  // FULL
        try journal.insert(job("j1"))
        #expect(FileManager.default.fileExists(atPath: dir.path + "-wal"))
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

    @Test func unitsMoveThroughTheirStatesAndReturnWhenAnAgentDies() throws {
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
        #expect(j.bytesDone == 1000 && j.chunksDone == 1 && j.chunksRefetched == 2)
        #expect(j.wireBytes == 1200)  // …but both sendings crossed the wire
        #expect(j.codecStats == [CodecUsage(codec: "lz4", chunks: 1, rawBytes: 1000, encodedBytes: 600)])
        #expect(j.state == .running)
        // b1 dies: unit 1 (held by b1) goes back; unit 2 (a2 → b2) and done unit 0 stay.
        #expect(try journal.releaseUnits(heldBy: ["b1"]) == 1)
        #expect(try journal.units(job: "j1", state: .pending).map(\.unitId) == [1, 3])
        #expect(try journal.units(job: "j1", state: .assigned).map(\.unitId) == [2])
        #expect(try journal.units(job: "j1", state: .done).map(\.unitId) == [0])
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
        #expect(try journal.chunks(job: "j1").map(\.path) == ["in/ds/f"])
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
