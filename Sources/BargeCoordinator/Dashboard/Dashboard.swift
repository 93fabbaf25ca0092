import Foundation
import Hummingbird
import HTTPTypes
import NIOCore

/// The web dashboard, served by the coordinator: `GET /` (the page, for `viewer` and up),
/// `/dashboard/app.js` and `/dashboard/app.css` (static, holding no data), and
/// `GET /v1/events`, a server-sent event stream of snapshots (jobs, agents, fleet totals) that
/// the page follows. The assets are plain files embedded in the binary (`embedInCode`), with no
/// build step and nothing fetched from elsewhere.
///
/// A browser signs in once with `/?token=TOKEN`: the token is checked, kept in an HttpOnly,
/// SameSite=Strict cookie (Secure under TLS), and the address bar loses it (303 to `/`). `APIAuthentication` takes
/// that cookie where a request has no `Authorization` header.
enum Dashboard {
    static let cookie = "barge_token"
    /// Time between two snapshots on an event stream: under a second, so that any change reaches
    /// an open dashboard within one (issue 18's target) even with the time a snapshot takes.
    static let interval: Duration = .milliseconds(800)
    /// Jobs in a snapshot: the newest ones.
    static let jobsShown = 100

    static func add(to api: APIRoutes, scheduler: Scheduler, directory: AgentDirectory, tokens: APITokens, secureCookie: Bool = false) {
        api.open(.get, "/dashboard/app.js") { _, _ in asset(PackageResources.app_js, "text/javascript; charset=utf-8") }
        api.open(.get, "/dashboard/app.css") { _, _ in asset(PackageResources.app_css, "text/css; charset=utf-8") }
        api.route(.get, "/", .viewer) { request, _ -> Response in
            if request.uri.queryParameters["token"] != nil {
                // Signed in by the token in the address: keep it in the cookie, out of the address bar.
                let token = String(request.uri.queryParameters["token"]!)
                // Only a valid token is kept (the request may have been let in by its header).
                guard tokens.identify(token) != nil else { throw APIAuthentication.unauthorized("the API token is not valid (unknown or revoked)") }
                var headers = HTTPFields()
                headers[.location] = "/"
                headers[.setCookie] = cookieHeader(token, secure: secureCookie)
                return Response(status: .seeOther, headers: headers)
            }
            return asset(PackageResources.index_html, "text/html; charset=utf-8")
        }
        // The first snapshot as a script, so that the page is drawn by the time it has loaded.
        api.route(.get, "/v1/snapshot.js", .viewer) { _, _ -> Response in
            var body = ByteBuffer(string: "window.bargeSnapshot = ")
            body.writeBytes(try JSONEncoder().encode(try await snapshot(scheduler, directory)))
            body.writeString(";\n")
            return Response(status: .ok, headers: [.contentType: "text/javascript; charset=utf-8", .cacheControl: "no-store"], body: ResponseBody(byteBuffer: body))
        }
        api.route(.get, "/v1/events", .viewer) { request, _ -> Response in
            if try RequestChecks.flag(request, "once") {
                let data = try JSONEncoder().encode(try await snapshot(scheduler, directory))
                return Response(status: .ok, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
            }
            let secret = APIAuthentication.presentedSecret(request)
            return Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"],
                            body: ResponseBody { writer in
                // On a fixed beat (the time to build a snapshot does not add up), so that a change
                // is in an event at most one interval and one build later.
                // It ends as the coordinator stops: the HTTP server waits for every response to end.
                // It ends too once its token is revoked (before, a stream opened with a token went
                // on for ever after `barge token revoke`), with an event that says so.
                var beat = ContinuousClock.now
                while !StopAwarePause.stopping {
                    guard let secret, tokens.identify(secret) != nil else {
                        try await writer.write(ByteBuffer(string: "event: revoked\ndata: {\"error\":\"the API token is not valid (unknown or revoked)\"}\n\n"))
                        break
                    }
                    let data = try JSONEncoder().encode(try await snapshot(scheduler, directory))
                    var frame = ByteBuffer(string: "event: snapshot\ndata: ")
                    frame.writeBytes(data)
                    frame.writeString("\n\n")
                    try await writer.write(frame)
                    beat = max(beat + interval, ContinuousClock.now)
                    await StopAwarePause.pause(until: beat)
                }
                try await writer.finish(nil)
            })
        }
    }

    /// The sign-in cookie: HttpOnly (no script reads it), SameSite=Strict (no other site's page
    /// sends it), and Secure when the API is served over TLS (no plain-HTTP request carries it).
    static func cookieHeader(_ token: String, secure: Bool) -> String {
        "\(cookie)=\(token); Path=/; HttpOnly; SameSite=Strict" + (secure ? "; Secure" : "")
    }

    static func asset(_ bytes: [UInt8], _ type: String) -> Response {
        Response(status: .ok, headers: [.contentType: type, .cacheControl: "no-cache"], body: ResponseBody(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    /// What the dashboard shows, as one JSON object.
    struct Snapshot: Codable, Sendable {
        struct Agent: Codable, Sendable {
            var name: String
            var site: String
            var state: String
            var address: String
            var `protocol`: UInt8?
            var version: String?
            var unitsHeld: Int
            var bytesSent: UInt64
            var bytesReceived: UInt64

            enum CodingKeys: String, CodingKey {
                case name, site, state, address, `protocol`, version
                case unitsHeld = "units_held", bytesSent = "bytes_sent", bytesReceived = "bytes_received"
            }
        }
        struct Fleet: Codable, Sendable {
            var active: Int
            var succeeded24h: Int
            var failed24h: Int
            enum CodingKeys: String, CodingKey {
                case active, succeeded24h = "succeeded_24h", failed24h = "failed_24h"
            }
        }
        var time: Double
        var jobs: [JobStatus]
        var agents: [Agent]
        var fleet: Fleet
    }

    static func snapshot(_ scheduler: Scheduler, _ directory: AgentDirectory) async throws -> Snapshot {
        let now = await scheduler.clockNow
        var jobs: [JobStatus] = []
        let known = await directory.agents
        let sites = JobWaiting.Sites(known)
        let journalProblem = await scheduler.journalProblem
        let age = await directory.age
        for record in try await scheduler.recentJobs(limit: jobsShown) {
            var status = JobStatus(record, lanes: record.state == .running ? scheduler.lanes(of: record.id) : [])
            status.waiting = JobWaiting.reason(state: record.state, source: record.sourceSite, destination: record.destinationSite, sites: sites,
                                               journalProblem: journalProblem, coordinatorAge: age) ?? scheduler.waitsForOverlap(record.id)
            if record.state == .succeeded, jobs.count < 20 {
                status.verification = try? await scheduler.verification(record.id).map(VerifyProgress.init)
            }
            jobs.append(status)
        }
        let activity = await scheduler.agentActivity()
        let agents = known.map { info in
            let a = activity[info.name]
            return Snapshot.Agent(name: info.name, site: info.site, state: info.state.rawValue, address: info.address, protocol: a?.protocolVersion, version: info.build,
                                  unitsHeld: a?.unitsHeld ?? 0, bytesSent: a?.bytesSent ?? 0, bytesReceived: a?.bytesReceived ?? 0)
        }
        let counts = try await scheduler.jobCounts()
        let ended = try await scheduler.endedSince(now - 86_400)
        return Snapshot(time: now, jobs: jobs, agents: agents,
                        fleet: .init(active: (counts[.running] ?? 0) + (counts[.queued] ?? 0), succeeded24h: ended[.succeeded] ?? 0, failed24h: ended[.failed] ?? 0))
    }
}
