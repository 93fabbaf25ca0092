import BargeBench
import Foundation
import Testing

/// The web dashboard in headless Chromium (Debian's `chromium`) while a transfer runs: signed in
/// by `/?token=`, the job's page shows the job, its lane and a progress that moves; a screenshot
/// is saved as `.build/dashboard.png`. The event stream (`GET /v1/events`) pushes snapshots whose
/// progress moves, and the page and stream need a token.
@Suite(.serialized)
struct DashboardProcessTests {
    static let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].first { FileManager.default.isExecutableFile(atPath: $0) }
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// Runs a tool and returns its standard output (its errors are Chromium's chatter).
    func run(_ tool: String, _ arguments: [String]) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: tool)
        p.arguments = arguments
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return String(decoding: data, as: UTF8.self)
    }

    /// Headless Chromium with a profile of its own, removed afterwards (each one is about 1 MB).
    func chrome(_ arguments: [String]) throws -> String {
        let profile = FileManager.default.temporaryDirectory.appendingPathComponent("barge-chromium-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: profile) }
        return try run("/usr/bin/timeout", ["60", Self.chromium!, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                                            "--user-data-dir=" + profile.path] + arguments)
    }

    /// The percentage shown in the job page's progress row.
    func progress(_ dom: String) -> Int? {
        guard let match = dom.firstMatch(of: /id="job-progress">(\d+)%/) else { return nil }
        return Int(match.output.1)
    }

    @Test(.enabled(if: chromium != nil, "Chromium is missing: cluster/install-deps.sh installs Debian's chromium"))
    func theDashboardShowsARunningJobWithItsLanesAndMovingProgress() async throws {
        let cluster = try TestCluster()
        let source = cluster.dir.url.appendingPathComponent("root-a/ds")
        try FileManager.default.createDirectory(at: source, withIntermediateDirectories: true)
        for i in 0..<10 {
            try Data(SampleData.generate(.random, bytes: 2 << 20, seed: UInt64(i))).write(to: source.appendingPathComponent("f\(i).bin"))
        }
        let (coordinator, agents, http) = try await cluster.startCoordinator()
        let a1 = try cluster.startAgent("a1", site: "a", root: "root-a", coordinator: agents)
        let b1 = try cluster.startAgent("b1", site: "b", root: "root-b", coordinator: agents)
        defer { withExtendedLifetime((coordinator, a1, b1)) {} }
        try #require(try await cluster.agentsRegister(2, http))
        let token = try String(contentsOfFile: cluster.dir.path + "/state/admin.token", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)

        // Without a token, or with a wrong one, the page is refused.
        #expect(try run("/usr/bin/curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", http + "/"]) == "401")
        #expect(try run("/usr/bin/curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", http + "/?token=wrong"]) == "401")
        #expect(try run("/usr/bin/curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", http + "/v1/events"]) == "401")

        let job = try cluster.cli(["submit", "a:ds", "b:ds", "--bwlimit", "2MiB/s"], http: http).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        try #require(job.hasPrefix("j-"))
        _ = try await cluster.eventually(30) {
            let s = try JSONSerialization.jsonObject(with: Data(try cluster.cli(["status", job, "--json"], http: http).stdout.utf8)) as? [String: Any]
            return (s?["bytes_done"] as? Int ?? 0) > 0
        }
        // The event stream: a snapshot a second, the job's bytes moving between them.
        let stream = try run("/usr/bin/curl", ["-s", "-N", "--max-time", "3.5", "-H", "Authorization: Bearer \(token)", http + "/v1/events"])
        let snapshots = stream.split(separator: "\n").filter { $0.hasPrefix("data: ") }.compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.dropFirst(6).utf8)) as? [String: Any]
        }
        #expect(snapshots.count >= 3, "\(stream.prefix(500))")
        let done = snapshots.compactMap { s in ((s["jobs"] as? [[String: Any]])?.first { $0["id"] as? String == job })?["bytes_done"] as? Int }
        #expect(done.count == snapshots.count && (done.last ?? 0) > (done.first ?? 0), "\(done)")
        let page = "\(http)/?token=\(token)#/jobs/\(job)"
        let first = try chrome(["--dump-dom", page])
        #expect(first.contains("<h2>Job \(job)"), "\(first)")
        #expect(first.contains("a1 → b1"), "the lane is not shown: \(first)")
        try await Task.sleep(for: .seconds(2))
        let second = try chrome(["--dump-dom", page])
        let before = try #require(progress(first), "\(first)"), after = try #require(progress(second), "\(second)")
        #expect(after > before, "progress did not move: \(before)% then \(after)%")
        let jobs = try chrome(["--dump-dom", "\(http)/?token=\(token)#/jobs"])
        #expect(jobs.contains("data-job=\"\(job)\""), "\(jobs)")
        let fleet = try chrome(["--dump-dom", "\(http)/?token=\(token)#/agents"])
        #expect(fleet.contains("data-agent=\"a1\"") && fleet.contains("data-agent=\"b1\""), "\(fleet)")

        let shot = Self.repository.appendingPathComponent(".build/dashboard.png")
        _ = try chrome(["--window-size=1280,900", "--screenshot=" + shot.path, page])
        #expect(FileManager.default.fileExists(atPath: shot.path), "no screenshot at \(shot.path)")

    }
}
