import BargeChunk
import BargeDigest
import BargeStore
import BargeWire
import Foundation

/// `barge verify`: a background operation over a succeeded job, one page of units at a time.
///
/// Each page's done units are read from the journal with their manifests; each destination agent
/// (the one that received the unit, or any up agent of the site, which shares the root) is sent
/// one `verify request` for the page's files it holds and re-hashes them. With `repair`, the
/// chunks that differ (whole files when missing or resized) are sent again from the source and
/// the page is checked a second time. After each page the journal gets the cursor, the counts
/// and the Merkle state, so a verification survives a coordinator restart and resumes where it
/// was. Memory is one page; no request holds more than a page's chunks.
extension Scheduler {
    /// Units per page: at most 128 × 1,024 chunks of 48 bytes in a request, far below the frame limit.
    static let verifyPage = 128
    /// How long a page waits for an agent of the destination site to be up before the
    /// verification fails.
    static let verifyAgentWait: Duration = .seconds(60)
    /// Attempts at a page whose agent's connection ends meanwhile.
    static let verifyPageAttempts = 5

    /// Starts verifying a succeeded job (or returns the verification running). A failed one
    /// resumes where it stopped; an ended one starts again.
    public func startVerify(_ id: String, repair: Bool) throws -> VerifyOutcome {
        guard let job = try journal.job(id) else { throw SchedulerError.unknownJob(id) }
        guard job.state == .succeeded else { throw SchedulerError.notVerifiable(id, job.state) }
        // A demotion or promotion sent no chunks of its own: checked, it found nothing and said OK.
        guard job.operation == .transfer else {
            throw SchedulerError.conflict("job \(id) is a \(job.operation.rawValue), which moves files between tiers and has no chunks of its own to check: verify the transfer that sent them (barge jobs); its verification reads cold files from the store")
        }
        // A repair sends the job's own files again: after a later job wrote to an overlapping
        // destination, that put the older files back over the later job's, and said repaired
        // (279 files rolled back, and the later job's verify failed; h1 of session 53, F1).
        if repair, let later = try laterWriter(of: job) {
            throw SchedulerError.conflict(Self.repairRefusal(id, later: later))
        }
        if let running = try journal.verification(id), running.state == .running || (running.state == .failed && running.repair == repair) {
            var v = running
            if v.state == .failed {
                v.state = .running
                v.error = nil
                v.finishedAt = nil
                try journal.save(v)
            }
            launchVerification(id)
            return VerifyOutcome(v)
        }
        let v = VerificationRecord(jobId: id, repair: repair, chunksTotal: job.chunksDone, startedAt: now())
        try journal.save(v)
        logger.notice("job \(id): verifying \(job.chunksDone) chunks\(repair ? ", repairing what differs" : "")")
        launchVerification(id)
        return VerifyOutcome(v)
    }

    /// The job's latest verification, running or ended.
    public nonisolated func verification(_ id: String) async throws -> VerifyOutcome? {
        guard try await journal.readJob(id) != nil else { throw SchedulerError.unknownJob(id) }
        return try await journal.readVerification(id).map(VerifyOutcome.init)
    }

    /// Verifies and waits for the end (tests and tools; the API starts it and returns).
    public func verify(_ id: String, repair: Bool) async throws -> VerifyOutcome {
        var outcome = try startVerify(id, repair: repair)
        while outcome.state == VerificationRecord.State.running.rawValue {
            try await Task.sleep(for: .milliseconds(50))
            outcome = try await verification(id) ?? outcome
        }
        return outcome
    }

    /// Verifications that were running when the coordinator stopped go on.
    func resumeVerifications() {
        for v in (try? journal.verifications(in: .running)) ?? [] {
            logger.notice("job \(v.jobId): verification resumes at unit \(v.cursor) (\(v.chunksChecked) of \(v.chunksTotal) chunks checked)")
            launchVerification(v.jobId)
        }
    }

    private func launchVerification(_ id: String) {
        guard !verifying.contains(id) else { return }
        verifying.insert(id)
        Task { await self.runVerification(id) }
    }

