import Foundation
import Testing

/// `barge agent --tcp-congestion`: the data-plane connections a source agent opens run the
/// algorithm it names, seen from outside by `ss` while a transfer runs.
struct TCPCongestionProcessTests {
    static let ss = ["/usr/bin/ss", "/bin/ss"].first { FileManager.default.isExecutableFile(atPath: $0) }

    /// The algorithm of each TCP connection process `pid` has open, as `ss -tinp` shows them.
    static func congestionControls(of pid: Int32) throws -> [String] {
        let ss = Process()
        ss.executableURL = URL(fileURLWithPath: Self.ss!)
        ss.arguments = ["-tinpH", "state", "established"]
        let out = Pipe()
        ss.standardOutput = out
        ss.standardError = FileHandle.nullDevice
        try ss.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        ss.waitUntilExit()
        // Each connection is a line naming its process, then a line of TCP details that starts
        // with the algorithm's name.
        let lines = text.split(separator: "\n")
        var found: [String] = []
        for (i, line) in lines.enumerated() where line.contains("pid=\(pid),") && i + 1 < lines.count {
            if let name = lines[i + 1].split(whereSeparator: { $0 == " " || $0 == "\t" }).first { found.append(String(name)) }
        }
        return found
    }

    /// 24 MiB of random bytes in `root-a/ds`: at 8 MiB/s, about three seconds with the streams open.
    static func randomSource(_ cluster: TestCluster) throws {
        let source = cluster.dir.path + "/root-a/ds"
        try FileManager.default.createDirectory(atPath: source, withIntermediateDirectories: true)
        let random = try #require(FileHandle(forReadingAtPath: "/dev/urandom"))
        try random.readData(ofLength: 24 << 20).write(to: URL(fileURLWithPath: source + "/random.bin"))
        try random.close()
    }

    @Test(.enabled(if: ss != nil && FileManager.default.fileExists(atPath: "/proc/sys/net/ipv4/tcp_congestion_control"), "needs ss (iproute2) and Linux"))
    func theSourceAgentsDataConnectionsRunTheAlgorithmItNames() async throws {
        let cluster = try TestCluster()
        let (coordinator, agents, http) = try await cluster.startCoordinator()
        let a1 = try cluster.startAgent("a1", site: "a", root: "root-a", coordinator: agents, arguments: ["--tcp-congestion", "reno"])
        let b1 = try cluster.startAgent("b1", site: "b", root: "root-b", coordinator: agents)
        defer { withExtendedLifetime((coordinator, a1, b1)) {} }
        try #require(try await cluster.agentsRegister(2, http), "\(a1.output)\(b1.output)")
        #expect(a1.output.contains("sending with TCP congestion control reno"), "\(a1.output)")
        #expect(b1.output.contains("(the host's default)"), "\(b1.output)")

        try Self.randomSource(cluster)
        let job = try cluster.cli(["submit", "a:ds", "b:copy", "--bwlimit", "8MiB/s"], http: http).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(!job.isEmpty)
        var seen: Set<String> = []
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            seen.formUnion(try Self.congestionControls(of: a1.process.processIdentifier))
            if seen.contains("reno") { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        // Its coordinator connection runs the host's default; the data plane runs reno.
        #expect(seen.contains("reno"), "a1's connections ran \(seen)\n\(a1.output)")
        let done = try cluster.cli(["status", job, "--watch"], http: http)
        #expect(done.status == 0 && done.stdout.contains("succeeded"), "\(done.stdout)\(done.stderr)")
    }

    static let hostDefault = (try? String(contentsOfFile: "/proc/sys/net/ipv4/tcp_congestion_control", encoding: .utf8))?
        .trimmingCharacters(in: .whitespacesAndNewlines)

    /// Without `--tcp-congestion`, a scavenger job's connections run cubic (BBR, a common host
    /// default, kept a scavenger from giving way on long paths), apart from a fair job's, which
    /// run the host's default.
    @Test(.enabled(if: ss != nil && hostDefault != nil && hostDefault != "cubic" && hostDefault != "reno",
                   "needs ss, Linux, and a host default other than cubic or reno (there would be nothing to tell apart)"))
    func aScavengerJobsConnectionsRunCubicWhereTheHostDefaultDoesNotGiveWay() async throws {
        let cluster = try TestCluster()
        let (coordinator, agents, http) = try await cluster.startCoordinator()
        let a1 = try cluster.startAgent("a1", site: "a", root: "root-a", coordinator: agents)
        let b1 = try cluster.startAgent("b1", site: "b", root: "root-b", coordinator: agents)
        defer { withExtendedLifetime((coordinator, a1, b1)) {} }
        try #require(try await cluster.agentsRegister(2, http), "\(a1.output)\(b1.output)")
        #expect(a1.output.contains("scavenger jobs send with TCP congestion control cubic"), "\(a1.output)")
        try Self.randomSource(cluster)
        for (mode, expected) in [("scavenger", "cubic"), ("fair", Self.hostDefault!)] {
            let job = try cluster.cli(["submit", "a:ds", "b:copy-\(mode)", "--bwlimit", "8MiB/s", "--cc", mode], http: http).stdout
                .trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(!job.isEmpty)
            var seen: Set<String> = []
            let deadline = Date().addingTimeInterval(20)
            while Date() < deadline {
                seen.formUnion(try Self.congestionControls(of: a1.process.processIdentifier))
                if seen.contains(expected) && (mode == "fair" || seen.contains("cubic")) { break }
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(seen.contains(expected), "\(mode): a1's connections ran \(seen)\n\(a1.output)")
            let done = try cluster.cli(["status", job, "--watch"], http: http)
            #expect(done.status == 0 && done.stdout.contains("succeeded"), "\(done.stdout)\(done.stderr)")
        }
    }
}
