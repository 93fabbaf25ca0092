import BargeWire
import Foundation
import Testing

@testable import BargeCoordinator

/// Done units' manifests live in one append-only file per job beside the journal (`ManifestLog`).
struct ManifestLogTests {
    typealias StateDirectory = JournalTests.StateDirectory

    func job(_ id: String, finishedAt: Double? = nil) -> JobRecord {
        JobRecord(id: id, sourceSite: "a", sourcePath: "ds", destinationSite: "b", destinationPath: "in/ds", createdAt: 1_700_000_000)
    }

    /// A job of `n` one-file units, planned.
    func planned(_ journal: Journal, _ id: String, units n: Int) throws {
        try journal.insert(job(id))
        let units = (0..<n).map { i in
            UnitRecord(jobId: id, unitId: Int64(i), kind: .files,
                       files: [TaskFile(sourcePath: "ds/f\(i)", entry: FileEntry(path: "in/ds/f\(i)", kind: .file, size: 2, mode: 0o600,
                                                                                   mtimeSeconds: 1, mtimeNanoseconds: 0),
                                        length: 2, finish: true)])
        }
        try journal.plan(id, units: units, totals: PlanTotals(bytes: Int64(2 * n), files: Int64(n), chunks: Int64(n)), now: 1)
    }

    func report(_ job: String, _ unit: UInt64, chunks: Int = 2, fill: UInt8 = 7) -> TaskDone {
        TaskDone(job: job, unit: unit, bytes: 2, wireBytes: 2, refetched: 0, codecs: [],
                 chunks: (0..<chunks).map { ChunkReport(file: 0, offset: UInt64($0), length: 1, id: [UInt8](repeating: fill &+ UInt8($0), count: 32)) })
    }

    @Test func aCompletionsManifestIsInTheJobsFileAndReadsBack() throws {
        let dir = try StateDirectory()
        let journal = try Journal(path: dir.path)
        try planned(journal, "j1", units: 3)
        _ = try journal.commitNow([.complete(report("j1", 0), now: 2), .complete(report("j1", 1, fill: 9), now: 2)])
        // Two manifests of 2 chunks, 48 bytes each, one after the other in the job's file.
        let file = dir.url.appendingPathComponent(Journal.fileName + ".manifests/j1").path
        #expect((try FileManager.default.attributesOfItem(atPath: file)[.size] as? NSNumber)?.intValue == 2 * 2 * UnitManifest.entrySize)
        let done = try journal.doneUnits(job: "j1", from: 0, limit: 10)
        #expect(done.map(\.unitId) == [0, 1])
        #expect(done.map { UnitManifest.decode($0.manifest ?? Data()) } == [report("j1", 0).chunks, report("j1", 1, fill: 9).chunks])
        #expect(try journal.job("j1")?.chunksDone == 4)
        // A unit with no chunks keeps its empty manifest in its row (and writes nothing to the file).
        _ = try journal.commitNow([.complete(report("j1", 2, chunks: 0), now: 3)])
        #expect(try journal.units(job: "j1")[2].manifest == Data())
        #expect((try FileManager.default.attributesOfItem(atPath: file)[.size] as? NSNumber)?.intValue == 4 * UnitManifest.entrySize)
        #expect(try journal.job("j1")?.state == .succeeded)
    }

    @Test func bytesNoRowPointsAtAreSkippedAndTheJournalReopens() throws {
        let dir = try StateDirectory()
        let journal = try Journal(path: dir.path)
        try planned(journal, "j1", units: 2)
        _ = try journal.commitNow([.complete(report("j1", 0), now: 2)])
        // What a batch leaves when the coordinator dies after appending and before committing.
        let file = dir.url.appendingPathComponent(Journal.fileName + ".manifests/j1")
        let handle = try FileHandle(forWritingTo: file)
        try handle.seekToEnd()
        try handle.write(contentsOf: Data(repeating: 0xEE, count: 1000))
        try handle.close()
        let reopened = try Journal(path: dir.path)
        _ = try reopened.commitNow([.complete(report("j1", 1, fill: 3), now: 3)])
        #expect(try reopened.units(job: "j1").map { UnitManifest.decode($0.manifest ?? Data()) } == [report("j1", 0).chunks, report("j1", 1, fill: 3).chunks])
        let (files, _) = try reopened.evidence(job: "j1") { _ in }
        #expect(files == 2)
    }

