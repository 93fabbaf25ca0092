import BargeWire
import Foundation
import GRDB

/// One state change of the scheduler's, journaled in a batch with others (group commit).
public enum JournalChange: Sendable {
    /// A scan page's units and totals. The first page starts the job; `final` marks it planned,
    /// so it ends once its units are done.
    case plan(job: String, units: [UnitRecord], totals: PlanTotals, mark: String?, final: Bool, now: Double)
    /// Files the quick check found unchanged at the destination.
    case skipped(job: String, files: Int64, bytes: Int64)
    /// Entries a scan page had to leave out, and why the first was.
    case untransferable(job: String, entries: [String])
    /// A unit handed to a lane (for tools and tests: the scheduler keeps assignments in memory,
    /// since a restart voids them all).
    case assign(UnitKey, source: String, destination: String)
    /// A unit's `task done`. `unit` is what the scheduler holds of it (its kind, file, depth and
    /// files finished, which never change), so the journal need not read them back; without
    /// it (a late report of a unit no longer held) the update returns them. `destination`: the
    /// agent that wrote it, kept with a range so that a coordinator started again sends the
    /// rest of its file to the agent holding the partial copy (`formerDestinations`). `lane`: the
    /// agents it ran between, for the metrics (not journaled).
    case complete(TaskDone, now: Double, unit: UnitRecord? = nil, destination: String? = nil,
                  lane: (source: String, destination: String)? = nil)
    /// A unit's lane gave it up: it is pending again (if it was assigned in the journal), its
    /// `attempts` so far are kept (so a restart does not grant it fresh ones), and `retry`
    /// counts it in the job's unit retries.
    case release(UnitKey, retry: Bool, attempts: Int64)
    /// Its `task assign` never reached the agent: counted in the job's unit retries only.
    case lost(UnitKey)
    /// A large file's done ranges go back to pending (its partial copy was lost).
    case resend(job: String, finish: UInt64)
    /// A lifecycle event (fail, cancel); one the job's state does not allow is dropped.
    case end(job: String, JobEvent, now: Double)
    case wireBytes(job: String, Int64)
}

/// What a committed batch changed that the scheduler must act on.
public struct BatchOutcome: Sendable {
    /// Jobs that reached a terminal state in this batch.
    public var ended: [JobRecord] = []
    /// Units done for the first time, as the policy knows them.
    public var firstCompletions: [UnitKey: PlannedUnit] = [:]
    /// Assignments the journal refused (the unit was done meanwhile): not to be sent.
    public var stale: Set<UnitKey> = []
    /// Ranges that go again, per file (job and finish unit).
    public var resent: [UnitKey: [UnitRecord]] = [:]
    /// Pages read for the policy's refills, after the batch's changes.
    public var pages: [(refill: SchedulingPolicy.Refill, units: [UnitRecord])] = []
    /// For the large files of those pages with ranges already done: the destination agent that
    /// wrote them (by finish unit), where their partial copy is.
    public var formerDestinations: [UnitKey: String] = [:]
    /// The reports that counted, by their place in the batch: `true` for a unit's first
    /// completion (its bytes, chunks and wire bytes count), `false` for work of another
    /// assignment of a unit already done (its wire bytes count). A report not here is the same
    /// report again (its acknowledgement was lost), or its job had ended: it counts nowhere.
    public var counted: [Int: Bool] = [:]
}

extension Journal {
    /// Commits `changes` in one transaction (one `fsync` at `synchronous = FULL`), then reads
    /// `refills` in the same transaction, so the pages agree with every change before them.
    public func commit(_ changes: [JournalChange], refills: [SchedulingPolicy.Refill] = []) async throws -> BatchOutcome {
        let outcome = try await pool.write { [manifests, finishFiles] db in try Self.write(changes, refills: refills, manifests, finishFiles, db) }
        checkpointer.poke()
        await truncateWAL()
        return outcome
    }

