import Foundation
import Testing

/// A transfer through the delay test bed (../shared/tools/delayline): namespaces A, router and B,
/// with 25 ms each way (RTT 50 ms) at 1 Gbit/s. The coordinator and the source agent are in A, the
/// destination agent in B. The throughput bound is generous, far below the target that
/// cluster/bench-peers.sh measures, so that a debug build on a busy machine cannot fail it.
@Suite(.serialized)
struct DelayLineProcessTests {
    static let repo = WANTestbedTests.repo
    static let testbed = repo.deletingLastPathComponent().appendingPathComponent("shared/tools/delayline/testbed.sh")
    static let linkBytesPerSecond = 125e6

    /// Why the test bed cannot be built here, or nil.
    static let unavailable: String? = {
        guard getuid() == 0 else { return "not root: network namespaces need root (CI runs as root)" }
        guard FileManager.default.fileExists(atPath: testbed.path) else { return "\(testbed.path) is missing" }
        for tool in ["/usr/sbin/ip", "/usr/sbin/tc", "/usr/bin/gcc"] where !FileManager.default.isExecutableFile(atPath: tool) {
            return "\(tool) is missing (cluster/install-deps.sh --peers installs gcc)"
        }
        return nil
    }()

    static func available() -> Bool {
        if let reason = unavailable { print("DelayLineProcessTests skipped: \(reason)") }
        return unavailable == nil
    }

    /// Runs `sh -c command arguments…` and waits for it with `waitpid` (Foundation's `Process`
    /// left this child unreaped, and the test waiting, while another suite ran processes too).
    static func shell(_ command: String, _ arguments: [String], _ environment: [String: String]) -> Int32 {
        let argv = ["/bin/sh", "-c", command] + arguments
        let env = ProcessInfo.processInfo.environment.merging(environment) { $1 }.map { "\($0)=\($1)" }
        var cArgs = argv.map { strdup($0) } + [nil]
        var cEnv = env.map { strdup($0) } + [nil]
        defer { (cArgs + cEnv).forEach { free($0) } }
        var pid: pid_t = 0
        guard posix_spawn(&pid, "/bin/sh", nil, nil, &cArgs, &cEnv) == 0 else { return -1 }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        return (status >> 8) & 0xff
    }

    @Test(.enabled("needs root, ip, tc and gcc for the delay test bed") { DelayLineProcessTests.available() })
    func aTransferAtFiftyMillisecondsKeepsTheLinkBusy() async throws {
        let prefix = "bd\(getpid() % 100_000)"
        let environment = ["DL_PREFIX": prefix, "DL_NET": "10.236",
                           "DL_BIN": Self.repo.appendingPathComponent(".build/delayline/delayline").path]
        try FileManager.default.createDirectory(at: Self.repo.appendingPathComponent(".build/delayline"), withIntermediateDirectories: true)
        // Through a file, not a pipe: the delay line it starts would hold a pipe open, and the
        // read of the output would never end.
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("barge-testbed-\(prefix).log").path
        let up = try await WANTestbedTests.onThread { Self.shell("\"$0\" up 1gbit 25 > \"$1\" 2>&1", [Self.testbed.path, log], environment) }
        defer {
            _ = Self.shell("\"$0\" down > /dev/null 2>&1", [Self.testbed.path], environment)
            try? FileManager.default.removeItem(atPath: log)
        }
        try #require(up == 0, "testbed.sh up failed: \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
        func launcher(_ side: String) -> [String] { ["/usr/sbin/ip", "netns", "exec", "\(prefix)-\(side)"] }

        let cluster = try TestCluster()
        let data = cluster.dir.url.appendingPathComponent("root-a/rand")
        try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)
        let urandom = try #require(FileHandle(forReadingAtPath: "/dev/urandom"))
        for i in 0..<3 { try urandom.readData(ofLength: 64 << 20).write(to: data.appendingPathComponent("r\(i).bin")) }
        sync()
        let coordinator = try RunningBarge(["coordinator", "--state", cluster.dir.path + "/state", "--listen", "10.236.1.1:7470", "--http", "10.236.1.1:7480"],
                                           environment: cluster.environment, log: cluster.dir.url.appendingPathComponent("coordinator.log"), launcher: launcher("a"))
        let a1 = try RunningBarge(["agent", "--coordinator", "10.236.1.1:7470", "--name", "a1", "--site", "a", "--root", cluster.dir.path + "/root-a",
                                   "--listen", "10.236.1.1:0"], environment: cluster.environment, log: cluster.dir.url.appendingPathComponent("a1.log"),
                                  launcher: launcher("a"))
        let b1 = try RunningBarge(["agent", "--coordinator", "10.236.1.1:7470", "--name", "b1", "--site", "b", "--root", cluster.dir.path + "/root-b",
                                   "--listen", "10.236.2.1:0"], environment: cluster.environment, log: cluster.dir.url.appendingPathComponent("b1.log"),
                                  launcher: launcher("b"))
        @Sendable func cli(_ arguments: [String]) throws -> BargeProcess.Result {
            try BargeProcess.run(["netns", "exec", "\(prefix)-a", "env", "BARGE_TOKEN_FILE=\(cluster.environment["BARGE_TOKEN_FILE"]!)", "BARGE_API_TOKEN_FILE=\(cluster.environment["BARGE_API_TOKEN_FILE"]!)",
                                  BargeProcess.executable.path] + arguments + ["--coordinator-url", "http://10.236.1.1:7480"],
                                 executable: URL(fileURLWithPath: "/usr/sbin/ip"))
        }
        let registered = try await cluster.eventually { try cli(["agents", "--json"]).stdout.components(separatedBy: "\"up\"").count == 3 }
        try #require(registered, "agents did not register: \(coordinator.output)\(a1.output)\(b1.output)")

