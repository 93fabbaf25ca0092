import Foundation
import Testing

/// The coordinator and the agents run as an ordinary user, as `cluster/systemd/*.service` runs
/// them (`User=barge`). Every connection used to ask for `SO_DEBUG` (NIO's `.socketOption` takes
/// the socket level, so `.socketOption(.tcp_nodelay)` set option 1 of `SOL_SOCKET`), which needs
/// `CAP_NET_ADMIN`: as root it passed unseen; as anyone else an agent looped on "coordinator
/// unreachable … Permission denied" and the coordinator exited when the first agent connected.
struct UnprivilegedProcessTests {
    static let setpriv = ["/usr/bin/setpriv", "/bin/setpriv"].first { FileManager.default.isExecutableFile(atPath: $0) }
    /// `nobody`, with no supplementary groups and no capabilities beyond a user's.
    static var launcher: [String] { [setpriv ?? "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"] }

    /// Whether the test can run: as root (to switch user), with `setpriv`, and a `barge`
    /// executable that user may run (a checkout under a private home directory is not).
    static let usable: Bool = {
        guard getuid() == 0, setpriv != nil else { return false }
        let probe = Process()
        probe.executableURL = URL(fileURLWithPath: setpriv!)
        probe.arguments = Array(launcher.dropFirst()) + [BargeProcess.executable.path, "--version"]
        probe.standardOutput = FileHandle.nullDevice
        probe.standardError = FileHandle.nullDevice
        guard (try? probe.run()) != nil else { return false }
        probe.waitUntilExit()
        return probe.terminationStatus == 0
    }()