    private func runVerification(_ id: String) async {
        defer { verifying.remove(id) }
        guard var v = try? journal.verification(id), v.state == .running, let job = try? journal.job(id) else { return }
        var merkle = MerkleAccumulator(encoded: [UInt8](v.merkle)) ?? MerkleAccumulator()
        var wholeFiles: Set<PathKey> = []
        do {
            let attributes = try laterWriter(of: job).map { later in
                logger.notice("job \(id): modes and mtimes are not checked: job \(later) wrote to an overlapping destination since, and may have given the files others")
                return false
            } ?? true
            while true {
                // A transfer into an overlapping destination submitted while this repair goes on:
                // it stops at the page's end, as it would not have started.
                if v.repair, let later = try laterWriter(of: job) { throw SchedulerError.conflict(Self.repairRefusal(id, later: later)) }
                let units = try journal.doneUnits(job: id, from: v.cursor, limit: Self.verifyPage)
                guard let last = units.last else { break }
                (v, merkle, wholeFiles) = try await verify(page: units, job: job, attributes: attributes, into: (v, merkle, wholeFiles))
                v.cursor = last.unitId + 1
                v.merkle = Data(merkle.encoded)
                try journal.save(v)
            }
            v.state = .succeeded
        } catch {
            // The journal holds the last whole step: a page's end, or the start of its repair.
            v = (try? journal.verification(id)) ?? v
            v.state = .failed
            v.error = "\(error)"
            logger.error("job \(id): verification stopped at unit \(v.cursor): \(error)")
        }
        v.finishedAt = now()
        try? journal.save(v)
        if v.state == .succeeded {
            logger.notice("job \(id) verified: \(v.chunksChecked) chunks, \(v.mismatchCount) mismatches, \(v.repaired) repaired, \(v.remainingCount) remaining")
        }
    }

    /// One page checked (and, for a repair, its mismatches sent again and checked a second time):
    /// the verification's counts, its Merkle state and the whole files found so far, with the page.
    /// Each step whose agent's connection ends (a restart, a reconnect) is made again, on its own:
    /// what an earlier step found or repaired stays counted. Before a repair begins, the page's
    /// first pass is journaled (`pageRepairs`): a coordinator restarted during the repair sends
    /// those mismatches again rather than check anew a page that is partly repaired already.
    private func verify(page units: [UnitRecord], job: JobRecord, attributes: Bool,
                        into state: (VerificationRecord, MerkleAccumulator, Set<PathKey>)) async throws -> (VerificationRecord, MerkleAccumulator, Set<PathKey>) {
        var (v, merkle, wholeFiles) = state
        let at = v.cursor
        let page: VerifyPage
        var found: Found
        if let pending = v.pageRepairs {
            page = try await againIfConnectionLost(job.id, "the page at unit \(at) is read") { try await verifyPage(units, job: job) }
            found = Found(mismatches: Self.mismatches(pending, of: page))
            for c in page.ids { merkle.add(c) }
            for m in found.mismatches where m.wholeFile { wholeFiles.insert(PathKey(m.file.entry.path)) }
            logger.notice("job \(job.id): the repair of the page at unit \(at) goes on after a restart (\(found.mismatches.count) mismatches)")
        } else {
            let first: Found
            (page, first) = try await againIfConnectionLost(job.id, "the page at unit \(at) is checked") {
                let page = try await verifyPage(units, job: job)
                return (page, try await check(page.requests, repair: v.repair, attributes: attributes))
            }
            found = first
            for c in page.ids { merkle.add(c) }
            // A missing or resized file is one mismatch, whichever of its units found it.
            found.mismatches.removeAll { $0.wholeFile && !wholeFiles.insert(PathKey($0.file.entry.path)).inserted }
            v.filesChecked += Int64(page.files)
            v.chunksChecked += Int64(page.ids.count)
            v.bytesChecked = v.bytesChecked.addingSaturated(Int64(clamping: found.bytes))
            v.mismatchCount += Int64(found.mismatches.count)
            v.mismatches += found.mismatches.prefix(VerificationRecord.listed - v.mismatches.count).map(\.report)
            if v.repair && !found.mismatches.isEmpty {
                v.pageRepairs = found.mismatches.map { .init(agent: $0.agent, mismatch: $0.report) }
                try journal.save(v)
            }
        }
        if v.repair && !found.mismatches.isEmpty {
            var repaired = 0, setAgain = 0
            var done: Set<String> = []
            defer {
                v.repaired += Int64(repaired + setAgain)
                try? journal.addRefetched(job.id, repaired)
            }
            try await againIfConnectionLost(job.id, "the repair of the page at unit \(at) goes on") {
                try await repair(found.mismatches, job: job, done: &done, count: &repaired, setAgain: &setAgain)
            }
            let again = try await againIfConnectionLost(job.id, "the page at unit \(at) is checked a second time") {
                try await check(try await verifyPage(units, job: job).requests, repair: true, attributes: attributes).mismatches
            }
            v.remainingCount += Int64(again.count)
            v.remaining += again.prefix(VerificationRecord.listed - v.remaining.count).map(\.report)
        }
        v.pageRepairs = nil
        return (v, merkle, wholeFiles)
    }

