@testable import BargeAgent
import BargeBench
import BargeWire
import Foundation
import NIOConcurrencyHelpers
import Testing

/// A unit assigned again while its run is ending: the new assignment found the unit still
/// running, so it started nothing; the run's report must answer it too, or the coordinator waits
/// for it forever (the job never reached its directories).
struct ReassignmentTests {
    /// Opens once, for every waiter.
    final class Gate: Sendable {
        private let state = NIOLockedValueBox<(open: Bool, waiting: [CheckedContinuation<Void, Never>])>((false, []))
        func wait() async {
            await withCheckedContinuation { c in
                let now = state.withLockedValue { s -> Bool in
                    if s.open { return true }
                    s.waiting.append(c)
                    return false
                }
                if now { c.resume() }
            }
        }
        func open() {
            let waiting = state.withLockedValue { s -> [CheckedContinuation<Void, Never>] in
                s.open = true
                defer { s.waiting = [] }
                return s.waiting
            }
            waiting.forEach { $0.resume() }
        }
    }

    @Test func aUnitAssignedAgainAsItsRunEndsAnswersTheNewestAssignmentToo() async throws {
        let roots = try Roots()
        let bytes = SampleData.random(bytes: 5000, seed: 21)
        let url = URL(fileURLWithPath: roots.source + "/f.bin")
        try Data(bytes).write(to: url)
        var st = stat()
        #expect(lstat(url.path, &st) == 0)
        let listener = try await DataPlaneListener.bind(host: "127.0.0.1", port: 0, root: roots.destination, token: DedupTests.token, name: "b1")
        let serving = Task { try await listener.run() }
        defer { serving.cancel() }
        let gate = Gate()
        var settings = AgentWork.Settings(root: roots.source, name: "a1", token: DedupTests.token)
        settings.afterReport = { await gate.wait() }
        let work = AgentWork(settings: settings, sources: SourcePool { [root = roots.source] in ChunkSource(root: root) })
        let (stream, sink) = AsyncStream<Message>.makeStream()
        work.outbox.attach(sink, acknowledged: false)
        let entry = FileEntry(path: "out/f.bin", kind: .file, size: UInt64(bytes.count), mode: 0o644,
                              mtimeSeconds: Int64(st.st_mtim.tv_sec), mtimeNanoseconds: Int32(st.st_mtim.tv_nsec))
        let first = TaskAssign(job: "j", unit: 3, destination: DataPeer(name: "b1", host: "127.0.0.1", port: UInt16(listener.localAddress!.port!)),
                               codec: "none", chunkSize: 1 << 20, files: [TaskFile(sourcePath: "f.bin", entry: entry, length: UInt64(bytes.count), finish: true)],
                               assignment: 1)
        #expect(work.handle(.taskAssign(first)))
        let reports = NIOLockedValueBox<[TaskDone]>([])
        let reading = Task {
            for await m in stream { if case .taskDone(let d) = m { reports.withLockedValue { $0.append(d) } } }
        }
        defer { reading.cancel() }
        func reported(_ count: Int) async throws -> [TaskDone] {
            for _ in 0..<200 where reports.withLockedValue({ $0.count }) < count { try await Task.sleep(for: .milliseconds(50)) }
            return reports.withLockedValue { $0 }
        }
        #expect(try await reported(1).map(\.assignment) == [1])
        // The coordinator assigns the unit again (it had given it up while this agent was away):
        // the run has made its report but not yet left.
        var again = first
        again.assignment = 2
        #expect(work.handle(.taskAssign(again)))
        #expect(work.holding.units.map(\.assignment) == [2], "the running unit answers the newest assignment")
        gate.open()
        let answered = try await reported(2)
        #expect(answered.map(\.assignment) == [1, 2], "assignment 2 was never answered: \(answered.map(\.assignment))")
        #expect(answered.allSatisfy { $0.unit == 3 && $0.bytes == UInt64(bytes.count) })
        #expect(work.inFlight == 0)
        #expect(try Data(contentsOf: URL(fileURLWithPath: roots.destination + "/out/f.bin")) == Data(bytes))
    }
}
