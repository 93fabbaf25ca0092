import BargeCoordinator
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A coordinator and agents as child processes of this `barge`, on loopback, for `barge demo`.
/// Each child's output goes to a log file in `logs`. `stop()` sends SIGTERM and waits.
final class LocalCluster: @unchecked Sendable {
    let directory: URL
    let tokenFile: URL
    let agentPort: Int
    let httpPort: Int
    private(set) var processes: [(name: String, process: Process)] = []

    var coordinatorURL: String { "http://127.0.0.1:\(httpPort)" }
    /// The admin API token the coordinator writes on its first start.
    var apiTokenFile: URL { directory.appendingPathComponent("state").appendingPathComponent(APITokens.adminFileName) }

    /// A client with the admin token, once the coordinator has written it.
    func api() -> CoordinatorAPI {
        let token = (try? String(contentsOf: apiTokenFile, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
        return CoordinatorAPI(base: coordinatorURL, token: token)
    }
    var logs: URL { directory.appendingPathComponent("logs") }

    init(directory: URL) throws {
        self.directory = directory
        tokenFile = directory.appendingPathComponent("token")
        var bytes = [UInt8](repeating: 0, count: 32)
        for i in bytes.indices { bytes[i] = UInt8.random(in: 0...255) }
        try Data(Data(bytes).base64EncodedString().utf8).write(to: tokenFile)
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: tokenFile.path)
        try FileManager.default.createDirectory(at: directory.appendingPathComponent("logs"), withIntermediateDirectories: true)
        let ports = try Self.freePorts(2)
        agentPort = ports[0]
        httpPort = ports[1]
    }

    static var executable: String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }

    func startCoordinator() throws {
        try spawn("coordinator", ["coordinator", "--state", directory.appendingPathComponent("state").path,
                                  "--listen", "127.0.0.1:\(agentPort)", "--http", "127.0.0.1:\(httpPort)",
                                  "--agent-timeout", "5", "--token-file", tokenFile.path])
    }

    func startAgent(name: String, site: String, root: URL, environment: [String: String] = [:]) throws {
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        try spawn(name, ["agent", "--coordinator", "127.0.0.1:\(agentPort)", "--name", name, "--site", site,
                         "--root", root.path, "--listen", "127.0.0.1:0", "--token-file", tokenFile.path], environment: environment)
    }

    private func spawn(_ name: String, _ arguments: [String], environment: [String: String] = [:]) throws {
        let log = logs.appendingPathComponent("\(name).log")
        FileManager.default.createFile(atPath: log.path, contents: nil)
        let handle = try FileHandle(forWritingTo: log)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Self.executable)
        p.arguments = arguments
        p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        p.standardOutput = handle
        p.standardError = handle
        p.standardInput = FileHandle.nullDevice
        try p.run()
        processes.append((name, p))
    }

    /// Waits until `count` agents are up, or a child exits, or `timeout` passes.
    func waitForAgents(_ count: Int, timeout: Duration = .seconds(30)) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let api = api()
            if let dead = processes.first(where: { !$0.process.isRunning }) {
                // The demo removes its directory when it ends, log included: its last lines go
                // into the error.
                let log = logs.appendingPathComponent("\(dead.name).log")
                let tail = ((try? String(contentsOf: log, encoding: .utf8)) ?? "").split(separator: "\n").suffix(8).map { "  " + $0 }.joined(separator: "\n")
                throw Failure("\(dead.name) exited with status \(dead.process.terminationStatus); the end of \(log.path):\n\(tail)")
            }
            if let data = try? await api.get("/v1/agents"), let list = try? JSONDecoder().decode(AgentList.self, from: data),
               list.agents.filter({ $0.state == .up }).count >= count {
                return
            }
            try await Task.sleep(for: .milliseconds(200))
        }
        throw Failure("agents did not come up within \(timeout); logs are in \(logs.path)")
    }

    /// SIGTERM to every child, then wait for each (SIGKILL after 5 s).
    func stop() {
        for (_, p) in processes where p.isRunning { p.terminate() }
        let deadline = Date().addingTimeInterval(5)
        for (_, p) in processes {
            while p.isRunning && Date() < deadline { usleep(20_000) }
            if p.isRunning { kill(p.processIdentifier, SIGKILL) }
        }
        processes.removeAll()
    }

    /// `count` distinct ports that were free a moment ago (the kernel's choice for port 0). The
    /// sockets stay bound until all are chosen, so no two are the same.
    static func freePorts(_ count: Int) throws -> [Int] {
        var sockets: [Int32] = []
        defer { for fd in sockets { close(fd) } }
        var ports: [Int] = []
        for _ in 0..<count {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { throw Failure("socket: \(String(cString: strerror(errno)))") }
            sockets.append(fd)
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_addr.s_addr = inet_addr("127.0.0.1")
            addr.sin_port = 0
            var len = socklen_t(MemoryLayout<sockaddr_in>.size)
            let bound = withUnsafeMutablePointer(to: &addr) { p in
                p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 }
            }
            guard bound else { throw Failure("cannot find a free port: \(String(cString: strerror(errno)))") }
            ports.append(Int(UInt16(bigEndian: addr.sin_port)))
        }
        return ports
    }
}
