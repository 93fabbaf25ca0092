import Foundation
import Testing

/// A coordinator and agents as real processes on loopback, driven through the CLI.
@Suite(.serialized)
struct ClusterProcessTests {
    let cluster: TestCluster
    var dir: TemporaryDirectory { cluster.dir }
    var environment: [String: String] { cluster.environment }

    init() throws {
        cluster = try TestCluster()
    }

    @Test func agentsRegisterAndADeadOneIsMarkedDown() async throws {
        let (coordinator, agentAddress, http) = try await cluster.startCoordinator()
        defer { withExtendedLifetime(coordinator) {} }
        let a1 = try RunningBarge(["agent", "--coordinator", agentAddress, "--name", "a1", "--site", "site-a", "--root", dir.path + "/root-a"],
                                  environment: environment, log: dir.url.appendingPathComponent("a1.log"))
        let b1 = try RunningBarge(["agent", "--coordinator", agentAddress, "--name", "b1", "--site", "site-b", "--root", dir.path + "/root-b"],
                                  environment: environment, log: dir.url.appendingPathComponent("b1.log"))
        #expect(try await cluster.agentsRegister(2, http), "agents: \(coordinator.output)")
        let listed = try cluster.agents(http)
        #expect(listed.map { $0["name"] as? String } == ["a1", "b1"])
        #expect(listed.map { $0["site"] as? String } == ["site-a", "site-b"])
        #expect(listed.allSatisfy { $0["state"] as? String == "up" })
        // Each agent bound a free port for its data plane and registered it.
        for agent in listed {
            let address = try #require(agent["address"] as? String)
            #expect(address.hasPrefix("127.0.0.1:") && address != "127.0.0.1:0", "\(address)")
        }
        #expect(a1.output.contains("data plane listening on 127.0.0.1:"))

        a1.kill(SIGKILL)
        #expect(try await cluster.eventually { try cluster.agents(http).first { $0["name"] as? String == "a1" }?["state"] as? String == "down" })
        #expect(coordinator.output.contains("agents down after"))

        // SIGTERM: the agent and the coordinator shut down cleanly.
        b1.kill(SIGTERM)
        b1.process.waitUntilExit()
        coordinator.kill(SIGTERM)
        #expect(try await cluster.eventually(10) { !coordinator.process.isRunning })
        #expect(coordinator.process.terminationStatus == 0, "\(coordinator.output)")
    }

