import BargeBench
import Foundation
import Testing

/// Processes killed with SIGKILL in the middle of a transfer: the job still ends byte-identical.
@Suite(.serialized)
struct ResilienceProcessTests {
    let cluster: TestCluster

    init() throws {
        cluster = try TestCluster(roots: ["root-a", "root-b"])
    }

    var source: URL { cluster.dir.url.appendingPathComponent("root-a/ds") }
    var destination: URL { cluster.dir.url.appendingPathComponent("root-b/copy") }

    /// Float fields compressed with zstd-19: slow enough to kill something halfway.
    func makeSlowDataset() throws {
        try FileManager.default.createDirectory(at: source, withIntermediateDirectories: true)
        for i in 0..<4 {
            try Data(SampleData.float64Field(bytes: (6 << 20) + i, seed: UInt64(i))).write(to: source.appendingPathComponent("f\(i).f64"))
        }
        try Data(SampleData.text(bytes: 10_000)).write(to: source.appendingPathComponent("notes.txt"))
    }

    func status(_ job: String, _ http: String) throws -> [String: Any] {
        let r = try cluster.cli(["status", job, "--json"], http: http)
        return (try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]) ?? [:]
    }

    @Test func aCoordinatorKilledMidTransferIsRestartedAndTheJobFinishes() async throws {
        try makeSlowDataset()
        let agentPort = try TestCluster.freePort(), httpPort = try TestCluster.freePort()
        let listen = "127.0.0.1:\(agentPort)", httpAddress = "127.0.0.1:\(httpPort)"
        let (first, agents, http) = try await cluster.startCoordinator(extra: ["--unit-size", "2MiB"], listen: listen, http: httpAddress)
        let a1 = try cluster.startAgent("a1", site: "a", root: "root-a", coordinator: agents)
        let b1 = try cluster.startAgent("b1", site: "b", root: "root-b", coordinator: agents)
        defer { withExtendedLifetime((a1, b1)) {} }
        #expect(try await cluster.eventually { try cluster.agents(http).count == 2 })
        // A clean run first, for the wire bytes to compare with.
        let clean = try cluster.cli(["submit", "a:ds", "b:clean", "--codec", "zstd-19", "--wait", "--json"], http: http)
        let cleanWire = try #require((try? JSONSerialization.jsonObject(with: Data(clean.stdout.utf8)) as? [String: Any])?["wire_bytes"] as? Int)

        let job = try cluster.cli(["submit", "a:ds", "b:copy", "--codec", "zstd-19"], http: http).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(try await cluster.eventually(30) { (try status(job, http)["bytes_done"] as? Int ?? 0) > 0 }, "\(first.output)")

        first.kill(SIGKILL)
        first.process.waitUntilExit()
        let restarted = Date()
        let (second, _, _) = try await cluster.startCoordinator(extra: ["--unit-size", "2MiB"], listen: listen, http: httpAddress, log: "coordinator-2.log")
        defer { withExtendedLifetime(second) {} }
        #expect(second.output.contains("units of interrupted jobs are pending again"), "\(second.output)")
        let before = try status(job, http)["bytes_done"] as? Int ?? 0
        #expect(try await cluster.eventually(30) { (try status(job, http)["bytes_done"] as? Int ?? 0) > before })
        print("coordinator restart: progress resumed \(String(format: "%.2f", Date().timeIntervalSince(restarted))) s after the new process started")
        #expect(try await cluster.eventually(90) { try status(job, http)["state"] as? String == "succeeded" },
                "\(second.output)\n\(a1.output)")
        #expect(try TreeSupport.snapshot(destination) == TreeSupport.snapshot(source))
        #expect(a1.output.contains("registered with the coordinator"))
        let wire = try #require(try status(job, http)["wire_bytes"] as? Int)
        print("coordinator restart: wire bytes \(wire) against \(cleanWire) for a clean run (\(String(format: "%.2f", Double(wire) / Double(cleanWire)))x)")
        #expect(Double(wire) <= 1.35 * Double(cleanWire))
    }

    /// kill -9 one agent of a site in the middle of a transfer; its units go back to pending after
    /// the heartbeat timeout (2 s here) and finish on the other agent of that site.
    func killOneAgentMidTransfer(site: String) async throws {
        try makeSlowDataset()
        let (coordinator, agents, http) = try await cluster.startCoordinator(extra: ["--unit-size", "2MiB"])
        let a1 = try cluster.startAgent("a1", site: "a", root: "root-a", coordinator: agents)
        let a2 = try cluster.startAgent("a2", site: "a", root: "root-a", coordinator: agents)
        let b1 = try cluster.startAgent("b1", site: "b", root: "root-b", coordinator: agents)
        let b2 = try cluster.startAgent("b2", site: "b", root: "root-b", coordinator: agents)
        defer { withExtendedLifetime((coordinator, a1, a2, b1, b2)) {} }
        #expect(try await cluster.eventually { try cluster.agents(http).count == 4 })
        let job = try cluster.cli(["submit", "a:ds", "b:copy", "--codec", "zstd-19"], http: http).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(try await cluster.eventually(30) { (try status(job, http)["bytes_done"] as? Int ?? 0) > 0 })
        let victim = site == "a" ? a1 : b1
        victim.kill(SIGKILL)
        #expect(try await cluster.eventually(90) { try status(job, http)["state"] as? String == "succeeded" },
                "\(coordinator.output)")
        #expect(coordinator.output.contains("agents down after"))
        #expect(try TreeSupport.snapshot(destination) == TreeSupport.snapshot(source))
        #expect(TreeSupport.partials(destination).isEmpty)
    }

    @Test func aDestinationAgentKilledMidTransferIsReplaced() async throws {
        try await killOneAgentMidTransfer(site: "b")
    }

    @Test func aSourceAgentKilledMidTransferIsReplaced() async throws {
        try await killOneAgentMidTransfer(site: "a")
    }
}
