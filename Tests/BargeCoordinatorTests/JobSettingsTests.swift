import BargeCoordinator
import BargeFlow
import BargeWire
import Foundation
import Testing

/// A job's cap is shared equally among the source agents holding its units, sent to each as
/// `job settings` before its units, and again when the set of agents or the cap changes.
struct JobSettingsTests {
    /// What the scheduler sent an agent, read as it arrives.
    final class Inbox: @unchecked Sendable {
        private let lock = NSLock()
        private var messages: [Message] = []
        init(_ stream: AsyncStream<Message>) {
            Task { for await m in stream { self.lock.withLock { self.messages.append(m) } } }
        }
        var all: [Message] { lock.withLock { messages } }
        var settings: [JobSettings] { all.compactMap { if case .jobSettings(let s) = $0 { s } else { nil } } }

        /// Waits (at most 5 s) until `ok` holds of what arrived.
        func until(_ ok: ([Message]) -> Bool) async -> Bool {
            for _ in 0..<500 {
                if ok(all) { return true }
                try? await Task.sleep(for: .milliseconds(10))
            }
            return false
        }
    }

    private func attach(_ s: Scheduler, _ name: String, site: String, version: UInt8) async -> Inbox {
        let (stream, sink) = AsyncStream.makeStream(of: Message.self)
        _ = await s.attach(Register(name: name, site: site, root: "/r", dataHost: "127.0.0.1", dataPort: 9, maxInFlight: 2), sink: sink, version: version)
        return Inbox(stream)
    }

