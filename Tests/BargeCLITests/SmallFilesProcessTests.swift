import Foundation
import Testing

/// Many small files through real `barge` processes: sent in batches (`file batch`), with their
/// modes and mtimes, and nothing left under a partial name.
@Suite(.serialized)
struct SmallFilesProcessTests {
    let cluster: TestCluster

    init() throws {
        cluster = try TestCluster(roots: ["root-a", "root-b"])
    }

    /// `count` files of `sizes` bytes in directories of `perDirectory`, with varied modes and
    /// mtimes (to the nanosecond).
    func makeTree(_ relative: String, count: Int, perDirectory: Int, sizes: ClosedRange<Int>) throws -> URL {
        let root = cluster.dir.url.appendingPathComponent("root-a/" + relative)
        var rng = SystemRandomNumberGenerator()
        let pool = (0..<(64 << 10)).map { _ in UInt8.random(in: 0...255, using: &rng) }
        let modes = [0o600, 0o640, 0o644, 0o755]
        for i in 0..<count {
            let dir = root.appendingPathComponent(String(format: "d%03d", i / perDirectory))
            if i % perDirectory == 0 { try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true) }
            let path = dir.appendingPathComponent(String(format: "f%05d", i)).path
            let size = Int.random(in: sizes, using: &rng)
            let start = Int.random(in: 0..<(pool.count - size), using: &rng)
            try Data(pool[start..<(start + size)]).write(to: URL(fileURLWithPath: path))
            chmod(path, mode_t(modes[i % modes.count]))
            TreeSupport.setMtime(path, seconds: 1_600_000_000 + i, nanoseconds: (i * 7919) % 1_000_000_000)
        }
        // Written back now, so that the write-back does not stall the agents' heartbeats later.
        sync()
        return root
    }

    @Test func fiveThousandSmallFilesArriveIdenticalWithModesAndMtimes() async throws {
        let source = try makeTree("small", count: 5_000, perDirectory: 100, sizes: 1...32_000)
        // A name of 255 bytes (NAME_MAX): its partial copy must have a shorter one.
        let long = source.appendingPathComponent("d000/" + String(repeating: "L", count: 251) + ".dat")
        try Data("long name".utf8).write(to: long)
        let (coordinator, agents, http) = try await cluster.startCoordinator(extra: ["--agent-timeout", "10"])
        let a1 = try cluster.startAgent("a1", site: "a", root: "root-a", coordinator: agents)
        // Two destination agents sharing one root, as nodes share a parallel file system.
        let b1 = try cluster.startAgent("b1", site: "b", root: "root-b", coordinator: agents)
        let b2 = try cluster.startAgent("b2", site: "b", root: "root-b", coordinator: agents)
        try #require(try await cluster.agentsRegister(3, http))
        let r = try cluster.cli(["submit", "a:/small", "b:copy", "--wait", "--json"], http: http)
        let output = "\(r.stderr)\n\(coordinator.output)\n\(a1.output)\n\(b1.output)\n\(b2.output)"
        #expect(r.status == 0, "\(output)")
        let destination = cluster.dir.url.appendingPathComponent("root-b/copy")
        #expect(try TreeSupport.snapshot(destination) == TreeSupport.snapshot(source))
        #expect(TreeSupport.partials(destination).isEmpty, "left behind: \(TreeSupport.partials(destination).prefix(5))")
    }

    /// A rolling update: the destination agent speaks protocol version 6 (no `file batch`), so the
    /// source sends each small file as its chunk and finishes them with `files done`, as before.
    @Test func smallFilesReachAnOlderDestinationFileByFile() async throws {
        let source = try makeTree("older", count: 600, perDirectory: 100, sizes: 0...20_000)
        // Clear text, as during an update from 7: the current nodes run with --insecure-plaintext.
        let (coordinator, agents, http) = try await cluster.startCoordinator(extra: ["--insecure-plaintext"])
        let a1 = try cluster.startAgent("a1", site: "a", root: "root-a", coordinator: agents, arguments: ["--insecure-plaintext"])
        let b1 = try cluster.startAgent("b1", site: "b", root: "root-b", coordinator: agents, environment: ["BARGE_WIRE_MAX_VERSION": "6"])
        try #require(try await cluster.agentsRegister(2, http))
        let r = try cluster.cli(["submit", "a:/older", "b:copy", "--wait", "--json"], http: http)
        #expect(r.status == 0, "\(r.stderr)\n\(coordinator.output)\n\(a1.output)\n\(b1.output)")
        let destination = cluster.dir.url.appendingPathComponent("root-b/copy")
        #expect(try TreeSupport.snapshot(destination) == TreeSupport.snapshot(source))
        #expect(TreeSupport.partials(destination).isEmpty)
    }

    /// Sent again and again into new destinations on one coordinator: every job succeeds (a race
    /// between a file's own rename and the confinement check once failed whole jobs).
    @Test func twentyThousandSmallFilesSentFiveTimesSucceedEveryTime() async throws {
        let source = try makeTree("many", count: 20_000, perDirectory: 100, sizes: 16...2_048)
        // Agents busy with 20,000 files on a loaded CI machine may miss a 2 s heartbeat deadline.
        let (coordinator, a1, b1, _, http) = try await cluster.startPair(coordinatorArguments: ["--agent-timeout", "10"])
        for run in 1...5 {
            let r = try cluster.cli(["submit", "a:/many", "b:run-\(run)", "--wait", "--json"], http: http)
            #expect(r.status == 0, "run \(run): \(r.stdout)\n\(r.stderr)\n\(coordinator.output.suffix(3000))\n\(a1.output.suffix(2000))\n\(b1.output.suffix(2000))")
            let s = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], "\(r.stdout)\(r.stderr)")
            #expect(s["state"] as? String == "succeeded" && s["files_done"] as? Int == 20_000, "run \(run): \(s)")
        }
        let last = cluster.dir.url.appendingPathComponent("root-b/run-5")
        #expect(try TreeSupport.snapshot(last) == TreeSupport.snapshot(source))
        #expect(TreeSupport.partials(last).isEmpty)
    }

    /// The only destination agent is killed while many chunks are in flight on its pipelined
    /// streams, and started again: the job finishes, and the tree is identical, with no partial
    /// copy left behind.
    @Test func aDestinationAgentKilledWithChunksInFlightComesBackAndTheTreeIsIdentical() async throws {
        let source = try makeTree("inflight", count: 3_000, perDirectory: 100, sizes: 1_000...64_000)
        let (coordinator, agents, http) = try await cluster.startCoordinator()
        let a1 = try cluster.startAgent("a1", site: "a", root: "root-a", coordinator: agents)
        var b1 = try cluster.startAgent("b1", site: "b", root: "root-b", coordinator: agents)
        try #require(try await cluster.agentsRegister(2, http))
        // Capped, so that the kill lands mid-transfer.
        let submitted = try cluster.cli(["submit", "a:/inflight", "b:copy", "--bwlimit", "20MiB/s"], http: http)
        let job = submitted.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        func status() throws -> [String: Any] {
            let r = try cluster.cli(["status", job, "--json"], http: http)
            return try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any] ?? [:]
        }
        #expect(try await cluster.eventually(30) { (try status()["bytes_done"] as? Int ?? 0) > 5_000_000 }, "\(submitted.stderr)")
        b1.kill(SIGKILL)
        try await Task.sleep(for: .milliseconds(500))
        b1 = try cluster.startAgent("b1", site: "b", root: "root-b", coordinator: agents, log: "b1-again.log")
        let finished = try await cluster.eventually(120) { try status()["state"] as? String == "succeeded" }
        let last = (try? status()) ?? [:]
        #expect(finished, "\(last)\n\(coordinator.output.suffix(3000))\n\(a1.output.suffix(2000))\n\(b1.output.suffix(2000))")
        let destination = cluster.dir.url.appendingPathComponent("root-b/copy")
        #expect(try TreeSupport.snapshot(destination) == TreeSupport.snapshot(source))
        #expect(TreeSupport.partials(destination).isEmpty, "left behind: \(TreeSupport.partials(destination).prefix(5))")
    }
}