    /// `body`, made again (up to `verifyPageAttempts` times, 2 s apart) when an agent's
    /// connection ends during it.
    private func againIfConnectionLost<T>(_ job: String, _ what: String, _ body: () async throws -> T) async throws -> T {
        var attempt = 1
        while true {
            do {
                return try await body()
            } catch SchedulerError.connectionLost(let why) where attempt < Self.verifyPageAttempts {
                attempt += 1
                logger.notice("job \(job): \(why); \(what) again (attempt \(attempt) of \(Self.verifyPageAttempts))")
                try await Task.sleep(for: .seconds(2))
            }
        }
    }

    /// One agent's share of a page: the files it checks and their chunks.
    struct VerifyBatch {
        var files: [TaskFile] = []
        var chunks: [ChunkReport] = []
    }

    struct VerifyPage {
        var requests: [String: VerifyBatch] = [:]
        /// Chunk ids in journal order, for the Merkle root.
        var ids: [ChunkID] = []
        /// Files finished by these units.
        var files = 0
    }

    /// Sorts a page's units by the agent that checks them.
    private func verifyPage(_ units: [UnitRecord], job: JobRecord) async throws -> VerifyPage {
        var page = VerifyPage()
        // Journals before v5 kept a row per chunk instead of a manifest per unit.
        let legacyPaths = units.filter { $0.manifest == nil }.flatMap { $0.files.map(\.entry.path) }
        let legacy = legacyPaths.isEmpty ? [:] : Dictionary(grouping: try journal.chunks(job: job.id, paths: legacyPaths), by: { PathKey($0.path) })
        // Files left out (gone from the source or changed during the transfer) were never
        // finished: neither they nor the ranges of a large one are looked for.
        let goneFinishes = try journal.leftOutFinishes(job: job.id, among: Set(units.compactMap { $0.kind == .range ? $0.finishUnit : nil }))
        for u in units {
            if u.kind == .range, let finish = u.finishUnit, goneFinishes.contains(finish) { continue }
            let leftOut = Set(u.leftOut.map(Int.init))
            let files = u.files.enumerated().filter { $0.element.entry.kind == .file && !leftOut.contains($0.offset) }
            guard !files.isEmpty else { continue }
            let agent = try await checker(for: u, site: job.destinationSite)
            var batch = page.requests[agent] ?? VerifyBatch()
            // Each file's chunks, in manifest order: one pass over the manifest, not one per file
            // (a unit of 256 small files would otherwise scan it 256 times).
            let manifest = Dictionary(grouping: UnitManifest.decode(u.manifest ?? Data()), by: \.file)
            for (i, f) in files {
                let index = UInt32(batch.files.count)
                batch.files.append(f)
                if f.finish { page.files += 1 }
                if u.manifest != nil {
                    for c in manifest[UInt32(i)] ?? [] {
                        batch.chunks.append(ChunkReport(file: index, offset: c.offset, length: c.length, id: c.id))
                        if let id = SHA256Digest(bytes: c.id) { page.ids.append(id) }
                    }
                } else {
                    for row in legacy[PathKey(f.entry.path)] ?? [] where f.finish || (UInt64(row.offset) >= f.offset && UInt64(row.offset) < f.offset + f.length) {
                        batch.chunks.append(ChunkReport(file: index, offset: UInt64(row.offset), length: UInt32(row.length), id: [UInt8](row.id)))
                        if let id = SHA256Digest(bytes: [UInt8](row.id)) { page.ids.append(id) }
                    }
                }
            }
            page.requests[agent] = batch
        }
        return page
    }

    /// The agent that received the unit if it is up, else the least loaded of the site (which
    /// shares its root); waits a while for one to come up.
    private func checker(for unit: UnitRecord, site: String) async throws -> String {
        let agent = try await connected {
            if let agent = unit.destinationAgent, links[agent] != nil { return agent }
            if let agent = policy.anyAgent(at: site), links[agent] != nil { return agent }
            return nil
        }
        guard let agent else { throw SchedulerError.agentUnavailable("no agent of site '\(site)' is up to check the files") }
        return agent
    }

