import BargeWire
import Foundation
import GRDB

/// The coordinator's durable record of jobs and their work units: `journal.sqlite` under
/// `--state`, in WAL mode. Every state change is one write transaction, committed with
/// `synchronous = FULL` before it is acknowledged, so a coordinator killed at any moment restarts
/// with exactly what it told anyone.
public final class Journal: Sendable {
    public static let fileName = "journal.sqlite"

    private let pool: DatabasePool

    /// Opens (creating if needed) the journal at `path` and brings its schema up to date.
    public init(path: String) throws {
        pool = try DatabasePool(path: path)
        // GRDB's WAL set-up leaves synchronous at NORMAL, which can lose the last transactions on
        // power loss. The writer connection is the only one that commits, so FULL is set there.
        try pool.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA synchronous = FULL") }
        try Self.migrator.migrate(pool)
    }

    /// Named migrations; a shipped migration is never edited, only followed by new ones.
    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1: jobs and units") { db in
            try db.create(table: "jobs") { t in
                t.primaryKey("id", .text)
                t.column("state", .text).notNull()
                t.column("sourceSite", .text).notNull()
                t.column("sourcePath", .text).notNull()
                t.column("destinationSite", .text).notNull()
                t.column("destinationPath", .text).notNull()
                for counter in ["bytesTotal", "bytesDone", "wireBytes", "filesTotal", "filesDone",
                                "chunksTotal", "chunksDone", "chunksRefetched", "dedupBytes"] {
                    t.column(counter, .integer).notNull().defaults(to: 0)
                }
                t.column("error", .text)
                t.column("createdAt", .integer).notNull()
            }
            try db.create(table: "units") { t in
                t.column("jobId", .text).notNull().references("jobs", onDelete: .cascade)
                t.column("unitId", .integer).notNull()
                t.column("path", .text).notNull()
                t.column("offset", .integer).notNull()
                t.column("length", .integer).notNull()
                t.column("state", .text).notNull()
                t.column("sourceAgent", .text)
                t.column("destinationAgent", .text)
                t.column("attempts", .integer).notNull().defaults(to: 0)
                t.primaryKey(["jobId", "unitId"])
            }
            try db.create(index: "units_by_state", on: "units", columns: ["jobId", "state"])
        }
        m.registerMigration("v2: plans, codecs and chunk manifests") { db in
            try db.alter(table: "jobs") { t in
                t.add(column: "codec", .text).notNull().defaults(to: "auto")
                t.add(column: "chunkSize", .integer).notNull().defaults(to: 1 << 20)
                t.add(column: "codecStats", .text).notNull().defaults(to: "[]")
                t.add(column: "startedAt", .double)
                t.add(column: "finishedAt", .double)
            }
            try db.alter(table: "units") { t in
                t.add(column: "kind", .text).notNull().defaults(to: UnitKind.range.rawValue)
                t.add(column: "files", .text).notNull().defaults(to: "[]")
                t.add(column: "dependsOn", .text)
            }
            try db.create(table: "chunks") { t in
                t.column("jobId", .text).notNull().references("jobs", onDelete: .cascade)
                t.column("path", .text).notNull()
                t.column("offset", .integer).notNull()
                t.column("length", .integer).notNull()
                t.column("id", .blob).notNull()
                t.primaryKey(["jobId", "path", "offset"])
            }
        }
        m.registerMigration("v3: unit retries") { db in
            try db.alter(table: "jobs") { t in t.add(column: "unitRetries", .integer).notNull().defaults(to: 0) }
        }
        m.registerMigration("v4: job caps and congestion modes") { db in
            try db.alter(table: "jobs") { t in
                t.add(column: "bwlimit", .text)
                t.add(column: "congestion", .text).notNull().defaults(to: "fair")
            }
        }
        return m
    }

    /// The value of a pragma on the writer connection (for tests and diagnostics).
    public func pragma(_ name: String) throws -> Int? {
        try pool.writeWithoutTransaction { db in try Int.fetchOne(db, sql: "PRAGMA \(name)") }
    }

    public func insert(_ job: JobRecord) throws {
        try pool.write { db in try job.insert(db) }
    }

    public func job(_ id: String) throws -> JobRecord? {
        try pool.read { db in try JobRecord.fetchOne(db, key: id) }
    }

    public func jobs() throws -> [JobRecord] {
        try pool.read { db in try JobRecord.order(Column("createdAt"), Column("id")).fetchAll(db) }
    }

    /// Applies a lifecycle event to a job, checked by `JobLifecycle`, in one transaction.
    @discardableResult
    public func apply(_ event: JobEvent, to id: String) throws -> JobRecord {
        try pool.write { db in
            guard var job = try JobRecord.fetchOne(db, key: id) else { throw JournalError.unknownJob(id) }
            job.state = try JobLifecycle.next(job.state, event)
            if case .fail(let reason) = event { job.error = reason }
            try job.update(db)
            return job
        }
    }

    /// Records a planned job's units and totals, and starts it, in one transaction.
    public func plan(_ id: String, units: [UnitRecord], totals: PlanTotals, now: Double) throws {
        try pool.write { db in
            guard var job = try JobRecord.fetchOne(db, key: id) else { throw JournalError.unknownJob(id) }
            job.state = try JobLifecycle.next(job.state, .start)
            for unit in units { try unit.insert(db) }
            job.filesTotal = totals.files
            job.bytesTotal = totals.bytes
            job.chunksTotal = totals.chunks
            job.startedAt = now
            if units.isEmpty {
                job.state = try JobLifecycle.next(job.state, .succeed)
                job.finishedAt = now
            }
            try job.update(db)
        }
    }

    /// Hands a pending unit to a lane.
    public func assign(job id: String, unit: Int64, source: String, destination: String) throws {
        try pool.write { db in
            guard var u = try UnitRecord.fetchOne(db, key: ["jobId": id, "unitId": unit]) else { throw JournalError.unknownUnit(id, unit) }
            guard u.state == .pending else { throw JournalError.unitNotPending(id, unit, u.state) }
            u.state = .assigned
            u.sourceAgent = source
            u.destinationAgent = destination
            u.attempts += 1
            try u.update(db)
        }
    }

    /// Marks a unit done with what its source agent reported, adds it to the job's counters and
    /// chunk manifest, and finishes the job when it was the last unit, all in one transaction.
    /// Returns the job, or nil when the report changes nothing but the wire bytes (a duplicate), or
    /// nothing at all (a job already cancelled or failed).
    @discardableResult
    public func complete(_ report: TaskDone, now: Double) throws -> JobRecord? {
        try pool.write { db in
            let unitId = Int64(report.unit)
            guard var job = try JobRecord.fetchOne(db, key: report.job), job.state == .running else { return nil }
            guard var u = try UnitRecord.fetchOne(db, key: ["jobId": report.job, "unitId": unitId]) else { return nil }
            guard u.state != .done else {
                // Sent twice (a unit handed out again after a restart, while its first lane finished
                // it): counted once, but its bytes did cross the wire.
                job.wireBytes += Int64(report.wireBytes)
                try job.update(db)
                return nil
            }
            // A report may also arrive for a unit put back to pending (the coordinator restarted
            // while the agent kept working): the work is done whoever holds it now.
            u.state = .done
            try u.update(db)
            for c in report.chunks where Int(c.file) < u.files.count {
                try ChunkRecordRow(jobId: report.job, path: u.files[Int(c.file)].entry.path, offset: Int64(c.offset),
                                   length: Int64(c.length), id: Data(c.id)).upsert(db)
            }
            job.bytesDone += Int64(report.bytes)
            job.wireBytes += Int64(report.wireBytes)
            job.chunksDone += Int64(report.chunks.count)
            job.chunksRefetched += Int64(report.refetched)
            job.dedupBytes += Int64(report.dedupBytes)
            job.filesDone += Int64(u.files.filter { $0.finish && $0.entry.kind != .directory }.count)
            job.codecStats = CodecUsage.merge(job.codecStats, report.codecs)
            let left = try UnitRecord.filter(Column("jobId") == report.job && Column("state") != UnitState.done.rawValue).fetchCount(db)
            if left == 0 {
                job.state = try JobLifecycle.next(job.state, .succeed)
                job.finishedAt = now
                // The plan estimated the chunk count; content-defined chunks make it what it was.
                job.chunksTotal = job.chunksDone
            }
            try job.update(db)
            return job
        }
    }

    /// Takes a failed or cancelled job back (`barge resume`): every unit not done is pending again
    /// with a fresh count of attempts, and the error and end time are cleared. A job that failed
    /// before it was planned goes back to queued, to be scanned again.
    @discardableResult
    public func resume(_ id: String) throws -> JobRecord {
        try pool.write { db in
            guard var job = try JobRecord.fetchOne(db, key: id) else { throw JournalError.unknownJob(id) }
            let planned = job.startedAt != nil
            job.state = try JobLifecycle.next(job.state, .resume(planned: planned))
            job.error = nil
            job.finishedAt = nil
            try job.update(db)
            try UnitRecord.filter(Column("jobId") == id && Column("state") != UnitState.done.rawValue)
                .updateAll(db, [Column("state").set(to: UnitState.pending.rawValue), Column("attempts").set(to: 0),
                                Column("sourceAgent").set(to: nil), Column("destinationAgent").set(to: nil)])
            return job
        }
    }

    /// Puts an assigned unit back to pending (its lane failed); returns its attempts so far.
    public func release(job id: String, unit: Int64) throws -> Int64 {
        try pool.write { db in
            guard var u = try UnitRecord.fetchOne(db, key: ["jobId": id, "unitId": unit]) else { throw JournalError.unknownUnit(id, unit) }
            if u.state == .assigned {
                u.state = .pending
                u.sourceAgent = nil
                u.destinationAgent = nil
                try u.update(db)
                try db.execute(sql: "UPDATE jobs SET unitRetries = unitRetries + 1 WHERE id = ?", arguments: [id])
            }
            return u.attempts
        }
    }

    /// Applies a terminal event (fail or cancel) and stamps the time.
    @discardableResult
    public func end(_ id: String, _ event: JobEvent, now: Double) throws -> JobRecord {
        try pool.write { db in
            guard var job = try JobRecord.fetchOne(db, key: id) else { throw JournalError.unknownJob(id) }
            job.state = try JobLifecycle.next(job.state, event)
            if case .fail(let reason) = event { job.error = reason }
            job.finishedAt = job.finishedAt ?? now
            try job.update(db)
            return job
        }
    }

    /// A large file's ranges must all be sent again (the agent that held its partial copy is gone):
    /// its done `range` units go back to pending, their bytes and chunks come off the job's counts,
    /// and their manifest rows are dropped. Returns how many units were reset.
    @discardableResult
    public func resetRanges(job id: String, path: String) throws -> Int {
        try pool.write { db in
            guard var job = try JobRecord.fetchOne(db, key: id) else { throw JournalError.unknownJob(id) }
            let done = try UnitRecord.filter(Column("jobId") == id && Column("path") == path
                && Column("kind") == UnitKind.range.rawValue && Column("state") == UnitState.done.rawValue).fetchAll(db)
            for var u in done {
                u.state = .pending
                try u.update(db)
                job.bytesDone -= u.length
            }
            let rows = try ChunkRecordRow.filter(Column("jobId") == id && Column("path") == path).deleteAll(db)
            job.chunksDone -= Int64(rows)
            try job.update(db)
            return done.count
        }
    }

    /// Every assigned unit back to pending: run when the coordinator starts, since no agent holds
    /// work for a coordinator that was not running.
    @discardableResult
    public func releaseAllAssigned() throws -> Int {
        try pool.write { db in
            try UnitRecord.filter(Column("state") == UnitState.assigned.rawValue)
                .updateAll(db, [Column("state").set(to: UnitState.pending.rawValue),
                                Column("sourceAgent").set(to: nil), Column("destinationAgent").set(to: nil)])
        }
    }

    /// Adds wire bytes of a unit that will not report them (it failed or its agent died).
    /// `barge set JOB --bwlimit`: the job's new cap (nil: none).
    public func setLimit(_ id: String, _ bwlimit: String?) throws {
        try pool.write { db in
            try db.execute(sql: "UPDATE jobs SET bwlimit = ? WHERE id = ?", arguments: [bwlimit, id])
        }
    }

    public func addWireBytes(_ id: String, _ bytes: Int64) throws {
        try pool.write { db in
            try db.execute(sql: "UPDATE jobs SET wireBytes = wireBytes + ? WHERE id = ?", arguments: [bytes, id])
        }
    }

    /// Adds chunks sent again by `verify --repair` to the job's count.
    public func addRefetched(_ id: String, _ count: Int) throws {
        try pool.write { db in
            try db.execute(sql: "UPDATE jobs SET chunksRefetched = chunksRefetched + ? WHERE id = ?", arguments: [count, id])
        }
    }

    /// A job's chunk manifest, by path and offset.
    public func chunks(job id: String) throws -> [ChunkRecordRow] {
        try pool.read { db in
            try ChunkRecordRow.filter(Column("jobId") == id).order(Column("path"), Column("offset")).fetchAll(db)
        }
    }

    /// Returns every unit assigned to one of `agents` (as source or destination) to pending;
    /// returns how many. Called when the registry reports agents down.
    @discardableResult
    public func releaseUnits(heldBy agents: [String]) throws -> Int {
        guard !agents.isEmpty else { return 0 }
        return try pool.write { db in
            let held = UnitRecord.filter(Column("state") == UnitState.assigned.rawValue)
                .filter(agents.contains(Column("sourceAgent")) || agents.contains(Column("destinationAgent")))
            for (job, count) in Dictionary(grouping: try held.fetchAll(db), by: \.jobId).mapValues(\.count) {
                try db.execute(sql: "UPDATE jobs SET unitRetries = unitRetries + ? WHERE id = ?", arguments: [count, job])
            }
            return try held.updateAll(db, [Column("state").set(to: UnitState.pending.rawValue),
                                           Column("sourceAgent").set(to: nil), Column("destinationAgent").set(to: nil)])
        }
    }

    /// Units not done yet, by id: what the scheduler looks at.
    public func openUnits(job id: String) throws -> [UnitRecord] {
        try pool.read { db in
            try UnitRecord.filter(Column("jobId") == id && Column("state") != UnitState.done.rawValue).order(Column("unitId")).fetchAll(db)
        }
    }

    public func units(job id: String, state: UnitState? = nil) throws -> [UnitRecord] {
        try pool.read { db in
            var q = UnitRecord.filter(Column("jobId") == id)
            if let state { q = q.filter(Column("state") == state.rawValue) }
            return try q.order(Column("unitId")).fetchAll(db)
        }
    }
}

public enum JournalError: Error, Hashable, Sendable, CustomStringConvertible {
    case unknownJob(String)
    case unknownUnit(String, Int64)
    case unitNotPending(String, Int64, UnitState)

    public var description: String {
        switch self {
        case .unknownJob(let id): "no job \(id)"
        case .unknownUnit(let id, let u): "job \(id) has no unit \(u)"
        case .unitNotPending(let id, let u, let s): "unit \(u) of job \(id) is \(s.rawValue), not pending"
        }
    }
}