    /// A second agent started under a name that a live agent holds is refused, logged on both
    /// sides, and keeps trying; it gets in once the first is gone. Before, it silently took the
    /// first's place, and the next job's scan went to its root.
    @Test func aSecondLiveAgentWithTheSameNameIsRefusedUntilTheFirstIsGone() async throws {
        let (coordinator, agents, http) = try await cluster.startCoordinator()
        try FileManager.default.createDirectory(atPath: dir.path + "/root-a2", withIntermediateDirectories: true)
        let first = try cluster.startAgent("a1", site: "a", root: "root-a", coordinator: agents)
        #expect(try await cluster.agentsRegister(1, http))
        let second = try cluster.startAgent("a1", site: "a", root: "root-a2", coordinator: agents, log: "a1-second.log")
        defer { withExtendedLifetime((coordinator, first, second)) {} }
        #expect(try await cluster.eventually(10) { second.output.contains("an agent named 'a1' is already connected") }, "\(second.output)")
        #expect(coordinator.output.contains("refused registration of 'a1' (root \(dir.path)/root-a2"), "\(coordinator.output)")
        try await Task.sleep(for: .seconds(1))
        #expect(second.process.isRunning, "the second agent gave up: \(second.output)")
        #expect(!coordinator.output.contains("registered again"), "\(coordinator.output)")
        first.kill(SIGKILL)
        #expect(try await cluster.eventually(15) { coordinator.output.contains("agent 'a1' of site 'a' registered again, root \(dir.path)/root-a2") },
                "\(coordinator.output)\n\(second.output)")
    }

    /// An agent started on another directory than the root its site's agents share (a
    /// node-local disk instead of the parallel file system) is refused, and both sides say which
    /// roots differ; before, it joined, and a job's files were split between the two directories
    /// while the job succeeded. The same directory reached by another path (another mount
    /// point) joins.
    @Test func anAgentOnAnotherRootThanItsSitesIsRefusedAndOneOnTheSameDirectoryJoins() async throws {
        let (coordinator, agents, http) = try await cluster.startCoordinator()
        try FileManager.default.createDirectory(atPath: dir.path + "/local-disk", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: dir.path + "/other-mount", withDestinationPath: dir.path + "/root-b")
        let b1 = try cluster.startAgent("b1", site: "b", root: "root-b", coordinator: agents)
        #expect(try await cluster.agentsRegister(1, http))
        let stray = try cluster.startAgent("b2", site: "b", root: "local-disk", coordinator: agents)
        let twin = try cluster.startAgent("b3", site: "b", root: "other-mount", coordinator: agents)
        defer { withExtendedLifetime((coordinator, b1, stray, twin)) {} }
        #expect(try await cluster.eventually(20) { !stray.process.isRunning }, "\(stray.output)")
        #expect(stray.process.terminationStatus != 0)
        #expect(stray.output.contains("must share one root") && stray.output.contains("\(dir.path)/local-disk") && stray.output.contains("\(dir.path)/root-b"),
                "\(stray.output)")
        #expect(coordinator.output.contains("refused registration of 'b2'") && coordinator.output.contains("must share one root"), "\(coordinator.output)")
        #expect(try await cluster.eventually(20) { try cluster.agents(http).compactMap { $0["name"] as? String }.sorted() == ["b1", "b3"] })
        #expect(twin.process.isRunning, "\(twin.output)")
        // Each agent's root as it gave it: one directory, two paths.
        let roots = try cluster.agents(http).map { $0["root"] as? String }
        #expect(roots == ["\(dir.path)/root-b", "\(dir.path)/other-mount"], "\(roots)")
        let table = try cluster.cli(["agents"], http: http).stdout
        #expect(table.contains("ROOT") && table.contains("\(dir.path)/other-mount"), "\(table)")
    }

    /// A second coordinator on a state directory in use is refused, naming the first (after
    /// waiting a while for it to stop, as a restart would); the first goes on serving. Before,
    /// both ran on one journal, each free to hand out the same units.
    @Test func aSecondCoordinatorOnTheSameStateIsRefused() async throws {
        let (coordinator, _, http) = try await cluster.startCoordinator()
        defer { withExtendedLifetime(coordinator) {} }
        let second = try BargeProcess.run(["coordinator", "--state", dir.path + "/state", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"],
                                          environment: environment)
        #expect(second.status == 1, "\(second.stdout)\(second.stderr)")
        #expect(second.stderr.contains("another coordinator (pid \(coordinator.process.processIdentifier)) runs on the state directory \(dir.path)/state"),
                "\(second.stderr)")
        #expect(coordinator.process.isRunning)
        #expect(try cluster.cli(["jobs"], http: http).status == 0)
    }

    /// A coordinator that holds the state directory but is stopped (SIGSTOP) is named as such at
    /// once: waiting for it to stop, as for one shutting down, would only delay the refusal.
    /// Before, the second waited 15 s and said the first "runs".
    @Test func aSecondCoordinatorBesideAStoppedOneSaysItIsStopped() async throws {
        let (coordinator, _, _) = try await cluster.startCoordinator()
        let pid = coordinator.process.processIdentifier
        kill(pid, SIGSTOP)
        defer { kill(pid, SIGCONT) }
        let second = try BargeProcess.run(["coordinator", "--state", dir.path + "/state", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"],
                                          environment: environment)
        #expect(second.status == 1, "\(second.stdout)\(second.stderr)")
        #expect(second.stderr.contains("another coordinator (pid \(pid)) holds the state directory \(dir.path)/state but is stopped"), "\(second.stderr)")
        #expect(second.stderr.contains("kill -CONT \(pid)"), "\(second.stderr)")
    }

    /// The coordinator's two ports mixed up, both ways: each side says so and names the right
    /// one. Before, the agent logged "connection closed during the handshake" and the CLI
    /// "invalid constant string".
    @Test func theCoordinatorsTwoPortsMixedUpAreNamed() async throws {
        let (coordinator, agents, http) = try await cluster.startCoordinator()
        let httpPort = String(http.split(separator: ":").last!)
        let lost = try cluster.startAgent("a1", site: "a", root: "root-a", coordinator: "127.0.0.1:\(httpPort)")
        defer { withExtendedLifetime((coordinator, lost)) {} }
        #expect(try await cluster.eventually(15) { lost.output.contains("HTTP, not Barge frames, so an HTTP port and a Barge port were mixed up") },
                "\(lost.output)")
        #expect(lost.output.contains("retrying in ") && !lost.output.contains("seconds"), "the delay in short: \(lost.output)")
        let cli = try cluster.cli(["jobs"], http: "http://\(agents)")
        #expect(cli.status == 1 && cli.stderr.contains("does not answer in HTTP: is it the coordinator's agent port (--listen)?"), "\(cli.stderr)")
    }

    /// A destination agent that advertises an address the source cannot reach: the job fails
    /// after its retries, saying which agent, which address and what to check. Before, the reason
    /// was NIO's nested "Connection errors: SingleConnectionFailure(…)".
    @Test func aDestinationAdvertisedWhereTheSourceCannotReachItIsNamed() async throws {
        let (coordinator, agents, http) = try await cluster.startCoordinator()
        try FileManager.default.createDirectory(atPath: dir.path + "/root-a/ds", withIntermediateDirectories: true)
        try Data(repeating: 7, count: 100_000).write(to: dir.url.appendingPathComponent("root-a/ds/f"))
        let a1 = try cluster.startAgent("a1", site: "a", root: "root-a", coordinator: agents)
        // Listening on 127.0.0.1 alone, but telling others 127.0.0.2: nothing answers there.
        let b1 = try cluster.startAgent("b1", site: "b", root: "root-b", coordinator: agents, arguments: ["--listen", "127.0.0.1:0", "--advertise", "127.0.0.2"])
        defer { withExtendedLifetime((coordinator, a1, b1)) {} }
        #expect(try await cluster.agentsRegister(2, http))
        let r = try cluster.cli(["submit", "a:ds", "b:ds", "--wait"], http: http)
        #expect(r.status == 1)
        #expect(r.stdout.contains("cannot connect to b1's data plane at 127.0.0.2:") && r.stdout.contains("(connection refused)")
                && r.stdout.contains("b1's --advertise and --listen"), "\(r.stdout)\(r.stderr)")
    }

    @Test func aWrongTokenIsRefusedOnBothSidesAndLogged() async throws {
        let (coordinator, agentAddress, _) = try await cluster.startCoordinator()
        let bad = dir.url.appendingPathComponent("bad-token")
        try Data("another-clusters-token-0123456789".utf8).write(to: bad)
        let r = try BargeProcess.run(["agent", "--coordinator", agentAddress, "--name", "x", "--site", "a",
                                      "--root", dir.path + "/root-a", "--token-file", bad.path])
        #expect(r.status != 0)
        #expect(r.stderr.contains("--token-file"), "\(r.stderr)")
        #expect(try await cluster.eventually(5) { coordinator.output.contains("refused connection from 127.0.0.1") }, "\(coordinator.output)")
    }

    /// The cluster's token changed in its file while an agent ran (a rotation), and the
    /// coordinator restarted with it: the agent, refused, says that the file changed since it
    /// started and that a restart takes the new token. Before, it blamed "different token files"
    /// given to the two sides (h4 of session 49).
    @Test func anAgentRefusedAfterTheTokenFileChangedSaysToRestartIt() async throws {
        let listen = "127.0.0.1:\(try TestCluster.freePort())", httpAddress = "127.0.0.1:\(try TestCluster.freePort())"
        let (first, agents, http) = try await cluster.startCoordinator(listen: listen, http: httpAddress)
        let a1 = try cluster.startAgent("a1", site: "a", root: "root-a", coordinator: agents)
        #expect(try await cluster.agentsRegister(1, http))
        let tokenFile = try #require(environment["BARGE_TOKEN_FILE"])
        try Data("a-rotated-cluster-token-\(UUID().uuidString)\n".utf8).write(to: URL(fileURLWithPath: tokenFile))
        first.kill(SIGTERM)
        first.process.waitUntilExit()
        let (second, _, _) = try await cluster.startCoordinator(listen: listen, http: httpAddress, log: "coordinator2.log")
        defer { withExtendedLifetime(second) {} }
        #expect(try await cluster.eventually(30) { !a1.process.isRunning }, "\(a1.output)")
        #expect(a1.process.terminationStatus != 0)
        #expect(a1.output.contains("the token in \(tokenFile) has changed since this agent started") && a1.output.contains("restart it")
                && !a1.output.contains("different token files"), "\(a1.output)")
    }

    @Test func clearErrorsForBadInput() async throws {
        let (coordinator, _, http) = try await cluster.startCoordinator()
        defer { withExtendedLifetime(coordinator) {} }
        let status = try BargeProcess.run(["status", "no-such-job", "--coordinator-url", http], environment: cluster.environment)
        #expect(status.status != 0)
        #expect(status.stderr.contains("no job no-such-job"))
        let cancel = try BargeProcess.run(["cancel", "no-such-job", "--coordinator-url", http], environment: cluster.environment)
        #expect(cancel.status != 0 && cancel.stderr.contains("no job no-such-job"))

        let noToken = try BargeProcess.run(["coordinator", "--state", dir.path + "/s2"], environment: ["BARGE_TOKEN_FILE": ""])
        #expect(noToken.status != 0 && noToken.stderr.contains("a cluster token is required"))
        let badRoot = try BargeProcess.run(["agent", "--name", "a", "--site", "s", "--root", dir.path + "/missing"])
        #expect(badRoot.status != 0 && badRoot.stderr.contains("is not a directory"))
        let unreachable = try BargeProcess.run(["agents", "--coordinator-url", "http://127.0.0.1:1"])
        #expect(unreachable.status != 0 && unreachable.stderr.contains("cannot reach the coordinator"))
    }

    /// The API wants a token: the coordinator writes an admin token on its first start, the CLI
    /// says where to find one when it has none, and roles hold through the CLI.
    @Test func theAPINeedsATokenAndTheCLISaysWhereToFindOne() async throws {
        let metricsPort = try TestCluster.freePort()
        let (coordinator, _, http) = try await cluster.startCoordinator(extra: ["--metrics", "127.0.0.1:\(metricsPort)"])
        defer { withExtendedLifetime(coordinator) {} }
        let adminFile = try #require(environment["BARGE_API_TOKEN_FILE"])
        var st = stat()
        #expect(stat(adminFile, &st) == 0 && st.st_mode & 0o777 == 0o600)
        #expect(coordinator.output.contains("admin API token is in \(adminFile)"), "\(coordinator.output)")

        // No token at all (and none in ./barge-state, as the run is elsewhere).
        let none = try BargeProcess.run(["jobs", "--coordinator-url", http], environment: ["BARGE_API_TOKEN_FILE": ""], directory: dir.url)
        #expect(none.status == 1 && none.stderr.contains("requires an API token") && none.stderr.contains("--api-token-file"), "\(none.stderr)")
        let missing = try BargeProcess.run(["jobs", "--coordinator-url", http, "--api-token-file", dir.path + "/nope"], directory: dir.url)
        #expect(missing.status == 1 && missing.stderr.contains("cannot read the API token file \(dir.path)/nope"), "\(missing.stderr)")

        let viewerFile = dir.url.appendingPathComponent("viewer.token")
        let created = try cluster.cli(["token", "create", "--role", "viewer", "--name", "watcher"], http: http)
        #expect(created.status == 0, "\(created.stderr)")
        try Data(created.stdout.utf8).write(to: viewerFile)
        let viewer = ["BARGE_API_TOKEN_FILE": viewerFile.path]
        #expect(try BargeProcess.run(["jobs", "--coordinator-url", http], environment: viewer).status == 0)
        let refused = try BargeProcess.run(["drain", "a1", "--coordinator-url", http], environment: viewer)
        #expect(refused.status == 1 && refused.stderr.contains("token 'watcher' has role viewer; this needs admin (HTTP 403)"), "\(refused.stderr)")
        let listed = try cluster.cli(["token", "list", "--json"], http: http)
        #expect(listed.stdout.contains("\"watcher\"") && listed.stdout.contains("\"admin\"") && !listed.stdout.contains("barge_"), "\(listed.stdout)")
        #expect(try cluster.cli(["token", "revoke", "watcher"], http: http).status == 0)
        let revoked = try BargeProcess.run(["jobs", "--coordinator-url", http], environment: viewer)
        #expect(revoked.status == 1 && revoked.stderr.contains("not valid"), "\(revoked.stderr)")
        let badRole = try cluster.cli(["token", "create", "--role", "root", "--name", "x"], http: http)
        #expect(badRole.status != 0 && badRole.stderr.contains("--role must be viewer, operator or admin"))

        // Each of those actions is in the audit trail, refusals included, and the chain holds.
        let verify = try BargeProcess.run(["audit", "verify", "--state", dir.path + "/state"])
        #expect(verify.status == 0 && verify.stdout.contains("chain intact"), "\(verify.stdout)\(verify.stderr)")
        let shown = try BargeProcess.run(["audit", "show", "--state", dir.path + "/state"]).stdout
        for expected in ["admin (admin)", "POST /v1/tokens", "token 'watcher' (viewer) created", "watcher (viewer)", "refused 403", "DELETE /v1/tokens/{name}"] {
            #expect(shown.contains(expected), "\(expected) not in\n\(shown)")
        }

        // /metrics alone on its own port, with no token.
        let metrics = try String(contentsOf: URL(string: "http://127.0.0.1:\(metricsPort)/metrics")!, encoding: .utf8)
        #expect(metrics.contains("barge_"))
    }

    /// Killed at any moment while actions run, the coordinator comes back with a journal and an
    /// audit trail that agree: an action is recorded if and only if it took effect.
    @Test func afterACrashTheAuditTrailHoldsExactlyTheActionsThatTookEffect() async throws {
        var (coordinator, _, http) = try await cluster.startCoordinator()
        let url = http
        let creator = Task.detached { () -> Int in
            var tried = 0
            for i in 0..<400 {
                let r = try BargeProcess.run(["token", "create", "--role", "viewer", "--name", "t\(i)", "--coordinator-url", url], environment: cluster.environment)
                tried += 1
                if r.status != 0 { break }
            }
            return tried
        }
        try await Task.sleep(for: .milliseconds(1500))
        coordinator.kill(SIGKILL)
        coordinator.process.waitUntilExit()
        let tried = try await creator.value
        (coordinator, _, http) = try await cluster.startCoordinator(log: "coordinator-2.log")
        defer { withExtendedLifetime(coordinator) {} }
        let listed = try cluster.cli(["token", "list", "--json"], http: http)
        let tokens = try #require(try JSONSerialization.jsonObject(with: Data(listed.stdout.utf8)) as? [[String: Any]], "\(listed.stderr)")
        let made = Set(tokens.compactMap { $0["name"] as? String }.filter { $0.hasPrefix("t") })
        let shown = try BargeProcess.run(["audit", "show", "--json", "--state", dir.path + "/state"]).stdout
        var recorded: Set<String> = []
        for line in shown.split(separator: "\n") where line.contains("\"outcome\":\"done\"") && line.contains("(viewer) created") {
            if let r = line.range(of: #"token '(t\d+)'"#, options: .regularExpression) { recorded.insert(String(line[r].dropFirst(7).dropLast())) }
        }
        print("crash: \(tried) creations tried, \(made.count) took effect, \(recorded.count) recorded")
        #expect(made.count > 3, "too few actions before the kill to mean anything")
        #expect(recorded == made)
        let verify = try BargeProcess.run(["audit", "verify", "--state", dir.path + "/state"])
        #expect(verify.status == 0, "\(verify.stdout)")
    }
}

