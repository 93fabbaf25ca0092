import BargeBench
import Foundation
import Testing

/// Placement at transfer time through real processes: `submit --tier` (or the destination site's
/// `--tier-policy`) puts each file in the tier its policy names, with two destination agents
/// sharing the root and the cold store, and files large enough to be cut into ranges that both
/// agents receive. Cold files get no plain copy, `ls` lists them cold, an unchanged re-sync
/// skips them, and a promotion brings back the source tree byte for byte.
@Suite(.serialized)
struct PlacementProcessTests {
    let cluster: TestCluster
    init() throws { cluster = try TestCluster(roots: ["root-a", "root-b", "root-c"]) }

    var source: URL { cluster.dir.url.appendingPathComponent("root-a/ds") }
    var copy: URL { cluster.dir.url.appendingPathComponent("root-b/ds") }
    var cold: String { cluster.dir.path + "/cold-b" }

    func object(_ r: BargeProcess.Result) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], "\(r.stdout)\(r.stderr)")
    }

    /// Files under `root-b/ds` by tier, from `barge ls --json`.
    func tiers(_ http: String) throws -> [String: String] {
        let r = try cluster.cli(["ls", "b:ds", "--json"], http: http)
        try #require(r.status == 0, "\(r.stderr)")
        let list = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [[String: Any]])
        var out: [String: String] = [:]
        for f in list where f["kind"] as? String == "file" { out[f["path"] as! String] = f["tier"] as? String }
        return out
    }

    /// Regular files under the source, relative to it, with their sizes.
    func sourceFiles() throws -> [String: Int] {
        var out: [String: Int] = [:]
        let fm = FileManager.default
        for path in try fm.subpathsOfDirectory(atPath: source.path) {
            let attributes = try fm.attributesOfItem(atPath: source.path + "/" + path)
            guard attributes[.type] as? FileAttributeType == .typeRegular else { continue }
            out[path] = attributes[.size] as? Int ?? 0
        }
        return out
    }

    @Test func aTransferPlacesEachFileInTheTierItsPolicyNamesWithTwoAgentsSharingTheStore() async throws {
        try TreeSupport.makeEdgeCaseTree(at: source, smallFiles: 60)
        // Units of 2 MiB: the 9 MiB and 6 MiB files are cut into ranges, which both destination
        // agents receive, and either may finish.
        let (coordinator, agents, http) = try await cluster.startCoordinator(extra: ["--unit-size", "2MiB"])
        let a1 = try cluster.startAgent("a1", site: "a", root: "root-a", coordinator: agents)
        let b1 = try cluster.startAgent("b1", site: "b", root: "root-b", coordinator: agents, arguments: ["--cold", cold])
        let b2 = try cluster.startAgent("b2", site: "b", root: "root-b", coordinator: agents, arguments: ["--cold", cold])
        defer { withExtendedLifetime((coordinator, a1, b1, b2)) {} }
        try #require(try await cluster.agentsRegister(3, http), "\(coordinator.output)\n\(b1.output)\n\(b2.output)")

        let bad = try cluster.cli(["submit", "a:ds", "b:ds", "--tier", "cold:size>lots"], http: http)
        #expect(bad.status != 0 && bad.stderr.contains("--tier"), "\(bad.stderr)")

        let policy = "cold:big/**;cold:*.dat,size>4KiB;cold:sparse.bin;hot"
        let sent = try cluster.cli(["submit", "a:ds", "b:ds", "--tier", policy, "--wait", "--json"], http: http)
        try #require(sent.status == 0, "\(sent.stdout)\(sent.stderr)\n\(coordinator.output)")
        #expect(try object(sent)["tier"] as? String == policy)

        let files = try sourceFiles()
        let expectedCold = Set(files.filter { path, size in
            path.hasPrefix("big/") || path == "sparse.bin" || (path.hasSuffix(".dat") && size > 4096)
        }.keys.map { "ds/" + $0 })
        #expect(expectedCold.count > 10)
        let placed = try tiers(http)
        #expect(Set(placed.keys) == Set(files.keys.map { "ds/" + $0 }), "\(Set(placed.keys).symmetricDifference(files.keys.map { "ds/" + $0 }))")
        #expect(Set(placed.filter { $0.value == "cold" }.keys) == expectedCold, "\(placed)")
        for path in expectedCold {
            #expect(!FileManager.default.fileExists(atPath: cluster.dir.path + "/root-b/" + path), "\(path) has a plain copy")
        }
        #expect(TreeSupport.partials(copy).isEmpty, "\(TreeSupport.partials(copy))")
        // Nothing was written for them outside the store: the root holds only the hot files' bytes.
        let hotBytes = files.filter { !expectedCold.contains("ds/" + $0.key) }.values.reduce(0, +)
        let onDisk = try FileManager.default.subpathsOfDirectory(atPath: copy.path).reduce(0) { sum, p in
            let a = try FileManager.default.attributesOfItem(atPath: copy.path + "/" + p)
            return sum + (a[.type] as? FileAttributeType == .typeRegular ? (a[.size] as? Int ?? 0) : 0)
        }
        #expect(onDisk == hotBytes)

        let stats = try object(try cluster.cli(["tier", "stats", "b", "--json"], http: http))
        #expect(stats["files"] as? Int == expectedCold.count, "\(stats)")

        // An unchanged re-sync skips every file, cold ones included, by their catalog rows.
        let again = try object(try cluster.cli(["submit", "a:ds", "b:ds", "--tier", policy, "--wait", "--json"], http: http))
        #expect(again["state"] as? String == "succeeded" && again["files_total"] as? Int == 0 && again["wire_bytes"] as? Int == 0, "\(again)")
        #expect(again["skipped_files"] as? Int ?? 0 >= files.count, "\(again)")

        // Back to hot: the tree is the source's, byte for byte, modes and mtimes included.
        let promoted = try cluster.cli(["tier", "promote", "b:ds", "--wait"], http: http)
        #expect(promoted.status == 0, "\(promoted.stdout)\(promoted.stderr)")
        let original = try TreeSupport.snapshot(source)
        let final = try TreeSupport.snapshot(copy)
        #expect(final == original, "\(Set(final).symmetricDifference(original).sorted().prefix(10))")
    }

    @Test func aDestinationAgentKilledDuringAColdTransferLosesNothing() async throws {
        let fm = FileManager.default
        for i in 0..<24 {
            let url = source.appendingPathComponent("run\(i % 3)/frame\(i).bin")
            try fm.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data(SampleData.generate(.random, bytes: (2 << 20) + i * 1009, seed: UInt64(i))).write(to: url)
        }
        let (coordinator, agents, http) = try await cluster.startCoordinator()
        let a1 = try cluster.startAgent("a1", site: "a", root: "root-a", coordinator: agents)
        var b1 = try cluster.startAgent("b1", site: "b", root: "root-b", coordinator: agents, arguments: ["--cold", cold])
        defer { withExtendedLifetime((coordinator, a1)) {} }
        try #require(try await cluster.agentsRegister(2, http))
        let id = try cluster.cli(["submit", "a:ds", "b:ds", "--tier", "cold", "--bwlimit", "8MiB/s"], http: http).stdout
            .trimmingCharacters(in: .whitespacesAndNewlines)
        try #require(id.hasPrefix("j-"), "\(id)")
        _ = try await cluster.eventually(60) {
            let o = try object(try cluster.cli(["status", id, "--json"], http: http))
            return (o["bytes_done"] as? Int ?? 0) > 12 << 20 || o["state"] as? String != "running"
        }
        let before = try object(try cluster.cli(["status", id, "--json"], http: http))
        #expect(before["state"] as? String == "running", "killed too late to test anything: \(before)")
        b1.kill(SIGKILL)
        b1.process.waitUntilExit()
        b1 = try cluster.startAgent("b1", site: "b", root: "root-b", coordinator: agents, arguments: ["--cold", cold], log: "b1-again.log")
        let ended = try await cluster.eventually(120) {
            let state = try object(try cluster.cli(["status", id, "--json"], http: http))["state"] as? String
            return state == "succeeded" || state == "failed"
        }
        #expect(ended)
        let state = try object(try cluster.cli(["status", id, "--json"], http: http))
        if state["state"] as? String == "failed" {
            // A unit lost with its agent is retried; had the job failed anyway, resume finishes it.
            let resumed = try cluster.cli(["resume", id, "--wait"], http: http)
            #expect(resumed.status == 0, "\(resumed.stdout)\(resumed.stderr)\n\(coordinator.output)")
        }
        let placed = try tiers(http)
        #expect(placed.count == 24 && placed.values.allSatisfy { $0 == "cold" }, "\(placed)")
        #expect(TreeSupport.partials(copy).isEmpty, "\(TreeSupport.partials(copy))")
        let promoted = try cluster.cli(["tier", "promote", "b:ds", "--wait"], http: http)
        #expect(promoted.status == 0, "\(promoted.stdout)\(promoted.stderr)")
        let original = try TreeSupport.snapshot(source)
        let final = try TreeSupport.snapshot(copy)
        #expect(final == original, "\(Set(final).symmetricDifference(original).sorted().prefix(10))")
        withExtendedLifetime(b1) {}
    }

    @Test func theSitePolicyPlacesFilesAndASiteWithoutAColdStoreRefusesColdPlacement() async throws {
        try TreeSupport.makeEdgeCaseTree(at: source, smallFiles: 30)
        let (coordinator, agents, http) = try await cluster.startCoordinator()
        let a1 = try cluster.startAgent("a1", site: "a", root: "root-a", coordinator: agents)
        // The site's policy looks at paths relative to the agent's root.
        let b1 = try cluster.startAgent("b1", site: "b", root: "root-b", coordinator: agents,
                                        arguments: ["--cold", cold, "--tier-policy", "cold:ds/small/**,size>2KiB"])
        let c1 = try cluster.startAgent("c1", site: "c", root: "root-c", coordinator: agents)
        defer { withExtendedLifetime((coordinator, a1, b1, c1)) {} }
        try #require(try await cluster.agentsRegister(3, http), "\(coordinator.output)")

        let sent = try cluster.cli(["submit", "a:ds", "b:ds", "--wait"], http: http)
        try #require(sent.status == 0, "\(sent.stdout)\(sent.stderr)")
        let files = try sourceFiles()
        let expectedCold = Set(files.filter { $0.key.hasPrefix("small/") && $0.value > 2048 }.keys.map { "ds/" + $0 })
        #expect(!expectedCold.isEmpty)
        #expect(Set(try tiers(http).filter { $0.value == "cold" }.keys) == expectedCold)

        // A job that wants a file cold at a site with no cold store fails, and says why.
        let refused = try cluster.cli(["submit", "a:ds", "c:ds", "--tier", "cold:big/**", "--wait"], http: http)
        #expect(refused.status == 1, "\(refused.stdout)\(refused.stderr)")
        #expect((refused.stdout + refused.stderr).contains("no cold tier"), "\(refused.stdout)\(refused.stderr)")
        #expect(!FileManager.default.fileExists(atPath: cluster.dir.path + "/root-c/ds/big/field.f32"))
    }
}
