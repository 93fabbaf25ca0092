import Foundation
import Testing

/// A long-running `barge` process whose output goes to a log file.
final class RunningBarge {
    let process = Process()
    let log: URL

    init(_ arguments: [String], environment: [String: String], log: URL) throws {
        self.log = log
        FileManager.default.createFile(atPath: log.path, contents: nil)
        let handle = try FileHandle(forWritingTo: log)
        process.executableURL = BargeProcess.executable
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        try process.run()
    }

    var output: String { (try? String(contentsOf: log, encoding: .utf8)) ?? "" }

    func kill(_ signal: Int32) { Foundation.kill(process.processIdentifier, signal) }

    deinit {
        if process.isRunning { kill(SIGKILL); process.waitUntilExit() }
    }
}

/// A coordinator and agents as real processes on loopback, driven through the CLI.
@Suite(.serialized)
struct ClusterProcessTests {
    let dir: TemporaryDirectory
    let environment: [String: String]

    init() throws {
        dir = try TemporaryDirectory()
        let token = dir.url.appendingPathComponent("token")
        try Data("test-cluster-token-\(UUID().uuidString)\n".utf8).write(to: token)
        environment = ["BARGE_TOKEN_FILE": token.path]
        for root in ["root-a", "root-b"] {
            try FileManager.default.createDirectory(at: dir.url.appendingPathComponent(root), withIntermediateDirectories: true)
        }
    }

    /// Polls for up to `seconds`.
    func eventually(_ seconds: Double = 20, _ condition: () throws -> Bool) async throws -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if try condition() { return true }
            try await Task.sleep(for: .milliseconds(100))
        }
        return false
    }

    /// Starts a coordinator on free ports; returns it with its agent and HTTP addresses.
    func startCoordinator() async throws -> (RunningBarge, agents: String, http: String) {
        let c = try RunningBarge(["coordinator", "--state", dir.path + "/state", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0",
                                  "--agent-timeout", "2"], environment: environment, log: dir.url.appendingPathComponent("coordinator.log"))
        var agents = "", http = ""
        let ready = try await eventually {
            guard let line = c.output.split(separator: "\n").first(where: { $0.contains("coordinator ready") }) else { return false }
            let words = line.split(separator: " ")
            agents = String(words[words.firstIndex(of: "on")! + 1].dropLast())
            http = String(words.last { $0.hasPrefix("http://") }!.dropLast())
            return true
        }
        try #require(ready, "coordinator did not start: \(c.output)")
        return (c, agents, http)
    }

    func agents(_ http: String) throws -> [[String: Any]] {
        let r = try BargeProcess.run(["agents", "--json", "--coordinator-url", http])
        guard r.status == 0 else { return [] }
        return try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [[String: Any]] ?? []
    }

    @Test func agentsRegisterAndADeadOneIsMarkedDown() async throws {
        let (coordinator, agentAddress, http) = try await startCoordinator()
        defer { withExtendedLifetime(coordinator) {} }
        let a1 = try RunningBarge(["agent", "--coordinator", agentAddress, "--name", "a1", "--site", "site-a", "--root", dir.path + "/root-a"],
                                  environment: environment, log: dir.url.appendingPathComponent("a1.log"))
        let b1 = try RunningBarge(["agent", "--coordinator", agentAddress, "--name", "b1", "--site", "site-b", "--root", dir.path + "/root-b"],
                                  environment: environment, log: dir.url.appendingPathComponent("b1.log"))
        #expect(try await eventually { try agents(http).count == 2 }, "agents: \(coordinator.output)")
        let listed = try agents(http)
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
        #expect(try await eventually { try agents(http).first { $0["name"] as? String == "a1" }?["state"] as? String == "down" })
        #expect(coordinator.output.contains("agents down after"))

        // SIGTERM: the agent and the coordinator shut down cleanly.
        b1.kill(SIGTERM)
        b1.process.waitUntilExit()
        coordinator.kill(SIGTERM)
        #expect(try await eventually(10) { !coordinator.process.isRunning })
        #expect(coordinator.process.terminationStatus == 0, "\(coordinator.output)")
    }

    @Test func aWrongTokenIsRefusedOnBothSidesAndLogged() async throws {
        let (coordinator, agentAddress, _) = try await startCoordinator()
        let bad = dir.url.appendingPathComponent("bad-token")
        try Data("another-clusters-token-0123456789".utf8).write(to: bad)
        let r = try BargeProcess.run(["agent", "--coordinator", agentAddress, "--name", "x", "--site", "a",
                                      "--root", dir.path + "/root-a", "--token-file", bad.path])
        #expect(r.status != 0)
        #expect(r.stderr.contains("--token-file"), "\(r.stderr)")
        #expect(try await eventually(5) { coordinator.output.contains("refused connection from 127.0.0.1") }, "\(coordinator.output)")
    }

    @Test func clearErrorsForBadInput() async throws {
        let (coordinator, _, http) = try await startCoordinator()
        defer { withExtendedLifetime(coordinator) {} }
        let status = try BargeProcess.run(["status", "no-such-job", "--coordinator-url", http])
        #expect(status.status != 0)
        #expect(status.stderr.contains("no job no-such-job"))
        let cancel = try BargeProcess.run(["cancel", "no-such-job", "--coordinator-url", http])
        #expect(cancel.status != 0 && cancel.stderr.contains("no job no-such-job"))

        let noToken = try BargeProcess.run(["coordinator", "--state", dir.path + "/s2"], environment: ["BARGE_TOKEN_FILE": ""])
        #expect(noToken.status != 0 && noToken.stderr.contains("a cluster token is required"))
        let badRoot = try BargeProcess.run(["agent", "--name", "a", "--site", "s", "--root", dir.path + "/missing"])
        #expect(badRoot.status != 0 && badRoot.stderr.contains("is not a directory"))
        let unreachable = try BargeProcess.run(["agents", "--coordinator-url", "http://127.0.0.1:1"])
        #expect(unreachable.status != 0 && unreachable.stderr.contains("cannot reach the coordinator"))
    }
}
