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

    /// Records a planned job's units and totals together.
    public func plan(_ id: String, units: [UnitRecord], filesTotal: Int64) throws {
        try pool.write { db in
            guard var job = try JobRecord.fetchOne(db, key: id) else { throw JournalError.unknownJob(id) }
            for unit in units { try unit.insert(db) }
            job.filesTotal = filesTotal
            job.bytesTotal = units.reduce(0) { $0 + $1.length }
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

    /// Marks a unit done and adds its bytes to the job, in one transaction.
    public func complete(job id: String, unit: Int64, wireBytes: Int64) throws {
        try pool.write { db in
            guard var u = try UnitRecord.fetchOne(db, key: ["jobId": id, "unitId": unit]) else { throw JournalError.unknownUnit(id, unit) }
            guard u.state == .assigned else { return }  // a duplicate report after a retry changes nothing
            u.state = .done
            try u.update(db)
            try db.execute(sql: "UPDATE jobs SET bytesDone = bytesDone + ?, wireBytes = wireBytes + ? WHERE id = ?",
                           arguments: [u.length, wireBytes, id])
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
            return try held.updateAll(db, [Column("state").set(to: UnitState.pending.rawValue),
                                           Column("sourceAgent").set(to: nil), Column("destinationAgent").set(to: nil)])
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