    /// Where a completion's manifest goes: in its row (an empty one), or in the job's log.
    enum StoredManifest {
        case row(Data)
        case log(ManifestLog.Place)
    }

    /// The batch's manifests are appended to their jobs' logs first, and synced on another
    /// thread while the statements run; the transaction commits (when this returns) only after
    /// that sync, so no row ever points at bytes a crash could lose.
    private static func write(_ changes: [JournalChange], refills: [SchedulingPolicy.Refill], _ manifests: ManifestLog,
                              _ finishFiles: FinishFiles, _ db: Database) throws -> BatchOutcome {
        var stored: [Int: StoredManifest] = [:]
        var byJob: [String: [Data]] = [:]
        var slots: [(change: Int, job: String, n: Int)] = []
        for (i, change) in changes.enumerated() {
            guard case .complete(let report, _, _, _, _) = change else { continue }
            let blob = UnitManifest.encode(report.chunks)
            if blob.isEmpty {
                stored[i] = .row(blob)
            } else {
                slots.append((i, report.job, byJob[report.job]?.count ?? 0))
                byJob[report.job, default: []].append(blob)
            }
        }
        guard !slots.isEmpty else { return try apply(changes, stored: stored, refills: refills, finishFiles, db) }
        let pending = ManifestLog.Pending()
        let placed = try manifests.append(byJob, into: pending)
        for s in slots { stored[s.change] = .log(placed[s.job]![s.n]) }
        let synced = DispatchGroup()
        DispatchQueue.global(qos: .userInitiated).async(group: synced) {
            do { try manifests.sync(pending) } catch { pending.failure = error }
        }
        defer { synced.wait() }
        let outcome = try apply(changes, stored: stored, refills: refills, finishFiles, db)
        synced.wait()
        if let failure = pending.failure { throw failure }
        return outcome
    }

    /// SQLite's automatic checkpoints copy the WAL back but start it over only at a moment no
    /// reader uses it, which a busy coordinator (status polled while thousands of decisions a
    /// second commit) may never have: the WAL grew to gigabytes in `bench scale`. Past
    /// `walLimit`, a truncating checkpoint waits briefly for the readers; if one still reads, the
    /// next commit tries again.
    static let walLimit: Int64 = 64 << 20

    private func truncateWAL() async {
        var st = stat()
        guard stat(path + "-wal", &st) == 0, Int64(st.st_size) > Self.walLimit else { return }
        _ = try? await pool.writeWithoutTransaction { db in try db.checkpoint(.truncate) }
    }

    /// `commit`, blocking the caller: for tests and tools.
    @discardableResult
    public func commitNow(_ changes: [JournalChange], refills: [SchedulingPolicy.Refill] = []) throws -> BatchOutcome {
        defer { checkpointer.poke() }
        return try pool.write { [manifests, finishFiles] db in try Self.write(changes, refills: refills, manifests, finishFiles, db) }
    }

    /// Counter changes of one job within a batch, applied once at its end.
    private struct JobDelta {
        var bytesDone: Int64 = 0, wireBytes: Int64 = 0, chunksDone: Int64 = 0, chunksRefetched: Int64 = 0
        var dedupBytes: Int64 = 0, filesDone: Int64 = 0, unitsDone: Int64 = 0, unitRetries: Int64 = 0
        var codecs: [CodecUsage] = []
    }