    @Test(.enabled(if: usable, "needs root (to run barge as nobody), setpriv, and a barge executable that nobody may run"))
    func aClusterRunsAsAnOrdinaryUser() async throws {
        let cluster = try TestCluster()
        let fm = FileManager.default
        // The cluster's directory belongs to nobody, as a service's state and roots belong to its user.
        for path in [cluster.dir.path, cluster.dir.path + "/root-a", cluster.dir.path + "/root-b"] {
            try fm.setAttributes([.posixPermissions: 0o755, .ownerAccountID: 65534, .groupOwnerAccountID: 65534], ofItemAtPath: path)
        }
        try fm.setAttributes([.posixPermissions: 0o600, .ownerAccountID: 65534], ofItemAtPath: cluster.dir.path + "/token")
        let source = cluster.dir.path + "/root-a/ds"
        try fm.createDirectory(atPath: source + "/sub", withIntermediateDirectories: true)
        try Data(repeating: 7, count: 300_000).write(to: URL(fileURLWithPath: source + "/sub/a.bin"))
        try Data("hello\n".utf8).write(to: URL(fileURLWithPath: source + "/b.txt"))
        for path in [source, source + "/sub", source + "/sub/a.bin", source + "/b.txt"] {
            try fm.setAttributes([.ownerAccountID: 65534, .groupOwnerAccountID: 65534], ofItemAtPath: path)
        }
        // A directory the source agent may not read (root's, mode 0311): left out and reported,
        // the rest goes. Before, it failed the whole scan ("open directory locked: EACCES").
        try fm.createDirectory(atPath: source + "/locked", withIntermediateDirectories: true)
        try Data("secret".utf8).write(to: URL(fileURLWithPath: source + "/locked/s.txt"))
        try fm.setAttributes([.posixPermissions: 0o311], ofItemAtPath: source + "/locked")
        // A read-only directory (0555, as a dataset is often frozen), which the destination
        // agent makes read-only too at the end of the job.
        try fm.createDirectory(atPath: source + "/ro", withIntermediateDirectories: true)
        try Data("first\n".utf8).write(to: URL(fileURLWithPath: source + "/ro/f.txt"))
        for path in [source + "/ro", source + "/ro/f.txt"] {
            try fm.setAttributes([.ownerAccountID: 65534, .groupOwnerAccountID: 65534], ofItemAtPath: path)
        }
        try fm.setAttributes([.posixPermissions: 0o555], ofItemAtPath: source + "/ro")

        let coordinatorPort = try TestCluster.freePort(), httpPort = try TestCluster.freePort()
        let coordinator = try RunningBarge(["coordinator", "--state", cluster.dir.path + "/state", "--listen", "127.0.0.1:\(coordinatorPort)",
                                            "--http", "127.0.0.1:\(httpPort)", "--agent-timeout", "2"],
                                           environment: cluster.environment, log: cluster.dir.url.appendingPathComponent("coordinator.log"), launcher: Self.launcher)
        let http = "http://127.0.0.1:\(httpPort)"
        let up = try await cluster.eventually(30) { coordinator.output.contains("coordinator ready") }
        try #require(up, "the coordinator did not start as nobody: \(coordinator.output)")
        // The destination's cold tier, nobody's too.
        let cold = cluster.dir.path + "/cold-b"
        try fm.createDirectory(atPath: cold, withIntermediateDirectories: true)
        try fm.setAttributes([.ownerAccountID: 65534, .groupOwnerAccountID: 65534], ofItemAtPath: cold)
        func agent(_ name: String, _ site: String, _ root: String, _ extra: [String] = []) throws -> RunningBarge {
            try RunningBarge(["agent", "--coordinator", "127.0.0.1:\(coordinatorPort)", "--name", name, "--site", site,
                              "--root", cluster.dir.path + "/" + root, "--listen", "127.0.0.1:0"] + extra,
                             environment: cluster.environment, log: cluster.dir.url.appendingPathComponent("\(name).log"), launcher: Self.launcher)
        }
        let a1 = try agent("a1", "a", "root-a"), b1 = try agent("b1", "b", "root-b", ["--cold", cold])
        defer { withExtendedLifetime((coordinator, a1, b1)) {} }
        try #require(try await cluster.agentsRegister(2, http), "\(a1.output)\(b1.output)\(coordinator.output)")

        let submitted = try cluster.cli(["submit", "a:ds", "b:copy", "--wait"], http: http)
        // Exit 2: the job succeeded, and left out the directory it could not read, naming it.
        #expect(submitted.status == 2, "\(submitted.stdout)\(submitted.stderr)\n\(a1.output)\(b1.output)")
        #expect((submitted.stdout + submitted.stderr).contains("locked"), "\(submitted.stdout)\(submitted.stderr)")
        #expect(!fm.fileExists(atPath: cluster.dir.path + "/root-b/copy/locked/s.txt"))
        #expect(fm.contentsEqual(atPath: source + "/sub/a.bin", andPath: cluster.dir.path + "/root-b/copy/sub/a.bin"))
        #expect(fm.contentsEqual(atPath: source + "/b.txt", andPath: cluster.dir.path + "/root-b/copy/b.txt"))
        let owner = try fm.attributesOfItem(atPath: cluster.dir.path + "/root-b/copy/b.txt")[.ownerAccountID] as? Int
        #expect(owner == 65534, "the destination agent ran as nobody, so its files are nobody's")
        for process in [a1, b1, coordinator] {
            #expect(!process.output.contains("setsockopt"), "\(process.output)")
        }
        let ro = cluster.dir.path + "/root-b/copy/ro"
        #expect((try fm.attributesOfItem(atPath: ro)[.posixPermissions] as? Int) == 0o555)

        // A re-sync of a file changed inside the read-only directory, a new file and a new
        // directory there: the destination agent, not root, lifts the directory's mode for each
        // create and rename, as rsync does, and the job gives it back its 0555 at the end.
        // Before, the re-sync failed with EACCES.
        try Data("second, longer\n".utf8).write(to: URL(fileURLWithPath: source + "/ro/f.txt"))
        try fm.setAttributes([.modificationDate: Date(timeIntervalSinceNow: 60)], ofItemAtPath: source + "/ro/f.txt")
        try fm.createDirectory(atPath: source + "/ro/sub", withIntermediateDirectories: true)
        try Data("new\n".utf8).write(to: URL(fileURLWithPath: source + "/ro/sub/n.txt"))
        try fm.createSymbolicLink(atPath: source + "/ro/link", withDestinationPath: "f.txt")
        let again = try cluster.cli(["submit", "a:ds", "b:copy", "--wait"], http: http)
        #expect(again.status == 2, "\(again.stdout)\(again.stderr)\n\(b1.output)")
        #expect(fm.contentsEqual(atPath: source + "/ro/f.txt", andPath: ro + "/f.txt"))
        #expect(fm.contentsEqual(atPath: source + "/ro/sub/n.txt", andPath: ro + "/sub/n.txt"))
        #expect((try? fm.destinationOfSymbolicLink(atPath: ro + "/link")) == "f.txt")
        #expect((try fm.attributesOfItem(atPath: ro)[.posixPermissions] as? Int) == 0o555)
        #expect(try fm.contentsOfDirectory(atPath: ro).sorted() == ["f.txt", "link", "sub"])

        // A read-only file whose partial copy was sealed (given its final mode, 0444) by a run
        // that stopped before renaming it: the next run gives the copy its write bit back and
        // finishes it. Before, every run failed on it with EACCES until someone ran chmod.
        let sealedSource = source + "/sealed.bin"
        try Data((0..<200_000).map { UInt8(truncatingIfNeeded: $0 &* 13) }).write(to: URL(fileURLWithPath: sealedSource))
        let sealedPartial = cluster.dir.path + "/root-b/copy/sealed.bin.barge-partial"
        try Data(repeating: 0, count: 100_000).write(to: URL(fileURLWithPath: sealedPartial))
        for path in [sealedSource, sealedPartial] {
            try fm.setAttributes([.posixPermissions: 0o444, .ownerAccountID: 65534, .groupOwnerAccountID: 65534], ofItemAtPath: path)
        }
        let sealed = try cluster.cli(["submit", "a:ds", "b:copy", "--wait"], http: http)
        #expect(sealed.status == 2 && !sealed.stdout.contains("sealed.bin"), "\(sealed.stdout)\(sealed.stderr)\n\(b1.output)")
        #expect(fm.contentsEqual(atPath: sealedSource, andPath: cluster.dir.path + "/root-b/copy/sealed.bin"))
        #expect(!fm.fileExists(atPath: sealedPartial))
        #expect((try fm.attributesOfItem(atPath: cluster.dir.path + "/root-b/copy/sealed.bin")[.posixPermissions] as? Int) == 0o444)

        // A demotion out of the read-only directory: the agent lifts it for the removal of the
        // hot copy and gives it its 0555 back; a promotion brings the file back. Before, the
        // demotion failed with EACCES.
        let demoted = try cluster.cli(["tier", "demote", "b:copy/ro", "--wait"], http: http)
        #expect(demoted.status == 0, "\(demoted.stdout)\(demoted.stderr)\n\(b1.output)")
        #expect(!fm.fileExists(atPath: ro + "/f.txt") && !fm.fileExists(atPath: ro + "/sub/n.txt"))
        #expect((try fm.attributesOfItem(atPath: ro)[.posixPermissions] as? Int) == 0o555)
        let promoted = try cluster.cli(["tier", "promote", "b:copy/ro", "--wait"], http: http)
        #expect(promoted.status == 0, "\(promoted.stdout)\(promoted.stderr)\n\(b1.output)")
        #expect(fm.contentsEqual(atPath: source + "/ro/f.txt", andPath: ro + "/f.txt"))
        #expect(fm.contentsEqual(atPath: source + "/ro/sub/n.txt", andPath: ro + "/sub/n.txt"))
        #expect((try fm.attributesOfItem(atPath: ro)[.posixPermissions] as? Int) == 0o555)

        // Directories the destination agent may not read (0300) or even search (0100, 0000)
        // once an earlier job gave them the source's modes: a re-sync of files changed inside
        // opens them lifted, and they keep their modes. Sent by a source agent run as root
        // (site c, on the same root), which may read them. Before, the re-sync failed with
        // "open directory modes/w: EACCES".
        let c1root = try RunningBarge(["agent", "--coordinator", "127.0.0.1:\(coordinatorPort)", "--name", "c1", "--site", "c",
                                       "--root", cluster.dir.path + "/root-a", "--listen", "127.0.0.1:0"],
                                      environment: cluster.environment, log: cluster.dir.url.appendingPathComponent("c1-root.log"))
        defer { withExtendedLifetime(c1root) {} }
        try #require(try await cluster.agentsRegister(3, http), "\(c1root.output)\(coordinator.output)")
        let modes = cluster.dir.path + "/root-a/modes"
        for (directory, mode) in [("w", 0o300), ("x", 0o100), ("n", 0o000)] {
            try fm.createDirectory(atPath: modes + "/" + directory + "/in", withIntermediateDirectories: true)
            try Data("one \(directory)\n".utf8).write(to: URL(fileURLWithPath: modes + "/" + directory + "/in/f.txt"))
            try fm.setAttributes([.posixPermissions: mode], ofItemAtPath: modes + "/" + directory)
        }
        let first = try cluster.cli(["submit", "c:modes", "b:modes", "--wait"], http: http)
        #expect(first.status == 0, "\(first.stdout)\(first.stderr)\n\(b1.output)")
        for directory in ["w", "x", "n"] {
            try Data("two, longer \(directory)\n".utf8).write(to: URL(fileURLWithPath: modes + "/" + directory + "/in/f.txt"))
            try fm.setAttributes([.modificationDate: Date(timeIntervalSinceNow: 60)], ofItemAtPath: modes + "/" + directory + "/in/f.txt")
        }
        // A partial copy an interrupted job left directly in the unsearchable directories: it is
        // reopened lifted too (before, "create …barge-partial: EACCES" on every re-sync).
        for directory in ["x", "n"] {
            try Data("new \(directory)\n".utf8).write(to: URL(fileURLWithPath: modes + "/" + directory + "/g.txt"))
            let partial = cluster.dir.path + "/root-b/modes/" + directory + "/g.txt.barge-partial"
            #expect(fm.createFile(atPath: partial, contents: Data("left\n".utf8)))
            try fm.setAttributes([.ownerAccountID: 65534, .groupOwnerAccountID: 65534, .posixPermissions: 0o1600], ofItemAtPath: partial)
        }
        // A file its owner may not read (0000) arrives so too.
        try Data("closed\n".utf8).write(to: URL(fileURLWithPath: modes + "/w/in/z.txt"))
        try fm.setAttributes([.posixPermissions: 0o000], ofItemAtPath: modes + "/w/in/z.txt")
        let second = try cluster.cli(["submit", "c:modes", "b:modes", "--wait"], http: http)
        #expect(second.status == 0, "\(second.stdout)\(second.stderr)\n\(b1.output)")
        // Verified at the agent that is not root: the files it may not read or reach (z.txt, 0000;
        // those under n/, 0000) are opened lifted. Before, each was a mismatch ("cannot open:
        // Permission denied"), and --repair could not clear it.
        let secondJob = String(second.stdout.split(separator: ":").first ?? "")
        let verified = try cluster.cli(["verify", secondJob], http: http)
        #expect(verified.status == 0 && verified.stdout.hasSuffix("OK\n"), "\(verified.stdout)\(verified.stderr)")
        // Unchanged since: the quick check finds every file as it is, in the 0000 directory too
        // (its lookups lifted), and nothing is sent. Before, n/'s files went again every time.
        let third = try cluster.cli(["submit", "c:modes", "b:modes", "--wait", "--json"], http: http)
        let unchanged = (try? JSONSerialization.jsonObject(with: Data(third.stdout.utf8))) as? [String: Any] ?? [:]
        #expect(third.status == 0 && unchanged["files_total"] as? Int == 0 && unchanged["skipped_files"] as? Int == 6, "\(third.stdout)\(third.stderr)")
        for (directory, mode) in [("w", 0o300), ("x", 0o100), ("n", 0o000)] {
            let at = cluster.dir.path + "/root-b/modes/" + directory
            #expect(fm.contentsEqual(atPath: modes + "/" + directory + "/in/f.txt", andPath: at + "/in/f.txt"), "\(directory)")
            #expect((try fm.attributesOfItem(atPath: at)[.posixPermissions] as? Int) == mode, "\(directory)")
        }
        for directory in ["x", "n"] {
            let at = cluster.dir.path + "/root-b/modes/" + directory
            #expect(fm.contentsEqual(atPath: modes + "/" + directory + "/g.txt", andPath: at + "/g.txt"), "\(directory)")
            #expect(!fm.fileExists(atPath: at + "/g.txt.barge-partial"), "\(directory)")
        }
        // A demotion out of the 0100 directory: the removal is lifted, and the directory's mtime
        // is remembered (through an O_PATH descriptor) and put back, its mode kept. Before, the
        // mtime was not remembered in a directory the agent could not read, and changed.
        let xdir = cluster.dir.path + "/root-b/modes/x"
        let xtime = try fm.attributesOfItem(atPath: xdir)[.modificationDate] as? Date
        let demotedX = try cluster.cli(["tier", "demote", "b:modes/x/g.txt", "--wait"], http: http)
        #expect(demotedX.status == 0, "\(demotedX.stdout)\(demotedX.stderr)\n\(b1.output)")
        #expect(!fm.fileExists(atPath: xdir + "/g.txt"))
        #expect(try fm.attributesOfItem(atPath: xdir)[.modificationDate] as? Date == xtime)
        #expect((try fm.attributesOfItem(atPath: xdir)[.posixPermissions] as? Int) == 0o100)

        // A destination directory the destination agent may not write (root's, 0755): the job
        // fails at the first refusal, naming the file and EACCES, without three attempts (no
        // other agent of the site, which shares the root, would do better).
        try fm.createDirectory(atPath: cluster.dir.path + "/root-b/closed", withIntermediateDirectories: true)
        let refused = try cluster.cli(["submit", "a:ds/b.txt", "b:closed/b.txt", "--wait", "--json"], http: http)
        #expect(refused.status == 1, "\(refused.stdout)\(refused.stderr)")
        let failed = (try? JSONSerialization.jsonObject(with: Data(refused.stdout.utf8)) as? [String: Any]) ?? [:]
        let error = failed["error"] as? String ?? ""
        #expect(error.contains("closed/b.txt") && error.contains("EACCES"), "\(refused.stdout)\(refused.stderr)")
        let job = try #require(failed["id"] as? String)
        let retries = coordinator.output.split(separator: "\n").filter { $0.contains("job \(job) unit") && $0.contains("retrying") }
        #expect(retries.isEmpty, "\(retries)")
        #expect(!fm.fileExists(atPath: cluster.dir.path + "/root-b/closed/b.txt"))
    }
}
