import BargeBench
import Foundation
import Testing

/// A rolling update: an agent of the previous protocol version works alongside current ones, and
/// an agent drained mid-job finishes its units, takes no new ones, and is stopped without a retry.
@Suite(.serialized)
struct RollingUpdateProcessTests {
    @Test func anOlderAgentJoinsAndADrainedAgentIsStoppedWithoutLosingWork() async throws {
        let cluster = try TestCluster(roots: ["root-a", "root-b"])
        let source = cluster.dir.url.appendingPathComponent("root-a/ds")
        try FileManager.default.createDirectory(at: source, withIntermediateDirectories: true)
        for i in 0..<6 {
            try Data(SampleData.float64Field(bytes: (3 << 20) + i, seed: UInt64(i))).write(to: source.appendingPathComponent("f\(i).f64"))
        }
        // An update from a clear-text version (7 and below): the current nodes run with
        // --insecure-plaintext until every node speaks 8.
        // An agent timeout of 10 s rather than the tests' 2 s: once, in a full suite, this job
        // counted a retry that nine runs alone never showed; a heartbeat late under zstd-19 on
        // both cores is the likely cause (the coordinator's log now comes with the failure).
        let (coordinator, agents, http) = try await cluster.startCoordinator(extra: ["--unit-size", "1MiB", "--insecure-plaintext", "--agent-timeout", "10"])
        // a1 runs as an older minor version of the protocol.
        let a1 = try cluster.startAgent("a1", site: "a", root: "root-a", coordinator: agents, environment: ["BARGE_WIRE_MAX_VERSION": "1"],
                                        arguments: ["--max-units", "1"])
        let a2 = try cluster.startAgent("a2", site: "a", root: "root-a", coordinator: agents, arguments: ["--max-units", "1", "--insecure-plaintext"])
        let b1 = try cluster.startAgent("b1", site: "b", root: "root-b", coordinator: agents, arguments: ["--insecure-plaintext"])
        defer { withExtendedLifetime((coordinator, a1, b1)) {} }
        #expect(try await cluster.agentsRegister(3, http))
        #expect(a1.output.contains("protocol versions 1...1"), "\(a1.output)")

        let job = try cluster.cli(["submit", "a:ds", "b:copy", "--codec", "zstd-19"], http: http).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        func status() throws -> [String: Any] {
            (try? JSONSerialization.jsonObject(with: Data(try cluster.cli(["status", job, "--json"], http: http).stdout.utf8)) as? [String: Any]) ?? [:]
        }
        #expect(try await cluster.eventually(30) { (try status()["bytes_done"] as? Int ?? 0) > 0 })
        let drain = try cluster.cli(["drain", "a2"], http: http)
        #expect(drain.status == 0 && drain.stdout.contains("a2: draining"), "\(drain.stdout)\(drain.stderr)")
        #expect(try cluster.agents(http).first { $0["name"] as? String == "a2" }?["state"] as? String == "draining")
        #expect(try await cluster.eventually(60) { a2.output.contains("drained: no units left") }, "\(a2.output)")
        a2.kill(SIGTERM)
        a2.process.waitUntilExit()

        #expect(try await cluster.eventually(120) { try status()["state"] as? String == "succeeded" }, "\(coordinator.output)")
        let final = try status()
        #expect(final["retries"] as? Int == 0, "a drained agent's units are finished, not retried: \(final)\n\(coordinator.output)")
        #expect(try TreeSupport.snapshot(cluster.dir.url.appendingPathComponent("root-b/copy")) == TreeSupport.snapshot(source))
        // Retired (drained, then stopped): forgotten once its timeout passes, not listed down.
        #expect(try await cluster.eventually(30) { try cluster.agents(http).compactMap { $0["name"] as? String } == ["a1", "b1"] })

        let unknown = try cluster.cli(["drain", "zz"], http: http)
        #expect(unknown.status != 0 && unknown.stderr.contains("zz"), "\(unknown.stderr)")
    }