    private static func apply(_ changes: [JournalChange], stored: [Int: StoredManifest], refills: [SchedulingPolicy.Refill],
                              _ finishFiles: FinishFiles, _ db: Database) throws -> BatchOutcome {
        var outcome = BatchOutcome()
        var deltas: [String: JobDelta] = [:]
        var running: [String: Bool] = [:]
        func isRunning(_ job: String) throws -> Bool {
            if let known = running[job] { return known }
            let state = try String.fetchOne(db.cachedStatement(sql: "SELECT state FROM jobs WHERE id = ?"), arguments: [job])
            running[job] = state == JobState.running.rawValue
            return running[job]!
        }

        // Ranges done per file, added once per batch (a statement per completion was a fifth of
        // a completion's cost); before a resend reads them and before the pages.
        var rangesDone: [String: [Int64: Int64]] = [:]
        func addRangesDone() throws {
            for (job, files) in rangesDone { try addToColumn("rangesDone", files, job: job, db) }
            rangesDone.removeAll()
        }

        for (i, change) in changes.enumerated() {
            switch change {
            case .plan(let id, let units, let totals, let mark, let final, let now):
                guard var job = try JobRecord.fetchOne(db, key: id), !job.state.isTerminal else { continue }
                flush(&deltas, into: &job)
                if job.state == .queued {
                    job.state = try JobLifecycle.next(job.state, .start)
                    job.startedAt = now
                }
                for (i, planned) in units.enumerated() {
                    var unit = planned
                    unit.unitId = job.nextUnit + Int64(i)
                    try unit.insert(db)
                    job.unitsTotal = job.unitsTotal.addingSaturated(1 + unit.rangesTotal)
                }
                job.nextUnit += Int64(units.count)
                // Saturated: a page's totals are, but the job's sum of pages of sparse 64 PiB
                // files passed Int64.max, trapped the coordinator, and did again on every rescan.
                job.filesTotal = job.filesTotal.addingSaturated(totals.files)
                job.bytesTotal = job.bytesTotal.addingSaturated(totals.bytes)
                job.chunksTotal = job.chunksTotal.addingSaturated(totals.chunks)
                if final { job.planned = true }
                if let mark { job.scanMark = mark }
                try job.update(db)
                running[id] = true

            case .skipped(let id, let files, let bytes):
                try db.cachedStatement(sql: "UPDATE jobs SET skippedFiles = skippedFiles + ?, skippedBytes = skippedBytes + ? WHERE id = ?")
                    .execute(arguments: [files, bytes, id])

            case .untransferable(let id, let entries):
                try Journal.addUntransferable(job: id, count: Int64(entries.count), names: entries, in: db)

            case .assign(let key, let source, let destination):
                try db.cachedStatement(sql: """
                    UPDATE units SET state = 'assigned', sourceAgent = ?, destinationAgent = ?, attempts = attempts + 1, assignments = assignments + 1
                      WHERE jobId = ? AND unitId = ? AND state = 'pending'
                    """).execute(arguments: [source, destination, key.job, Int64(key.unit)])
                if db.changesCount == 0 { outcome.stale.insert(key) }

            case .complete(let report, _, let known, let destination, _):
                let key = UnitKey(job: report.job, unit: report.unit)
                guard try isRunning(report.job) else { continue }
                let manifest: (row: Data?, at: Int64?, length: Int64) = switch stored[i] {
                case .row(let blob): (blob, nil, Int64(blob.count))
                case .log(let place): (nil, place.at, place.length)
                case nil: { let blob = UnitManifest.encode(report.chunks); return (blob, nil, Int64(blob.count)) }()
                }
                // The unit as it was planned, if it is done for the first time now.
                var first: (kind: UnitKind, finish: Int64?, depth: Int64, finishedFiles: Int64)?
                let leftOut = UnitRecord.stored(report.leftOut)
                if let known {
                    try db.cachedStatement(sql: """
                        UPDATE units SET state = 'done', manifest = ?, manifestAt = ?, manifestLength = ?, lastReport = ?,
                          destinationAgent = COALESCE(?, destinationAgent), dedupBytes = ?, leftOut = ?, bytesCounted = ?
                          WHERE jobId = ? AND unitId = ? AND state != 'done'
                        """).run(manifest.row.map(BoundValue.blob) ?? .null, manifest.at.map(BoundValue.int) ?? .null, .int(manifest.length),
                                 .int(Int64(report.assignment)), destination.map(BoundValue.text) ?? .null, .int(Int64(report.dedupBytes)),
                                 leftOut.map(BoundValue.blob) ?? .null, .int(Int64(clamping: report.bytes)), .text(report.job), .int(Int64(report.unit)), in: db)
                    if db.changesCount > 0 { first = (known.kind, known.finishUnit, known.depth, known.finishedFiles) }
                } else if let row = try Row.fetchOne(db.cachedStatement(sql: """
                    UPDATE units SET state = 'done', manifest = ?, manifestAt = ?, manifestLength = ?, lastReport = ?,
                      destinationAgent = COALESCE(?, destinationAgent), dedupBytes = ?, leftOut = ?, bytesCounted = ?
                      WHERE jobId = ? AND unitId = ? AND state != 'done'
                      RETURNING kind, finishUnit, depth, finishedFiles
                    """), arguments: [manifest.row, manifest.at, manifest.length, Int64(report.assignment), destination, Int64(report.dedupBytes),
                                      leftOut, Int64(clamping: report.bytes), report.job, Int64(report.unit)]) {
                    first = (UnitKind(rawValue: row[0]) ?? .files, row[1], row[2], row[3])
                }
                if first == nil && report.assignment != 0 {
                    // Done already: another assignment's work still counts on the wire, the same
                    // report again (its acknowledgement was lost) does not.
                    try db.cachedStatement(sql: "UPDATE units SET lastReport = ? WHERE jobId = ? AND unitId = ? AND lastReport != ?")
                        .execute(arguments: [Int64(report.assignment), report.job, Int64(report.unit), Int64(report.assignment)])
                    if db.changesCount == 0 { continue }
                }
                outcome.counted[i] = first != nil
                var d = deltas[report.job] ?? JobDelta()
                d.wireBytes = d.wireBytes.addingSaturated(Int64(report.wireBytes))
                // Chunks sent again happened on the wire too, whichever assignment did the unit.
                d.chunksRefetched += Int64(report.refetched)
                if let unit = first {
                    if unit.kind == .range, let finish = unit.finish { rangesDone[report.job, default: [:]][finish, default: 0] += 1 }
                    outcome.firstCompletions[key] = PlannedUnit(id: report.unit, kind: unit.kind, finish: unit.finish.map { UInt64($0) },
                                                                depth: Int(unit.depth))
                    d.bytesDone = d.bytesDone.addingSaturated(Int64(report.bytes))
                    d.chunksDone += Int64(report.chunks.count)
                    d.dedupBytes = d.dedupBytes.addingSaturated(Int64(report.dedupBytes))
                    // Files gone from the source or changed when the unit came to read them are
                    // not finished: they count with the entries the scan left out (exit status 2).
                    // Each file once, and no more than the unit finishes.
                    let leftOut = min(Int64(Set(report.leftOut).count), unit.finishedFiles)
                    d.filesDone += unit.finishedFiles - leftOut
                    d.unitsDone += 1
                    if leftOut > 0 {
                        // Named in the agent's words (each from version 23, the first alone before),
                        // the others by path (read from the unit's files, only for a unit that
                        // left some out and did not say why).
                        var why: [UInt32: String] = [:]
                        for (i, reason) in zip(report.leftOut, [report.firstLeftOut] + report.laterLeftOut) where !reason.isEmpty { why[i] = why[i] ?? reason }
                        let indices = Set(report.leftOut).sorted().prefix(Int(leftOut))
                        let files = indices.allSatisfy({ why[$0] != nil }) ? []
                            : try DatabaseValue.fetchOne(db.cachedStatement(sql: "SELECT files FROM units WHERE jobId = ? AND unitId = ?"),
                                                         arguments: [report.job, Int64(report.unit)]).map(UnitRecord.files(from:)) ?? []
                        let names = indices.map { i in
                            why[i] ?? Journal.leftOutByUnit(Int(i) < files.count ? files[Int(i)].sourcePath : "file \(i) of unit \(report.unit)")
                        }
                        try Journal.addUntransferable(job: report.job, count: leftOut, names: names, in: db)
                    }
                    d.codecs = CodecUsage.merge(d.codecs, report.codecs)
                }
                deltas[report.job] = d

            case .release(let key, let retry, let attempts):
                try db.cachedStatement(sql: """
                    UPDATE units SET state = 'pending', sourceAgent = NULL, destinationAgent = NULL, attempts = MAX(attempts, ?)
                      WHERE jobId = ? AND unitId = ? AND state IN ('pending', 'assigned')
                    """).execute(arguments: [attempts, key.job, Int64(key.unit)])
                if db.changesCount > 0 && retry { deltas[key.job, default: JobDelta()].unitRetries += 1 }

            case .lost(let key):
                deltas[key.job, default: JobDelta()].unitRetries += 1

            case .resend(let id, let finish):
                try addRangesDone()
                let ranges = try UnitRecord.fetchAll(db, sql: """
                    SELECT * FROM units WHERE jobId = ? AND finishUnit = ? AND kind = 'range' AND state = 'done' ORDER BY unitId
                    """, arguments: [id, Int64(finish)])
                guard !ranges.isEmpty else { continue }
                var d = deltas[id] ?? JobDelta()
                for r in ranges {
                    d.bytesDone -= r.bytesCounted ?? r.length
                    d.chunksDone -= r.manifestBytes / Int64(UnitManifest.entrySize)
                    d.dedupBytes -= r.dedupBytes
                    d.unitsDone -= 1
                }
                deltas[id] = d
                try db.execute(sql: """
                    UPDATE units SET state = 'pending', manifest = NULL, manifestAt = NULL, manifestLength = 0, dedupBytes = 0, bytesCounted = NULL
                      WHERE jobId = ? AND finishUnit = ? AND kind = 'range' AND state = 'done'
                    """, arguments: [id, Int64(finish)])
                try db.execute(sql: "UPDATE units SET rangesDone = MAX(0, rangesDone - ?) WHERE jobId = ? AND unitId = ?",
                               arguments: [ranges.count, id, Int64(finish)])
                if let path = ranges.first?.path {
                    let legacy = try db.cachedStatement(sql: "DELETE FROM chunks WHERE jobId = ? AND path = ?")
                    try legacy.execute(arguments: [id, path])
                    deltas[id]!.chunksDone -= Int64(db.changesCount)
                }
                outcome.resent[UnitKey(job: id, unit: finish)] = ranges.map { var r = $0; r.state = .pending; r.manifest = nil; r.manifestAt = nil; r.manifestLength = 0; r.bytesCounted = nil; return r }

            case .end(let id, let event, let now):
                guard var job = try JobRecord.fetchOne(db, key: id), let next = try? JobLifecycle.next(job.state, event) else { continue }
                flush(&deltas, into: &job)
                job.state = next
                if case .fail(let reason) = event { job.error = reason }
                job.finishedAt = job.finishedAt ?? now
                try job.update(db)
                running[id] = false
                outcome.ended.append(job)
                try auditOutcome(job, db)

            case .wireBytes(let id, let bytes):
                deltas[id, default: JobDelta()].wireBytes = (deltas[id]?.wireBytes ?? 0).addingSaturated(bytes)
            }
        }

        try addRangesDone()
        let now = changes.lazy.compactMap { c -> Double? in if case .complete(_, let t, _, _, _) = c { t } else { nil } }.last
        for id in deltas.keys.sorted() {
            // The counters move in place (a whole record's encoding per batch was a tenth of the
            // commit thread's time); the record is read whole only when the job ends.
            let d = deltas[id]!
            try db.cachedStatement(sql: """
                UPDATE jobs SET bytesDone = bytesDone + ?, wireBytes = wireBytes + ?, chunksDone = chunksDone + ?,
                  chunksRefetched = chunksRefetched + ?, dedupBytes = dedupBytes + ?, filesDone = filesDone + ?,
                  unitsDone = unitsDone + ?, unitRetries = unitRetries + ? WHERE id = ?
                """).execute(arguments: [d.bytesDone, d.wireBytes, d.chunksDone, d.chunksRefetched, d.dedupBytes, d.filesDone,
                                         d.unitsDone, d.unitRetries, id])
            if !d.codecs.isEmpty, let stored = try String.fetchOne(db.cachedStatement(sql: "SELECT codecStats FROM jobs WHERE id = ?"), arguments: [id]) {
                let merged = CodecUsage.merge((try? JSONDecoder().decode([CodecUsage].self, from: Data(stored.utf8))) ?? [], d.codecs)
                try db.cachedStatement(sql: "UPDATE jobs SET codecStats = ? WHERE id = ?")
                    .execute(arguments: [String(decoding: try jsonEncoder.encode(merged), as: UTF8.self), id])
            }
            guard let row = try Row.fetchOne(db.cachedStatement(sql: "SELECT state, planned, unitsDone, unitsTotal FROM jobs WHERE id = ?"), arguments: [id]),
                  row["state"] == JobState.running.rawValue, row["planned"] as Bool, (row["unitsDone"] as Int64) >= (row["unitsTotal"] as Int64),
                  var job = try JobRecord.fetchOne(db, key: id) else { continue }
            job.state = try JobLifecycle.next(job.state, .succeed)
            job.finishedAt = now ?? Date().timeIntervalSince1970
            // The plan estimated the chunk count; content-defined chunks make it what it was.
            job.chunksTotal = job.chunksDone
            outcome.ended.append(job)
            try job.update(db)
            try auditOutcome(job, db)
        }
        deltas.removeAll()
        // A job planned whole with nothing to do (or whose last page came after its last unit).
        for change in changes {
            guard case .plan(let id, _, _, _, true, let t) = change, var job = try JobRecord.fetchOne(db, key: id),
                  job.state == .running, job.unitsDone >= job.unitsTotal else { continue }
            job.state = try JobLifecycle.next(job.state, .succeed)
            job.finishedAt = t
            job.chunksTotal = job.chunksDone
            try job.update(db)
            outcome.ended.append(job)
            try auditOutcome(job, db)
        }

        for refill in refills {
            let units = try page(refill, finishFiles, db)
            outcome.pages.append((refill, units))
            try formerDestinations(refill.job, units, into: &outcome.formerDestinations, db)
        }
        return outcome
    }

