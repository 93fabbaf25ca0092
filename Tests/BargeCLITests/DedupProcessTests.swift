import BargeBench
import Foundation
import Testing

/// Incremental transfers between real processes: what the destination already holds is not sent
/// again, whether it arrived in an earlier job, earlier in the same job, or before its agent died.
@Suite(.serialized)
struct DedupProcessTests {
    let cluster: TestCluster

    init() throws {
        cluster = try TestCluster(roots: ["root-a", "root-b"])
    }

    var source: URL { cluster.dir.url.appendingPathComponent("root-a/ds") }
    var destination: URL { cluster.dir.url.appendingPathComponent("root-b/copy") }

    func submit(_ http: String, extra: [String] = []) throws -> [String: Any] {
        let r = try cluster.cli(["submit", "a:ds", "b:copy", "--wait", "--json"] + extra, http: http)
        #expect(r.status == 0, "\(r.stdout)\(r.stderr)")
        return try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], "\(r.stdout)\(r.stderr)")
    }

    /// Each directory's ctime under `root` (itself included), by path.
    static func directoryChanges(_ root: URL) throws -> [String: String] {
        var result: [String: String] = [:]
        for path in [""] + (try FileManager.default.subpathsOfDirectory(atPath: root.path)) {
            var st = stat()
            guard lstat(root.path + "/" + path, &st) == 0, st.st_mode & S_IFMT == S_IFDIR else { continue }
            result[path] = "\(st.st_ctim.tv_sec).\(st.st_ctim.tv_nsec)"
        }
        return result
    }

    /// The inode of each regular file of at most `limit` bytes under `root`, by path.
    static func inodes(_ root: URL, upTo limit: Int) throws -> [String: UInt64] {
        var result: [String: UInt64] = [:]
        for path in try FileManager.default.subpathsOfDirectory(atPath: root.path) {
            var st = stat()
            guard lstat(root.path + "/" + path, &st) == 0, st.st_mode & S_IFMT == S_IFREG, st.st_size <= limit else { continue }
            result[path] = UInt64(st.st_ino)
        }
        return result
    }

    static func ratio(_ status: [String: Any]) -> Double {
        Double(status["wire_bytes"] as? Int ?? -1) / Double(status["bytes_total"] as? Int ?? 1)
    }

    /// 150 MB in 30 files, one of them a copy of another. Sent once; sent again unchanged; sent
    /// again after 1 MiB was appended to one file.
    @Test func aResyncSendsOnlyWhatChanged() async throws {
        try FileManager.default.createDirectory(at: source, withIntermediateDirectories: true)
        for i in 0..<29 {
            try Data(SampleData.random(bytes: 5_000_000 + i * 1013, seed: UInt64(100 + i))).write(to: source.appendingPathComponent(String(format: "part-%02d.bin", i)))
        }
        // A file and a copy of it, in different units that run at once: each of their chunks
        // crosses the wire once (whichever stream claims it first), the other copy by reference.
        let original = try Data(contentsOf: source.appendingPathComponent("part-00.bin"))
        try original.write(to: source.appendingPathComponent("zz-copy-of-part-00.bin"))
        let running = try await cluster.startPair()
        defer { withExtendedLifetime(running) {} }
        let http = running.http

        let first = try submit(http, extra: ["--codec", "none"])
        let total = try #require(first["bytes_total"] as? Int)
        let firstDedup = first["dedup_bytes"] as? Int ?? 0
        print("dedup: first run \(total) bytes, wire \(first["wire_bytes"] ?? "?") (\(String(format: "%.3f", Self.ratio(first)))), dedup_bytes \(firstDedup)")
        #expect(firstDedup == original.count, "the duplicate file's chunks go by reference")
        #expect(try TreeSupport.snapshot(destination) == TreeSupport.snapshot(source))

        // Unchanged: the quick check skips every file, read at neither side.
        let unchanged = try submit(http, extra: ["--codec", "none"])
        print("dedup: unchanged re-sync: wire \(unchanged["wire_bytes"] ?? "?") of \(total) bytes, skipped \(unchanged["skipped_files"] ?? "?") files")
        #expect(unchanged["skipped_files"] as? Int == 30 && unchanged["skipped_bytes"] as? Int == total, "\(unchanged)")
        #expect(unchanged["bytes_total"] as? Int == 0 && unchanged["wire_bytes"] as? Int ?? -1 < total / 1000)
        #expect(try TreeSupport.snapshot(destination) == TreeSupport.snapshot(source))
        // A mode changed at the source (chmod): given in place at the destination, as rsync does,
        // rather than the 5 MB read, sent by reference and written again under a new inode.
        let chmodded = destination.appendingPathComponent("part-05.bin").path
        var before = stat()
        #expect(stat(chmodded, &before) == 0 && chmod(source.appendingPathComponent("part-05.bin").path, 0o600) == 0)
        let modeOnly = try submit(http, extra: ["--codec", "none"])
        var after = stat()
        #expect(stat(chmodded, &after) == 0 && after.st_ino == before.st_ino && after.st_mode & 0o7777 == 0o600, "\(after.st_mode)")
        #expect(modeOnly["skipped_files"] as? Int == 30 && modeOnly["wire_bytes"] as? Int ?? -1 < total / 1000, "\(modeOnly)")
        #expect(try TreeSupport.snapshot(destination) == TreeSupport.snapshot(source))
        // --checksum reads every file and compares content: every chunk goes by reference, and
        // every file, each brought whole by its unit, is found in place and kept there: the
        // same inode, nothing written (rsync --checksum leaves an identical file alone).
        let inodes = try Self.inodes(destination, upTo: .max)
        // A file changed in the last 2 s is not kept (racily clean, as git says): the chmod
        // above changed part-05's ctime.
        usleep(2_100_000)
        let checksummed = try submit(http, extra: ["--codec", "none", "--checksum"])
        print("dedup: unchanged re-sync with --checksum: wire \(checksummed["wire_bytes"] ?? "?") of \(total) bytes (\(String(format: "%.4f", Self.ratio(checksummed)))), dedup_bytes \(checksummed["dedup_bytes"] ?? "?")")
        #expect(checksummed["checksum"] as? Bool == true && checksummed["skipped_files"] as? Int == 0)
        #expect(Self.ratio(checksummed) < 0.01)
        #expect(checksummed["dedup_bytes"] as? Int == total)
        #expect(try TreeSupport.snapshot(destination) == TreeSupport.snapshot(source))
        let rewritten = try Self.inodes(destination, upTo: .max).filter { inodes[$0.key] != $0.value }.keys.sorted()
        #expect(inodes.count == 30 && rewritten.isEmpty, "written again: \(rewritten)")

        let handle = try FileHandle(forWritingTo: source.appendingPathComponent("part-17.bin"))
        try handle.seekToEnd()
        try handle.write(contentsOf: Data(SampleData.random(bytes: 1 << 20, seed: 999)))
        try handle.close()
        // One file changed: only it is planned, and only its new MiB (and the chunk that held its
        // old tail) crosses the wire.
        let appended = try submit(http, extra: ["--codec", "none"])
        print("dedup: 1 MiB appended to one file: wire \(appended["wire_bytes"] ?? "?") of \(appended["bytes_total"] ?? "?") bytes (\(String(format: "%.4f", Self.ratio(appended))))")
        #expect(appended["files_total"] as? Int == 1 && appended["skipped_files"] as? Int == 29, "\(appended)")
        #expect(appended["wire_bytes"] as? Int ?? .max < (2 << 20) + 65536)
        #expect(try TreeSupport.snapshot(destination) == TreeSupport.snapshot(source))
        #expect(TreeSupport.partials(destination).isEmpty)
        let metrics = String(decoding: try #require(cluster.fetch(http + "/metrics")), as: UTF8.self)
        #expect(metrics.contains("barge_dedup_bytes_total"))
        // The human summary says what did not need sending.
        let again = try cluster.cli(["submit", "a:ds", "b:copy", "--wait", "--checksum"], http: http)
        #expect(again.status == 0 && again.stdout.contains("already at the destination (copied there, not sent): 144.4 MiB"), "\(again.stdout)")
        let quick = try cluster.cli(["submit", "a:ds", "b:copy", "--wait"], http: http)
        #expect(quick.status == 0 && quick.stdout.contains("unchanged at the destination (skipped unread): 30 files, 144.4 MiB"), "\(quick.stdout)")
    }

    /// Two source and two destination agents per site, each pair sharing its site's root as in
    /// `barge demo`, and a mixed tree. An unchanged re-sync skips every file unread; with
    /// --checksum, every chunk goes by reference whichever destination agent gets its unit (the
    /// agents read each other's chunk index).
    @Test func anUnchangedResyncWithTwoAgentsPerSiteSendsAlmostNothing() async throws {
        try TreeSupport.makeEdgeCaseTree(at: source, smallFiles: 400)
        for i in 0..<6 {
            try Data(SampleData.random(bytes: 3_000_000 + i * 7919, seed: UInt64(500 + i))).write(to: source.appendingPathComponent("mid-\(i).bin"))
        }
        let (coordinator, agents, http) = try await cluster.startCoordinator(extra: ["--unit-size", "2MiB"])
        let processes = [coordinator,
                         try cluster.startAgent("a1", site: "a", root: "root-a", coordinator: agents),
                         try cluster.startAgent("a2", site: "a", root: "root-a", coordinator: agents),
                         try cluster.startAgent("b1", site: "b", root: "root-b", coordinator: agents),
                         try cluster.startAgent("b2", site: "b", root: "root-b", coordinator: agents)]
        defer { withExtendedLifetime(processes) {} }
        #expect(try await cluster.agentsRegister(4, http))

        let first = try submit(http)
        let files = try #require(first["files_total"] as? Int), bytes = try #require(first["bytes_total"] as? Int)
        #expect(try TreeSupport.snapshot(destination) == TreeSupport.snapshot(source))

        let directories = try Self.directoryChanges(destination)
        let unchanged = try submit(http)
        // Nothing in an unchanged directory was touched: its ctime stayed (rsync leaves it).
        let touched = try Self.directoryChanges(destination).filter { directories[$0.key] != $0.value }.keys.sorted()
        #expect(directories.count > 3 && touched.isEmpty, "\(directories.count) directories, changed: \(touched.prefix(5))")
        print("two agents per site: unchanged re-sync of \(files) files, \(bytes) bytes: skipped \(unchanged["skipped_files"] ?? "?") files, wire \(unchanged["wire_bytes"] ?? "?") bytes")
        #expect(unchanged["skipped_files"] as? Int == files && unchanged["skipped_bytes"] as? Int == bytes, "\(unchanged)")
        #expect(unchanged["wire_bytes"] as? Int ?? .max < bytes / 1000)

        // Up to the unit size (2 MiB here) a file comes whole in one unit; a larger one in
        // ranges, all pinned to one destination agent with its finish. (Files written in the
        // last 2 s are not kept: racily clean.)
        let small = try Self.inodes(destination, upTo: .max)
        usleep(2_100_000)
        let checksummed = try submit(http, extra: ["--checksum"])
        print("two agents per site: --checksum re-sync: wire \(checksummed["wire_bytes"] ?? "?") of \(bytes) bytes (\(String(format: "%.4f", Self.ratio(checksummed)))), dedup \(checksummed["dedup_bytes"] ?? "?")")
        #expect(Self.ratio(checksummed) < 0.01, "\(checksummed)")
        #expect(try TreeSupport.snapshot(destination) == TreeSupport.snapshot(source))
        #expect(TreeSupport.partials(destination).isEmpty)
        // Every file, unchanged, was left where it was (rsync --checksum leaves them), whichever
        // agent of the site got its units.
        let rewritten = try Self.inodes(destination, upTo: .max).filter { small[$0.key] != $0.value }.keys.sorted()
        #expect(small.count >= 400 && rewritten.isEmpty, "\(small.count) small files, written again: \(rewritten.prefix(5))")
    }

    /// kill -9 the only destination agent in the middle of a large file, start it again: it
    /// registers by itself, keeps the chunks already in the partial copy, and only the rest is sent.
    @Test func aRestartedDestinationAgentKeepsItsPartialCopy() async throws {
        try FileManager.default.createDirectory(at: source, withIntermediateDirectories: true)
        try Data(SampleData.float64Field(bytes: 24 << 20, seed: 5)).write(to: source.appendingPathComponent("field.f64"))
        let (coordinator, agents, http) = try await cluster.startCoordinator(extra: ["--unit-size", "4MiB"])
        let a1 = try cluster.startAgent("a1", site: "a", root: "root-a", coordinator: agents)
        var b1 = try cluster.startAgent("b1", site: "b", root: "root-b", coordinator: agents)
        defer { withExtendedLifetime((coordinator, a1)) {} }
        #expect(try await cluster.agentsRegister(2, http))
        // A clean run first, for the wire bytes.
        let clean = try cluster.cli(["submit", "a:ds", "b:clean", "--codec", "zstd-19", "--wait", "--json"], http: http)
        let cleanWire = try #require((try? JSONSerialization.jsonObject(with: Data(clean.stdout.utf8)) as? [String: Any])?["wire_bytes"] as? Int)

        // Capped at 1 MiB/s (about 20 s), so that the kill lands in the middle of the file however
        // busy the machine is: with other tests beside it, a look at the job took seconds, and an
        // uncapped job had sent everything by the time a look saw 8 MiB done.
        let job = try cluster.cli(["submit", "a:ds", "b:copy", "--codec", "zstd-19", "--bwlimit", "1MiB/s"], http: http).stdout
            .trimmingCharacters(in: .whitespacesAndNewlines)
        func status() throws -> [String: Any] {
            (try? JSONSerialization.jsonObject(with: Data(try cluster.cli(["status", job, "--json"], http: http).stdout.utf8)) as? [String: Any]) ?? [:]
        }
        // Done units lag what is on the wire by up to a few units in flight, and under load one
        // run saw 8 MiB done only once all of it had been sent: a third of the wire is enough.
        #expect(try await cluster.eventually(60) {
            let now = try status()
            return (now["bytes_done"] as? Int ?? 0) > 8 << 20 || (now["wire_bytes"] as? Int ?? 0) > cleanWire / 3
        })
        let wireAtKill = try status()["wire_bytes"] as? Int ?? 0
        try #require(wireAtKill < cleanWire, "everything was sent before the kill (\(wireAtKill) of \(cleanWire) bytes)")
        b1.kill(SIGKILL)
        b1.process.waitUntilExit()
        b1 = try cluster.startAgent("b1", site: "b", root: "root-b", coordinator: agents, log: "b1-restarted.log")
        defer { withExtendedLifetime(b1) {} }
        #expect(try await cluster.eventually(90) { try status()["state"] as? String == "succeeded" }, "\(coordinator.output)\n\(b1.output)")
        #expect(try TreeSupport.snapshot(destination) == TreeSupport.snapshot(source))
        #expect(TreeSupport.partials(destination).isEmpty)
        #expect(b1.output.contains("registered with the coordinator"))
        #expect(b1.output.contains("already in its partial copy"), "\(b1.output)")
        let final = try status()
        let wire = try #require(final["wire_bytes"] as? Int)
        print("agent restart: wire bytes \(wire) against \(cleanWire) for a clean run (\(String(format: "%.2f", Double(wire) / Double(cleanWire)))x), \(wireAtKill) sent before the kill")
        // What the partial copy held is not sent again: the job sent less than a clean run plus
        // everything sent before the kill, which is what losing the partial copy would cost. (A
        // fixed ratio to the clean run failed under load, when more was in flight at the kill.)
        #expect(wire < cleanWire + wireAtKill, "\(wire) against \(cleanWire) + \(wireAtKill)")
    }

    /// Content-defined chunking is the default above 8 MiB: bytes inserted in the middle of a
    /// large file move only the chunk boundaries near them, so a re-sync sends little.
    @Test func anInsertionInALargeFileSendsOnlyNearbyChunks() async throws {
        try FileManager.default.createDirectory(at: source, withIntermediateDirectories: true)
        let url = source.appendingPathComponent("big.bin")
        var bytes = SampleData.random(bytes: 32 << 20, seed: 77)
        try Data(bytes).write(to: url)
        let running = try await cluster.startPair()
        defer { withExtendedLifetime(running) {} }
        let http = running.http
        let first = try submit(http, extra: ["--codec", "none"])
        #expect((first["chunks_done"] as? Int ?? 0) != 32, "content-defined chunks, not 32 fixed ones: \(first)")

        bytes.insert(contentsOf: SampleData.random(bytes: 1000, seed: 78), at: 11_111_111)
        try Data(bytes).write(to: url)
        let second = try submit(http, extra: ["--codec", "none"])
        print("cdc: 1000 bytes inserted at 11.1 MB of a 32 MiB file: wire \(second["wire_bytes"] ?? "?") of \(second["bytes_total"] ?? "?") (\(String(format: "%.4f", Self.ratio(second)))), \(second["chunks_done"] ?? "?") chunks")
        #expect(Self.ratio(second) < 0.15, "fixed 1 MiB chunks would send the 21 MiB after the insertion again")
        #expect(try TreeSupport.snapshot(destination) == TreeSupport.snapshot(source))
        let verify = try cluster.cli(["verify", try #require(second["id"] as? String)], http: http)
        #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
    }
}
