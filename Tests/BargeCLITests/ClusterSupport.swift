import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Testing

/// A long-running `barge` process whose output goes to a log file.
final class RunningBarge {
    let process = Process()
    let log: URL

    /// `launcher`: a command that runs `barge` (as `ip netns exec NS`), or none.
    init(_ arguments: [String], environment: [String: String], log: URL, launcher: [String] = []) throws {
        self.log = log
        FileManager.default.createFile(atPath: log.path, contents: nil)
        let handle = try FileHandle(forWritingTo: log)
        if let tool = launcher.first {
            process.executableURL = URL(fileURLWithPath: tool)
            process.arguments = Array(launcher.dropFirst()) + [BargeProcess.executable.path] + arguments
        } else {
            process.executableURL = BargeProcess.executable
            process.arguments = arguments
        }
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

/// A temporary cluster directory (token, roots, logs) and helpers to start real `barge`
/// processes in it: the fixture the process tests share.
final class TestCluster: @unchecked Sendable {
    let dir: TemporaryDirectory
    let environment: [String: String]

    /// `environment`: more variables for every process (as `BARGE_CA_FILE`).
    init(roots: [String] = ["root-a", "root-b"], environment extra: [String: String] = [:]) throws {
        dir = try TemporaryDirectory()
        let token = dir.url.appendingPathComponent("token")
        try Data("test-cluster-token-\(UUID().uuidString)\n".utf8).write(to: token)
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: token.path)
        // The admin API token the coordinator writes under its --state on its first start.
        environment = ["BARGE_TOKEN_FILE": token.path, "BARGE_API_TOKEN_FILE": dir.path + "/state/admin.token"].merging(extra) { $1 }
        for root in roots {
            try FileManager.default.createDirectory(at: dir.url.appendingPathComponent(root), withIntermediateDirectories: true)
        }
    }

    /// Polls for up to `seconds` (generous: the suite runs many processes at once on two cores).
    /// The condition runs on a Dispatch thread: it mostly starts a `barge` command and waits for
    /// it, and on the cooperative pool (two threads here) those waits, from many tests at once,
    /// starved the agents other tests run in this process: under load, a test's in-process agents
    /// did not finish their handshake in 20 s.
    func eventually(_ seconds: Double = 60, _ condition: @escaping () throws -> Bool) async throws -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        let polled = OffPool(condition)
        while Date() < deadline {
            if try await polled.evaluate() { return true }
            try await Task.sleep(for: .milliseconds(100))
        }
        return false
    }

    /// A condition evaluated on a Dispatch thread, one evaluation at a time (the caller awaits
    /// each), so what it captures is never touched by two threads at once.
    private struct OffPool: @unchecked Sendable {
        let condition: () throws -> Bool
        init(_ condition: @escaping () throws -> Bool) { self.condition = condition }
        func evaluate() async throws -> Bool {
            try await withCheckedThrowingContinuation { c in
                DispatchQueue.global().async { c.resume(with: Result { try condition() }) }
            }
        }
    }

    /// Starts a coordinator on free ports; returns it with its agent and HTTP addresses.
    func startCoordinator(extra: [String] = [], listen: String = "127.0.0.1:0", http: String = "127.0.0.1:0",
                          log: String = "coordinator.log") async throws -> (RunningBarge, agents: String, http: String) {
        let c = try RunningBarge(["coordinator", "--state", dir.path + "/state", "--listen", listen, "--http", http,
                                  "--agent-timeout", "2"] + extra, environment: environment, log: dir.url.appendingPathComponent(log))
        var agents = "", http = ""
        let ready = try await eventually {
            guard let line = c.output.split(separator: "\n").first(where: { $0.contains("coordinator ready") }) else { return false }
            let words = line.split(separator: " ")
            agents = String(words[words.firstIndex(of: "on")! + 1].dropLast())
            http = String(words.last { $0.hasPrefix("http://") || $0.hasPrefix("https://") }!.dropLast())
            return true
        }
        try #require(ready, "coordinator did not start: \(c.output)")
        return (c, agents, http)
    }

    func agents(_ http: String) throws -> [[String: Any]] {
        let r = try BargeProcess.run(["agents", "--json", "--coordinator-url", http], environment: environment)
        guard r.status == 0 else { return [] }
        return try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [[String: Any]] ?? []
    }