    private static func flush(_ deltas: inout [String: JobDelta], into job: inout JobRecord) {
        guard let d = deltas.removeValue(forKey: job.id) else { return }
        job.bytesDone = job.bytesDone.addingSaturated(d.bytesDone)
        job.wireBytes = job.wireBytes.addingSaturated(d.wireBytes)
        job.chunksDone += d.chunksDone
        job.chunksRefetched += d.chunksRefetched
        job.dedupBytes = job.dedupBytes.addingSaturated(d.dedupBytes)
        job.filesDone += d.filesDone
        job.unitsDone += d.unitsDone
        job.unitRetries += d.unitRetries
        if !d.codecs.isEmpty { job.codecStats = CodecUsage.merge(job.codecStats, d.codecs) }
    }

    /// Where the ranges already done of each large file among `units` went: one look per file
    /// (the `units_of_file` index), for the files of the page only. While the coordinator runs it
    /// knows this already (the policy's pins); after a restart it does not, and with two agents
    /// sharing a root the rest of a file could go to the one without its partial copy: its
    /// finish was refused and the whole file was sent again.
    private static func formerDestinations(_ job: String, _ units: [UnitRecord], into found: inout [UnitKey: String], _ db: Database) throws {
        var files = Set<Int64>()
        for u in units {
            switch u.kind {
            case .range: if let f = u.finishUnit { files.insert(f) }
            case .finish: files.insert(u.unitId)
            default: break
            }
        }
        let look = try db.cachedStatement(sql: """
            SELECT destinationAgent FROM units
              WHERE jobId = ? AND finishUnit = ? AND kind = 'range' AND state = 'done' AND destinationAgent IS NOT NULL LIMIT 1
            """)
        for f in files {
            if let agent = try String.fetchOne(look, arguments: [job, f]) { found[UnitKey(job: job, unit: UInt64(f))] = agent }
        }
    }

