import Foundation
import Testing

/// `barge demo` as a user runs it: a whole local cluster in child processes.
@Suite(.serialized)
struct DemoProcessTests {
    @Test func theDemoMovesVerifiesAndSummarises() throws {
        let tmp = try TemporaryDirectory()
        let r = try BargeProcess.run(["demo", "--size", "8MiB", "--fault-corrupt", "0.1"], environment: ["TMPDIR": tmp.path])
        #expect(r.status == 0, "\(r.stdout)\n\(r.stderr)")
        #expect(r.stdout.contains("succeeded"))
        #expect(r.stdout.contains("all match"))
        #expect(r.stdout.contains("codecs:"))
        #expect(r.stdout.contains("chunks refetched:"))
        #expect(r.stdout.contains("barge_bytes_received_total"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: tmp.path).isEmpty, "the demo removes its directory")
    }

    @Test func ctrlCStopsTheClusterAndCleansUp() async throws {
        let tmp = try TemporaryDirectory()
        let log = tmp.url.appendingPathComponent("demo.out")
        let demo = try RunningBarge(["demo", "--size", "64MiB"], environment: ["TMPDIR": tmp.path + "/t"], log: log)
        try FileManager.default.createDirectory(atPath: tmp.path + "/t", withIntermediateDirectories: true)
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline, !demo.output.contains("are up") { try await Task.sleep(for: .milliseconds(100)) }
        #expect(demo.output.contains("are up"), "\(demo.output)")
        demo.kill(SIGINT)
        let stopBy = Date().addingTimeInterval(15)
        while Date() < stopBy, demo.process.isRunning { try await Task.sleep(for: .milliseconds(100)) }
        // Reading the status of a process still running traps: stop there.
        try #require(!demo.process.isRunning, "the demo did not stop within 15 s of Ctrl-C: \(demo.output)")
        #expect(demo.process.terminationStatus != 0, "\(demo.output)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: tmp.path + "/t").isEmpty, "\(demo.output)")
        // No coordinator or agent of this demo is left running.
        let ps = Process()
        ps.executableURL = URL(fileURLWithPath: "/bin/ps")
        ps.arguments = ["-eo", "args"]
        let pipe = Pipe()
        ps.standardOutput = pipe
        try ps.run()
        let listing = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        ps.waitUntilExit()
        #expect(!listing.contains(tmp.path + "/t/barge-demo"), "\(listing)")
    }

    /// Ctrl-C while a large dataset is still being generated: the demo stops within a few seconds
    /// and removes what it wrote. Before, generation ran to its end first (minutes for 8 GiB),
    /// holding each large file whole in memory.
    @Test func ctrlCDuringGenerationStopsAtOnce() async throws {
        let tmp = try TemporaryDirectory()
        try FileManager.default.createDirectory(atPath: tmp.path + "/t", withIntermediateDirectories: true)
        let demo = try RunningBarge(["demo", "--size", "8GiB"], environment: ["TMPDIR": tmp.path + "/t"], log: tmp.url.appendingPathComponent("demo.out"))
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline, !demo.output.contains("generating") { try await Task.sleep(for: .milliseconds(50)) }
        #expect(demo.output.contains("generating"), "\(demo.output)")
        try await Task.sleep(for: .milliseconds(500))
        demo.kill(SIGINT)
        let stopBy = Date().addingTimeInterval(5)
        while Date() < stopBy, demo.process.isRunning { try await Task.sleep(for: .milliseconds(50)) }
        try #require(!demo.process.isRunning, "the demo did not stop within 5 s of Ctrl-C during generation: \(demo.output)")
        #expect(demo.process.terminationStatus == 130, "\(demo.output)")
        #expect(demo.output.contains("interrupted"), "\(demo.output)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: tmp.path + "/t").isEmpty, "\(demo.output)")
    }
}