    /// What `find` finds among the connected agents, asked every 0.5 s for up to
    /// `verifyAgentWait` (an agent reconnecting); nil when it never does.
    private func connected<T>(_ find: () -> T?) async throws -> T? {
        let deadline = ContinuousClock.now + Self.verifyAgentWait
        while true {
            if let found = find() { return found }
            guard ContinuousClock.now < deadline else { return nil }
            try await Task.sleep(for: .milliseconds(500))
        }
    }

    struct Found {
        struct Mismatch {
            let agent: String
            let file: TaskFile
            let offset: UInt64
            let length: UInt64
            let reason: String
            var report: VerifyOutcome.Mismatch { .init(path: file.entry.path, offset: offset, length: length, reason: reason) }
            /// The file's mode or mtime differs, and its bytes match: nothing to send again. A
            /// repairing verification's agent set them again itself (the reason says so).
            var attributesOnly: Bool { reason.hasPrefix(VerifyReply.attributesDiffer) }
            var wholeFile: Bool { reason != VerifyReply.chunkDiffers && !attributesOnly }
        }
        var bytes: UInt64 = 0
        var mismatches: [Mismatch] = []
    }

    /// The journaled mismatches of a page under repair, with the page's files they name (a
    /// file the page no longer has is left out).
    private static func mismatches(_ pending: [VerificationRecord.PageMismatch], of page: VerifyPage) -> [Found.Mismatch] {
        var files: [PathKey: TaskFile] = [:]
        for batch in page.requests.values {
            for f in batch.files { files[PathKey(f.entry.path)] = files[PathKey(f.entry.path)] ?? f }
        }
        return pending.compactMap { p in
            files[PathKey(p.mismatch.path)].map { .init(agent: p.agent, file: $0, offset: p.mismatch.offset, length: p.mismatch.length, reason: p.mismatch.reason) }
        }
    }

    private struct AskedChunk: Hashable {
        let file: UInt32
        let offset: UInt64
        let length: UInt64
    }

    /// `repair`: the agents may change their cold catalogs for a damaged chunk (`VerifyRequest.repair`).
    /// `attributes`: the finished files' modes and mtimes are checked too, by agents of 22 on;
    /// `setAttributes` (a repair's step, never a check) sets those that differ.
    private func check(_ requests: [String: VerifyBatch], repair: Bool, attributes: Bool, setAttributes: Bool = false,
                       timeout: Duration = .seconds(600)) async throws -> Found {
        var found = Found()
        for (agent, batch) in requests.sorted(by: { $0.key < $1.key }) {
            guard let link = links[agent] else { throw SchedulerError.connectionLost("agent '\(agent)' is not connected during the verification") }
            let withAttributes = attributes && link.version >= WireVersion.verifyAttributes
            guard withAttributes || !setAttributes else { continue }
            for slice in Self.slices(of: batch, attributes: withAttributes) {
                let files = Array(batch.files[slice.files])
                let first = UInt32(slice.files.lowerBound)
                let chunks = batch.chunks[slice.chunks].map { c in var c = c; c.file -= first; return c }
                let request = nextRequest
                nextRequest += 1
                // The mode and mtime of the files these units finished (another unit's range of a
                // large file is only its bytes).
                let given = !withAttributes ? [] : files.enumerated().compactMap { i, f in
                    f.finish ? VerifyRequest.Attributes(file: UInt32(i), mode: f.entry.mode, mtimeSeconds: f.entry.mtimeSeconds, mtimeNanoseconds: f.entry.mtimeNanoseconds) : nil
                }
                let message = Message.verifyRequest(VerifyRequest(request: request, files: files.map { .init(path: $0.entry.path, size: $0.entry.size) },
                                                                  chunks: chunks, repair: repair && link.version >= WireVersion.verifyRepair,
                                                                  attributes: given, setAttributes: setAttributes))
                let reply = try await awaitReply(request, from: agent, timeout: timeout) { link.sink.yield(message) }
                guard reply.error.isEmpty else { throw SchedulerError.agentUnavailable("agent '\(agent)' could not verify: \(reply.error)") }
                found.bytes = found.bytes.addingSaturated(reply.bytesChecked)
                // A chunk that differs is one the request named: its range is what a repair reads
                // at the source, whole, so a range the agent made up is not sent on.
                let asked = Set(chunks.map { AskedChunk(file: $0.file, offset: $0.offset, length: UInt64($0.length)) })
                for m in reply.mismatches where Int(m.file) < files.count {
                    guard m.reason != VerifyReply.chunkDiffers || asked.contains(AskedChunk(file: m.file, offset: m.offset, length: m.length)) else {
                        logger.warning("agent \(agent) reported a chunk the verification did not ask about (\(files[Int(m.file)].entry.path) at \(m.offset), \(m.length) bytes): left out")
                        continue
                    }
                    found.mismatches.append(.init(agent: agent, file: files[Int(m.file)], offset: m.offset, length: m.length, reason: m.reason))
                }
            }
        }
        return found
    }