    private static func page(_ refill: SchedulingPolicy.Refill, _ finishFiles: FinishFiles, _ db: Database) throws -> [UnitRecord] {
        switch refill.kind {
        case .work(let after):
            // Read one at a time, and ended once the units list `refill.files` files: the rest
            // are not even decoded.
            var units: [UnitRecord] = []
            var files = 0
            let cursor = try UnitRecord.fetchCursor(db.cachedStatement(sql: """
                SELECT * FROM units WHERE jobId = ? AND state = 'pending' AND unitId > ? AND kind != 'directories' ORDER BY unitId LIMIT ?
                """), arguments: [refill.job, after.map { Int64($0) } ?? -1, refill.limit])
            while files < refill.files, let unit = try cursor.next() {
                units.append(unit)
                files += max(1, unit.files.count)
            }
            if units.count < refill.limit && files < refill.files {
                units += try makeRanges(job: refill.job, count: min(refill.limit - units.count, refill.files - files), files: refill.spread, finishFiles, db)
            }
            return units

        case .directories(let after):
            // Deepest first; within a depth, any order will do (descending ids use the index as is).
            if let after {
                return try UnitRecord.fetchAll(db.cachedStatement(sql: """
                    SELECT * FROM units WHERE jobId = ? AND kind = 'directories' AND state = 'pending'
                      AND (depth < ? OR (depth = ? AND unitId < ?)) ORDER BY depth DESC, unitId DESC LIMIT ?
                    """), arguments: [refill.job, after.depth, after.depth, Int64(after.id), refill.limit])
            }
            return try UnitRecord.fetchAll(db.cachedStatement(sql: """
                SELECT * FROM units WHERE jobId = ? AND kind = 'directories' AND state = 'pending' ORDER BY depth DESC, unitId DESC LIMIT ?
                """), arguments: [refill.job, refill.limit])
        }
    }