        let r = try await WANTestbedTests.onThread { try cli(["submit", "a:rand", "b:copy", "--codec", "none", "--wait", "--json"]) }
        #expect(r.status == 0, "\(r.stdout)\(r.stderr)\n\(a1.output.suffix(2000))\n\(b1.output.suffix(2000))")
        let job = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], "\(r.stdout)\(r.stderr)")
        let seconds = try #require(job["finished_at"] as? Double) - (try #require(job["started_at"] as? Double))
        let rate = Double(3 << 26) / seconds
        print("delay line, RTT 50 ms, 1 Gbit/s: 192 MiB in \(String(format: "%.2f", seconds)) s = \(String(format: "%.0f", rate / 1e6)) MB/s (\(String(format: "%.2f", rate / Self.linkBytesPerSecond)) of the link)")
        // Stop-and-wait at this RTT, one chunk per stream and a new connection per unit, reached
        // about half the link; the bound leaves room for a debug build.
        #expect(rate > 0.2 * Self.linkBytesPerSecond)
        for i in 0..<3 {
            #expect(try Data(contentsOf: cluster.dir.url.appendingPathComponent("root-b/copy/r\(i).bin")) == Data(contentsOf: data.appendingPathComponent("r\(i).bin")))
        }
    }

    /// `cluster/wan-testbed.sh up RATE QUEUE_MS DELAY_MS` builds the project's WAN bed through the
    /// delay line: the same namespaces and addresses, the RTT grown by twice the delay, and
    /// `down` stops the delay line and removes the namespaces.
    @Test(.enabled("needs root, ip, tc and gcc for the delay test bed") { DelayLineProcessTests.available() })
    func theWANTestBedTakesADelay() async throws {
        let prefix = "bwd\(getpid() % 100_000)"
        let environment = ["BARGE_NETNS_PREFIX": prefix, "DL_BIN": Self.repo.appendingPathComponent(".build/delayline/delayline").path]
        let script = Self.repo.appendingPathComponent("cluster/wan-testbed.sh").path
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("barge-wanbed-\(prefix).log").path
        let up = try await WANTestbedTests.onThread { Self.shell("\"$0\" up 400mbit 60 20 > \"$1\" 2>&1", [script, log], environment) }
        var down: Int32 = -1
        defer {
            if down != 0 { _ = Self.shell("\"$0\" down > /dev/null 2>&1", [script], environment) }
            try? FileManager.default.removeItem(atPath: log)
        }
        try #require(up == 0, "wan-testbed.sh up failed: \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
        let ping = try BargeProcess.run(["netns", "exec", "\(prefix)-a", "ping", "-c", "3", "-i", "0.2", "10.77.2.1"],
                                        executable: URL(fileURLWithPath: "/usr/sbin/ip"))
        let rtt = WANTestbedTests.medianRTT(ping.stdout)
        #expect(rtt >= 40 && rtt < 60, "RTT \(rtt) ms through a delay of 20 ms each way:\n\(ping.stdout)")
        down = try await WANTestbedTests.onThread { Self.shell("\"$0\" down > \"$1\" 2>&1", [script, log], environment) }
        #expect(down == 0)
        let namespaces = try BargeProcess.run(["netns", "list"], executable: URL(fileURLWithPath: "/usr/sbin/ip")).stdout
        #expect(!namespaces.contains(prefix), "\(namespaces)")
        #expect(!FileManager.default.fileExists(atPath: FileManager.default.temporaryDirectory.path + "/delayline-\(prefix)-r/pid"))
    }
}
