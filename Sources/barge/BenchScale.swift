import ArgumentParser
import BargeCoordinator
import BargeFlow
import BargeWire
import Foundation
import Logging

struct BenchScale: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scale",
        abstract: "Measure the coordinator at petabyte scale: planning, decisions per second, memory, journal size, status latency.",
        discussion: """
            Runs the real coordinator in this process (scheduler, journal with full durability, HTTP \
            API) and simulated agents that call the scheduler's entry points with the messages real \
            agents send: a scan answered in pages, and each assigned unit reported done at once with \
            its chunk manifest. Three scenarios:

              range   a tree of --range-files sparse-sized files (1,024 × 1 TiB: 16.8 M units of 64 MiB)
              files   --small-files files of 1–32 KiB in directories of 1,000 (10 M by default)
              agents  --agents agents over two sites sharing a job of range units

            Each reports planning time (submit to first assignment, and to the scan journaled), \
            scheduling decisions per second (assignments plus completions, over --decisions of them \
            with the rest of the job pending), the coordinator's peak RSS, the journal's size, and \
            GET /v1/jobs/{id} latency (p50, p99) sampled every 20 ms throughout.

            Examples:
              barge bench scale
              barge bench scale --scenarios range --decisions 400000 --json
              barge bench scale --small-files 100000 --agents 100   # a quick run
            """)

    @Flag(help: "Print JSON for tools instead of a table.") var json = false
    @Option(help: ArgumentHelp("Comma-separated: range, files, agents, resync (files already at the destination).", valueName: "list")) var scenarios = "range,files,agents"
    @Option(help: ArgumentHelp("Files in the range scenario.", valueName: "n")) var rangeFiles = 1024
    @Option(help: ArgumentHelp("Size of each of them.", valueName: "size")) var rangeFileSize = "1TiB"
    @Option(help: ArgumentHelp("Files in the files scenario.", valueName: "n")) var smallFiles = 10_000_000
    @Option(help: ArgumentHelp("Agents in the agents scenario, half at each site.", valueName: "n")) var agents = 1000
    @Option(help: ArgumentHelp("Decisions measured per scenario.", valueName: "n")) var decisions = 200_000
    @Option(help: ArgumentHelp("Chunks reported per range unit (64 MiB in 1 MiB chunks: 64).", valueName: "n")) var chunksPerUnit = 64
    @Option(help: ArgumentHelp("Where the journals go (default: a temporary directory, removed after).", valueName: "dir")) var state: String?

    func validate() throws {
        guard rangeFiles >= 1, smallFiles >= 1, agents >= 2, decisions >= 100, (0...4096).contains(chunksPerUnit) else {
            throw ValidationError("--range-files, --small-files ≥ 1, --agents ≥ 2, --decisions ≥ 100, --chunks-per-unit 0 to 4096")
        }
        for s in scenarios.split(separator: ",") where !["range", "files", "agents", "resync"].contains(s) {
            throw ValidationError("--scenarios: unknown scenario '\(s)' (range, files, agents, resync)")
        }
        do { _ = try ByteQuantity.parseSize(rangeFileSize) } catch { throw ValidationError("--range-file-size: \(error)") }
    }

    func run() async throws {
        let base = state ?? FileManager.default.temporaryDirectory.appendingPathComponent("barge-bench-scale-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
        defer { if state == nil { try? FileManager.default.removeItem(atPath: base) } }
        var results: [ScaleResult] = []
        let size = UInt64(try ByteQuantity.parseSize(rangeFileSize))
        for s in scenarios.split(separator: ",").map(String.init) {
            let dir = base + "/" + s
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            let run = ScaleRun(directory: dir, decisions: decisions, chunksPerUnit: chunksPerUnit)
            switch s {
            case "range": results.append(try await run.range(files: rangeFiles, size: size, agentsPerSite: 1))
            case "files": results.append(try await run.smallFiles(smallFiles))
            case "resync": results.append(try await run.smallFiles(smallFiles, unchanged: true))
            default: results.append(try await run.range(files: rangeFiles, size: size, agentsPerSite: agents / 2, name: "agents"))
            }
            if !json { print(results.last!.line) }
        }
        if json { print(try JSONOutput.encode(ScaleReport(results: results))) } else { print(ScaleResult.table(results)) }
    }
}