    /// Journals up to `count` more ranges of the job's large files, oldest files first, taking
    /// from `files` of them at once in turn: each file stays with one destination agent, so the
    /// page gives as many agents work as it has files. Fewer than `count` means every range of
    /// the job is made.
    private static func makeRanges(job id: String, count: Int, files: Int, _ finishFiles: FinishFiles, _ db: Database) throws -> [UnitRecord] {
        guard var next = try Int64.fetchOne(db.cachedStatement(sql: "SELECT nextUnit FROM jobs WHERE id = ?"), arguments: [id]) else { return [] }
        var made: [UnitRecord] = []
        while made.count < count {
            // The counts from the row; the file, which never changes, from `finishFiles`.
            var spans = try Row.fetchAll(db.cachedStatement(sql: """
                SELECT unitId, rangesMade, rangesTotal, rangeBytes FROM units
                  WHERE jobId = ? AND kind = 'finish' AND rangesMade < rangesTotal ORDER BY unitId LIMIT ?
                """), arguments: [id, max(1, files)]).map { row in
                let unitId: Int64 = row[0]
                let file = try finishFiles.file(UnitKey(job: id, unit: UInt64(unitId))) {
                    try UnitRecord.files(from: DatabaseValue.fetchOne(db.cachedStatement(sql: "SELECT files FROM units WHERE jobId = ? AND unitId = ?"),
                                                                      arguments: [id, unitId]) ?? .null).first
                }
                guard let file else { throw JournalError.corrupt("finish unit \(unitId) of job \(id) names no file") }
                var span = UnitRecord(jobId: id, unitId: unitId, kind: .finish, files: [file])
                (span.rangesMade, span.rangesTotal, span.rangeBytes) = (row[1], row[2], row[3])
                return span
            }
            guard !spans.isEmpty else { break }
            let before = spans.map(\.rangesMade)
            // Round robin over the spans that still have ranges to make.
            var i = 0
            while made.count < count, let s = (0..<spans.count).lazy.map({ (i + $0) % spans.count }).first(where: { spans[$0].rangesMade < spans[$0].rangesTotal }) {
                let range = spans[s].range(spans[s].rangesMade, id: next)
                try insertRange(range, db)
                made.append(range)
                next += 1
                spans[s].rangesMade += 1
                i = s + 1
            }
            // Only the files a range was made from (a short page reaches only the first few).
            var madeNow: [Int64: Int64] = [:]
            for (span, made) in zip(spans, before) where span.rangesMade != made { madeNow[span.unitId] = span.rangesMade - made }
            try addToColumn("rangesMade", madeNow, job: id, db)
        }
        try db.cachedStatement(sql: "UPDATE jobs SET nextUnit = ? WHERE id = ?").execute(arguments: [next, id])
        return made
    }

