import Foundation
import Testing

/// An agent and a coordinator started with a low soft limit on open descriptors (`ulimit -Sn
/// 256`, as many systems start processes with 1,024) raise it to the hard limit, and a job runs.
/// Before, they kept it, and a thousand idle connections to a source agent's data port took
/// every descriptor: the agent's next file open failed with EMFILE and the job failed.
struct DescriptorLimitProcessTests {
    /// The soft and hard "Max open files" of a process, from /proc.
    static func openFiles(_ pid: Int32) throws -> (soft: String, hard: String) {
        let limits = try String(contentsOfFile: "/proc/\(pid)/limits", encoding: .utf8)
        let line = try #require(limits.split(separator: "\n").first { $0.hasPrefix("Max open files") })
        let words = line.dropFirst("Max open files".count).split(separator: " ")
        return (String(words[0]), String(words[1]))
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/prlimit"), "needs prlimit (util-linux)"))
    func aLowSoftLimitIsRaisedToTheHardOne() async throws {
        let cluster = try TestCluster()
        let low = ["/usr/bin/prlimit", "--nofile=256:"]
        let c = try RunningBarge(["coordinator", "--state", cluster.dir.path + "/state", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"],
                                 environment: cluster.environment, log: cluster.dir.url.appendingPathComponent("coordinator.log"), launcher: low)
        var agents = "", http = ""
        #expect(try await cluster.eventually {
            guard let line = c.output.split(separator: "\n").first(where: { $0.contains("coordinator ready") }) else { return false }
            let words = line.split(separator: " ")
            agents = String(words[words.firstIndex(of: "on")! + 1].dropLast())
            http = String(words.last { $0.hasPrefix("http://") }!.dropLast())
            return true
        }, "\(c.output)")
        let a1 = try RunningBarge(["agent", "--coordinator", agents, "--name", "a1", "--site", "a", "--root", cluster.dir.path + "/root-a"],
                                  environment: cluster.environment, log: cluster.dir.url.appendingPathComponent("a1.log"), launcher: low)
        let b1 = try cluster.startAgent("b1", site: "b", root: "root-b", coordinator: agents)
        defer { withExtendedLifetime((c, a1, b1)) {} }
        #expect(try await cluster.agentsRegister(2, http))
        for process in [c, a1] {
            let limit = try Self.openFiles(process.process.processIdentifier)
            let expected = limit.hard == "unlimited" ? "\(1 << 20)" : String(min(Int(limit.hard)!, 1 << 20))
            #expect(limit.soft == expected, "soft \(limit.soft), hard \(limit.hard)\n\(process.output)")
        }
        let source = cluster.dir.url.appendingPathComponent("root-a/ds")
        try FileManager.default.createDirectory(at: source, withIntermediateDirectories: true)
        try Data("x\n".utf8).write(to: source.appendingPathComponent("f"))
        let job = try cluster.cli(["submit", "a:ds", "b:copy", "--wait"], http: http)
        #expect(job.status == 0, "\(job.stderr)")
    }

    /// A destination agent whose hard limit is low (`ulimit -n 256`) takes thousands of small
    /// files: a batch's files whose bytes have all arrived give back their descriptors until the
    /// batch's finish (`PartialFileWriter.park`). Before, it held one per file of every batch in
    /// flight (1,064 at the peak for 20,000 files), and the job failed with EMFILE, its resumes
    /// too (a black-box review, h2 of session 47). Or the agent died of SIGILL: libdispatch
    /// stops the process when its thread-pool monitor cannot open `/proc/self/task/N/stat`
    /// (EMFILE), and the job then waited for it for ever (seen with this test before the fix).
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/prlimit"), "needs prlimit (util-linux)"), .timeLimit(.minutes(4)))
    func aDestinationWithALowHardLimitTakesManySmallFiles() async throws {
        let cluster = try TestCluster()
        let (c, agents, http) = try await cluster.startCoordinator()
        let a1 = try cluster.startAgent("a1", site: "a", root: "root-a", coordinator: agents)
        let b1 = try RunningBarge(["agent", "--coordinator", agents, "--name", "b1", "--site", "b", "--root", cluster.dir.path + "/root-b"],
                                  environment: cluster.environment, log: cluster.dir.url.appendingPathComponent("b1.log"),
                                  launcher: ["/usr/bin/prlimit", "--nofile=256:256"])
        defer { withExtendedLifetime((c, a1, b1)) {} }
        #expect(try await cluster.agentsRegister(2, http))
        let source = cluster.dir.url.appendingPathComponent("root-a/ds")
        var generator = SystemRandomNumberGenerator()
        for d in 0..<16 {
            let dir = source.appendingPathComponent("d\(d)")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            for f in 0..<500 { try Data((0..<100).map { _ in UInt8.random(in: 0...255, using: &generator) }).write(to: dir.appendingPathComponent("f\(f)")) }
        }
        let job = try cluster.cli(["submit", "a:ds", "b:copy", "--wait"], http: http)
        #expect(job.status == 0, "\(job.stdout)\(job.stderr)")
        let (got, want) = (try TreeSupport.snapshot(cluster.dir.url.appendingPathComponent("root-b/copy")), try TreeSupport.snapshot(source))
        #expect(got == want, "\(got.count) entries of \(want.count)")
        #expect(b1.process.isRunning, "b1 stopped: \(b1.output.suffix(2000))")
    }
}