struct ScaleReport: Encodable {
    var results: [ScaleResult]
}

struct ScaleResult: Encodable {
    var scenario: String
    var units: Int64
    var files: Int64
    var agents: Int
    /// Submit to the first `task assign`, and to the whole scan journaled.
    var secondsToFirstAssignment: Double
    var secondsToPlanned: Double
    var filesPlannedPerSecond: Double
    var decisions: Int
    var decisionsPerSecond: Double
    var peakRssBytes: Int64
    var journalBytes: Int64
    var statusP50Ms: Double
    var statusP99Ms: Double
    var statusSamples: Int
    /// Submit to the job's end, when it ended within the run.
    var secondsToEnd: Double?

    var line: String {
        "\(scenario): \(units) units, \(files) files, \(agents) agents: first assignment \(f(secondsToFirstAssignment)) s, planned \(f(secondsToPlanned)) s "
            + "(\(Int(filesPlannedPerSecond)) files/s), \(Int(decisionsPerSecond)) decisions/s, RSS \(peakRssBytes >> 20) MiB, "
            + "journal \(journalBytes >> 20) MiB, status p50 \(f(statusP50Ms)) ms p99 \(f(statusP99Ms)) ms"
            + (secondsToEnd.map { ", job ended after \(f($0)) s" } ?? "")
    }

    private func f(_ x: Double) -> String { String(format: "%.2f", x) }

    static func table(_ rs: [ScaleResult]) -> String {
        let rows = [["SCENARIO", "UNITS", "FILES", "AGENTS", "1ST ASSIGN s", "PLANNED s", "FILES/s", "DECISIONS/s", "PEAK RSS MiB", "JOURNAL MiB", "STATUS p50/p99 ms"]]
            + rs.map { r in
                [r.scenario, "\(r.units)", "\(r.files)", "\(r.agents)", String(format: "%.2f", r.secondsToFirstAssignment),
                 String(format: "%.1f", r.secondsToPlanned), "\(Int(r.filesPlannedPerSecond))", "\(Int(r.decisionsPerSecond))",
                 "\(r.peakRssBytes >> 20)", "\(r.journalBytes >> 20)", String(format: "%.1f/%.1f", r.statusP50Ms, r.statusP99Ms)]
            }
        return Table.render(rows)
    }
}

/// One scenario against a fresh journal.
struct ScaleRun {
    let directory: String
    let decisions: Int
    let chunksPerUnit: Int

    final class Counter: @unchecked Sendable {
        private let lock = NSLock()
        private var assigned = 0, completed = 0
        private var first: Double?
        private var stop = false
        /// The measurement is over: the simulated agents answer nothing more, so that the
        /// scheduler's backlog does not outlive it.
        func end() { lock.withLock { stop = true } }
        var ended: Bool { lock.withLock { stop } }
        func assign(at t: Double) { lock.withLock { assigned += 1; if first == nil { first = t } } }
        func complete() { lock.withLock { completed += 1 } }
        var total: Int { lock.withLock { assigned + completed } }
        var firstAssignment: Double? { lock.withLock { first } }
    }

    final class Latencies: @unchecked Sendable {
        private let lock = NSLock()
        private var ms: [Double] = []
        func add(_ x: Double) { lock.withLock { ms.append(x) } }
        func percentile(_ p: Double) -> (Double, Int) {
            lock.withLock {
                let s = ms.sorted()
                guard !s.isEmpty else { return (0, 0) }
                return (s[min(s.count - 1, Int(Double(s.count) * p))], s.count)
            }
        }
    }

    static func time() -> Double { Date().timeIntervalSince1970 }

    func range(files: Int, size: UInt64, agentsPerSite: Int, name: String = "range") async throws -> ScaleResult {
        let entries = [FileEntry(path: "", kind: .directory, mode: 0o755, mtimeSeconds: 1, mtimeNanoseconds: 0)]
            + (0..<files).map { FileEntry(path: String(format: "f%06d", $0), kind: .file, size: size, mode: 0o644, mtimeSeconds: 1, mtimeNanoseconds: 0) }
        let unitBytes = UInt64(64 << 20)
        let units = Int64(files) * Int64((size + unitBytes - 1) / unitBytes) + Int64(files) + 1
        return try await measure(name: name, units: units, files: Int64(files), agentsPerSite: agentsPerSite,
                                 pages: AnySequence(stride(from: 0, to: entries.count, by: ScanReply.pageSize).lazy.map {
                                     Array(entries[$0..<min($0 + ScanReply.pageSize, entries.count)]) }))
    }