    @Test func theCapIsSharedAmongTheSourceAgentsAndBargeSetChangesItAtOnce() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("barge-settings-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let s = Scheduler(journal: try Journal(path: dir.appendingPathComponent(Journal.fileName).path))
        let a1 = await attach(s, "a1", site: "a", version: 3)
        let a2 = await attach(s, "a2", site: "a", version: 2)  // an older agent: no job settings
        _ = await attach(s, "b1", site: "b", version: 3)
        _ = await attach(s, "b2", site: "b", version: 3)
        await #expect(throws: SchedulerError.self) {
            try await s.submit(SubmitRequest(source: .init(site: "a", path: "ds"), destination: .init(site: "b", path: "ds"), bwlimit: "100 parsecs"), id: "bad")
        }
        await #expect(throws: SchedulerError.self) {
            try await s.submit(SubmitRequest(source: .init(site: "a", path: "ds"), destination: .init(site: "b", path: "ds"), cc: "polite"), id: "bad")
        }
        let job = try await s.submit(SubmitRequest(source: .init(site: "a", path: "ds"), destination: .init(site: "b", path: "ds"),
                                                   bwlimit: "100MiB/s", cc: "scavenger"), id: "j-cap")
        #expect(job.bwlimit == "100MiB/s" && job.congestion == "scavenger")
        var scan: ScanRequest?
        #expect(await a1.until { $0.contains { if case .scanRequest(let r) = $0 { scan = r; return true }; return false } } || a2.all.contains { if case .scanRequest(let r) = $0 { scan = r; return true }; return false })
        let request = try #require(scan)
        // Four files of 256 MiB: 16 range units, two at a time per agent.
        let files = (0..<4).map { FileEntry(path: "f\($0)", kind: .file, size: 256 << 20, mode: 0o644, mtimeSeconds: 1, mtimeNanoseconds: 0) }
        await s.received(.scanReply(ScanReply(request: request.request, final: true, entries: files)), from: "a1")
        // a1 got settings before its first task, and its share ends at half: a2 holds units too.
        #expect(await a1.until { m in m.contains { if case .taskAssign = $0 { true } else { false } } })
        let first = a1.all.firstIndex { if case .jobSettings = $0 { true } else { false } }
        let task = a1.all.firstIndex { if case .taskAssign = $0 { true } else { false } }
        #expect(first != nil && first! < task!)
        #expect(await a1.until { _ in a1.settings.last?.share == 500_000 })
        #expect(a1.settings.allSatisfy { $0.bwlimit == "100MiB/s" && $0.congestion == CongestionMode.scavenger.code })
        #expect(a2.settings.isEmpty)
        #expect(await a2.until { m in m.contains { if case .taskAssign = $0 { true } else { false } } })
        // barge set: the new cap reaches a1 at once.
        let set = try await s.setLimit("j-cap", bwlimit: "Mon-Fri 08:00-18:00 10MiB/s, 18:00 off")
        #expect(set.bwlimit == "Mon-Fri 08:00-18:00 10MiB/s, 18:00 off")
        #expect(await a1.until { _ in a1.settings.last?.bwlimit == "Mon-Fri 08:00-18:00 10MiB/s, 18:00 off" })
        #expect(try await s.setLimit("j-cap", bwlimit: "off").bwlimit == nil)
        #expect(await a1.until { _ in a1.settings.last?.bwlimit == "" })
        await #expect(throws: SchedulerError.self) { try await s.setLimit("j-cap", bwlimit: "Mon-Fri 25:00 1MiB/s") }
        await #expect(throws: SchedulerError.self) { try await s.setLimit("nope", bwlimit: "1MiB/s") }
        // a2 goes down: a1 alone sends the job, with the whole cap.
        _ = try await s.setLimit("j-cap", bwlimit: "40MiB/s")
        #expect(await a1.until { _ in a1.settings.last == JobSettings(job: "j-cap", bwlimit: "40MiB/s", share: 500_000, congestion: 2) })
        try await s.agentsDown(["a2"])
        #expect(await a1.until { _ in a1.settings.last == JobSettings(job: "j-cap", bwlimit: "40MiB/s", share: 1_000_000, congestion: 2) })
        let cancelled = try await s.cancel("j-cap")
        #expect(cancelled.state == .cancelled)
        await #expect(throws: SchedulerError.self) { try await s.setLimit("j-cap", bwlimit: "1MiB/s") }
    }

    /// Without a cap a share bounds nothing: a source agent gets the job's settings once, before its
    /// first unit, and none when other sources come and go (which, over a thousand agents, was a
    /// message to each of them at every unit's start and end).
    @Test func withoutACapEachSourceIsToldOnceHoweverOftenTheSetChanges() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("barge-settings-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let s = Scheduler(journal: try Journal(path: dir.appendingPathComponent(Journal.fileName).path))
        var sources: [(String, Inbox)] = []
        for i in 0..<6 { sources.append(("a\(i)", await attach(s, "a\(i)", site: "a", version: 3))) }
        _ = await attach(s, "b1", site: "b", version: 3)
        let job = try await s.submit(SubmitRequest(source: .init(site: "a", path: "ds"), destination: .init(site: "b", path: "ds"), cc: "scavenger"), id: "j-free")
        var scan: (String, ScanRequest)?
        for _ in 0..<500 where scan == nil {
            for (name, inbox) in sources {
                for case .scanRequest(let r) in inbox.all { scan = (name, r) }
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        let (scanner, request) = try #require(scan)
        // Twenty files of 128 MiB: forty ranges and twenty finishes, two at a time per agent.
        let files = (0..<20).map { FileEntry(path: "f\($0)", kind: .file, size: 128 << 20, mode: 0o644, mtimeSeconds: 1, mtimeNanoseconds: 0) }
        await s.received(.scanReply(ScanReply(request: request.request, final: true, entries: files)), from: scanner)
        // Every source reports each of its units done as it comes, until the job ends.
        var answered = Set<String>()
        for _ in 0..<2000 {
            if try await s.status(job.id)?.state.isTerminal == true { break }
            for (name, inbox) in sources {
                for case .taskAssign(let t) in inbox.all where answered.insert("\(t.job)/\(t.unit)/\(name)").inserted {
                    let chunks = t.files.enumerated().map { i, f in ChunkReport(file: UInt32(i), offset: f.offset, length: UInt32(min(f.length, 1 << 20)), id: [UInt8](repeating: 7, count: 32)) }
                    let bytes = t.files.reduce(0) { $0 + $1.length }
                    await s.received(.taskDone(TaskDone(job: t.job, unit: t.unit, bytes: bytes, wireBytes: bytes, refetched: 0, codecs: [], chunks: chunks)), from: name)
                }
            }
            try await Task.sleep(for: .milliseconds(5))
        }
        #expect(try await s.status(job.id)?.state == .succeeded)
        var told = 0
        for (name, inbox) in sources {
            let settings = inbox.settings.filter { $0.job == job.id }
            let all = inbox.all
            guard let task = all.firstIndex(where: { if case .taskAssign = $0 { true } else { false } }) else { continue }
            told += 1
            #expect(settings.count == 1, "\(name) was told \(settings.count) times")
            #expect(settings.first?.bwlimit == "" && settings.first?.congestion == CongestionMode.scavenger.code)
            let first = all.firstIndex { if case .jobSettings = $0 { true } else { false } }
            #expect(first != nil && first! < task, "\(name) got its settings before its first unit")
        }
        #expect(told >= 2, "units went to several sources")
    }
}