    /// A destination agent drained mid-job says `drained` only once the coordinator holds none
    /// of its units, as a source or a destination (protocol 20): stopped then, nothing is sent
    /// again. Before, it knew only the units it sent, said "drained" at once while it still
    /// received three, and stopping it then sent them back to pending (h4 of session 49).
    @Test func aDrainedDestinationSaysDrainedOnlyOnceItHoldsNoUnits() async throws {
        let cluster = try TestCluster(roots: ["root-a", "root-b"])
        let source = cluster.dir.url.appendingPathComponent("root-a/ds")
        try FileManager.default.createDirectory(at: source, withIntermediateDirectories: true)
        for i in 0..<8 {
            try Data(SampleData.generate(.random, bytes: 3 << 20, seed: UInt64(i))).write(to: source.appendingPathComponent("f\(i)"))
        }
        let (coordinator, agents, http) = try await cluster.startCoordinator(extra: ["--unit-size", "1MiB", "--agent-timeout", "10"])
        let a1 = try cluster.startAgent("a1", site: "a", root: "root-a", coordinator: agents)
        let b1 = try cluster.startAgent("b1", site: "b", root: "root-b", coordinator: agents)
        let b2 = try cluster.startAgent("b2", site: "b", root: "root-b", coordinator: agents)
        defer { withExtendedLifetime((coordinator, a1, b2)) {} }
        #expect(try await cluster.agentsRegister(3, http))
        let job = try cluster.cli(["submit", "a:ds", "b:copy", "--bwlimit", "3MiB/s"], http: http).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        func status() throws -> [String: Any] {
            (try? JSONSerialization.jsonObject(with: Data(try cluster.cli(["status", job, "--json"], http: http).stdout.utf8)) as? [String: Any]) ?? [:]
        }
        #expect(try await cluster.eventually(30) { (try status()["bytes_done"] as? Int ?? 0) > 0 })
        let drain = try cluster.cli(["drain", "b1"], http: http)
        #expect(drain.status == 0, "\(drain.stdout)\(drain.stderr)")
        #expect(try await cluster.eventually(90) { b1.output.contains("drained: no units left, as a source or a destination") }, "\(b1.output)")
        #expect(!b1.output.contains("drained: no units left; this agent can be stopped"), "\(b1.output)")
        b1.kill(SIGTERM)
        b1.process.waitUntilExit()
        #expect(try await cluster.eventually(120) { try status()["state"] as? String == "succeeded" }, "\(coordinator.output)")
        let final = try status()
        #expect(final["retries"] as? Int == 0, "a drained agent's units are finished, not retried: \(final)\n\(coordinator.output)")
        #expect(try TreeSupport.snapshot(cluster.dir.url.appendingPathComponent("root-b/copy")) == TreeSupport.snapshot(source))
    }

    /// A cluster that encrypts (version 8, the default) refuses an agent that cannot, and both
    /// sides say how to go on; nothing is sent in clear.
    @Test func anEncryptingClusterRefusesAClearTextAgentAndSaysWhy() async throws {
        let cluster = try TestCluster(roots: ["root-a", "root-b"])
        let (coordinator, agents, http) = try await cluster.startCoordinator()
        let old = try cluster.startAgent("a1", site: "a", root: "root-a", coordinator: agents, environment: ["BARGE_WIRE_MAX_VERSION": "7"])
        let b1 = try cluster.startAgent("b1", site: "b", root: "root-b", coordinator: agents)
        defer { withExtendedLifetime((coordinator, old, b1)) {} }
        #expect(try await cluster.eventually(20) { old.output.contains("--insecure-plaintext") }, "\(old.output)")
        #expect(try await cluster.eventually(20) { coordinator.output.contains("--insecure-plaintext") }, "\(coordinator.output)")
        #expect(try await cluster.eventually { try cluster.agents(http).map { $0["name"] as? String } == ["b1"] })
        #expect(b1.output.contains("protocol versions 8...23"), "\(b1.output)")
    }

