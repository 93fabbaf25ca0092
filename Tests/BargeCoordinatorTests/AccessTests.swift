import BargeCoordinator
import BargeWire
import Foundation
import Hummingbird
import HummingbirdTesting
import Testing

/// Who may call what: every endpoint the router has, generated from the router itself, so that
/// a new endpoint cannot be left out.
struct AccessTests {
    final class Fixture: @unchecked Sendable {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("barge-access-\(UUID().uuidString)")
        let journal: Journal
        let scheduler: Scheduler
        let directory = AgentDirectory(heartbeatTimeout: .seconds(15), clock: { 1 })
        let tokens: APITokens
        let routes: APIRoutes
        var secrets: [APIRole: String] = [:]

        init() async throws {
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            journal = try Journal(path: dir.appendingPathComponent(Journal.fileName).path)
            scheduler = Scheduler(journal: journal)
            tokens = try APITokens(journal: journal)
            for role in APIRole.allCases { secrets[role] = try tokens.create(name: role.rawValue, role: role) }
            routes = buildRoutes(directory: directory, scheduler: scheduler, tokens: tokens)
            // A job and an agent at each site, so that an unguarded handler would change something.
            try journal.insert(JobRecord(id: "j-1", sourceSite: "a", sourcePath: "ds", destinationSite: "b", destinationPath: "ds", createdAt: 1))
            for (name, site) in [("a1", "a"), ("b1", "b")] {
                let register = Register(name: name, site: site, root: "/r", dataHost: "127.0.0.1", dataPort: 9, maxInFlight: 8)
                _ = try await directory.register(register)
                _ = await scheduler.attach(register, sink: AsyncStream.makeStream(of: Message.self).continuation, version: WireVersion.supported.upperBound)
            }
        }
        deinit { try? FileManager.default.removeItem(at: dir) }
        var app: some ApplicationProtocol { Application(router: routes.router) }

        func headers(_ role: APIRole?) -> HTTPFields {
            guard let role else { return [:] }
            return [.authorization: "Bearer " + secrets[role]!]
        }

        /// What every endpoint could change: jobs, their state and cap, agents, tokens.
        func state() async throws -> String {
            let jobs = try journal.jobs().map { "\($0.id) \($0.state) \($0.bwlimit ?? "-")" }
            let agents = await directory.agents.map { "\($0.name) \($0.state)" }.sorted()
            return "\(jobs) \(agents) \(tokens.entries.map(\.name))"
        }
    }

    struct Call: Sendable, CustomStringConvertible {
        let route: String
        let uri: String
        let method: HTTPRequest.Method
        let body: ByteBuffer?
        var description: String { route }
    }

    /// A request for each route, its path filled in, with a body that the handler would accept.
    static func request(for route: Router<APIRequestContext>.RouteDescription) -> Call {
        let uri = "\(route.path)".replacingOccurrences(of: "{id}", with: "j-1").replacingOccurrences(of: "{name}", with: route.description.contains("tokens") ? "viewer" : "a1")
        let body: String? = switch route.description {
        case "POST /v1/jobs": #"{"source":{"site":"a","path":"ds"},"destination":{"site":"b","path":"other"}}"#
        case "POST /v1/jobs/{id}/limit": #"{"bwlimit":"1B/s"}"#
        case "POST /v1/tokens": #"{"name":"intruder","role":"admin"}"#
        default: nil
        }
        let query = route.description == "POST /v1/jobs/prune" ? "?before=\(Date().timeIntervalSince1970 + 86_400)" : ""
        return Call(route: route.description, uri: "/" + uri.drop { $0 == "/" } + query, method: route.method, body: body.map { ByteBuffer(string: $0) })
    }

