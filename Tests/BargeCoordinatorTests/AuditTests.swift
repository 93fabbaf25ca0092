import BargeCoordinator
import BargeWire
import Foundation
import Hummingbird
import HummingbirdTesting
import Testing

/// The audit trail: each control action and job outcome, in a hash chain that shows any change,
/// removal or reordering, and in the journal's transaction that carries the action out.
struct AuditTests {
    final class Fixture: @unchecked Sendable {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("barge-audit-\(UUID().uuidString)")
        let journal: Journal
        let scheduler: Scheduler
        let directory = AgentDirectory(heartbeatTimeout: .seconds(15), clock: { 1 })
        let tokens: APITokens
        let trail: AuditTrail
        var secrets: [APIRole: String] = [:]

        init() throws {
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            journal = try Journal(path: dir.appendingPathComponent(Journal.fileName).path)
            scheduler = Scheduler(journal: journal)
            trail = try AuditTrail(directory: dir.path, journal: journal)
            tokens = try APITokens(journal: journal)
            for role in APIRole.allCases { secrets[role] = try tokens.create(name: role.rawValue, role: role) }
        }
        deinit { try? FileManager.default.removeItem(at: dir) }

        var app: some ApplicationProtocol {
            Application(router: buildRouter(directory: directory, scheduler: scheduler, tokens: tokens, audit: trail))
        }
        func headers(_ role: APIRole) -> HTTPFields { [.authorization: "Bearer " + secrets[role]!] }

        var lines: [Substring] {
            let text = (try? String(contentsOfFile: trail.path, encoding: .utf8)) ?? ""
            return text.split(separator: "\n")
        }
        var records: [AuditRecord] { lines.compactMap { AuditChain.parse($0)?.record } }
    }