    /// Waits until `count` agents have registered. When they have not within `seconds`, records
    /// what the coordinator lists and the end of every log in the cluster's directory, so that a
    /// failure says which process did not come up, and why.
    func agentsRegister(_ count: Int, _ http: String, within seconds: Double = 60) async throws -> Bool {
        if try await eventually(seconds, { try self.agents(http).count == count }) { return true }
        let listed = try BargeProcess.run(["agents", "--coordinator-url", http], environment: environment)
        var report = "\(count) agents did not register within \(Int(seconds)) s; `barge agents` (exit \(listed.status)):\n\(listed.stdout)\(listed.stderr)"
        let logs = ((try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []).filter { $0.hasSuffix(".log") }.sorted()
        for name in logs {
            let text = (try? String(contentsOfFile: dir.path + "/" + name, encoding: .utf8)) ?? ""
            report += "\n--- \(name), last 40 lines:\n" + text.split(separator: "\n", omittingEmptySubsequences: false).suffix(40).joined(separator: "\n")
        }
        Issue.record(Comment(rawValue: report))
        return false
    }

    /// Starts an agent on a free data port.
    func startAgent(_ name: String, site: String, root: String, coordinator: String, environment extra: [String: String] = [:],
                    arguments: [String] = [], log: String? = nil) throws -> RunningBarge {
        try RunningBarge(["agent", "--coordinator", coordinator, "--name", name, "--site", site, "--root", dir.path + "/" + root] + arguments,
                         environment: environment.merging(extra) { $1 }, log: dir.url.appendingPathComponent(log ?? "\(name).log"))
    }

    /// A coordinator with one agent per site (a1 on `root-a` for site a, b1 on `root-b` for site
    /// b), once both have registered.
    func startPair(coordinatorArguments: [String] = []) async throws -> (coordinator: RunningBarge, a1: RunningBarge, b1: RunningBarge, agents: String, http: String) {
        let (coordinator, agents, http) = try await startCoordinator(extra: coordinatorArguments)
        let a1 = try startAgent("a1", site: "a", root: "root-a", coordinator: agents)
        let b1 = try startAgent("b1", site: "b", root: "root-b", coordinator: agents)
        try #require(try await agentsRegister(2, http))
        return (coordinator, a1, b1, agents, http)
    }

    /// A loopback port that was free a moment ago, for a process that must come back on the same one.
    /// It lies below the kernel's ephemeral range (`ip_local_port_range`): a port from that range
    /// (what binding port 0 gives) was taken, between a coordinator's stop and its restart, as the
    /// local port of another test's outgoing connection, and the restart failed with EADDRINUSE.
    static func freePort() throws -> Int {
        let range = (try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8))?
            .split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).compactMap { Int($0) } ?? []
        let below = min(range.first ?? 32768, 32768)
        for _ in 0..<200 {
            let port = Int.random(in: 10_000..<max(10_001, below))
            if try canBind(port) { return port }
        }
        throw CocoaError(.fileWriteUnknown)
    }

    private static func canBind(_ port: Int) throws -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw CocoaError(.fileWriteUnknown) }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = UInt16(port).bigEndian
        return withUnsafePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
    }

    /// GET of an API URL with the admin token (nil when it fails).
    func fetch(_ url: String) -> Data? {
        guard let token = try? String(contentsOfFile: environment["BARGE_API_TOKEN_FILE"]!, encoding: .utf8) else { return nil }
        var request = URLRequest(url: URL(string: url)!, timeoutInterval: 30)
        request.setValue("Bearer " + token.trimmingCharacters(in: .whitespacesAndNewlines), forHTTPHeaderField: "Authorization")
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var body: Data?
        URLSession.shared.dataTask(with: request) { data, response, _ in
            if (response as? HTTPURLResponse)?.statusCode == 200 { body = data }
            done.signal()
        }.resume()
        done.wait()
        return body
    }

    /// POST of `body` to an API URL with the admin token, streamed as a client sends it: the
    /// status (0 when there was no answer) and the answer's text.
    func post(_ url: String, body: Data) -> (status: Int, text: String) {
        guard let token = try? String(contentsOfFile: environment["BARGE_API_TOKEN_FILE"]!, encoding: .utf8) else { return (0, "") }
        var request = URLRequest(url: URL(string: url)!, timeoutInterval: 30)
        request.httpMethod = "POST"
        request.httpBody = body
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        request.setValue("Bearer " + token.trimmingCharacters(in: .whitespacesAndNewlines), forHTTPHeaderField: "Authorization")
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var answer = (status: 0, text: "")
        URLSession.shared.dataTask(with: request) { data, response, _ in
            answer = ((response as? HTTPURLResponse)?.statusCode ?? 0, data.map { String(decoding: $0, as: UTF8.self) } ?? "")
            done.signal()
        }.resume()
        done.wait()
        return answer
    }

    /// Runs the CLI against this cluster's coordinator.
    func cli(_ arguments: [String], http: String) throws -> BargeProcess.Result {
        try BargeProcess.run(arguments + ["--coordinator-url", http], environment: environment)
    }
}
