import ArgumentParser
import BargeCoordinator
import BargeFlow
import Foundation

struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Run a local cluster and move a generated dataset through it, verified.",
        discussion: """
            Starts a coordinator and four agents (two per site, sharing a root as nodes share a \
            parallel filesystem) as child processes on loopback, in a temporary directory with a \
            SQLite journal. It generates a mixed dataset at site a (scientific arrays, logs, random \
            data, many small files, and edge cases), transfers it to site b with a live progress \
            line, verifies every chunk at the destination, and prints a summary. Ctrl-C stops \
            everything and removes the directory (unless --keep).
            """)

    @Option(help: ArgumentHelp("Size of the generated dataset.", valueName: "size")) var size = "256MiB"
    @Option(help: ArgumentHelp("Fraction of chunks the source agents corrupt after hashing, to show re-fetching (0 to 0.5).", valueName: "p"))
    var faultCorrupt = 0.0
    @Flag(help: "Keep the temporary directory (dataset, logs, journal) afterwards.") var keep = false

    func validate() throws {
        guard (0...0.5).contains(faultCorrupt) else { throw ValidationError("--fault-corrupt must be from 0 to 0.5") }
        let bytes: Int
        do { bytes = try ByteQuantity.parseSize(size) } catch { throw ValidationError("--size: \(error)") }
        guard (8 << 20)...(64 << 30) ~= bytes else { throw ValidationError("--size must be from 8MiB to 64GiB") }
    }

    func run() async throws {
        let bytes = try ByteQuantity.parseSize(size)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("barge-demo-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let cluster = try LocalCluster(directory: dir)
        let work = Task { try await demo(cluster, bytes: bytes) }
        let signals = SignalWatcher.start { work.cancel() }
        defer {
            signals.forEach { $0.cancel() }
            cluster.stop()
            if keep { say("kept \(dir.path) (dataset, logs, journal)") } else { try? FileManager.default.removeItem(at: dir) }
        }
        do {
            try await work.value
        } catch is CancellationError {
            say("\ninterrupted; stopping the cluster")
            throw ExitCode(130)
        }
    }

    private func demo(_ cluster: LocalCluster, bytes: Int) async throws {
        let siteA = cluster.directory.appendingPathComponent("site-a"), siteB = cluster.directory.appendingPathComponent("site-b")
        say("barge demo in \(cluster.directory.path)")
        say("generating \(ByteQuantity.formatSize(Double(bytes))) at site a …")
        let data = try DemoDataset.write(to: siteA.appendingPathComponent("dataset"), bytes: bytes)
        say("  \(data.files) files, \(ByteQuantity.formatSize(Double(data.bytes)))")

        try cluster.startCoordinator()
        let fault = faultCorrupt > 0 ? ["BARGE_FAULT_CORRUPT": String(faultCorrupt)] : [:]
        for name in ["a1", "a2"] { try cluster.startAgent(name: name, site: "a", root: siteA, environment: fault) }
        for name in ["b1", "b2"] { try cluster.startAgent(name: name, site: "b", root: siteB) }
        try await cluster.waitForAgents(4)
        say("coordinator on \(cluster.coordinatorURL), agents a1 a2 (site a) and b1 b2 (site b) are up")

        let api = cluster.api()
        let request = SubmitRequest(source: .init(site: "a", path: "/dataset"), destination: .init(site: "b", path: "/dataset"))
        let job = try JSONDecoder().decode(JobStatus.self, from: try await api.post("/v1/jobs", body: try JSONEncoder().encode(request)))
        say("submitted \(job.id): a:/dataset → b:/dataset")
        let final = try await JobWatcher(api: api, job: job.id, answered: true).follow()
        guard final.state == .succeeded else {
            say(JobSummary.text(final))
            throw Failure("the demo job \(final.state.rawValue); logs are in \(cluster.logs.path) (run with --keep to read them)")
        }
        say("verifying at the destination …")
        let (outcome, _) = try await VerifyWatcher.run(api: api, job: job.id, repair: false)
        say(JobSummary.text(final))
        say("  verified: \(outcome.filesChecked) files, \(outcome.chunksChecked) chunks re-hashed at site b: \(outcome.ok ? "all match" : "\(outcome.mismatches.count) MISMATCHES")")
        let metrics = String(decoding: try await api.get("/metrics"), as: UTF8.self)
        let counters = metrics.split(separator: "\n").filter { $0.hasPrefix("barge_") && !$0.contains("{") }
        say("  metrics: \(cluster.coordinatorURL)/metrics (Prometheus text, with the admin token in \(cluster.apiTokenFile.path)) said, at the end:")
        for line in counters { say("    \(line)") }
        if !outcome.ok { throw ExitCode(1) }
    }
}

/// A line on stdout, written at once (not buffered), so it reads in order with the progress line
/// on stderr even when both go to one file.
private func say(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}