    /// Encoded bytes of a `verify request`, about: the rest of an agent's share goes in the next.
    /// A page's share could hold 131,072 files of 1,024-file units, and past the frame limit
    /// (16 MiB) with paths of 70 bytes on average; a reply to a `chmod -R` of them as well.
    static let verifyRequestBytes = 4 << 20

    /// An agent's share of a page cut into requests of about `verifyRequestBytes`: runs of its
    /// files, each with the chunks that follow it (`verifyPage` lists a file's chunks right
    /// after it).
    static func slices(of batch: VerifyBatch, attributes: Bool) -> [(files: Range<Int>, chunks: Range<Int>)] {
        var out: [(files: Range<Int>, chunks: Range<Int>)] = []
        var fileStart = 0, chunkStart = 0, bytes = 0, c = 0
        for (i, f) in batch.files.enumerated() {
            var end = c
            while end < batch.chunks.count && batch.chunks[end].file == UInt32(i) { end += 1 }
            let cost = 2 + f.entry.path.utf8.count + 8 + (attributes ? VerifyRequest.Attributes.size : 0) + (end - c) * ChunkReport.size
            if bytes > 0 && bytes + cost > verifyRequestBytes {
                out.append((fileStart..<i, chunkStart..<c))
                (fileStart, chunkStart, bytes) = (i, c, 0)
            }
            bytes += cost
            c = end
        }
        // Chunks not in file order (none are): all in one request, as before.
        guard c == batch.chunks.count else { return [(0..<batch.files.count, 0..<batch.chunks.count)] }
        out.append((fileStart..<batch.files.count, chunkStart..<batch.chunks.count))
        return out
    }

    static func repairRefusal(_ id: String, later: String) -> String {
        "job \(later) wrote to an overlapping destination since job \(id): a repair of \(id) would put its older files back over those of \(later). "
            + "Verify or repair \(later) instead (barge verify \(later) --repair); barge verify \(id), without --repair, still checks the files against what \(id) sent"
    }

    /// A transfer submitted after `job` whose destination overlaps its destination, if any: it
    /// may have given the files other modes and mtimes (a `touch` or `chmod` at the source, then
    /// a re-sync), which this job's verification would report and its repair set back.
    func laterWriter(of job: JobRecord) throws -> String? {
        try journal.transfers(into: job.destinationSite, after: job.id).first {
            JobPath.overlaps(site: job.destinationSite, job.destinationPath, withSite: $0.destinationSite, $0.destinationPath)
        }?.id
    }

    private func awaitReply(_ request: UInt64, from agent: String, timeout: Duration, send: () -> Void) async throws -> VerifyReply {
        let timer = Task { [weak self] in
            try await Task.sleep(for: timeout)
            await self?.expireReply(request)
        }
        defer { timer.cancel() }
        return try await withCheckedThrowingContinuation { continuation in
            replies[request] = (agent, continuation)
            send()
        }
    }

    private func expireReply(_ request: UInt64) {
        replies.removeValue(forKey: request)?.continuation.resume(throwing: SchedulerError.timedOut("a verification reply"))
    }

