import BargeCoordinator
import BargeWire
import Foundation
import Hummingbird
import HummingbirdTesting
import Testing

/// The HTTP API through the router, with a real journal file and directory.
struct RouterTests {
    final class Fixture: @unchecked Sendable {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("barge-api-\(UUID().uuidString)")
        let journal: Journal
        let scheduler: Scheduler
        let directory = AgentDirectory(heartbeatTimeout: .seconds(15), clock: { 1 })
        let tokens: APITokens
        /// An admin token's header: these tests are about what each endpoint does (`AccessTests`
        /// covers who may call it).
        let admin: HTTPFields
        init() throws {
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            journal = try Journal(path: dir.appendingPathComponent(Journal.fileName).path)
            scheduler = Scheduler(journal: journal)
            tokens = try APITokens(journal: journal)
            admin = [.authorization: "Bearer " + (try tokens.create(name: "admin", role: .admin))]
        }
        deinit { try? FileManager.default.removeItem(at: dir) }
        var app: some ApplicationProtocol { Application(router: buildRouter(directory: directory, scheduler: scheduler, tokens: tokens)) }
    }

    func json(_ buffer: ByteBuffer) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(buffer.readableBytesView)) as? [String: Any])
    }

    @Test func agentsListShowsNameSiteStateAndAddress() async throws {
        let f = try Fixture()
        _ = try await f.directory.register(Register(name: "a1", site: "site-a", root: "/d", dataHost: "10.1.0.5", dataPort: 7501, maxInFlight: 8))
        try await f.app.test(.router) { client in
            try await client.execute(uri: "/v1/agents", method: .get, headers: f.admin) { response in
                #expect(response.status == .ok)
                let agents = try #require(try json(response.body)["agents"] as? [[String: Any]])
                #expect(agents.count == 1)
                #expect(agents[0]["name"] as? String == "a1")
                #expect(agents[0]["site"] as? String == "site-a")
                #expect(agents[0]["state"] as? String == "up")
                #expect(agents[0]["address"] as? String == "10.1.0.5:7501")
            }
        }
    }

    @Test func jobStatusHasTheContractFields() async throws {
        let f = try Fixture()
        try f.journal.insert(JobRecord(id: "j-1", sourceSite: "a", sourcePath: "ds", destinationSite: "b", destinationPath: "ds", createdAt: 1))
        try await f.app.test(.router) { client in
            try await client.execute(uri: "/v1/jobs/j-1", method: .get, headers: f.admin) { response in
                #expect(response.status == .ok)
                let job = try json(response.body)
                #expect(Set(job.keys).isSuperset(of: ["id", "state", "bytes_total", "bytes_done", "wire_bytes", "files_total", "files_done",
                                                      "chunks_total", "chunks_done", "chunks_refetched", "dedup_bytes", "error"]))
                #expect(job["state"] as? String == "queued")
                #expect(job["error"] is NSNull)
            }
            try await client.execute(uri: "/v1/jobs", method: .get, headers: f.admin) { response in
                let jobs = try json(response.body)["jobs"] as? [[String: Any]]
                #expect(jobs?.count == 1)
            }
        }
    }

    /// Jobs are listed in the order they were submitted, also within one second (the job ids,
    /// random, ordered them before), and `next` is left out on the last page, also when it is
    /// full (it named the last job, and following it gave an empty page; a black-box review, h3).
    @Test func jobsAreListedInSubmissionOrderAndTheLastPageHasNoNext() async throws {
        let f = try Fixture()
        let ids = ["j-9", "j-3", "j-7", "j-1", "j-5", "j-2"]
        for id in ids { try f.journal.insert(JobRecord(id: id, sourceSite: "a", sourcePath: "ds", destinationSite: "b", destinationPath: id, createdAt: 1_700_000_000)) }
        try await f.app.test(.router) { client in
            let (listed, pages) = try await follow(client, f, "/v1/jobs?limit=3") { page in
                (page["jobs"] as? [[String: Any]] ?? []).compactMap { $0["id"] as? String }
            }
            #expect(listed == ids && pages == 2, "\(listed) in \(pages) pages")
        }
        #expect(try f.journal.recentJobs(limit: 3).map(\.id) == ["j-2", "j-5", "j-1"])
    }

    /// Follows a paged listing from `uri` by its `next`, for at most 5 pages: the items `take`
    /// finds on each page, and how many pages there were.
    func follow(_ client: some TestClientProtocol, _ f: Fixture, _ uri: String,
                       _ take: @escaping ([String: Any]) throws -> [String]) async throws -> ([String], Int) {
        var listed: [String] = []
        var after: String?
        var pages = 0
        repeat {
            try await client.execute(uri: uri + (after.map { "&after=\($0)" } ?? ""), method: .get, headers: f.admin) { response in
                let page = try json(response.body)
                listed += try take(page)
                after = page["next"] as? String
            }
            pages += 1
        } while after != nil && pages < 5
        return (listed, pages)
    }

    /// GET /v1/jobs/{id}/untransferable pages through every entry named, in the order found.
    @Test func entriesNotTransferredArePagedInTheOrderFound() async throws {
        let f = try Fixture()
        try f.journal.insert(JobRecord(id: "j-1", sourceSite: "a", sourcePath: "ds", destinationSite: "b", destinationPath: "ds", createdAt: 1))
        let entries = (0..<5).map { "'ds/f\($0)' vanished from the source during the transfer" }
        _ = try f.journal.commitNow([.untransferable(job: "j-1", entries: entries)])
        try await f.app.test(.router) { client in
            let (listed, pages) = try await follow(client, f, "/v1/jobs/j-1/untransferable?limit=2") { page in
                #expect(page["total"] as? Int == 5 && page["named"] as? Int == 5, "\(page)")
                return page["entries"] as? [String] ?? []
            }
            #expect(listed == entries && pages == 3, "\(listed) in \(pages) pages")
            try await client.execute(uri: "/v1/jobs/nope/untransferable", method: .get, headers: f.admin) { response in
                #expect(response.status == .notFound)
            }
            for bad in ["limit=0", "limit=x", "after=-1", "after=x"] {
                try await client.execute(uri: "/v1/jobs/j-1/untransferable?\(bad)", method: .get, headers: f.admin) { response in
                    #expect(response.status == .badRequest, "\(bad)")
                }
            }
        }
    }

    @Test func unknownJobsAre404AndCancelIsIdempotentButFinal() async throws {
        let f = try Fixture()
        try f.journal.insert(JobRecord(id: "j-1", sourceSite: "a", sourcePath: "ds", destinationSite: "b", destinationPath: "ds", createdAt: 1))
        try f.journal.insert(JobRecord(id: "j-2", sourceSite: "a", sourcePath: "ds", destinationSite: "b", destinationPath: "ds", createdAt: 2))
        try f.journal.apply(.fail("disk full"), to: "j-2")
        try await f.app.test(.router) { client in
            try await client.execute(uri: "/v1/jobs/nope", method: .get, headers: f.admin) { response in
                #expect(response.status == .notFound)
                #expect(String(buffer: response.body).contains("no job nope"))
            }
            for _ in 0..<2 {
                try await client.execute(uri: "/v1/jobs/j-1/cancel", method: .post, headers: f.admin) { response in
                    #expect(response.status == .ok)
                    let state = try json(response.body)["state"] as? String
                    #expect(state == "cancelled")
                }
            }
            try await client.execute(uri: "/v1/jobs/j-2/cancel", method: .post, headers: f.admin) { response in
                #expect(response.status == .conflict)
                #expect(String(buffer: response.body).contains("a failed job cannot be cancelled"))
            }
            try await client.execute(uri: "/v1/jobs/nope/cancel", method: .post, headers: f.admin) { response in
                #expect(response.status == .notFound)
            }
        }
    }

    /// `?wait=S`: a long poll that answers as soon as the job ends, and no later than S seconds.
    @Test func aLongPollAnswersWhenTheJobEnds() async throws {
        let f = try Fixture()
        let scheduler = f.scheduler
        try f.journal.insert(JobRecord(id: "j-1", sourceSite: "a", sourcePath: "ds", destinationSite: "b", destinationPath: "ds", createdAt: 1))
        try await f.app.test(.router) { client in
            try await client.execute(uri: "/v1/jobs/j-1?wait=abc", method: .get, headers: f.admin) { response in
                #expect(response.status == .badRequest)
            }
            // Nothing happens: the answer comes after the wait, the job still queued.
            let quiet = ContinuousClock.now
            try await client.execute(uri: "/v1/jobs/j-1?wait=0.3", method: .get, headers: f.admin) { response in
                let state = try json(response.body)["state"] as? String
                #expect(state == "queued")
            }
            #expect(ContinuousClock.now - quiet >= .milliseconds(250))
            // Cancelled while a poll of 5 s (the most) waits: it answers at once, with the new state.
            let canceller = Task {
                while scheduler.endings.waiting == 0 { try await Task.sleep(for: .milliseconds(10)) }
                _ = try await scheduler.cancel("j-1")
            }
            let start = ContinuousClock.now
            try await client.execute(uri: "/v1/jobs/j-1?wait=5", method: .get, headers: f.admin) { response in
                let state = try json(response.body)["state"] as? String
                #expect(state == "cancelled")
            }
            #expect(ContinuousClock.now - start < .seconds(3))
            try await canceller.value
            #expect(scheduler.endings.waiting == 0)
            // An ended job answers at once, whatever the wait.
            let ended = ContinuousClock.now
            try await client.execute(uri: "/v1/jobs/j-1?wait=5", method: .get, headers: f.admin) { _ in }
            try await client.execute(uri: "/v1/jobs/j-1?wait=30", method: .get, headers: f.admin) { response in
                #expect(response.status == .badRequest)  // past the 5 s a long poll may last
            }
            #expect(ContinuousClock.now - ended < .seconds(1))
        }
    }

    func submitBody(_ src: String, _ srcPath: String, _ dst: String, _ dstPath: String) -> ByteBuffer {
        ByteBuffer(string: #"{"source":{"site":"\#(src)","path":"\#(srcPath)"},"destination":{"site":"\#(dst)","path":"\#(dstPath)"}}"#)
    }

    @Test func submitRefusesUnknownSitesSitesWithoutAgentsAndEscapingPaths() async throws {
        let f = try Fixture()
        let (_, sink) = AsyncStream.makeStream(of: Message.self)
        let a1 = Register(name: "a1", site: "a", root: "/d", dataHost: "127.0.0.1", dataPort: 1)
        let connection = await f.scheduler.attach(a1, sink: sink)
        try await f.app.test(.router) { client in
            try await client.execute(uri: "/v1/jobs", method: .post, headers: f.admin, body: submitBody("a", "/ds", "mars", "/ds")) { response in
                #expect(response.status == .notFound)
                #expect(String(buffer: response.body).contains("unknown site 'mars'"))
            }
            try await client.execute(uri: "/v1/jobs", method: .post, headers: f.admin, body: submitBody("a", "../../etc", "a", "/x")) { response in
                #expect(response.status == .badRequest)
                #expect(String(buffer: response.body).contains("leads outside the agent's root"))
            }
            try await client.execute(uri: "/v1/jobs", method: .post, headers: f.admin, body: ByteBuffer(string: "not json")) { response in
                #expect(response.status == .badRequest)
            }
            // A member given twice (also spelt with an escape): which one was meant cannot be told.
            for twice in [#"{"source":{"site":"a","path":"/ds"},"destination":{"site":"a","path":"/x"},"bwlimit":"1MiB/s","bwlimit":"off"}"#,
                          #"{"source":{"site":"a","path":"/ds","\u0070ath":"/etc"},"destination":{"site":"a","path":"/x"}}"#] {
                try await client.execute(uri: "/v1/jobs", method: .post, headers: f.admin, body: ByteBuffer(string: twice)) { response in
                    #expect(response.status == .badRequest, "\(twice)")
                    #expect(String(buffer: response.body).contains("is given twice"), "\(String(buffer: response.body))")
                }
            }
            // The same key in two objects ("site", "path") is no duplicate: every submission above has it.
            // The agents' own state, at either end, directly or by a detour.
            for (source, destination) in [("/.barge", "/x"), ("ds/../.barge/a1", "/x"), ("/ds", "/.barge"), ("/ds", ".barge/a1/chunk-index.sqlite")] {
                try await client.execute(uri: "/v1/jobs", method: .post, headers: f.admin, body: submitBody("a", source, "a", destination)) { response in
                    #expect(response.status == .badRequest, "\(source) → \(destination)")
                    #expect(String(buffer: response.body).contains("no job may read or write"))
                }
            }
            // A name ending as a destination's unfinished copies do, at either end: a single file so
            // named was sent, and the next job into its directory replaced it as its partial copy.
            for (source, destination) in [("/ds/x.barge-partial", "/x"), ("/ds", "/out/y.barge-partial"), ("/ds", "/d.barge-partial/x")] {
                try await client.execute(uri: "/v1/jobs", method: .post, headers: f.admin, body: submitBody("a", source, "a", destination)) { response in
                    #expect(response.status == .badRequest, "\(source) → \(destination)")
                    #expect(String(buffer: response.body).contains("is named as Barge names its unfinished copies"), "\(String(buffer: response.body))")
                }
            }
            #expect(JobPath.partialCopyName("ds/.barge-partial") == nil && JobPath.partialCopyName("ds/a.barge-partial.txt") == nil)
            // Above a source, such a directory collides with nothing.
            #expect(JobPath.partialCopyName("d.barge-partial/x", lastOnly: true) == nil && JobPath.partialCopyName("d.barge-partial/x") != nil)
            // A destination at or inside the source at the same site (one root) would be scanned
            // while it fills; beside it, or holding it, is fine.
            for (source, destination, refused) in [("/ds", "ds/", "the source itself"), ("ds", "/ds/./copy", "inside the source a:/ds"),
                                                   ("/", "/backup", "inside the source a:/")] {
                try await client.execute(uri: "/v1/jobs", method: .post, headers: f.admin, body: submitBody("a", source, "a", destination)) { response in
                    #expect(response.status == .conflict, "\(source) → \(destination)")
                    let said = String(buffer: response.body).replacingOccurrences(of: "\\/", with: "/")  // JSON escapes slashes
                    #expect(said.contains(refused) && said.contains("choose a destination outside the source"), "\(said)")
                }
            }
            #expect(JobPath.contains("ds", "ds2") == false && JobPath.contains("ds/x", "ds") == false && JobPath.contains("ds", "ds/x/y"))
        }
        await f.scheduler.detach("a1", connection: connection)
        try await f.app.test(.router) { client in
            try await client.execute(uri: "/v1/jobs", method: .post, headers: f.admin, body: submitBody("a", "/ds", "a", "/y")) { response in
                #expect(response.status == .conflict)
                #expect(String(buffer: response.body).contains("site 'a' has no agent up"))
            }
        }
        #expect(try f.journal.jobs().isEmpty)  // nothing refused was journalled
    }

    @Test func submitJournalsTheJobAndAsksASourceAgentToScan() async throws {
        let f = try Fixture()
        let (stream, sink) = AsyncStream.makeStream(of: Message.self)
        _ = await f.scheduler.attach(Register(name: "a1", site: "a", root: "/d", dataHost: "127.0.0.1", dataPort: 1), sink: sink)
        _ = await f.scheduler.attach(Register(name: "b1", site: "b", root: "/e", dataHost: "127.0.0.1", dataPort: 2),
                                     sink: AsyncStream.makeStream(of: Message.self).continuation)
        let id = try await f.app.test(.router) { client in
            try await client.execute(uri: "/v1/jobs", method: .post, headers: f.admin, body: submitBody("a", "/ds/", "b", "in")) { response in
                #expect(response.status == .created)
                let job = try json(response.body)
                #expect(job["state"] as? String == "queued")
                // The source's slash is kept: a link there is followed (`TreeListing`).
                #expect(job["source"] as? String == "a:/ds/")
                #expect(job["destination"] as? String == "b:/in")
                return try #require(job["id"] as? String)
            }
        }
        var messages = stream.makeAsyncIterator()
        guard case .scanRequest(let scan) = await messages.next() else { Issue.record("no scan request"); return }
        #expect(scan.path == "ds/")
        #expect(try f.journal.job(id)?.state == .queued)
    }

    @Test func verifyNeedsASucceededJobAndMetricsArePrometheusText() async throws {
        let f = try Fixture()
        try f.journal.insert(JobRecord(id: "j-1", sourceSite: "a", sourcePath: "ds", destinationSite: "b", destinationPath: "ds", createdAt: 1))
        let scheduler = f.scheduler
        try await f.app.test(.router) { client in
            try await client.execute(uri: "/v1/jobs/nope/verify", method: .post, headers: f.admin) { response in
                #expect(response.status == .notFound)
            }
            try await client.execute(uri: "/v1/jobs/j-1/verify", method: .post, headers: f.admin) { response in
                #expect(response.status == .conflict)
                #expect(String(buffer: response.body).contains("only a succeeded job can be verified"))
            }
            await scheduler.tick()
            try await client.execute(uri: "/metrics", method: .get, headers: f.admin) { response in
                #expect(response.status == .ok)
                let text = String(buffer: response.body)
                #expect(text.contains("# TYPE barge_throughput_bytes_per_second gauge"))
                #expect(text.contains("barge_units_in_flight 0"))
            }
        }
    }
}