    /// The evidence reads a job's units a page at a time (`Journal.evidencePage`, kept small for
    /// the coordinator's memory): every file of every page, in unit order.
    @Test func theEvidenceCoversEveryPageInUnitOrder() throws {
        let dir = try StateDirectory()
        let journal = try Journal(path: dir.path)
        let n = 2 * Journal.evidencePage + 3
        try planned(journal, "j1", units: n)
        _ = try journal.commitNow((0..<n).map { .complete(report("j1", UInt64($0)), now: 2) })
        var paths: [String] = []
        let (files, _) = try journal.evidence(job: "j1") { paths.append($0.path) }
        #expect(files == Int64(n))
        #expect(paths == (0..<n).map { "in/ds/f\($0)" })
    }

    @Test func aManifestThatCannotBeWrittenFailsTheBatchAndLosesNothing() throws {
        let dir = try StateDirectory()
        let journal = try Journal(path: dir.path)
        try planned(journal, "j1", units: 1)
        // The job's file cannot be opened for writing (a directory in its place).
        try FileManager.default.createDirectory(at: dir.url.appendingPathComponent(Journal.fileName + ".manifests/j1"), withIntermediateDirectories: false)
        #expect {
            _ = try journal.commitNow([.complete(report("j1", 0), now: 2)])
        } throws: { error in
            (error as? JournalError).map { "\($0)" }?.contains("manifest files: cannot open") == true
        }
        // Nothing of the batch was committed: the unit is still to do, and the job still running.
        #expect(try journal.units(job: "j1")[0].state == .pending)
        #expect(try journal.job("j1")?.state == .running)
        try FileManager.default.removeItem(at: dir.url.appendingPathComponent(Journal.fileName + ".manifests/j1"))
        _ = try journal.commitNow([.complete(report("j1", 0), now: 3)])
        #expect(try journal.job("j1")?.state == .succeeded)
    }

    @Test func aCutFileIsReportedAsDamageNotReadAsFewerChunks() throws {
        let dir = try StateDirectory()
        let journal = try Journal(path: dir.path)
        try planned(journal, "j1", units: 1)
        _ = try journal.commitNow([.complete(report("j1", 0), now: 2)])
        #expect(truncate(dir.url.appendingPathComponent(Journal.fileName + ".manifests/j1").path, 50) == 0)
        #expect {
            _ = try journal.doneUnits(job: "j1", from: 0, limit: 10)
        } throws: { error in
            "\(error)".contains("the journal is damaged: manifest file") && "\(error)".contains("holds 50 of the 96 bytes")
        }
    }

    @Test func pruningAJobRemovesItsFile() async throws {
        let dir = try StateDirectory()
        let journal = try Journal(path: dir.path)
        try planned(journal, "j1", units: 1)
        try planned(journal, "../j2", units: 1)
        _ = try journal.commitNow([.complete(report("j1", 0), now: 2), .complete(report("../j2", 0), now: 2)])
        let manifests = dir.url.appendingPathComponent(Journal.fileName + ".manifests").path
        // A job id that is no plain name is spelled in hex, inside the directory.
        #expect(try FileManager.default.contentsOfDirectory(atPath: manifests).sorted() == ["j1", "x2e2e2f6a32"])
        #expect(try journal.units(job: "../j2")[0].manifest.map(UnitManifest.decode) == report("../j2", 0).chunks)
        let pruned = try await journal.prune(endedBefore: Date().timeIntervalSince1970 + 10)
        #expect(Set(pruned) == ["j1", "../j2"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: manifests).isEmpty)
    }
}