    /// Sends the mismatching ranges again, one repair unit per destination agent, skipping the
    /// agents in `done` and adding each one repaired; adds to `count` how many chunks (or whole
    /// files) were sent. A file sent whole (missing, or of another size) is made anew under its
    /// name, which changes its directory's mtime (and its parent's, when the directory is made
    /// anew too): those directories get theirs back from the job's `directories` units, in a
    /// second unit once the files are in.
    /// A mode or mtime the agent set again as it checked adds to `setAgain`, and sends nothing.
    private func repair(_ mismatches: [Found.Mismatch], job: JobRecord, done: inout Set<String>, count: inout Int, setAgain: inout Int) async throws {
        for (agent, list) in Dictionary(grouping: mismatches, by: \.agent).sorted(by: { $0.key < $1.key }) where !done.contains(agent) {
            var files: [TaskFile] = []
            var parents = Set<String>()
            var attributes = VerifyBatch()
            for m in list {
                if m.attributesOnly {
                    attributes.files.append(m.file)
                } else if m.wholeFile {
                    files.append(TaskFile(sourcePath: m.file.sourcePath, entry: m.file.entry, offset: 0, length: m.file.entry.size, finish: true))
                    // Its directory, and theirs: a directory made anew for it changes its own
                    // parent's mtime too. Only the job's own directories are found.
                    var path = Substring(m.file.entry.path)
                    while let slash = path.lastIndex(of: "/") {
                        path = path[..<slash]
                        guard parents.insert(String(path)).inserted else { break }
                    }
                } else {
                    files.append(TaskFile(sourcePath: m.file.sourcePath, entry: m.file.entry, offset: m.offset, length: m.length, finish: false, repair: true))
                }
            }
            if !files.isEmpty { count += try await repairUnit(files, job: job, agent: agent) }
            // Modes and mtimes, set where the files are by an agent of the site, now that the
            // page's mismatches are journaled. A cold copy's are not set: it stays counted as
            // still differing when checked a second time.
            if !attributes.files.isEmpty {
                let checker = links[agent] != nil ? agent : (policy.anyAgent(at: job.destinationSite) ?? agent)
                let set = try await check([checker: attributes], repair: true, attributes: true, setAttributes: true)
                setAgain += set.mismatches.filter { $0.reason.hasSuffix(VerifyReply.attributesSetAgain) }.count
            }
            let directories = try journal.directoryEntries(job: job.id, paths: parents)
            if !directories.isEmpty { _ = try await repairUnit(directories, job: job, agent: agent) }
            done.insert(agent)
        }
    }

    /// One repair unit to `agent`, from any agent of the source site; returns the chunks (and
    /// empty files) it sent.
    private func repairUnit(_ files: [TaskFile], job: JobRecord, agent: String) async throws -> Int {
        // Both ends connected, waited for a while (an agent reconnecting after a page failed).
        // The agent that found the mismatches, or, gone meanwhile, another of its site: they
        // share the root.
        let ends = try await connected { () -> (destination: Link, sourceName: String, source: Link)? in
            guard let destination = links[agent] ?? policy.anyAgent(at: job.destinationSite).flatMap({ links[$0] }),
                  let sourceName = policy.anyAgent(at: job.sourceSite), let source = links[sourceName] else { return nil }
            return (destination, sourceName, source)
        }
        guard let (destination, sourceName, source) = ends else {
            guard links[agent] != nil else { throw SchedulerError.agentUnavailable("no agent of site '\(job.destinationSite)' is connected to take the repair") }
            throw SchedulerError.agentUnavailable("no agent of site '\(job.sourceSite)' is free to send the repair")
        }
        let agent = destination.agent.name
        let key = UnitKey(job: job.id, unit: (1 << 40) + nextRequest)
        nextRequest += 1
        var task = TaskAssign(job: job.id, unit: key.unit,
                              destination: DataPeer(name: agent, host: destination.agent.dataHost, port: destination.agent.dataPort),
                              codec: job.codec, chunkSize: UInt32(job.chunkSize), files: files)
        if links[sourceName].map({ $0.version < WireVersion.sourceIdentity }) ?? true { task = task.withoutIdentities() }
        let result = await withCheckedContinuation { continuation in
            repairs[key] = ((sourceName, agent), continuation)
            source.sink.yield(.taskAssign(task))
        }
        switch result {
        case .success(let report) where !report.leftOut.isEmpty:
            // The source is not what was sent (gone or changed since): nothing to repair from.
            throw SchedulerError.agentUnavailable("the repair could not be sent: \(report.firstLeftOut)")
        case .success(let report):
            return report.chunks.count + files.filter { $0.finish && $0.entry.kind == .file && $0.entry.size == 0 }.count
        case .failure(let error): throw error
        }
    }
}
