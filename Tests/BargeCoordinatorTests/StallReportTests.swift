@testable import BargeCoordinator
import BargeWire
import Foundation
import Logging
import NIOConcurrencyHelpers
import Testing

/// A running job that has not moved for `Scheduler.stallReport` gets a line in the log with the
/// scheduler's view of it, once per such period; progress reports that carry no new bytes do not
/// count as movement (an agent reports every interval while a unit runs, stuck or not). A job
/// that stalled with a stopped destination agent gave no line at all.
struct StallReportTests {
    /// Log lines, kept for the test.
    final class Lines: @unchecked Sendable {
        let lines = NIOLockedValueBox<[String]>([])
        var all: [String] { lines.withLockedValue { $0 } }
    }

    struct Capture: LogHandler {
        let into: Lines
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(level: Logger.Level, message: Logger.Message, metadata: Logger.Metadata?, source: String, file: String, function: String, line: UInt) {
            into.lines.withLockedValue { $0.append("\(message)") }
        }
    }

    @Test func aJobThatHasNotMovedIsLoggedWithTheSchedulersView() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("barge-stall-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let clock = SchedulerTests.TestClock()
        let lines = Lines()
        let scheduler = Scheduler(journal: try Journal(path: dir.appendingPathComponent(Journal.fileName).path),
                                  logger: Logger(label: "test") { _ in Capture(into: lines) }, now: { [clock] in clock.now })
        func agent(_ name: String, site: String) async -> AsyncStream<Message>.AsyncIterator {
            let (stream, sink) = AsyncStream.makeStream(of: Message.self)
            _ = await scheduler.attach(Register(name: name, site: site, root: "/r", dataHost: "127.0.0.1", dataPort: 9, maxInFlight: 2),
                                       sink: sink, version: WireVersion.assignments)
            return stream.makeAsyncIterator()
        }
        var a1 = await agent("a1", site: "a")
        _ = await agent("b1", site: "b")
        let job = try await scheduler.submit(SubmitRequest(source: .init(site: "a", path: "ds"), destination: .init(site: "b", path: "ds")), id: "j-1")
        guard case .scanRequest(let scan) = await a1.next() else { Issue.record("no scan"); return }
        let entries = [FileEntry(path: "", kind: .directory, mode: 0o755, mtimeSeconds: 1, mtimeNanoseconds: 0),
                       FileEntry(path: "f", kind: .file, size: 10, mode: 0o644, mtimeSeconds: 1, mtimeNanoseconds: 0)]
        await scheduler.received(.scanReply(ScanReply(request: scan.request, final: true, entries: entries)), from: "a1")
        await scheduler.flush()
        guard case .taskAssign(let task) = await SchedulerTests.task(&a1) else { Issue.record("no task"); return }
        func stalls() -> [String] { lines.all.filter { $0.contains("nothing has moved") } }

        // Progress that moves keeps it quiet; the same figures again do not.
        clock.advance(100)
        await scheduler.received(.taskProgress(TaskProgress(job: job.id, unit: task.unit, bytesDone: 5, wireBytes: 5)), from: "a1")
        clock.advance(100)
        await scheduler.tick()
        #expect(stalls().isEmpty, "\(stalls())")
        await scheduler.received(.taskProgress(TaskProgress(job: job.id, unit: task.unit, bytesDone: 5, wireBytes: 5)), from: "a1")
        clock.advance(30)
        await scheduler.tick()
        let said = try #require(stalls().first, "\(lines.all)")
        #expect(said.contains("job j-1: nothing has moved for 130 s") && said.contains("held [\(task.unit)]"), "\(said)")
        // Once per period.
        clock.advance(60)
        await scheduler.tick()
        #expect(stalls().count == 1)
        clock.advance(61)
        await scheduler.tick()
        #expect(stalls().count == 2)
    }
}
