@testable import BargeCoordinator
import BargeWire
import Foundation
import GRDB
import Logging
import Testing

/// The scheduler while its journal cannot commit (a full state disk, stood in for by a writer
/// that may only read).
struct JournalOutageTests {
    /// The messages an agent is sent, kept as they come.
    final class Inbox: @unchecked Sendable {
        private let lock = NSLock()
        private var kept: [Message] = []
        var messages: [Message] { lock.withLock { kept } }
        func add(_ m: Message) { lock.withLock { kept.append(m) } }
    }

    static func agent(_ name: String, site: String, _ scheduler: Scheduler) async -> Inbox {
        let (stream, sink) = AsyncStream.makeStream(of: Message.self)
        let inbox = Inbox()
        Task { for await m in stream { inbox.add(m) } }
        _ = await scheduler.attach(Register(name: name, site: site, root: "/r", dataHost: "127.0.0.1", dataPort: 9, maxInFlight: 2), sink: sink, version: 1)
        return inbox
    }

    /// A job whose scan ended while the journal could not commit is not scanned again when
    /// queued jobs are looked at (an agent registering, another submission): it still reads as
    /// queued in the journal. Before, each look scanned it again, and the journal took its units
    /// once per scan when it had room (20 files counted as 140; a black-box review, h2).
    @Test(.timeLimit(.minutes(1))) func aJobScannedWhileTheJournalCannotCommitIsNotScannedAgain() async throws {
        let f = try SchedulerTests.Fixture()
        let journal = await f.scheduler.journal
        let a1 = await Self.agent("a1", site: "a", f.scheduler)
        _ = await Self.agent("b1", site: "b", f.scheduler)
        _ = try await f.scheduler.submit(SubmitRequest(source: .init(site: "a", path: "s"), destination: .init(site: "b", path: "c")), id: "j-1")
        func scans(_ inbox: Inbox) -> [ScanRequest] { inbox.messages.compactMap { if case .scanRequest(let s) = $0 { s } else { nil } } }
        for _ in 0..<100 where scans(a1).isEmpty { try await Task.sleep(for: .milliseconds(20)) }
        let scan = try #require(scans(a1).first)
        try await journal.pool.writeWithoutTransaction { try $0.execute(sql: "PRAGMA query_only = 1") }
        let file = FileEntry(path: "", kind: .file, size: 3, mode: 0o644, mtimeSeconds: 1, mtimeNanoseconds: 0)
        await f.scheduler.received(.scanReply(ScanReply(request: scan.request, final: true, entries: [file])), from: "a1")
        try await Task.sleep(for: .milliseconds(300))
        #expect(try journal.job("j-1")?.state == .queued, "the journal took the plan: the test proves nothing")
        // Queued jobs are looked at again as an agent of the source site registers.
        let a2 = await Self.agent("a2", site: "a", f.scheduler)
        try await Task.sleep(for: .milliseconds(500))
        #expect(scans(a1).count == 1 && scans(a2).isEmpty, "scanned again: \(scans(a1).count - 1) times by a1, \(scans(a2).count) by a2")
        try await journal.pool.writeWithoutTransaction { try $0.execute(sql: "PRAGMA query_only = 0") }
        await f.scheduler.flush()
        #expect(try journal.job("j-1")?.unitsTotal == 1)
    }

    /// A tier job the journal cannot start (its disk full) stays queued and is tried again after
    /// `Scheduler.tierStartPause`, so it starts once the journal has room; a job that waits for it
    /// does not make it spin. Before, it was launched again at once for the job that waited (a
    /// busy loop on the actor: review of session 48), and with none waiting it stayed queued.
    @Test(.timeLimit(.minutes(1))) func aTierJobTheJournalCannotStartIsTriedAgainAfterAPause() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("barge-outage-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let lines = StallReportTests.Lines()
        let journal = try Journal(path: dir.appendingPathComponent(Journal.fileName).path)
        let scheduler = Scheduler(journal: journal, logger: Logger(label: "test") { _ in StallReportTests.Capture(into: lines) })
        for (id, operation) in [("j-1", JobOperation.demote), ("j-2", .promote)] {
            var job = JobRecord(id: id, sourceSite: "b", sourcePath: "x", destinationSite: "b", destinationPath: "x", createdAt: 1)
            job.operation = operation
            job.codec = "archive"
            try journal.insert(job)
        }
        try await journal.pool.writeWithoutTransaction { try $0.execute(sql: "PRAGMA query_only = 1") }
        await scheduler.startQueuedJobs()
        try await Task.sleep(for: .seconds(2))
        let tries = lines.all.filter { $0.contains("j-1: cannot start") }.count
        #expect(tries == 1, "\(tries) tries in 2 s")
        #expect(try journal.job("j-1")?.state == .queued && journal.job("j-2")?.state == .queued)
        try await journal.pool.writeWithoutTransaction { try $0.execute(sql: "PRAGMA query_only = 0") }
        for _ in 0..<100 where try journal.job("j-1")?.state == .queued { try await Task.sleep(for: .milliseconds(100)) }
        #expect(try journal.job("j-1")?.state != .queued, "not started once the journal had room")
    }
}