    @Test func eachActionIsRecordedWithWhoWhatWhenWhereAndItsResult() async throws {
        let f = try Fixture()
        try f.journal.insert(JobRecord(id: "j-1", sourceSite: "a", sourcePath: "ds", destinationSite: "b", destinationPath: "ds", createdAt: 1))
        try f.journal.insert(JobRecord(id: "j-2", sourceSite: "a", sourcePath: "ds", destinationSite: "b", destinationPath: "ds", createdAt: 2))
        try f.journal.apply(.fail("disk full"), to: "j-2")
        try f.trail.mirror()
        let before = f.records.count
        try await f.app.test(.live) { client in
            try await client.execute(uri: "/v1/jobs/j-1/cancel", method: .post, headers: f.headers(.viewer)) { #expect($0.status == .forbidden) }
            try await client.execute(uri: "/v1/jobs/j-1/limit", method: .post, headers: f.headers(.operator), body: ByteBuffer(string: #"{"bwlimit":"5MiB/s"}"#)) {
                #expect($0.status == .ok)
            }
            try await client.execute(uri: "/v1/jobs/j-1/cancel", method: .post, headers: f.headers(.operator)) { #expect($0.status == .ok) }
            // A transition the job's state refuses: its transaction rolls back, and the record says so.
            try await client.execute(uri: "/v1/jobs/j-2/cancel", method: .post, headers: f.headers(.operator)) { #expect($0.status == .conflict) }
            try await client.execute(uri: "/v1/jobs/j-1/cancel", method: .post) { #expect($0.status == .unauthorized) }
            // Reads are not control actions.
            try await client.execute(uri: "/v1/jobs/j-1", method: .get, headers: f.headers(.viewer)) { #expect($0.status == .ok) }
        }
        let records = Array(f.records.dropFirst(before))
        let summary = records.map { r in
            r.kind == "job" ? "job \(r.job!) \(r.outcome!.state)" : "\(r.actor.name) \(r.action!) \(r.job ?? "-") \(r.result!.outcome) \(r.result!.status.map(String.init) ?? "")"
        }
        #expect(summary == [
            "viewer POST /v1/jobs/{id}/cancel j-1 refused 403",
            "operator POST /v1/jobs/{id}/limit j-1 done ",
            "operator POST /v1/jobs/{id}/cancel j-1 done ",
            "job j-1 cancelled",
            "operator POST /v1/jobs/{id}/cancel j-2 refused 409",
            "anonymous POST /v1/jobs/j-1/cancel - refused 401",
        ], "\(summary)")
        let limit = records[1]
        #expect(limit.args?["body"] == #"{"bwlimit":"5MiB/s"}"# && limit.result?.detail == "cap 5MiB/s" && limit.actor.role == "operator", "\(limit)")
        #expect(limit.from?.isEmpty == false && !limit.time.isEmpty)
        let outcome = try #require(records[3].outcome)
        #expect(outcome.source == "a:/ds" && outcome.destination == "b:/ds" && outcome.state == "cancelled")
        #expect(AuditChain.verify(lines: f.lines).broken == nil)
    }

    /// A flood of requests without a valid token leaves a bounded trail: each path cut to 256
    /// bytes, and past a burst of 100 (then 10 a second) they are counted, not recorded one by
    /// one; the next one recorded says how many. Anyone who can reach the port can send them:
    /// 300 with a 60 KB path added 57 MiB to the trail in 3 s (a black-box review, h3).
    @Test func aFloodOfRequestsWithoutATokenLeavesABoundedTrail() async throws {
        let f = try Fixture()
        try f.trail.mirror()
        let before = f.records.count
        let size = { (try? FileManager.default.attributesOfItem(atPath: f.trail.path)[.size] as? Int) ?? 0 }
        let start = size()
        let long = String(repeating: "x", count: 60_000)
        let began = ContinuousClock.now
        try await f.app.test(.live) { client in
            for _ in 0..<300 {
                try await client.execute(uri: "/v1/jobs/\(long)/cancel", method: .post) { #expect($0.status == .unauthorized) }
            }
            try await Task.sleep(for: .milliseconds(300))
            try await client.execute(uri: "/v1/jobs/j-9/cancel", method: .post) { #expect($0.status == .unauthorized) }
        }
        let elapsed = (ContinuousClock.now - began) / .seconds(1)
        let records = Array(f.records.dropFirst(before))
        #expect(records.count >= 100 && Double(records.count) <= 102 + 10 * elapsed, "\(records.count) records in \(elapsed) s")
        #expect(records.allSatisfy { ($0.path?.utf8.count ?? 0) < 300 && ($0.action?.utf8.count ?? 0) < 320 })
        // Every request is accounted for: recorded, or counted by the next one recorded.
        let counted = records.compactMap { $0.args?["also refused"]?.split(separator: " ").first.flatMap { Int($0) } }.reduce(0, +)
        #expect(records.count + counted == 301, "\(records.count) recorded, \(counted) counted")
        #expect(records.last?.path == "/v1/jobs/j-9/cancel")
        #expect(size() - start < Int(40_000 * (12 + elapsed)), "the trail grew by \(size() - start) bytes in \(elapsed) s")
        #expect(AuditChain.verify(lines: f.lines).broken == nil)
    }

    /// A token sent in a query is never written to the trail (a viewer reads it in a job's
    /// evidence: a black-box review took an admin token from there), and a request without a
    /// valid token leaves the sizes of what it sent, not the text (each one added its query and
    /// 4 KiB of body: 17 MiB in 4 s from anyone who could reach the port).
    @Test func secretsAndUnauthenticatedBodiesStayOutOfTheTrail() async throws {
        let f = try Fixture()
        try f.journal.insert(JobRecord(id: "j-1", sourceSite: "a", sourcePath: "ds", destinationSite: "b", destinationPath: "ds", createdAt: 1))
        try f.trail.mirror()
        let before = f.records.count
        let secret = "barge_0123456789abcdef-secret"
        try await f.app.test(.live) { client in
            try await client.execute(uri: "/v1/jobs/j-1/limit?token=\(secret)&api_key=\(secret)&note=kept", method: .post, headers: f.headers(.operator),
                                     body: ByteBuffer(string: #"{"bwlimit":"5MiB/s"}"#)) { #expect($0.status == .ok) }
            try await client.execute(uri: "/v1/jobs/j-1/cancel?token=\(secret)&x=1", method: .post, body: ByteBuffer(string: String(repeating: "A", count: 4000))) {
                #expect($0.status == .unauthorized)
            }
        }
        // A body past what is recorded still counts its real size; a webhook URL is left out.
        try await f.app.test(.live) { client in
            try await client.execute(uri: "/v1/jobs/j-1/cancel", method: .post, body: ByteBuffer(string: String(repeating: "B", count: 9000))) {
                #expect($0.status == .unauthorized)
            }
            try await client.execute(uri: "/v1/jobs", method: .post, headers: f.headers(.viewer),
                                     body: ByteBuffer(string: #"{"source":"a:x","destination":"b:y","notify":"https://hooks.example/\#(secret)"}"#)) {
                #expect($0.status == .forbidden)
            }
        }
        let records = Array(f.records.dropFirst(before))
        #expect(records.count == 4, "\(records)")
        #expect(records[2].args == ["not recorded": "0 query parameters and 9000 bytes of body from a request without a valid token"], "\(records[2])")
        #expect(records[3].args?["body"]?.contains("a:x") == true, "\(records[3])")
        #expect(records[0].args?["note"] == "kept" && records[0].args?["body"] == #"{"bwlimit":"5MiB/s"}"#, "\(records[0])")
        #expect(records[1].args == ["not recorded": "2 query parameters and 4000 bytes of body from a request without a valid token"], "\(records[1])")
        #expect(!f.lines.contains { $0.contains(secret) }, "the trail holds the token")
        #expect(!f.lines.contains { $0.contains("AAAA") })
    }

    /// The record of an action is written in the transaction that carries it out; one that
    /// reached the journal but not the file (a crash in between) is in the file after a restart.
    @Test func aRecordJournaledButNotYetInTheFileReachesItAtTheNextStart() throws {
        let f = try Fixture()
        try f.trail.mirror(sync: true)
        let count = f.records.count
        // As if the coordinator died right after the commit: the journal has the job and its record.
        var draft = AuditRecord(kind: "action", actor: .init(name: "operator", role: "operator"))
        draft.action = "POST /v1/jobs"
        try AuditContext.$current.withValue(AuditContext.recording(draft)) {
            try f.journal.insert(JobRecord(id: "j-9", sourceSite: "a", sourcePath: "x", destinationSite: "b", destinationPath: "y", createdAt: 3))
        }
        #expect(f.records.count == count)
        let restarted = try AuditTrail(directory: f.dir.path, journal: f.journal)
        let records = f.records
        #expect(records.count == count + 1)
        #expect(records.last?.job == "j-9" && records.last?.result?.detail == "submitted a:/x → b:/y")
        // A write that fails (the job exists) records nothing.
        #expect(throws: (any Error).self) {
            try AuditContext.$current.withValue(AuditContext.recording(draft)) {
                try f.journal.insert(JobRecord(id: "j-9", sourceSite: "a", sourcePath: "x", destinationSite: "b", destinationPath: "y", createdAt: 3))
            }
        }
        try restarted.mirror()
        #expect(f.records.count == count + 1)
        #expect(AuditChain.verify(lines: f.lines) .entries == count + 1)
    }

    @Test func aJobsEndInTheGroupCommitIsRecordedWithWhatArrived() throws {
        let f = try Fixture()
        try f.journal.insert(JobRecord(id: "j-1", sourceSite: "a", sourcePath: "ds", destinationSite: "b", destinationPath: "copy", createdAt: 1))
        try f.journal.commitNow([.plan(job: "j-1", units: [], totals: PlanTotals(bytes: 0, files: 0, chunks: 0), mark: nil, final: true, now: 5)])
        try f.journal.insert(JobRecord(id: "j-2", sourceSite: "a", sourcePath: "ds", destinationSite: "b", destinationPath: "other", createdAt: 2))
        try f.journal.commitNow([.plan(job: "j-2", units: [UnitRecord(jobId: "j-2", unitId: 0, path: "f", offset: 0, length: 1)],
                                       totals: PlanTotals(bytes: 1, files: 1, chunks: 1), mark: nil, final: true, now: 5),
                                 .end(job: "j-2", .fail("no space left on device"), now: 6)])
        try f.trail.mirror()
        let outcomes = f.records.compactMap(\.outcome)
        #expect(outcomes.map(\.state) == ["succeeded", "failed"])
        #expect(outcomes[0].destination == "b:/copy" && outcomes[1].error == "no space left on device")
    }

    /// Lines changed, removed or swapped break the chain at the first bad entry; an intact chain
    /// gives the hash of its last line as its head.
    @Test func editingDeletingOrSwappingLinesBreaksTheChainAtTheFirstBadEntry() throws {
        var lines: [String] = []
        var prev = AuditRecord.zeroHash
        for seq in 1...6 {
            var r = AuditRecord(kind: "action", actor: .init(name: "ops", role: "operator"))
            r.seq = Int64(seq)
            r.prev = prev
            r.action = "POST /v1/jobs/{id}/cancel"
            r.job = "j-\(seq)"
            let (line, hash) = try r.line()
            lines.append(line)
            prev = hash
        }
        let intact = AuditChain.verify(lines: lines.map { Substring($0) })
        #expect(intact.broken == nil && intact.entries == 6 && intact.head == prev)

        var edited = lines
        edited[2] = edited[2].replacingOccurrences(of: "j-3", with: "j-4")
        #expect(AuditChain.verify(lines: edited.map { Substring($0) }).broken?.line == 3)
        var removed = lines
        removed.remove(at: 3)
        #expect(AuditChain.verify(lines: removed.map { Substring($0) }).broken?.line == 4)
        var swapped = lines
        swapped.swapAt(1, 4)
        #expect(AuditChain.verify(lines: swapped.map { Substring($0) }).broken?.line == 2)
        // A line rewritten with a fresh hash of its own still breaks the next one's link.
        var forged = AuditChain.parse(Substring(lines[1]))!.record
        forged.job = "j-forged"
        var rewritten = lines
        rewritten[1] = try forged.line().line
        let report = AuditChain.verify(lines: rewritten.map { Substring($0) })
        #expect(report.broken?.line == 3 && report.broken?.reason.contains("prev") == true)
        // The first line removed: the second does not start the chain.
        #expect(AuditChain.verify(lines: lines.dropFirst().map { Substring($0) }).broken?.line == 1)
    }
}
