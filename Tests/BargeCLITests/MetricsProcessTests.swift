import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Testing

/// `GET /metrics` of a live coordinator after a transfer: `promtool check metrics` (Debian's
/// `prometheus` package) accepts it, and it has jobs and agents by state, bytes per agent,
/// errors by reason, the RTT and unit-duration histograms, and the build.
@Suite(.serialized)
struct MetricsProcessTests {
    static var promtool: String? {
        ["/usr/bin/promtool", "/usr/local/bin/promtool"].first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    @Test(.enabled(if: promtool != nil, "promtool is missing: cluster/install-deps.sh installs Debian's prometheus package"))
    func promtoolAcceptsTheMetricsAndTheyCoverJobsAgentsAndErrors() async throws {
        let cluster = try TestCluster()
        try TreeSupport.makeEdgeCaseTree(at: cluster.dir.url.appendingPathComponent("root-a/ds"), smallFiles: 20)
        let (coordinator, agents, http) = try await cluster.startCoordinator()
        let a1 = try cluster.startAgent("a1", site: "a", root: "root-a", coordinator: agents)
        let b1 = try cluster.startAgent("b1", site: "b", root: "root-b", coordinator: agents)
        defer { withExtendedLifetime((coordinator, a1, b1)) {} }
        try #require(try await cluster.agentsRegister(2, http))
        let sent = try cluster.cli(["submit", "a:ds", "b:ds", "--wait"], http: http)
        try #require(sent.status == 0, "\(sent.stderr)")
        // One refused request, counted as an authentication error.
        var bad = URLRequest(url: URL(string: http + "/v1/jobs")!)
        bad.setValue("Bearer not-a-token", forHTTPHeaderField: "Authorization")
        _ = try? await URLSession.shared.data(for: bad)

        let text = String(decoding: try #require(cluster.fetch(http + "/metrics")), as: UTF8.self)
        let file = cluster.dir.url.appendingPathComponent("metrics.txt")
        try Data(text.utf8).write(to: file)
        let check = Process()
        check.executableURL = URL(fileURLWithPath: Self.promtool!)
        check.arguments = ["check", "metrics"]
        check.standardInput = try FileHandle(forReadingFrom: file)
        let out = Pipe()
        check.standardOutput = out
        check.standardError = out
        try check.run()
        let said = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        check.waitUntilExit()
        #expect(check.terminationStatus == 0, "promtool: \(said)\n\(text)")

        let lines = Set(text.split(separator: "\n").map(String.init))
        #expect(lines.contains("barge_jobs{state=\"succeeded\"} 1.0"), "\(text)")
        #expect(lines.contains("barge_agents{state=\"up\"} 2.0"), "\(text)")
        #expect(lines.contains("barge_errors_total{reason=\"authentication\"} 1"), "\(text)")
        #expect(text.contains("barge_build_info{version=\""))
        #expect(text.contains("barge_agent_bytes_sent_total{agent=\"a1\"}") && text.contains("barge_agent_bytes_received_total{agent=\"b1\"}"))
        #expect(text.contains("barge_unit_duration_seconds_count") && text.contains("barge_chunk_ack_rtt_seconds_bucket"))
        let helped = Set(lines.filter { $0.hasPrefix("# HELP ") }.map { $0.split(separator: " ")[2] })
        let typed = Set(lines.filter { $0.hasPrefix("# TYPE ") }.map { $0.split(separator: " ")[2] })
        #expect(!typed.isEmpty && helped == typed, "\(typed.subtracting(helped))")
    }
}

/// The alert rules and the Grafana dashboard shipped in `cluster/`: promtool accepts the rules,
/// and every metric the dashboard and the rules query is one the coordinator exports.
struct MonitoringFilesTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    @Test(.enabled(if: MetricsProcessTests.promtool != nil, "promtool is missing: cluster/install-deps.sh installs Debian's prometheus package"))
    func promtoolAcceptsTheAlertRules() throws {
        let check = Process()
        check.executableURL = URL(fileURLWithPath: MetricsProcessTests.promtool!)
        check.arguments = ["check", "rules", Self.repository.appendingPathComponent("cluster/prometheus/barge-alerts.yml").path]
        let out = Pipe()
        check.standardOutput = out
        check.standardError = out
        try check.run()
        let said = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        check.waitUntilExit()
        #expect(check.terminationStatus == 0 && said.contains("SUCCESS: 5 rules found"), "\(said)")
    }

    @Test func theDashboardAndRulesQueryOnlyExportedMetrics() throws {
        let exported = ["barge_bytes_received_total", "barge_wire_bytes_sent_total", "barge_jobs", "barge_agents", "barge_units_in_flight",
                        "barge_lane_send_rate_bytes_per_second", "barge_lane_rtt_seconds", "barge_lane_queueing_delay_seconds",
                        "barge_chunk_ack_rtt_seconds_bucket", "barge_unit_duration_seconds_bucket", "barge_codec_raw_bytes_total",
                        "barge_codec_encoded_bytes_total", "barge_agent_bytes_sent_total", "barge_agent_bytes_received_total",
                        "barge_errors_total", "barge_unit_retries_total"]
        for file in ["cluster/grafana/barge-dashboard.json", "cluster/prometheus/barge-alerts.yml"] {
            let text = try String(contentsOf: Self.repository.appendingPathComponent(file), encoding: .utf8)
            let used = Set(text.matches(of: /barge_[a-z_]+/).map { String($0.output) })
            #expect(!used.isEmpty && used.isSubset(of: Set(exported)), "\(file): \(used.subtracting(exported))")
        }
        let data = try Data(contentsOf: Self.repository.appendingPathComponent("cluster/grafana/barge-dashboard.json"))
        let dashboard = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect((dashboard["panels"] as? [Any])?.count ?? 0 >= 10)
    }
}
