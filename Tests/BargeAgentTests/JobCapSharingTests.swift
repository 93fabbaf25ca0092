import BargeAgent
import BargeBench
import BargeWire
import Foundation
import Testing

/// Jobs sending to one destination share its connections (the agent's `StreamPool`): one job's
/// cap paces that job alone. A chunk waited for its job's tokens while holding a connection's
/// write slot, and held every other job there to that cap (a black-box review: an uncapped job
/// beside one at 20 MB/s went at 21.5 MB/s, not 302).
struct JobCapSharingTests {
    static let token = try! ClusterToken(bytes: Array("job-cap-sharing-token-0123456".utf8))

    @Test(.timeLimit(.minutes(1))) func anUncappedJobIsNotHeldToAnotherJobsCapOnSharedConnections() async throws {
        let roots = try Roots()
        let size = 6 << 20
        for name in ["capped", "free"] {
            try Data(SampleData.random(bytes: size, seed: UInt64(name.count))).write(to: URL(fileURLWithPath: roots.source + "/" + name))
        }
        let listener = try await DataPlaneListener.bind(host: "127.0.0.1", port: 0, root: roots.destination, token: Self.token, name: "b1")
        let serving = Task { try await listener.run() }
        defer { serving.cancel() }
        let port = listener.localAddress!.port!
        // Two connections to the destination, each unit asking for two: they share them.
        let pool = StreamPool(perDestination: 2)
        defer { pool.closeAll() }
        let sources = SourcePool { [root = roots.source] in ChunkSource(root: root) }
        let cap = try RateLimiter("2MB/s")
        let root = roots.source
        let unit: @Sendable (String, String, RateLimiter?) async throws -> Duration = { job, name, limit in
            var st = stat()
            #expect(stat(root + "/" + name, &st) == 0)
            let entry = FileEntry(path: name, kind: .file, size: UInt64(st.st_size), mode: 0o644,
                                  mtimeSeconds: Int64(st.st_mtim.tv_sec), mtimeNanoseconds: Int32(st.st_mtim.tv_nsec))
            let task = TaskAssign(job: job, unit: 1, destination: DataPeer(name: "b1", host: "127.0.0.1", port: UInt16(port)), codec: "none",
                                  chunkSize: 256 << 10, files: [TaskFile(sourcePath: name, entry: entry, length: entry.size, finish: true)])
            let client = DataPlaneClient(host: "127.0.0.1", port: port, token: Self.token, name: "a1")
            let started = ContinuousClock.now
            _ = try await UnitSender(task: task, client: client, sources: sources, settings: .init(streams: 2, contentDefinedAbove: nil),
                                     progress: UnitProgress(), flow: UnitFlow(jobLimit: { limit }), pool: pool).run()
            return ContinuousClock.now - started
        }
        let capped = Task { try await unit("j-capped", "capped", cap) }
        try await Task.sleep(for: .milliseconds(300))
        let free = try await unit("j-free", "free", nil)
        let slow = try await capped.value
        // 6 MiB at 2 MB/s takes about 3.1 s; alone, the free one takes a fraction of a second.
        #expect(slow > .seconds(2.5), "the cap held: \(slow)")
        #expect(free < slow / 2, "the uncapped job took \(free), the capped one \(slow)")
        for name in ["capped", "free"] {
            #expect(try Data(contentsOf: URL(fileURLWithPath: roots.destination + "/" + name)) == Data(contentsOf: URL(fileURLWithPath: roots.source + "/" + name)))
        }
    }
}
