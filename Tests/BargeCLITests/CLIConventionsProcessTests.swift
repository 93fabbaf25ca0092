import BargeBench
import BargeWire
import Foundation
import Testing

/// The CLI's conventions through real processes: `--version`, documented exit codes, `--json` on
/// every command that reports, usage errors that name the right command, rates that say per
/// second, a quiet stop on SIGTERM, and `status --watch` drawn in a pseudo-terminal of 80 columns
/// with no line longer than that.
@Suite(.serialized)
struct CLIConventionsProcessTests {
    func object(_ r: BargeProcess.Result) -> [String: Any]? {
        try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
    }

    @Test func versionAndUsageErrors() throws {
        let version = try BargeProcess.run(["--version"])
        #expect(version.status == 0 && version.stdout.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ".").count == 3, "\(version)")
        let help = try BargeProcess.run(["--help"])
        #expect(help.stdout.contains("Exit codes:") && help.stdout.contains("64  usage"), "\(help.stdout)")

        let rate = try BargeProcess.run(["submit", "a:x", "b:y", "--bwlimit", "40MiB"])
        #expect(rate.status == 64 && rate.stderr.contains("40MiB/s") && rate.stderr.contains("Usage: barge submit"), "\(rate.stderr)")
        // An argument that is not UTF-8 is refused in words: Swift made `bad\xff` into
        // `bad\u{FFFD}`, and another file of that name was sent.
        let bytes = try BargeProcess.run(["-c", #"exec "$0" submit "a:/argv/bad$(printf '\377')" b:/out"#, BargeProcess.executable.path],
                                         executable: URL(fileURLWithPath: "/bin/sh"))
        #expect(bytes.status == 64 && bytes.stderr.contains(#"argument 2 ('a:/argv/bad\xff') is not UTF-8"#), "\(bytes.stderr)")
        let unknown = try BargeProcess.run(["jobs", "--no-such-flag"])
        #expect(unknown.status == 64, "\(unknown.stderr)")
        // --prune-before: a time to come, or an age of 0, would delete every ended job; refused
        // before any request, with how to ask for that (a black-box review pruned all with 2099).
        for (when, says) in [("2099-01-01", "is in the future"), ("0m", "an age above 0"), ("nand", "is not a date")] {
            let prune = try BargeProcess.run(["jobs", "--prune-before", when, "--coordinator-url", "http://127.0.0.1:1"])
            #expect(prune.status == 64 && prune.stderr.contains(says) && !prune.stderr.contains("cannot reach"), "\(when): \(prune.stderr)")
        }
        // A value checked while the command runs still shows that command's usage, not the root's.
        let dir = try TemporaryDirectory()
        try Data("a-cluster-token-of-enough-bytes\n".utf8).write(to: dir.url.appendingPathComponent("token"))
        let policy = try BargeProcess.run(["agent", "--coordinator", "127.0.0.1:1", "--name", "x", "--site", "s", "--root", dir.path,
                                           "--token-file", dir.path + "/token", "--tier-policy", "frozen:x"])
        #expect(policy.status == 64 && policy.stderr.contains("Usage: barge agent") && policy.stderr.contains("'frozen' is not a tier"), "\(policy.stderr)")
        // A TCP congestion control the kernel lacks is refused before the agent starts, with the reason.
        let congestion = try BargeProcess.run(["agent", "--coordinator", "127.0.0.1:1", "--name", "x", "--site", "s", "--root", dir.path,
                                               "--token-file", dir.path + "/token", "--tcp-congestion", "nosuchcc"])
        #expect(congestion.status == 64 && congestion.stderr.contains("--tcp-congestion nosuchcc")
                && congestion.stderr.contains("tcp_available_congestion_control"), "\(congestion.stderr)")
        // A send budget too small to hold a chunk's worth of windows, or not a size.
        for (memory, says) in [("1MiB", "--send-memory must be 16MiB to 1TiB"), ("lots", "--send-memory:")] {
            let budget = try BargeProcess.run(["agent", "--coordinator", "127.0.0.1:1", "--name", "x", "--site", "s", "--root", dir.path,
                                               "--token-file", dir.path + "/token", "--send-memory", memory])
            #expect(budget.status == 64 && budget.stderr.contains(says), "\(budget.stderr)")
        }
        // A token file other users may read is named with a warning: whoever reads it can join
        // the cluster as an agent (a black-box review did so as nobody, from the README's recipe).
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: dir.path + "/token")
        let exposed = try BargeProcess.run(["agent", "--coordinator", "127.0.0.1:1", "--name", "x", "--site", "s", "--root", dir.path,
                                            "--token-file", dir.path + "/token", "--state", "/proc/no-such/state"])
        #expect(exposed.status == 1 && exposed.stderr.contains("may be read by other users (mode 644)") && exposed.stderr.contains("chmod 600"), "\(exposed.stderr)")
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: dir.path + "/token")
        let kept = try BargeProcess.run(["agent", "--coordinator", "127.0.0.1:1", "--name", "x", "--site", "s", "--root", dir.path,
                                         "--token-file", dir.path + "/token", "--state", "/proc/no-such/state"])
        #expect(kept.status == 1 && !kept.stderr.contains("other users"), "\(kept.stderr)")
        let token = try BargeProcess.run(["agent", "--coordinator", "127.0.0.1:1", "--name", "x", "--site", "s", "--root", dir.path,
                                          "--token-file", dir.path + "/missing"])
        #expect(token.status == 1 && token.stderr.contains("missing") && !token.stderr.contains("Usage: barge <subcommand>"), "\(token.stderr)")
        // A config file that cannot be read, or is not TOML, is a usage error too (it stands for
        // flags): 64, not 1 (a black-box review).
        try Data("bogus = [\n".utf8).write(to: dir.url.appendingPathComponent("bad.toml"))
        for (file, says) in [(dir.path + "/none.toml", "No such file or directory"), (dir.path + "/bad.toml", "not valid TOML")] {
            let config = try BargeProcess.run(["agent", "--config", file])
            #expect(config.status == 64 && config.stderr.contains("--config") && config.stderr.contains(says), "\(config.stderr)")
        }
    }

    /// A coordinator that stops midway through an answer (frozen, or its host gone without a
    /// reset) fails the request after `--timeout`, with the reason, as one that never answers does.
    /// Before, the answer's body had no deadline and the CLI waited for good.
    @Test func aCoordinatorThatStopsMidAnswerTimesOut() throws {
        for (head, says) in [("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n[{\"id\":", "did not finish its answer to /v1/jobs?limit=500 within 2 s (--timeout)"),
                             ("", "did not answer in time")] {
            let server = try StalledHTTPServer(head: head)
            let started = ContinuousClock.now
            let r = try BargeProcess.run(["jobs", "--coordinator-url", "http://127.0.0.1:\(server.port)", "--timeout", "2"],
                                         environment: ["BARGE_API_TOKEN_FILE": ""])
            let took = ContinuousClock.now - started
            #expect(r.status == 1 && r.stderr.contains(says), "\(r)")
            #expect(took < .seconds(15), "the CLI gave up after \(took)")
            #expect(server.accepted() >= 1)
            server.close()
        }
        let bad = try BargeProcess.run(["jobs", "--timeout", "0"])
        #expect(bad.status == 64 && bad.stderr.contains("--timeout must be a number of seconds above 0"), "\(bad.stderr)")
    }

    /// A request body over the API's 1 MiB is answered 413 with the limit, and the coordinator
    /// goes on; `prune` takes only a finite time. Before, the audit trail's look at the body
    /// left it half read: a debug build's coordinator crashed on the second read, and a release
    /// build answered "the body is not JSON" (400); `before=nan` pruned nothing with 200 and
    /// `before=1e400` pruned every ended job (a black-box review).
    @Test func anOversizedBodyIs413AndPruneTakesOnlyAFiniteTime() async throws {
        let cluster = try TestCluster()
        let (coordinator, _, http) = try await cluster.startCoordinator()
        defer { withExtendedLifetime(coordinator) {} }
        let submit = #"{"source":{"site":"a","path":"x"},"destination":{"site":"b","path":"y"},"notify":"http://x/"#
        let big = cluster.post(http + "/v1/jobs", body: Data((submit + String(repeating: "a", count: 1_100_000) + #""}"#).utf8))
        #expect(big.status == 413 && big.text.contains("over 1048576 bytes"), "\(big)\n\(coordinator.output)")
        let small = cluster.post(http + "/v1/jobs", body: Data("{".utf8))
        #expect(small.status == 400 && small.text.contains("not JSON"), "\(small)")
        for before in ["nan", "1e400", "-inf", "x"] {
            let pruned = cluster.post(http + "/v1/jobs/prune?before=" + before, body: Data())
            #expect(pruned.status == 400 && pruned.text.contains("Unix seconds"), "\(before): \(pruned)")
        }
        #expect(cluster.post(http + "/v1/jobs/prune?before=1", body: Data()).status == 200)
    }

    /// An API token file that other users may read works, with a warning; one that is a
    /// directory is refused in words. Before, a readable file said nothing, and a directory gave
    /// "NSCocoaErrorDomain error 256" (a black-box review).
    @Test func anAPITokenFileReadableByOthersWarnsAndADirectoryIsRefusedInWords() async throws {
        let cluster = try TestCluster()
        let (coordinator, _, http) = try await cluster.startCoordinator()
        defer { withExtendedLifetime(coordinator) {} }
        let open = cluster.dir.path + "/open.token"
        try FileManager.default.copyItem(atPath: cluster.environment["BARGE_API_TOKEN_FILE"]!, toPath: open)
        #expect(chmod(open, 0o644) == 0)
        let listed = try BargeProcess.run(["jobs", "--coordinator-url", http, "--api-token-file", open], environment: cluster.environment)
        #expect(listed.status == 0 && listed.stderr.contains("may be read by other users (mode 644)") && listed.stderr.contains("chmod 600"), "\(listed.stderr)")
        let directory = try BargeProcess.run(["jobs", "--coordinator-url", http, "--api-token-file", cluster.dir.path], environment: cluster.environment)
        #expect(directory.status == 1 && directory.stderr.contains("is not a file") && !directory.stderr.contains("NSCocoaErrorDomain"), "\(directory.stderr)")
    }

    /// A coordinator that cannot listen says on which of its ports, by its flag. Before, NIO's
    /// words did not say whether --listen or --http clashed (a black-box review).
    @Test func aPortInUseIsNamedByItsFlag() async throws {
        let cluster = try TestCluster()
        // A first coordinator holds both ports; a second one is given each of them in turn.
        let (first, agents, http) = try await cluster.startCoordinator()
        defer { withExtendedLifetime(first) {} }
        let api = String(http.dropFirst("http://".count))
        for (flag, taken, other) in [("--listen", agents, "--http"), ("--http", api, "--listen")] {
            let r = try BargeProcess.run(["coordinator", "--state", cluster.dir.path + "/state\(flag)", flag, taken, other, "127.0.0.1:0"],
                                         environment: cluster.environment)
            #expect(r.status == 1 && r.stderr.contains("\(flag) \(taken): cannot listen: the address is in use"), "\(r.stderr)")
        }
    }

    @Test func everyCommandTakesJSONAndExitCodesFollowTheOutcome() async throws {
        let cluster = try TestCluster()
        try TreeSupport.makeEdgeCaseTree(at: cluster.dir.url.appendingPathComponent("root-a/ds"), smallFiles: 10)
        let (coordinator, agents, http) = try await cluster.startCoordinator()
        let a1 = try cluster.startAgent("a1", site: "a", root: "root-a", coordinator: agents)
        let b1 = try cluster.startAgent("b1", site: "b", root: "root-b", coordinator: agents)
        defer { withExtendedLifetime((coordinator, a1)) {} }
        try #require(try await cluster.agentsRegister(2, http))

        let sent = try cluster.cli(["submit", "a:ds", "b:ds", "--wait", "--json"], http: http)
        let job = try #require(object(sent)?["id"] as? String, "\(sent.stdout)\(sent.stderr)")
        #expect(sent.status == 0)
        for args in [["status", job], ["status", job, "--watch"], ["jobs"], ["agents"], ["set", job, "--bwlimit", "50MB/s"], ["verify", job], ["ls", "b:ds"],
                     ["tier", "stats", "b"]] {
            let r = try cluster.cli(args + ["--json"], http: http)
            let parsed = try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8))
            // `tier stats` at a site without a cold store is a failure, but still says so.
            #expect(parsed != nil || (r.status == 1 && !r.stderr.isEmpty), "\(args): \(r.status) \(r.stdout)\(r.stderr)")
        }
        let created = try cluster.cli(["token", "create", "--role", "viewer", "--name", "ci-bot", "--json"], http: http)
        #expect(created.status == 0 && object(created) != nil, "\(created.stdout)\(created.stderr)")
        let revoked = try cluster.cli(["token", "revoke", "ci-bot", "--json"], http: http)
        #expect(revoked.status == 0 && object(revoked)?["name"] as? String == "ci-bot", "\(revoked.stdout)\(revoked.stderr)")
        let generated = try BargeProcess.run(["bench", "generate", "--size", "4KiB", cluster.dir.path + "/gen", "--json"])
        #expect(((try? JSONSerialization.jsonObject(with: Data(generated.stdout.utf8))) as? [[String: Any]])?.count == 5, "\(generated.stdout)\(generated.stderr)")
        // Each agent told the coordinator its build (protocol 11).
        let listed = try cluster.cli(["agents", "--json"], http: http)
        let builds = ((try? JSONSerialization.jsonObject(with: Data(listed.stdout.utf8))) as? [[String: Any]] ?? []).map { $0["version"] as? String }
        #expect(builds == [BargeBuild.version, BargeBuild.version], "\(listed.stdout)")
        // A finished job cannot be cancelled: exit 1 and the reason.
        let cancel = try cluster.cli(["cancel", job, "--json"], http: http)
        #expect(cancel.status == 1 && cancel.stderr.contains("succeeded"), "\(cancel.stderr)")
        let resume = try cluster.cli(["resume", job, "--json"], http: http)
        #expect(resume.status == 1, "\(resume.stdout)\(resume.stderr)")
        let missing = try cluster.cli(["status", "j-nope", "--json"], http: http)
        #expect(missing.status == 1 && missing.stderr.contains("j-nope"), "\(missing.stderr)")
        // An empty id is a usage error (the API takes /v1/jobs/ for the list of jobs).
        for args in [["status", ""], ["cancel", ""], ["verify", ""], ["drain", ""]] {
            let empty = try cluster.cli(args, http: http)
            #expect(empty.status == 64 && empty.stderr.contains("empty"), "\(args): \(empty.status) \(empty.stdout)\(empty.stderr)")
        }
        // A path with nothing there is an error, as `ls` says; an empty directory is not.
        let nothing = try cluster.cli(["ls", "b:nowhere"], http: http)
        #expect(nothing.status == 1 && nothing.stderr.contains("nowhere: no such file or directory"), "\(nothing.stdout)\(nothing.stderr)")
        try FileManager.default.createDirectory(at: cluster.dir.url.appendingPathComponent("root-b/empty"), withIntermediateDirectories: true)
        let empty = try cluster.cli(["ls", "b:empty"], http: http)
        #expect(empty.status == 0 && empty.stdout.contains("Nothing under b:empty"), "\(empty.stdout)\(empty.stderr)")
        // A source that is not there fails the job at once, and the summary says why and only
        // that (not "0 of 0 files" and a hint about units that never ran).
        let gone = try cluster.cli(["submit", "a:nope", "b:x", "--wait"], http: http)
        #expect(gone.status == 1 && gone.stdout.contains("error: scan failed: the source 'nope' does not exist")
                && !gone.stdout.contains("0 of 0 files") && !gone.stdout.contains("counted by units"), "\(gone.stdout)\(gone.stderr)")
        let zero = try cluster.cli(["set", job, "--bwlimit", "0"], http: http)
        #expect(zero.status == 64 && zero.stderr.contains("'off'") && !zero.stderr.contains("0/s"), "\(zero.stderr)")

        // A slow job, cancelled while it runs: --json answers with the status object.
        let slow = try cluster.cli(["submit", "a:ds", "b:slow", "--bwlimit", "1MiB/s"], http: http).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let cancelled = try cluster.cli(["cancel", slow, "--json"], http: http)
        #expect(cancelled.status == 0 && object(cancelled)?["state"] as? String == "cancelled", "\(cancelled.stdout)\(cancelled.stderr)")
        let jobs = try cluster.cli(["jobs"], http: http)
        #expect(jobs.stdout.contains("MiB") && jobs.stdout.contains("transfer"), "\(jobs.stdout)")

        let drained = try cluster.cli(["drain", "b1", "--json"], http: http)
        #expect(drained.status == 0 && object(drained)?["agent"] as? String == "b1", "\(drained.stdout)\(drained.stderr)")

        // SIGTERM: a clean stop, exit 0, no error printed.
        b1.kill(SIGTERM)
        b1.process.waitUntilExit()
        #expect(b1.process.terminationStatus == 0, "\(b1.output)")
        #expect(!b1.output.contains("Error:") && !b1.output.contains("CancellationError"), "\(b1.output)")
    }

    /// SIGTERM stops an agent promptly while its coordinator accepts the connection but never
    /// answers the handshake (a frozen coordinator: here a socket that listens and is never
    /// read). Before, the agent waited out the handshake's 10 s first.
    @Test func anAgentWaitingForAHandshakeStopsOnSIGTERM() async throws {
        let cluster = try TestCluster()
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        try #require(listener >= 0)
        defer { close(listener) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, length) == 0 && listen(listener, 8) == 0 && getsockname(listener, $0, &length) == 0 }
        }
        try #require(bound)
        let port = UInt16(bigEndian: address.sin_port)
        let agent = try cluster.startAgent("a1", site: "a", root: "root-a", coordinator: "127.0.0.1:\(port)")
        try await Task.sleep(for: .seconds(1.5))
        #expect(agent.process.isRunning, "\(agent.output)")
        let sent = Date()
        agent.kill(SIGTERM)
        let stopped = try await cluster.eventually(10) { !agent.process.isRunning }
        let took = Date().timeIntervalSince(sent)
        #expect(stopped && took < 5, "stopped: \(stopped) after \(took) s: \(agent.output)")
        agent.process.waitUntilExit()
        #expect(agent.process.terminationStatus == 0, "\(agent.output)")
    }

    /// A source name that is not UTF-8 cannot travel (names are UTF-8 on the wire): the job
    /// succeeds with everything else, the CLI says what was left and exits 2, as rsync's
    /// partial-transfer code does, and `status --json` counts it. A FIFO is left out the same way,
    /// with a hint of its own.
    @Test func anEntryWhoseNameIsNotUTF8IsReportedAndExitsTwo() async throws {
        let cluster = try TestCluster()
        let ds = cluster.dir.url.appendingPathComponent("root-a/ds")
        try FileManager.default.createDirectory(at: ds, withIntermediateDirectories: true)
        try Data("fine\n".utf8).write(to: ds.appendingPathComponent("ok.txt"))
        // "caf", a lone Latin-1 0xE9 byte, then "-x".
        let raw = Array((ds.path + "/caf").utf8) + [0xE9] + Array("-x".utf8) + [0]
        let fd = raw.withUnsafeBufferPointer { p in p.baseAddress!.withMemoryRebound(to: CChar.self, capacity: raw.count) { open($0, O_CREAT | O_WRONLY, 0o644) } }
        try #require(fd >= 0)
        close(fd)
        let pair = try await cluster.startPair()
        let http = pair.http
        defer { withExtendedLifetime(pair) {} }

        let sent = try cluster.cli(["submit", "a:ds", "b:ds", "--wait"], http: http)
        #expect(sent.status == 2, "\(sent.status) \(sent.stdout)\(sent.stderr)")
        #expect(sent.stdout.contains("succeeded") && sent.stdout.contains("NOT transferred: 1 entry") && sent.stdout.contains("caf\\xe9-x")
                && sent.stdout.contains("convmv"), "\(sent.stdout)")
        let job = try #require(sent.stdout.split(separator: ":").first.map(String.init))
        let status = try cluster.cli(["status", job, "--json"], http: http)
        let o = try #require(object(status), "\(status.stdout)\(status.stderr)")
        #expect(o["state"] as? String == "succeeded" && o["untransferable_entries"] as? Int == 1, "\(o)")
        #expect((o["first_untransferable"] as? String ?? "").contains("caf\\xe9-x"), "\(o)")
        #expect(FileManager.default.contents(atPath: cluster.dir.url.appendingPathComponent("root-b/ds/ok.txt").path) == Data("fine\n".utf8))

        // A FIFO is left out too, and the hint says why rather than pointing at names.
        let ds2 = cluster.dir.url.appendingPathComponent("root-a/ds2")
        try FileManager.default.createDirectory(at: ds2, withIntermediateDirectories: true)
        try Data("fine\n".utf8).write(to: ds2.appendingPathComponent("ok.txt"))
        try #require(mkfifo(ds2.path + "/pipe", 0o644) == 0)
        let fifo = try cluster.cli(["submit", "a:ds2", "b:ds2", "--wait"], http: http)
        #expect(fifo.status == 2 && fifo.stdout.contains("'pipe': not a regular file") && fifo.stdout.contains("FIFOs, sockets and device files stay behind")
                && !fifo.stdout.contains("convmv"), "\(fifo.status) \(fifo.stdout)\(fifo.stderr)")
        // The job list says so too, rather than a plain "succeeded".
        let listed = try cluster.cli(["jobs"], http: http)
        let rows = listed.stdout.split(separator: "\n").filter { $0.hasPrefix("j-") }
        #expect(rows.count == 2 && rows.allSatisfy { $0.contains(" partial ") && !$0.contains("succeeded") }, "\(listed.stdout)")
    }

    @Test func anAgentTakesItsFlagsFromATOMLFileAndLogsJSON() async throws {
        let cluster = try TestCluster()
        let (coordinator, agents, http) = try await cluster.startCoordinator()
        let file = cluster.dir.url.appendingPathComponent("agent.toml")
        try Data("""
            # flags named as on the command line
            coordinator = "\(agents)"
            name = "from-the-file"
            site = "b"
            root = "\(cluster.dir.path)/root-b"
            streams = 2
            log-format = "json"
            log-level = "debug"
            """.utf8).write(to: file)
        // The command line's --name wins over the file's.
        let b1 = try RunningBarge(["agent", "--config", file.path, "--name", "b1"], environment: cluster.environment,
                                  log: cluster.dir.url.appendingPathComponent("b1.log"))
        defer { withExtendedLifetime((coordinator, b1)) {} }
        try #require(try await cluster.agentsRegister(1, http), "\(b1.output)")
        let listed = try cluster.cli(["agents", "--json"], http: http)
        #expect(listed.stdout.contains("\"b1\"") && !listed.stdout.contains("from-the-file"), "\(listed.stdout)")
        let lines = b1.output.split(separator: "\n").filter { !$0.isEmpty }
        #expect(!lines.isEmpty)
        for line in lines {
            let o = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            #expect(o?["level"] != nil && o?["message"] != nil && o?["time"] != nil, "not a JSON log line: \(line)")
        }
        #expect(lines.contains { $0.contains("\"level\":\"debug\"") } || lines.count > 1)

        let bad = cluster.dir.url.appendingPathComponent("bad.toml")
        try Data("name = [1\n".utf8).write(to: bad)
        let refused = try BargeProcess.run(["agent", "--config", bad.path], environment: cluster.environment)
        #expect(refused.status != 0 && refused.stderr.contains("not valid TOML"), "\(refused.stderr)")
        // A key that is no flag is named as the file's, not as an option never typed.
        let typo = cluster.dir.url.appendingPathComponent("typo.toml")
        try Data("name = \"x\"\nbandwidth-limit = \"1MiB/s\"\n".utf8).write(to: typo)
        let unknown = try BargeProcess.run(["agent", "--config", typo.path, "--site", "s", "--root", cluster.dir.path, "--coordinator", "127.0.0.1:1"],
                                           environment: cluster.environment)
        #expect(unknown.status == 64 && unknown.stderr.contains("typo.toml: unknown key 'bandwidth-limit'"), "\(unknown.stderr)")
        // A value the file gave that does not parse, or is out of range, names the file and its
        // key (the user never typed --bwlimit); one typed on the command line does not.
        let values = cluster.dir.url.appendingPathComponent("values.toml")
        let common = ["--site", "s", "--root", cluster.dir.path, "--coordinator", "127.0.0.1:1", "--name", "x"]
        for (text, key) in [("bwlimit = \"fast\"\n", "bwlimit"), ("max-units = 999\n", "max-units")] {
            try Data(text.utf8).write(to: values)
            let r = try BargeProcess.run(["agent", "--config", values.path] + common, environment: cluster.environment)
            #expect(r.status == 64 && r.stderr.contains("(from --config \(values.path), key '\(key)')") && r.stderr.contains("Usage: barge agent"), "\(r.stderr)")
        }
        let typed = try BargeProcess.run(["agent", "--config", values.path, "--max-units", "300"] + common, environment: cluster.environment)
        #expect(typed.status == 64 && typed.stderr.contains("--max-units must be 1 to 256") && !typed.stderr.contains("from --config"), "\(typed.stderr)")
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/script"), "script(1) from util-linux is missing"))
    func statusWatchFitsEightyColumnsInATerminal() async throws {
        let cluster = try TestCluster()
        let source = cluster.dir.url.appendingPathComponent("root-a/ds")
        for i in 0..<4 {
            let url = source.appendingPathComponent("f\(i).bin")
            try FileManager.default.createDirectory(at: source, withIntermediateDirectories: true)
            try Data(SampleData.generate(.random, bytes: 3 << 20, seed: UInt64(i))).write(to: url)
        }
        let (coordinator, agents, http) = try await cluster.startCoordinator()
        let a1 = try cluster.startAgent("a1", site: "a", root: "root-a", coordinator: agents)
        let b1 = try cluster.startAgent("b1", site: "b", root: "root-b", coordinator: agents)
        defer { withExtendedLifetime((coordinator, a1, b1)) {} }
        try #require(try await cluster.agentsRegister(2, http))
        let job = try cluster.cli(["submit", "a:ds", "b:ds", "--bwlimit", "4MiB/s"], http: http).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        try #require(job.hasPrefix("j-"))

        let quoted = ([BargeProcess.executable.path, "status", job, "--watch", "--coordinator-url", http]).map { "'\($0)'" }.joined(separator: " ")
        let script = Process()
        script.executableURL = URL(fileURLWithPath: "/usr/bin/script")
        script.arguments = ["-qfec", "stty cols 80 rows 24; " + quoted, "/dev/null"]
        script.environment = cluster.environment.merging(["TERM": "xterm", "PATH": "/usr/bin:/bin"]) { $1 }
        let out = Pipe()
        script.standardOutput = out
        script.standardInput = FileHandle.nullDevice
        try script.run()
        let bytes = out.fileHandleForReading.readDataToEndOfFile()
        script.waitUntilExit()
        let raw = String(decoding: bytes, as: UTF8.self)
        #expect(script.terminationStatus == 0, "\(raw)")
        // What a terminal shows: escape sequences removed, lines split at CR and LF.
        let plain = raw.replacing(/\u{1B}\[[0-9;]*[A-Za-z]/, with: "")
        let lines = plain.split(whereSeparator: { $0 == "\r" || $0 == "\n" || $0 == "\r\n" }).map(String.init)
        #expect(lines.contains { $0.hasPrefix("lane ") } && lines.contains { $0.hasPrefix("files ") }, "\(plain)")
        #expect(lines.contains { $0.contains("MiB/s") }, "\(plain)")
        let long = lines.filter { $0.count > 80 }
        #expect(long.isEmpty, "\(long)")
    }
}

/// A TCP server on loopback that reads each request, sends `head` (part of an answer, or
/// nothing) and then holds the connection open without a word, as a frozen server does. Closed
/// with the value.
final class StalledHTTPServer: @unchecked Sendable {
    let port: Int
    private let fd: Int32
    private let lock = NSLock()
    private var held: [Int32] = []
    private var count = 0

    init(head: String) throws {
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(listener, $0, length) == 0 && listen(listener, 8) == 0 && getsockname(listener, $0, &length) == 0
            }
        }
        guard bound else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        fd = listener
        port = Int(UInt16(bigEndian: address.sin_port))
        let bytes = Array(head.utf8)
        Thread.detachNewThread { [self] in
            while true {
                let client = accept(listener, nil, nil)
                guard client >= 0 else { return }
                lock.withLock { held.append(client); count += 1 }
                var request = [UInt8](repeating: 0, count: 4096)
                _ = read(client, &request, request.count)
                if !bytes.isEmpty { _ = bytes.withUnsafeBytes { write(client, $0.baseAddress, $0.count) } }
            }
        }
    }

    func accepted() -> Int { lock.withLock { count } }

    /// Stops accepting and closes every connection held.
    func close() {
        shutdown(fd, Int32(SHUT_RDWR))
        _ = Glibc.close(fd)
        for client in lock.withLock({ held }) { _ = Glibc.close(client) }
    }
}