    @Test func everyRouteSaysWhoMayCallItAndWritesNeedAnOperator() async throws {
        let f = try await Fixture()
        // The health check and the dashboard's static assets (which hold no data) are open.
        let routes = f.routes.router.routes.filter { !"\($0.path)".hasSuffix("healthz") && !"\($0.path)".contains("dashboard/") }
        #expect(routes.count >= 14, "\(routes)")
        for route in routes {
            let role = try #require(f.routes.roles[route.description], "\(route) has no role")
            if route.method != .get { #expect(role >= .operator, "\(route) changes state but a \(role) may call it") }
        }
        #expect(f.routes.roles["POST /v1/agents/{name}/drain"] == .admin)
        #expect(f.routes.roles["POST /v1/tokens"] == .admin && f.routes.roles["GET /v1/tokens"] == .admin)
    }

    @Test func withoutAValidTokenEveryEndpointAnswers401AndNothingChanges() async throws {
        let f = try await Fixture()
        let before = try await f.state()
        let calls = f.routes.router.routes.filter { !"\($0.path)".hasSuffix("healthz") && !"\($0.path)".contains("dashboard/") }.map(Self.request)
        try await f.app.test(.router) { client in
            for r in calls {
                let route = r.route
                for headers: HTTPFields in [[:], [.authorization: "Bearer barge_" + String(repeating: "0", count: 64)], [.authorization: "Basic YTpi"]] {
                    try await client.execute(uri: r.uri, method: r.method, headers: headers, body: r.body) { response in
                        #expect(response.status == .unauthorized, "\(route) with \(headers)")
                        #expect(response.headers[.wwwAuthenticate] == "Bearer realm=\"barge\"")
                        let text = String(buffer: response.body)
                        #expect(!text.contains("\n") && text.contains("\"message\""), "\(text)")
                    }
                }
            }
            // The health check needs no token.
            try await client.execute(uri: "/healthz", method: .get) { response in
                #expect(response.status == .ok)
            }
        }
        #expect(try await f.state() == before)
    }

    @Test func aRoleBelowWhatAnEndpointNeedsGets403AndNothingChanges() async throws {
        let f = try await Fixture()
        let before = try await f.state()
        let calls = f.routes.router.routes.compactMap { route in f.routes.roles[route.description].map { (Self.request(for: route), $0) } }
        let refusals = calls.flatMap { call, needed in APIRole.allCases.filter { $0 < needed }.map { (call, needed, $0) } }
        #expect(refusals.count >= 12)
        try await f.app.test(.router) { client in
            for (r, needed, role) in refusals {
                try await client.execute(uri: r.uri, method: r.method, headers: f.headers(role), body: r.body) { response in
                    #expect(response.status == .forbidden, "\(r) as \(role)")
                    #expect(String(buffer: response.body).contains("needs \(needed.rawValue)"))
                }
            }
        }
        #expect(try await f.state() == before)
    }

    @Test func eachRoleCanDoWhatItsRoleAllows() async throws {
        let f = try await Fixture()
        try await f.app.test(.router) { client in
            for uri in ["/v1/agents", "/v1/jobs", "/v1/jobs/j-1", "/metrics"] {
                try await client.execute(uri: uri, method: .get, headers: f.headers(.viewer)) { response in
                    #expect(response.status == .ok, "\(uri)")
                }
            }
            try await client.execute(uri: "/v1/jobs/j-1/limit", method: .post, headers: f.headers(.operator), body: ByteBuffer(string: #"{"bwlimit":"10MiB/s"}"#)) { response in
                #expect(response.status == .ok)
            }
            try await client.execute(uri: "/v1/jobs/j-1/cancel", method: .post, headers: f.headers(.operator)) { response in
                #expect(response.status == .ok)
            }
            try await client.execute(uri: "/v1/agents/a1/drain", method: .post, headers: f.headers(.admin)) { response in
                #expect(response.status == .ok)
            }
            // An admin makes a viewer token; it works at once, and not after it is revoked.
            let secret = try await client.execute(uri: "/v1/tokens", method: .post, headers: f.headers(.admin), body: ByteBuffer(string: #"{"name":"ci","role":"viewer"}"#)) { response in
                #expect(response.status == .created)
                return try JSONDecoder().decode(CreatedToken.self, from: Data(response.body.readableBytesView)).token
            }
            try await client.execute(uri: "/v1/jobs", method: .get, headers: [.authorization: "Bearer " + secret]) { response in
                #expect(response.status == .ok)
            }
            try await client.execute(uri: "/v1/tokens", method: .post, headers: f.headers(.admin), body: ByteBuffer(string: #"{"name":"ci","role":"admin"}"#)) { response in
                #expect(response.status == .conflict)
            }
            try await client.execute(uri: "/v1/tokens/ci", method: .delete, headers: f.headers(.admin)) { response in
                #expect(response.status == .ok)
            }
            try await client.execute(uri: "/v1/jobs", method: .get, headers: [.authorization: "Bearer " + secret]) { response in
                #expect(response.status == .unauthorized)
            }
            // The last admin token stays: revoking it would lock everyone out.
            try await client.execute(uri: "/v1/tokens/admin", method: .delete, headers: f.headers(.admin)) { response in
                #expect(response.status == .conflict)
                #expect(String(buffer: response.body).contains("last admin token"))
            }
        }
        let job = try #require(try f.journal.job("j-1"))
        #expect(job.state == .cancelled && job.bwlimit == "10MiB/s")
        #expect(await f.directory.agents.first { $0.name == "a1" }?.state == .draining)
    }

    @Test func tokensAreStoredHashedAndOutliveARestart() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("barge-tokens-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent(Journal.fileName).path
        var secret = ""
        do {
            let tokens = try APITokens(journal: try Journal(path: path))
            let written = try #require(try tokens.ensureAdmin(in: dir.path))
            #expect(written == dir.path + "/admin.token")
            var st = stat()
            #expect(stat(written, &st) == 0 && st.st_mode & 0o777 == 0o600)
            secret = try String(contentsOfFile: written, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(secret.hasPrefix("barge_") && secret.count == 70)
            #expect(tokens.identify(secret) == APIIdentity(name: "admin", role: .admin))
            #expect(throws: APITokenError.badName("a b")) { try tokens.create(name: "a b", role: .viewer) }
        }
        // Started again: the same token works, and no second admin token is written.
        let tokens = try APITokens(journal: try Journal(path: path))
        #expect(try tokens.ensureAdmin(in: dir.path) == nil)
        #expect(tokens.identify(secret)?.role == .admin)
        #expect(tokens.identify(secret + "0") == nil)
        // The secret appears nowhere in the journal's files (its manifest files included), only its hash.
        let files = try #require(FileManager.default.subpathsOfDirectory(atPath: dir.path) as [String]?).filter { $0.hasPrefix(Journal.fileName) }
        for file in files {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: dir.appendingPathComponent(file).path, isDirectory: &isDirectory), !isDirectory.boolValue else { continue }
            let bytes = try Data(contentsOf: dir.appendingPathComponent(file))
            #expect(bytes.range(of: Data(secret.utf8)) == nil, "\(file) holds the secret")
        }
    }

    /// docs/openapi.yaml lists the router's operations, no more and no fewer, each with the role
    /// the router asks for (`x-barge-role`).
    @Test func theOpenAPISpecDeclaresEveryRouteWithItsRole() async throws {
        let f = try await Fixture()
        let spec = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../docs/openapi.yaml")
        var documented: [String: String] = [:]
        var path: String?, operation: String?
        for line in try String(contentsOf: spec, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("  /"), line.hasSuffix(":"), !line.hasPrefix("   ") { path = String(line.dropFirst(2).dropLast()); continue }
            if line == "components:" { path = nil }
            if let path, line.hasPrefix("    "), !line.hasPrefix("     "), line.hasSuffix(":") {
                operation = "\(line.trimmingCharacters(in: .whitespaces).dropLast().uppercased()) \(path)"
                documented[operation!] = "none"
            } else if let operation, line.hasPrefix("      x-barge-role: ") {
                documented[operation] = String(line.dropFirst("      x-barge-role: ".count))
            }
        }
        var routed: [String: String] = [:]
        for route in f.routes.router.routes {
            let key = "\(route.method) /" + "\(route.path)".drop { $0 == "/" }
            routed[key] = f.routes.roles[route.description]?.rawValue ?? "none"
        }
        #expect(routed.count >= 16)
        #expect(documented == routed)
    }
}

