import BargeChunk
import BargeDigest
import BargeWire
import Foundation

extension Scheduler {
    /// Verifies a succeeded job: each destination agent re-hashes the files it finished against the
    /// journal's chunk manifest. With `repair`, every mismatching chunk is sent again from the
    /// source (written in place, verified), a missing or resized file is sent again whole, and a
    /// second pass checks the result.
    public func verify(_ id: String, repair: Bool, timeout: Duration = .seconds(600)) async throws -> VerifyOutcome {
        guard let job = try journal.job(id) else { throw SchedulerError.unknownJob(id) }
        guard job.state == .succeeded else { throw SchedulerError.notVerifiable(id, job.state) }
        let manifest = Manifest(job: job, units: try journal.units(job: id), chunks: try journal.chunks(job: id))
        var outcome = VerifyOutcome(id: id, filesChecked: manifest.fileCount, chunksChecked: manifest.chunkCount, bytesChecked: 0,
                                    mismatches: [], repaired: 0, remaining: [], ok: false, merkleRoot: manifest.merkleRoot)
        var found = try await check(manifest, timeout: timeout)
        outcome.bytesChecked = found.bytes
        outcome.mismatches = found.mismatches.map(\.report)
        if repair && !found.mismatches.isEmpty {
            outcome.repaired = try await self.repair(found.mismatches, job: job, timeout: timeout)
            try journal.addRefetched(id, outcome.repaired)
            found = try await check(manifest, timeout: timeout)
            outcome.remaining = found.mismatches.map(\.report)
            outcome.ok = found.mismatches.isEmpty
        } else {
            outcome.ok = found.mismatches.isEmpty
        }
        logger.notice("job \(id) verified: \(outcome.mismatches.count) mismatches, \(outcome.repaired) repaired, \(outcome.remaining.count) remaining")
        return outcome
    }

    struct Found {
        struct Mismatch {
            let agent: String
            let file: TaskFile
            let offset: UInt64
            let length: UInt64
            let reason: String
            var report: VerifyOutcome.Mismatch { .init(path: file.entry.path, offset: offset, length: length, reason: reason) }
            var wholeFile: Bool { reason != VerifyReply.chunkDiffers }
        }
        var bytes: UInt64 = 0
        var mismatches: [Mismatch] = []
    }

    private func check(_ manifest: Manifest, timeout: Duration) async throws -> Found {
        var found = Found()
        for (agent, files) in manifest.filesByAgent {
            guard let link = links[agent] else {
                throw SchedulerError.agentUnavailable("agent '\(agent)' holds \(files.count) files of this job and is not connected")
            }
            let request = nextRequest
            nextRequest += 1
            var chunks: [ChunkReport] = []
            for (i, f) in files.enumerated() {
                for c in manifest.chunks[f.entry.path] ?? [] {
                    chunks.append(ChunkReport(file: UInt32(i), offset: UInt64(c.offset), length: UInt32(c.length), id: [UInt8](c.id)))
                }
            }
            let message = Message.verifyRequest(VerifyRequest(request: request, files: files.map { .init(path: $0.entry.path, size: $0.entry.size) }, chunks: chunks))
            let reply = try await awaitReply(request, from: agent, timeout: timeout) { link.sink.yield(message) }
            guard reply.error.isEmpty else { throw SchedulerError.agentUnavailable("agent '\(agent)' could not verify: \(reply.error)") }
            found.bytes += reply.bytesChecked
            for m in reply.mismatches where Int(m.file) < files.count {
                found.mismatches.append(.init(agent: agent, file: files[Int(m.file)], offset: m.offset, length: m.length, reason: m.reason))
            }
        }
        return found
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

    /// Sends the mismatching ranges again, one repair unit per destination agent; returns how many
    /// chunks (or whole files) were sent.
    private func repair(_ mismatches: [Found.Mismatch], job: JobRecord, timeout: Duration) async throws -> Int {
        var count = 0
        for (agent, list) in Dictionary(grouping: mismatches, by: \.agent) {
            var files: [TaskFile] = []
            for m in list {
                if m.wholeFile {
                    files.append(TaskFile(sourcePath: m.file.sourcePath, entry: m.file.entry, offset: 0, length: m.file.entry.size, finish: true))
                } else {
                    files.append(TaskFile(sourcePath: m.file.sourcePath, entry: m.file.entry, offset: m.offset, length: m.length, finish: false, repair: true))
                }
            }
            guard let destination = links[agent] else { throw SchedulerError.agentUnavailable("agent '\(agent)' is not connected") }
            guard let sourceName = policy.leastLoaded(at: job.sourceSite), let source = links[sourceName] else {
                throw SchedulerError.agentUnavailable("no agent of site '\(job.sourceSite)' is free to send the repair")
            }
            let key = UnitKey(job: job.id, unit: (1 << 40) + nextRequest)
            nextRequest += 1
            let task = TaskAssign(job: job.id, unit: key.unit,
                                  destination: DataPeer(name: agent, host: destination.agent.dataHost, port: destination.agent.dataPort),
                                  codec: job.codec, chunkSize: UInt32(job.chunkSize), files: files)
            let result = await withCheckedContinuation { continuation in
                repairs[key] = ((sourceName, agent), continuation)
                source.sink.yield(.taskAssign(task))
            }
            switch result {
            case .success(let done): count += done.chunks.count + files.filter { $0.finish && $0.entry.size == 0 }.count
            case .failure(let error): throw error
            }
        }
        return count
    }
}

/// The journal's record of a job's finished files, by the agent that finished them, with each
/// file's chunks.
struct Manifest {
    var filesByAgent: [String: [TaskFile]] = [:]
    var chunks: [String: [ChunkRecordRow]] = [:]
    var fileCount = 0
    var chunkCount = 0

    /// `rows`: chunk rows of journals before v5, which kept a row per chunk.
    init(job: JobRecord, units: [UnitRecord], chunks rows: [ChunkRecordRow]) {
        // A done unit keeps its lane: its destination agent finished its files.
        for u in units where u.state == .done {
            for f in u.files where f.finish && f.entry.kind == .file {
                guard let agent = u.destinationAgent else { continue }
                filesByAgent[agent, default: []].append(f)
                fileCount += 1
            }
            for c in UnitManifest.decode(u.manifest ?? Data()) where Int(c.file) < u.files.count {
                let path = u.files[Int(c.file)].entry.path
                chunks[path, default: []].append(ChunkRecordRow(jobId: u.jobId, path: path, offset: Int64(c.offset), length: Int64(c.length), id: Data(c.id)))
                chunkCount += 1
            }
        }
        for row in rows { chunks[row.path, default: []].append(row) }
        chunkCount += rows.count
        for path in chunks.keys { chunks[path]!.sort { $0.offset < $1.offset } }
    }

    /// Hex of the job's root over its files' roots (path order), each over its chunk ids (offset
    /// order; the journal returns them sorted so).
    var merkleRoot: String {
        let files = chunks.keys.sorted().map { path in
            MerkleTree.root(chunks[path]!.compactMap { SHA256Digest(bytes: [UInt8]($0.id)) })
        }
        return MerkleTree.root(files).description
    }
}