    /// `unchanged`: the destination already holds every file (the quick check skips them all).
    func smallFiles(_ count: Int, unchanged: Bool = false) async throws -> ScaleResult {
        // Directories of 1,000 files, 1 to 32 KiB each, in the order a scan lists them.
        let pages = AnySequence<[FileEntry]> { () -> AnyIterator<[FileEntry]> in
            var next = -1
            var rng = SystemRandomNumberGenerator()
            return AnyIterator {
                guard next < count else { return nil }
                var page: [FileEntry] = []
                while page.count < ScanReply.pageSize && next < count {
                    if next == -1 {
                        page.append(FileEntry(path: "", kind: .directory, mode: 0o755, mtimeSeconds: 1, mtimeNanoseconds: 0))
                    } else {
                        let dir = String(format: "d%05d", next / 1000)
                        if next % 1000 == 0 { page.append(FileEntry(path: dir, kind: .directory, mode: 0o755, mtimeSeconds: 1, mtimeNanoseconds: 0)) }
                        page.append(FileEntry(path: dir + String(format: "/f%07d", next), kind: .file, size: UInt64.random(in: 1024...32768, using: &rng),
                                              mode: 0o644, mtimeSeconds: 1, mtimeNanoseconds: 0))
                    }
                    next += 1
                }
                return page
            }
        }
        return try await measure(name: unchanged ? "resync" : "files", units: Int64((count + 255) / 256), files: Int64(count), agentsPerSite: 1,
                                 pages: pages, unchanged: unchanged)
    }