    /// A destination agent of version 16 during an update to 17: the source marks no file
    /// whole for it (a tier byte it would take for malformed), so a `--checksum` re-sync works as
    /// it did, writing each file of several chunks anew; a current destination keeps them. Its
    /// verification is asked about bytes only (no modes and mtimes, protocol 22).
    @Test func aDestinationOfTheVersionBeforeGetsNoFileMarkedWhole() async throws {
        let cluster = try TestCluster(roots: ["root-a", "root-b", "root-c"])
        let source = cluster.dir.url.appendingPathComponent("root-a/ds")
        try FileManager.default.createDirectory(at: source, withIntermediateDirectories: true)
        for i in 0..<4 {
            try Data(SampleData.random(bytes: (3 << 20) + i, seed: UInt64(60 + i))).write(to: source.appendingPathComponent("f\(i).bin"))
        }
        let (coordinator, agents, http) = try await cluster.startCoordinator()
        let a1 = try cluster.startAgent("a1", site: "a", root: "root-a", coordinator: agents)
        let b1 = try cluster.startAgent("b1", site: "b", root: "root-b", coordinator: agents, environment: ["BARGE_WIRE_MAX_VERSION": "16"])
        let c1 = try cluster.startAgent("c1", site: "c", root: "root-c", coordinator: agents)
        defer { withExtendedLifetime((coordinator, a1, b1, c1)) {} }
        #expect(try await cluster.agentsRegister(3, http))
        #expect(b1.output.contains("protocol versions 8...16"), "\(b1.output)")
        for site in ["b", "c"] {
            let destination = cluster.dir.url.appendingPathComponent("root-\(site)/copy")
            let first = try cluster.cli(["submit", "a:ds", "\(site):copy", "--wait", "--json"], http: http)
            #expect(first.status == 0)
            let job = try #require((try JSONSerialization.jsonObject(with: Data(first.stdout.utf8)) as? [String: Any])?["id"] as? String)
            // A mode changed after the job: an agent before 22 is asked about bytes only (the
            // attributes would be trailing bytes to it, a malformed request), a current one sees it.
            let f0 = destination.appendingPathComponent("f0.bin").path
            var st = stat()
            #expect(stat(f0, &st) == 0 && chmod(f0, 0o604) == 0)
            let verified = try cluster.cli(["verify", job], http: http)
            #expect(verified.status == (site == "b" ? 0 : 1), "site \(site): \(verified.stdout)\(verified.stderr)")
            #expect(site == "b" || verified.stdout.contains("mismatch: copy/f0.bin: mode or mtime differs: mode 0604"), "\(verified.stdout)")
            #expect(chmod(f0, st.st_mode & 0o7777) == 0)
            let before = try DedupProcessTests.inodes(destination, upTo: .max)
            usleep(2_100_000)  // a file changed in the last 2 s is not kept in place
            let again = try cluster.cli(["submit", "a:ds", "\(site):copy", "--wait", "--checksum"], http: http)
            #expect(again.status == 0, "\(again.stdout)\(again.stderr)")
            #expect(try TreeSupport.snapshot(destination) == TreeSupport.snapshot(source))
            let kept = try DedupProcessTests.inodes(destination, upTo: .max).filter { before[$0.key] == $0.value }.count
            #expect(before.count == 4 && kept == (site == "b" ? 0 : 4), "site \(site): \(kept) of \(before.count) files kept in place")
        }
    }

    /// A drained agent stays draining when the coordinator restarts (protocol 21: it registers
    /// again saying so), and a second job goes to the other agent of its site. Before, the
    /// restarted coordinator took it for up, gave it the next job's units, and the operator's
    /// wait for `drained` never ended (h3 of session 50).
    @Test func aDrainOutlivesACoordinatorRestart() async throws {
        let cluster = try TestCluster(roots: ["root-a", "root-b"])
        let source = cluster.dir.url.appendingPathComponent("root-a/ds")
        try FileManager.default.createDirectory(at: source, withIntermediateDirectories: true)
        for i in 0..<4 { try Data(SampleData.generate(.random, bytes: 100_000, seed: UInt64(i))).write(to: source.appendingPathComponent("f\(i)")) }
        let listen = "127.0.0.1:\(try TestCluster.freePort())", httpAddress = "127.0.0.1:\(try TestCluster.freePort())"
        let (first, agents, http) = try await cluster.startCoordinator(listen: listen, http: httpAddress)
        let a1 = try cluster.startAgent("a1", site: "a", root: "root-a", coordinator: agents)
        let b1 = try cluster.startAgent("b1", site: "b", root: "root-b", coordinator: agents)
        let b2 = try cluster.startAgent("b2", site: "b", root: "root-b", coordinator: agents)
        defer { withExtendedLifetime((a1, b1, b2)) {} }
        #expect(try await cluster.agentsRegister(3, http))
        let drain = try cluster.cli(["drain", "b2"], http: http)
        #expect(drain.status == 0, "\(drain.stdout)\(drain.stderr)")
        #expect(try await cluster.eventually(30) { b2.output.contains("drained: no units left") }, "\(b2.output)")
        first.kill(SIGKILL)
        first.process.waitUntilExit()
        let (second, _, _) = try await cluster.startCoordinator(listen: listen, http: httpAddress, log: "coordinator-2.log")
        defer { withExtendedLifetime(second) {} }
        #expect(try await cluster.agentsRegister(3, http), "\(second.output)")
        #expect(try await cluster.eventually(30) { try cluster.agents(http).first { $0["name"] as? String == "b2" }?["state"] as? String == "draining" },
                "\(second.output)")
        #expect(second.output.contains("agent b2 registered again draining"), "\(second.output)")
        let copy = try cluster.cli(["submit", "a:ds", "b:copy", "--wait", "--json"], http: http)
        #expect(copy.status == 0, "\(copy.stdout)\(copy.stderr)")
        #expect(try TreeSupport.snapshot(cluster.dir.url.appendingPathComponent("root-b/copy")) == TreeSupport.snapshot(source))
    }
}