    private static let jsonEncoder = JSONEncoder()

    /// Adds to a counter column of many units of a job: one statement for each distinct amount,
    /// the units' ids as a JSON array.
    private static func addToColumn(_ column: String, _ amounts: [Int64: Int64], job: String, _ db: Database) throws {
        guard !amounts.isEmpty else { return }
        for (amount, units) in Dictionary(grouping: amounts.keys, by: { amounts[$0]! }) {
            try db.cachedStatement(sql: "UPDATE units SET \(column) = \(column) + ? WHERE jobId = ? AND unitId IN (SELECT value FROM json_each(?))")
                .execute(arguments: [amount, job, "[" + units.sorted().map(String.init).joined(separator: ",") + "]"])
        }
    }

    /// A range unit as `UnitRecord.insert` writes it, through one cached statement: the record's
    /// generic encoding was a fifth of the commit thread's time at a million units.
    private static func insertRange(_ r: UnitRecord, _ db: Database) throws {
        let files = UnitRecord.stored(r.files)
        try db.cachedStatement(sql: """
            INSERT INTO units (jobId, unitId, path, offset, length, state, attempts, kind, files, finishUnit, depth, finishedFiles,
                               rangesTotal, rangesMade, rangesDone, rangeBytes, assignments, lastReport)
              VALUES (?, ?, ?, ?, ?, 'pending', 0, 'range', ?, ?, 0, 0, 0, 0, 0, 0, 0, 0)
            """).run(.text(r.jobId), .int(r.unitId), .text(r.path), .int(r.offset), .int(r.length), .blob(files), r.finishUnit.map(BoundValue.int) ?? .null, in: db)
    }

    /// Every assigned unit back to pending: run when the coordinator starts, since no agent holds
    /// work for a coordinator that was not running.
    @discardableResult
    public func releaseAllAssigned() throws -> Int {
        try pool.write { db in
            try db.execute(sql: "UPDATE units SET state = 'pending', sourceAgent = NULL, destinationAgent = NULL WHERE state = 'assigned'")
            return db.changesCount
        }
    }

    /// A running job's units other than directories that are not done, ranges not yet made
    /// included (for the policy's counters after a restart or a resume).
    public func openWork(job id: String) throws -> Int {
        try pool.read { db in
            let rows = try Int.fetchOne(db, sql: """
                SELECT COUNT(*) FROM units WHERE jobId = ? AND state IN ('pending', 'assigned', 'failed') AND kind != 'directories'
                """, arguments: [id]) ?? 0
            let unmade = try Int.fetchOne(db, sql: """
                SELECT COALESCE(SUM(rangesTotal - rangesMade), 0) FROM units WHERE jobId = ? AND kind = 'finish' AND rangesMade < rangesTotal
                """, arguments: [id]) ?? 0
            return rows + unmade
        }
    }

}