    private func measure(name: String, units: Int64, files: Int64, agentsPerSite: Int, pages: AnySequence<[FileEntry]>,
                         unchanged: Bool = false) async throws -> ScaleResult {
        var logger = Logger(label: "barge.bench")
        logger.logLevel = .error
        let journal = try Journal(path: directory + "/" + Journal.fileName)
        let scheduler = Scheduler(journal: journal, logger: logger)
        let registry = AgentDirectory(heartbeatTimeout: .seconds(3600))
        let counter = Counter()
        let chunks = chunksPerUnit
        var streams: [(name: String, stream: AsyncStream<Message>)] = []
        for site in ["a", "b"] {
            for i in 0..<agentsPerSite {
                let register = Register(name: "\(site)\(i)", site: site, root: "/r", dataHost: "127.0.0.1", dataPort: 9, maxInFlight: 8)
                _ = try await registry.register(register)
                let (stream, sink) = AsyncStream.makeStream(of: Message.self)
                _ = await scheduler.attach(register, sink: sink, version: WireVersion.supported.upperBound)
                streams.append((register.name, stream))
            }
        }
        // The simulated agents: a scan request is noted; each unit is reported done at once; the
        // quick check finds every file changed (an empty destination) or, with `unchanged`, none.
        let (scanRequests, scanSink) = AsyncStream.makeStream(of: ScanRequest.self)
        // The chunk ids, made once and shared (copy on write): on two cores the simulated agents
        // compete with the coordinator, and should cost it as little as they can.
        let ids = (0..<max(1, chunks)).map { [UInt8](repeating: UInt8(truncatingIfNeeded: $0), count: 32) }
        let agentTasks = streams.map { agent in
            Task {
                for await message in agent.stream {
                    if counter.ended { break }
                    switch message {
                    case .scanRequest(let r): scanSink.yield(r)
                    case .compareRequest(let r):
                        await scheduler.received(.compareReply(CompareReply(request: r.request, unchanged: r.entries.map { _ in unchanged })), from: agent.name)
                    case .taskAssign(let t):
                        counter.assign(at: Self.time())
                        let reports = t.files.enumerated().flatMap { i, f -> [ChunkReport] in
                            let n = f.length == 0 ? 0 : (t.files.count == 1 ? chunks : 1)
                            return (0..<n).map { c in
                                ChunkReport(file: UInt32(i), offset: f.offset + UInt64(c) << 20, length: UInt32(min(1 << 20, f.length)), id: ids[c])
                            }
                        }
                        let bytes = t.files.reduce(0) { $0 + $1.length }
                        await scheduler.received(.taskDone(TaskDone(job: t.job, unit: t.unit, bytes: bytes, wireBytes: bytes, refetched: 0,
                                                                    codecs: [CodecUsage(codec: "none", chunks: UInt32(reports.count), rawBytes: bytes, encodedBytes: bytes)],
                                                                    chunks: reports)), from: agent.name)
                        counter.complete()
                    default: break
                    }
                }
            }
        }
        // The HTTP API, and a client polling the job's status every 20 ms.
        let (ports, portSink) = AsyncStream.makeStream(of: Int.self)
        let tokens = try APITokens(journal: journal)
        let viewer = try tokens.create(name: "bench", role: .viewer)
        let server = Task { try await CoordinatorAPIServer.run(scheduler: scheduler, directory: registry, tokens: tokens, logger: logger) { portSink.yield($0) } }
        var portIterator = ports.makeAsyncIterator()
        guard let port = await portIterator.next() else { throw Failure("the HTTP API did not start") }
        let latencies = Latencies()

        let start = Self.time()
        let job = try await scheduler.submit(SubmitRequest(source: .init(site: "a", path: "ds"), destination: .init(site: "b", path: "ds")),
                                             id: "j-bench-\(name)")
        let poller = Task {
            let api = CoordinatorAPI(base: "http://127.0.0.1:\(port)", token: viewer)
            // Stopped by the flag, not by cancelling: cancelling a task inside URLSession's
            // `data(for:)` as the response completes can deadlock FoundationNetworking on Linux
            // (seen: the task's status lock against the session's queue).
            while !counter.ended {
                let t = Self.time()
                _ = try? await api.get("/v1/jobs/\(job.id)")
                latencies.add((Self.time() - t) * 1000)
                try? await Task.sleep(for: .milliseconds(20))
            }
        }
        var requests = scanRequests.makeAsyncIterator()
        guard let scan = await requests.next() else { throw Failure("no scan was asked for") }
        let pageIterator = pages.makeIterator()
        var page = pageIterator.next()
        while let entries = page {
            page = pageIterator.next()
            await scheduler.received(.scanReply(ScanReply(request: scan.request, final: page == nil, entries: entries)), from: "a0")
        }
        await scheduler.flush()
        let planned = Self.time() - start
        while counter.firstAssignment == nil { try await Task.sleep(for: .milliseconds(5)) }
        let firstAssignment = counter.firstAssignment! - start
        // Decisions, measured from here.
        let before = counter.total
        let t0 = Self.time()
        // Until enough decisions, or the job ends (a small job has fewer), or ten minutes.
        while counter.total - before < decisions {
            try await Task.sleep(for: .milliseconds(10))
            if Self.time() - t0 > 600 { break }
            if try await scheduler.status(job.id)?.state.isTerminal == true { break }
        }
        let elapsed = Self.time() - t0
        let ended = try await scheduler.status(job.id)?.state.isTerminal == true ? Self.time() - start : nil
        let made = counter.total - before
        counter.end()
        await poller.value
        _ = try? await scheduler.cancel(job.id)
        for t in agentTasks { t.cancel() }
        server.cancel()
        let (p50, n) = latencies.percentile(0.5)
        let (p99, _) = latencies.percentile(0.99)
        return ScaleResult(scenario: name, units: units, files: files, agents: agentsPerSite * 2,
                           secondsToFirstAssignment: firstAssignment, secondsToPlanned: planned, filesPlannedPerSecond: Double(files) / planned,
                           decisions: made, decisionsPerSecond: Double(made) / elapsed, peakRssBytes: Self.peakRSS(),
                           journalBytes: journal.sizeOnDisk(), statusP50Ms: p50, statusP99Ms: p99, statusSamples: n, secondsToEnd: ended)
    }

    /// This process's peak resident set (VmHWM), in bytes.
    static func peakRSS() -> Int64 {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
              let kb = Int64(line.split(separator: " ").dropFirst().first ?? "") else { return 0 }
        return kb * 1024
    }
}
