import Foundation
import Testing

/// schemathesis (PyPI, in .build-venv/ by cluster/install-deps.sh) against a live coordinator
/// with two agents and a finished job, from docs/openapi.yaml, every check on (docs/schemathesis.toml): every
/// response conforms to the document (status codes, bodies, headers, Allow), every request the
/// document allows is accepted, and every one it forbids is refused. `DELETE /v1/tokens/{name}`
/// is left out: schemathesis would revoke the token it runs with (AccessTests and RouterTests
/// cover it), and so is `GET /v1/events`, a stream that never ends (DashboardProcessTests reads it).
@Suite(.serialized)
struct SchemathesisProcessTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static var st: String? {
        let path = repository.appendingPathComponent(".build-venv/bin/st").path
        return FileManager.default.isExecutableFile(atPath: path) ? path : nil
    }

    @Test(.enabled(if: st != nil, "schemathesis is missing: cluster/install-deps.sh installs it from PyPI into .build-venv/"))
    func theAPIConformsToItsOpenAPIDocument() async throws {
        let cluster = try TestCluster()
        let data = cluster.dir.url.appendingPathComponent("root-a/ds")
        try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)
        try Data(repeating: 7, count: 100_000).write(to: data.appendingPathComponent("f1"))
        let (coordinator, agents, http) = try await cluster.startCoordinator()
        let a1 = try cluster.startAgent("a1", site: "a", root: "root-a", coordinator: agents)
        let b1 = try cluster.startAgent("b1", site: "b", root: "root-b", coordinator: agents)
        defer { withExtendedLifetime((coordinator, a1, b1)) {} }
        try #require(try await cluster.agentsRegister(2, http))
        try #require(try cluster.cli(["submit", "a:ds", "b:ds", "--wait"], http: http).status == 0)

        let token = try String(contentsOfFile: cluster.dir.path + "/state/admin.token", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let run = Process()
        run.executableURL = URL(fileURLWithPath: Self.st!)
        run.arguments = ["--config-file", Self.repository.appendingPathComponent("docs/schemathesis.toml").path,
                         "run", Self.repository.appendingPathComponent("docs/openapi.yaml").path, "--url", http,
                         "-H", "Authorization: Bearer \(token)", "--exclude-path", "/v1/tokens/{name}", "--exclude-path", "/v1/events",
                         "--max-examples", "25", "--request-timeout", "15", "--seed", "20261202", "--no-color"]
        run.environment = ProcessInfo.processInfo.environment.merging(["SCHEMATHESIS_HOOKS": "", "NO_COLOR": "1"]) { $1 }
        run.currentDirectoryURL = cluster.dir.url
        let out = Pipe()
        run.standardOutput = out
        run.standardError = out
        try run.run()
        let report = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        run.waitUntilExit()
        print("schemathesis:", report.split(separator: "\n").suffix(12).joined(separator: "\n"))
        #expect(run.terminationStatus == 0, "\(report)")
        #expect(!report.contains("FAILURES"), "\(report)")
    }
}
