import BargeWire
import Foundation
import GRDB

/// The coordinator's durable record of jobs and their work units: `journal.sqlite` under
/// `--state`, in WAL mode. Every state change is one write transaction, committed with
/// `synchronous = FULL` before it is acknowledged, so a coordinator killed at any moment restarts
/// with exactly what it told anyone.
public final class Journal: Sendable {
    public static let fileName = "journal.sqlite"

    let pool: DatabasePool
    public let path: String
    /// Done units' manifests (`ManifestLog`), beside `path`.
    let manifests: ManifestLog
    /// Large files' finish units' files, for making their ranges.
    let finishFiles = FinishFiles()
    /// Copies the WAL back beside the writer.
    let checkpointer: WALCheckpointer

    /// Opens (creating if needed) the journal at `path` and brings its schema up to date.
    public init(path: String) throws {
        self.path = path
        manifests = try ManifestLog(journalPath: path)
        var configuration = Configuration()
        // A truncating checkpoint waits this long for readers (`truncateWAL`).
        configuration.busyMode = .timeout(0.2)
        // Not enforced: every range made checked its job's row and ran as a statement
        // transaction of its own (a tenth of the writer's time with 1,000 agents). The journal
        // keeps the references itself: units are planned only for a job it has just read, and
        // `prune` deletes a job's units, chunks and verifications before the job.
        configuration.foreignKeysEnabled = false
        // Fault injection (tests only): fewer reader connections than GRDB's 5, so that a test
        // runs out of them at once (`Journal.read`).
        if let raw = getenv("BARGE_FAULT_JOURNAL_READERS"), let n = Int(String(cString: raw)), (1...5).contains(n) {
            configuration.maximumReaderCount = n
        }
        pool = try DatabasePool(path: path, configuration: configuration)
        // GRDB's WAL set-up leaves synchronous at NORMAL, which can lose the last transactions on
        // power loss. The writer connection is the only one that commits, so FULL is set there.
        // Its page cache holds the units' indexes' upper levels and the pages a busy job touches
        // (SQLite's default of 2 MB read them back from the OS on every commit). Its automatic
        // checkpoint is off: `WALCheckpointer` copies the WAL back on a connection of its own.
        try pool.writeWithoutTransaction { db in
            try db.execute(sql: "PRAGMA synchronous = FULL; PRAGMA cache_size = -65536; PRAGMA wal_autocheckpoint = 0")
        }
        // A journal a newer build has migrated is refused before anything is written to it: run
        // on it, an older build wrote rows without what the newer schema holds (the names of
        // entries left out were lost for good after a downgrade; h4 of session 49).
        let migrator = Self.migrator
        let applied = try pool.read { db in try migrator.appliedIdentifiers(db) }
        let unknown = applied.subtracting(migrator.migrations)
        if !unknown.isEmpty { throw JournalError.newer(path: path, unknown: unknown.sorted(), newest: migrator.migrations.last ?? "") }
        try Self.reclaimingFreePages(pool)
        try migrator.migrate(pool)
        checkpointer = try WALCheckpointer(path: path)
        let columns = try pool.read { db in try String.fetchAll(db, sql: "SELECT name FROM pragma_table_info('units') ORDER BY cid") }
        guard columns.starts(with: UnitRecord.columnOrder) else {
            throw JournalError.corrupt("the units table's columns are \(columns.joined(separator: ", ")), not those this build reads")
        }
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
        m.registerMigration("v5: counters, dependencies and manifests per unit") { db in
            try db.alter(table: "jobs") { t in
                t.add(column: "unitsTotal", .integer).notNull().defaults(to: 0)
                t.add(column: "unitsDone", .integer).notNull().defaults(to: 0)
                t.add(column: "planned", .boolean).notNull().defaults(to: false)
                t.add(column: "skippedFiles", .integer).notNull().defaults(to: 0)
                t.add(column: "skippedBytes", .integer).notNull().defaults(to: 0)
                t.add(column: "scanMark", .text)
                t.add(column: "nextUnit", .integer).notNull().defaults(to: 0)
            }
            try db.alter(table: "units") { t in
                t.add(column: "finishUnit", .integer)
                t.add(column: "depth", .integer).notNull().defaults(to: 0)
                t.add(column: "finishedFiles", .integer).notNull().defaults(to: 0)
                t.add(column: "manifest", .blob)
                t.add(column: "rangesTotal", .integer).notNull().defaults(to: 0)
                t.add(column: "rangesMade", .integer).notNull().defaults(to: 0)
                t.add(column: "rangesDone", .integer).notNull().defaults(to: 0)
                t.add(column: "rangeBytes", .integer).notNull().defaults(to: 0)
                t.add(column: "assignments", .integer).notNull().defaults(to: 0)
            }
            // Units journaled before: their dependencies and counts from what v4 kept. Earlier
            // directories units ran one after another; a falling depth keeps that order.
            try db.execute(sql: """
                UPDATE units SET finishUnit = (SELECT f.unitId FROM units f WHERE f.jobId = units.jobId AND f.path = units.path AND f.kind = 'finish')
                  WHERE kind = 'range';
                UPDATE units SET depth = -unitId WHERE kind = 'directories';
                UPDATE units SET
                  rangesTotal = (SELECT COUNT(*) FROM units r WHERE r.jobId = units.jobId AND r.kind = 'range' AND r.path = units.path),
                  rangesDone = (SELECT COUNT(*) FROM units r WHERE r.jobId = units.jobId AND r.kind = 'range' AND r.path = units.path AND r.state = 'done')
                  WHERE kind = 'finish';
                UPDATE units SET rangesMade = rangesTotal WHERE kind = 'finish';
                UPDATE units SET assignments = attempts;
                UPDATE units SET finishedFiles = (SELECT COUNT(*) FROM json_each(units.files)
                  WHERE json_extract(value, '$.finish') = 1 AND json_extract(value, '$.entry.kind') != 2);
                UPDATE jobs SET unitsTotal = (SELECT COUNT(*) FROM units WHERE jobId = jobs.id),
                  unitsDone = (SELECT COUNT(*) FROM units WHERE jobId = jobs.id AND state = 'done'),
                  planned = (startedAt IS NOT NULL),
                  nextUnit = (SELECT COALESCE(MAX(unitId), -1) + 1 FROM units WHERE jobId = jobs.id);
                DROP INDEX units_by_state;
                CREATE INDEX units_queue ON units(jobId, state, unitId);
                CREATE INDEX units_directories ON units(jobId, kind, state, depth, unitId);
                CREATE INDEX units_of_file ON units(jobId, finishUnit) WHERE finishUnit IS NOT NULL;
                CREATE INDEX units_unmade_ranges ON units(jobId, unitId) WHERE kind = 'finish' AND rangesMade < rangesTotal;
                CREATE INDEX units_assigned ON units(sourceAgent, destinationAgent) WHERE state = 'assigned';
                CREATE INDEX jobs_by_creation ON jobs(createdAt, id);
                CREATE INDEX jobs_by_end ON jobs(finishedAt) WHERE finishedAt IS NOT NULL;
                """)
        }
        m.registerMigration("v6: repeated reports and checksum jobs") { db in
            // The assignment whose `task done` was counted last: the same report again (its
            // acknowledgement was lost) counts nothing.
            try db.alter(table: "units") { t in t.add(column: "lastReport", .integer).notNull().defaults(to: 0) }
            // `submit --checksum`: compare content, not size and mtime.
            try db.alter(table: "jobs") { t in t.add(column: "checksum", .boolean).notNull().defaults(to: false) }
        }
        m.registerMigration("v7: verifications") { db in
            try db.create(table: "verifications") { t in
                t.primaryKey("jobId", .text)
                t.column("state", .text).notNull()
                t.column("repair", .boolean).notNull()
                t.column("cursor", .integer).notNull()
                t.column("filesChecked", .integer).notNull()
                t.column("chunksChecked", .integer).notNull()
                t.column("chunksTotal", .integer).notNull()
                t.column("bytesChecked", .integer).notNull()
                t.column("mismatchCount", .integer).notNull()
                t.column("mismatches", .text).notNull()
                t.column("repaired", .integer).notNull()
                t.column("remainingCount", .integer).notNull()
                t.column("remaining", .text).notNull()
                t.column("merkle", .blob).notNull()
                t.column("error", .text)
                t.column("startedAt", .double).notNull()
                t.column("finishedAt", .double)
            }
        }
        m.registerMigration("v8: a directories index of directories units only") { db in
            // Every unit's assignment and completion moved its entry in the old index twice;
            // only `directories` units are ever looked up in it.
            try db.execute(sql: """
                DROP INDEX units_directories;
                CREATE INDEX units_directories ON units(jobId, state, depth, unitId) WHERE kind = 'directories';
                """)
        }
        m.registerMigration("v9: API tokens") { db in
            // The secret is never stored: only its SHA-256, looked up when a request presents it.
            try db.create(table: "api_tokens") { t in
                t.primaryKey("name", .text)
                t.column("role", .text).notNull()
                t.column("hash", .blob).notNull().unique()
                t.column("createdAt", .double).notNull()
            }
        }
        m.registerMigration("v10: the audit trail's recent entries") { db in
            // Each control action and job outcome is journaled here in the transaction that
            // carries it out, then copied to audit.jsonl; entries copied and synced are deleted
            // but the last, the chain's head.
            try db.create(table: "audit") { t in
                t.primaryKey("seq", .integer)
                t.column("hash", .text).notNull()
                t.column("line", .text).notNull()
            }
        }
        m.registerMigration("v11: the root of what each job moved") { db in
            // Filled in after a job ends (with a `merkle` audit record); '' for jobs that ended
            // before this version, whose root was never recorded.
            try db.execute(sql: """
                ALTER TABLE jobs ADD COLUMN merkleRoot TEXT;
                UPDATE jobs SET merkleRoot = '' WHERE state IN ('succeeded', 'failed', 'cancelled');
                CREATE INDEX jobs_unrooted ON jobs(id) WHERE state IN ('succeeded', 'failed', 'cancelled') AND merkleRoot IS NULL;
                """)
        }
        m.registerMigration("v12: tier jobs (demote, promote) and where they stand") { db in
            try db.execute(sql: """
                ALTER TABLE jobs ADD COLUMN operation TEXT NOT NULL DEFAULT 'transfer';
                ALTER TABLE jobs ADD COLUMN tierPolicy TEXT;
                ALTER TABLE jobs ADD COLUMN tierCursor TEXT;
                """)
        }
        registerNotifications(&m)
        m.registerMigration("v14: entries a scan had to leave out") { db in
            try db.execute(sql: """
                ALTER TABLE jobs ADD COLUMN untransferableEntries INTEGER NOT NULL DEFAULT 0;
                ALTER TABLE jobs ADD COLUMN firstUntransferable TEXT;
                """)
        }
        m.registerMigration("v15: the coordinator's runs, counted") { db in
            try db.execute(sql: "CREATE TABLE coordinator_runs (id INTEGER PRIMARY KEY CHECK (id = 1), boots INTEGER NOT NULL)")
        }
        m.registerMigration("v16: manifests beside the journal") { db in
            // Where a done unit's manifest is in its job's `ManifestLog` file; rows written
            // before keep theirs in `manifest`, which still reads.
            try db.execute(sql: """
                ALTER TABLE units ADD COLUMN manifestAt INTEGER;
                ALTER TABLE units ADD COLUMN manifestLength INTEGER NOT NULL DEFAULT 0;
                """)
        }
        m.registerMigration("v17: a done unit's dedup bytes") { db in
            try db.execute(sql: "ALTER TABLE units ADD COLUMN dedupBytes INTEGER NOT NULL DEFAULT 0")
        }
        m.registerMigration("v18: a done unit's files left out (gone from the source, or changed)") { db in
            try db.execute(sql: "ALTER TABLE units ADD COLUMN leftOut BLOB")
        }
        m.registerMigration("v19: a destination given as a directory (b:/dst/)") { db in
            try db.execute(sql: "ALTER TABLE jobs ADD COLUMN destinationIsDirectory BOOLEAN NOT NULL DEFAULT 0")
        }
        m.registerMigration("v20: the bytes a done unit counted toward its job") { db in
            try db.execute(sql: "ALTER TABLE units ADD COLUMN bytesCounted INTEGER")
        }
        m.registerMigration("v21: a source given with a slash (a:/src/), which follows a link there") { db in
            try db.execute(sql: "ALTER TABLE jobs ADD COLUMN sourceNamesDirectory BOOLEAN NOT NULL DEFAULT 0")
        }
        m.registerMigration("v22: the mismatches of a verification's page under repair") { db in
            try db.execute(sql: "ALTER TABLE verifications ADD COLUMN pageRepairs TEXT")
        }
        m.registerMigration("v23: jobs by state") { db in
            // The queued jobs (read at every submission, agent registration and job end) and the
            // count of jobs in each state (every metrics scrape, every dashboard beat) scanned
            // every job row: 24 ms and 46 ms with 100,000 jobs.
            try db.execute(sql: "CREATE INDEX jobs_by_state ON jobs(state, createdAt)")
        }
        m.registerMigration("v24: jobs in submission order") { db in
            // By creation second, then row id (the index's own last key): the order jobs were
            // submitted in, which the job id (random) did not give within a second.
            try db.execute(sql: "CREATE INDEX jobs_by_submission ON jobs(createdAt)")
        }
        m.registerMigration("v25: jobs being pruned") { db in
            // Jobs whose rows are gone and whose units and chunks are being deleted, in steps.
            try db.execute(sql: "CREATE TABLE pruning (jobId TEXT PRIMARY KEY) WITHOUT ROWID")
        }
        m.registerMigration("v26: every entry a job could not transfer, named") { db in
            // Up to `namedLimit` a job (Journal+Untransferable); before, only the first was kept.
            try db.execute(sql: "CREATE TABLE untransferable (jobId TEXT NOT NULL, entry TEXT NOT NULL)")
            try db.execute(sql: "CREATE INDEX untransferable_by_job ON untransferable(jobId)")
            try db.execute(sql: """
                INSERT INTO untransferable (jobId, entry) SELECT id, firstUntransferable FROM jobs WHERE firstUntransferable IS NOT NULL
                """)
        }
        m.registerMigration("v27: the time a job stood ended before a resume") { db in
            try db.execute(sql: "ALTER TABLE jobs ADD COLUMN idleSeconds DOUBLE NOT NULL DEFAULT 0")
        }
        return m
    }

    /// Counts a start of the coordinator and returns the count (1 for the first): it sets the
    /// assignment numbers of this run apart from those of every earlier one.
    public func countBoot() throws -> Int64 {
        try pool.write { db in
            try Int64.fetchOne(db, sql: """
                INSERT INTO coordinator_runs (id, boots) VALUES (1, 1) ON CONFLICT(id) DO UPDATE SET boots = boots + 1 RETURNING boots
                """) ?? 1
        }
    }

    /// The value of a pragma on the writer connection (for tests and diagnostics).
    public func pragma(_ name: String) throws -> Int? {
        try pool.writeWithoutTransaction { db in try Int.fetchOne(db, sql: "PRAGMA \(name)") }
    }

    public func insert(_ job: JobRecord) throws {
        try auditedWrite(effect: { _ in ("submitted \(job.sourceDescription) → \(job.destinationDescription)", job: job.id) }) { db in
            try job.insert(db)
        }
    }

    /// How many jobs are in each state (for the `barge_jobs` gauge).
    public func jobCounts() throws -> [JobState: Int] {
        try pool.read { db in
            var out: [JobState: Int] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT state, COUNT(*) FROM jobs GROUP BY state") {
                if let state = JobState(rawValue: row[0]) { out[state] = row[1] }
            }
            return out
        }
    }

    public func job(_ id: String) throws -> JobRecord? {
        try pool.read { db in try Self.job(id, db) }
    }

    /// `job`, awaited on the journal's reader queue rather than blocking the caller's thread.
    public func readJob(_ id: String) async throws -> JobRecord? {
        try await read { db in try Self.job(id, db) }
    }

    /// Through a cached statement: `fetchOne(key:)` compiled its SQL on every status poll.
    static func job(_ id: String, _ db: Database) throws -> JobRecord? {
        try JobRecord.fetchOne(db.cachedStatement(sql: "SELECT * FROM jobs WHERE id = ?"), arguments: [id])
    }

    public func jobs() throws -> [JobRecord] {
        try pool.read { db in try JobRecord.order(Column("createdAt"), Column("id")).fetchAll(db) }
    }

    /// A page of jobs in submission order: at most `limit`, after the job `after` (by id).
    /// The newest jobs, newest first (the dashboard's list).
    public func recentJobs(limit: Int) throws -> [JobRecord] {
        try pool.read { db in try JobRecord.fetchAll(db, sql: "SELECT * FROM jobs ORDER BY createdAt DESC, rowid DESC LIMIT ?", arguments: [limit]) }
    }

    /// Jobs that ended since `time` (Unix seconds), by state.
    public func endedSince(_ time: Double) throws -> [JobState: Int] {
        try pool.read { db in
            var out: [JobState: Int] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT state, COUNT(*) FROM jobs WHERE finishedAt >= ? GROUP BY state", arguments: [time]) {
                if let state = JobState(rawValue: row[0]) { out[state] = row[1] }
            }
            return out
        }
    }

    /// Jobs in submission order, a page at a time: `createdAt` has whole seconds, and the row id
    /// orders jobs submitted within one (the job id, random, listed them in any order).
    public func jobs(limit: Int, after: String?) throws -> [JobRecord] {
        try pool.read { db in
            guard let after else {
                return try JobRecord.fetchAll(db, sql: "SELECT * FROM jobs ORDER BY createdAt, rowid LIMIT ?", arguments: [limit])
            }
            guard let mark = try Row.fetchOne(db, sql: "SELECT createdAt, rowid FROM jobs WHERE id = ?", arguments: [after]) else {
                throw JournalError.unknownJob(after)
            }
            return try JobRecord.fetchAll(db, sql: """
                SELECT * FROM jobs WHERE (createdAt, rowid) > (?, ?) ORDER BY createdAt, rowid LIMIT ?
                """, arguments: [mark[0] as Int64, mark[1] as Int64, limit])
        }
    }

    /// Transfers into `site` submitted after `job` (`verify`: one whose destination overlaps
    /// may have given the files other modes and mtimes since).
    public func transfers(into site: String, after job: String) throws -> [JobRecord] {
        try pool.read { db in
            guard let mark = try Row.fetchOne(db, sql: "SELECT createdAt, rowid FROM jobs WHERE id = ?", arguments: [job]) else { return [] }
            return try JobRecord.fetchAll(db, sql: """
                SELECT * FROM jobs WHERE destinationSite = ? AND operation = 'transfer' AND (createdAt, rowid) > (?, ?) ORDER BY createdAt, rowid
                """, arguments: [site, mark[0] as Int64, mark[1] as Int64])
        }
    }

    /// Jobs in these states, in submission order (`createdAt` has whole seconds; the row id
    /// orders jobs submitted within one).
    public func jobs(in states: [JobState]) throws -> [JobRecord] {
        try pool.read { db in
            try JobRecord.filter(states.map(\.rawValue).contains(Column("state"))).order(Column("createdAt"), Column.rowID).fetchAll(db)
        }
    }

    /// Rows of a pruned job's units or chunks deleted per write transaction.
    static let pruneStep = 10_000

    /// Deletes jobs that ended before `before` (Unix seconds), with their units; returns their ids.
    ///
    /// The jobs' rows go first, in one transaction with the audit record, each job's id put in
    /// `pruning`: from then on a job is gone (a `resume` finds no job), and no unit of it runs.
    /// Then its units and chunks, `pruneStep` rows a transaction, each taking its turn with the
    /// commits (one transaction for everything held the writer, and so every commit, for minutes
    /// for a job of millions of units), and its id leaves `pruning`. A prune cut short (a crash)
    /// is finished by the next one. Deleting the units first let a `resume` in between run a job
    /// whose units were partly gone, for ever.
    @discardableResult
    public func prune(endedBefore before: Double) async throws -> [String] {
        let ids = try await read { db in
            try String.fetchAll(db, sql: """
                SELECT id FROM jobs WHERE finishedAt IS NOT NULL AND finishedAt < ? AND state IN ('succeeded', 'failed', 'cancelled')
                """, arguments: [before])
        }
        var pruned: [String] = []
        if !ids.isEmpty {
            pruned = try await offPool { journal in
                try journal.auditedWrite(effect: { (ids: [String]) in ("pruned \(ids.count) jobs\(ids.isEmpty ? "" : ": " + ids.prefix(100).joined(separator: " ") + (ids.count > 100 ? " …" : ""))", job: nil) }) { db in
                    var gone: [String] = []
                    for id in ids {
                        // Still ended (a resume meanwhile keeps it).
                        guard try Bool.fetchOne(db, sql: "SELECT state IN ('succeeded', 'failed', 'cancelled') FROM jobs WHERE id = ?", arguments: [id]) == true else { continue }
                        try db.execute(sql: "INSERT OR IGNORE INTO pruning (jobId) VALUES (?)", arguments: [id])
                        try db.execute(sql: "DELETE FROM verifications WHERE jobId = ?", arguments: [id])
                        try db.execute(sql: "DELETE FROM jobs WHERE id = ?", arguments: [id])
                        gone.append(id)
                    }
                    return gone
                }
            }
        }
        let pending = try await read { db in try String.fetchAll(db, sql: "SELECT jobId FROM pruning") }
        for id in pending {
            for table in ["units", "chunks", "untransferable"] {
                while try await pool.write({ db -> Int in
                    try db.execute(sql: "DELETE FROM \(table) WHERE rowid IN (SELECT rowid FROM \(table) WHERE jobId = ? LIMIT ?)",
                                   arguments: [id, Self.pruneStep])
                    return db.changesCount
                }) == Self.pruneStep {}
            }
            // After the rows that point into it are gone, and before the job leaves `pruning`:
            // a crash in between finds it there again, and removes it then (removed after, a
            // crash in between left a file no row names, for good: gigabytes for a large job).
            manifests.remove(job: id)
            try await pool.write { db in try db.execute(sql: "DELETE FROM pruning WHERE jobId = ?", arguments: [id]) }
        }
        finishFiles.forget(jobs: Set(pending))
        return pruned
    }

    /// A read for an async caller: synchronous, on a Dispatch thread (`offPool`). GRDB's own
    /// async read keeps its reader connection until the awaiting task resumes on the cooperative
    /// pool; with that pool's threads (two here) blocked in synchronous reads waiting for a
    /// reader, no task resumed, no reader came back, and the coordinator answered nothing more,
    /// its agents' connections included, until killed (h2 of session 52: 500 `GET /v1/jobs` and
    /// `GET /v1/jobs/ID` a second over 20 connections, 4 of 4). Here a reader is held only while
    /// its statement runs, on a thread of its own.
    func read<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        try await offPool { journal in try journal.pool.read(body) }
    }

    /// Runs journal work on a Dispatch thread, in the caller's audit context: the caller (the
    /// scheduler's actor, a request) waits for the writer and the disk without holding one of
    /// the cooperative pool's few threads.
    func offPool<T: Sendable>(_ body: @escaping @Sendable (Journal) throws -> T) async throws -> T {
        let audit = AuditContext.current
        return try await withCheckedThrowingContinuation { done in
            DispatchQueue.global(qos: .userInitiated).async {
                done.resume(with: Result { try AuditContext.$current.withValue(audit) { try body(self) } })
            }
        }
    }

    /// Makes the journal one whose free pages can be given back (`reclaim`), by a `VACUUM` once,
    /// at start: instant for a new journal (WAL mode has already written its first page, so the
    /// setting alone would not take), a copy for one made before this. A `VACUUM` that fails (it
    /// needs room for that copy) leaves the journal as it was, which works, only without
    /// shrinking.
    /// A journal over `convertedUpTo` bytes is not converted: its copy would hold the first start
    /// after an upgrade for minutes, and take as much room again. It works as before, keeping
    /// the pages pruning frees for its next rows.
    static let convertedUpTo: Int64 = 256 << 20

    static func reclaimingFreePages(_ pool: DatabasePool) throws {
        try pool.writeWithoutTransaction { db in
            guard try Int.fetchOne(db, sql: "PRAGMA auto_vacuum") != 2 else { return }
            let pages = try Int64.fetchOne(db, sql: "PRAGMA page_count") ?? 0, size = try Int64.fetchOne(db, sql: "PRAGMA page_size") ?? 4096
            guard pages * size <= convertedUpTo else { return }
            try db.execute(sql: "PRAGMA auto_vacuum = INCREMENTAL")
            try? db.execute(sql: "VACUUM")
        }
    }

    /// Pages freed per write transaction of `reclaim` (4 KiB each), so that other writes are
    /// not held up behind the whole of it.
    static let reclaimStep = 2_048

    /// Gives the pages that pruning freed back to the file system, a step at a time, and
    /// starts the WAL over so that the file shrinks now rather than at a later checkpoint.
    /// Returns the pages given back.
    @discardableResult
    public func reclaim() async throws -> Int {
        var freed = 0
        while true {
            let (was, left) = try await pool.writeWithoutTransaction { db -> (Int, Int) in
                let was = try Int.fetchOne(db, sql: "PRAGMA freelist_count") ?? 0
                guard was > 0 else { return (0, 0) }
                try db.execute(sql: "PRAGMA incremental_vacuum(\(Self.reclaimStep))")
                return (was, try Int.fetchOne(db, sql: "PRAGMA freelist_count") ?? 0)
            }
            freed += was - left
            // An older journal whose VACUUM failed frees nothing here: stop.
            if left == 0 || left >= was { break }
        }
        if freed > 0 { _ = try? await pool.writeWithoutTransaction { db in try db.checkpoint(.truncate) } }
        return freed
    }

    /// The journal's size in bytes, with its WAL and its manifest files.
    public func sizeOnDisk() -> Int64 {
        let fm = FileManager.default
        return [path, path + "-wal"].reduce(manifests.size()) { sum, p in
            sum + ((try? fm.attributesOfItem(atPath: p)[.size] as? NSNumber)?.int64Value ?? 0)
        }
    }

    /// Applies a lifecycle event to a job, checked by `JobLifecycle`, in one transaction.
    @discardableResult
    public func apply(_ event: JobEvent, to id: String) throws -> JobRecord {
        try auditedWrite(effect: { (r: (job: JobRecord, ended: Bool)) in ("job \(r.job.state.rawValue)", job: id) }) { db in
            guard var job = try JobRecord.fetchOne(db, key: id) else { throw JournalError.unknownJob(id) }
            let was = job.state
            job.state = try JobLifecycle.next(job.state, event)
            if case .fail(let reason) = event { job.error = reason }
            try job.update(db)
            return (job, ended: job.state.isTerminal && !was.isTerminal)
        } then: { r, db in
            if r.ended { try Self.auditOutcome(r.job, db) }
        }.job
    }

    /// Takes a failed or cancelled job back (`barge resume`): every unit not done is pending again
    /// with a fresh count of attempts, and the error and end time are cleared. A job that failed
    /// before it was planned goes back to queued, to be scanned again.
    @discardableResult
    public func resume(_ id: String, now: Double = Date().timeIntervalSince1970) throws -> JobRecord {
        try auditedWrite(effect: { job in ("resumed: \(job.state.rawValue)", job: id) }) { db in
            guard var job = try JobRecord.fetchOne(db, key: id) else { throw JournalError.unknownJob(id) }
            let planned = job.startedAt != nil
            job.state = try JobLifecycle.next(job.state, .resume(planned: planned))
            job.error = nil
            // The time it stood ended is not time it ran.
            if job.startedAt != nil, let ended = job.finishedAt { job.idleSeconds += max(0, now - ended) }
            job.finishedAt = nil
            try job.update(db)
            // What it moves from now on gets a root of its own when it ends again.
            try db.execute(sql: "UPDATE jobs SET merkleRoot = NULL WHERE id = ?", arguments: [id])
            try db.execute(sql: """
                UPDATE units SET state = 'pending', attempts = 0, sourceAgent = NULL, destinationAgent = NULL
                  WHERE jobId = ? AND state IN ('pending', 'assigned', 'failed')
                """, arguments: [id])
            return job
        }
    }

    /// Applies a terminal event (fail or cancel) and stamps the time.
    @discardableResult
    public func end(_ id: String, _ event: JobEvent, now: Double) throws -> JobRecord {
        try auditedWrite(effect: { (r: (job: JobRecord, ended: Bool)) in ("job \(r.job.state.rawValue)", job: id) }) { db in
            guard var job = try JobRecord.fetchOne(db, key: id) else { throw JournalError.unknownJob(id) }
            let was = job.state
            job.state = try JobLifecycle.next(job.state, event)
            if case .fail(let reason) = event { job.error = reason }
            job.finishedAt = job.finishedAt ?? now
            try job.update(db)
            return (job, ended: job.state.isTerminal && !was.isTerminal)
        } then: { r, db in
            if r.ended { try Self.auditOutcome(r.job, db) }
        }.job
    }

    /// Adds wire bytes of a unit that will not report them (it failed or its agent died).
    /// `barge set JOB --bwlimit`: the job's new cap (nil: none).
    public func setLimit(_ id: String, _ bwlimit: String?) throws {
        try auditedWrite(effect: { _ in ("cap \(bwlimit ?? "off")", job: id) }) { db in
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

    /// Of these `finish` units of a job, those that left their file out (gone from the source or
    /// changed; their ranges are not verified either).
    public func leftOutFinishes(job id: String, among units: Set<Int64>) throws -> Set<Int64> {
        guard !units.isEmpty else { return [] }
        return try pool.read { db in
            Set(try Int64.fetchAll(db, sql: "SELECT unitId FROM units WHERE jobId = ? AND unitId IN (SELECT value FROM json_each(?)) AND leftOut IS NOT NULL",
                                   arguments: [id, "[" + units.map(String.init).joined(separator: ",") + "]"]))
        }
    }

    /// Done units of a job from unit `from` on, in id order: a page of a verification.
    public func doneUnits(job id: String, from: Int64, limit: Int) throws -> [UnitRecord] {
        try pool.read { db in
            try UnitRecord.fetchAll(db.cachedStatement(sql: "SELECT * FROM units WHERE jobId = ? AND state = 'done' AND unitId >= ? ORDER BY unitId LIMIT ?"),
                                    arguments: [id, from, limit])
        }.withManifests(manifests)
    }

    /// Chunk rows of journals before v5 (which kept one per chunk), for these paths.
    public func chunks(job id: String, paths: [String]) throws -> [ChunkRecordRow] {
        try pool.read { db in
            try ChunkRecordRow.filter(Column("jobId") == id && paths.contains(Column("path"))).order(Column("path"), Column("offset")).fetchAll(db)
        }
    }

    public func verification(_ job: String) throws -> VerificationRecord? {
        try pool.read { db in try VerificationRecord.fetchOne(db, key: job) }
    }

    /// `verification`, awaited on the journal's reader queue.
    public func readVerification(_ job: String) async throws -> VerificationRecord? {
        try await read { db in
            try VerificationRecord.fetchOne(db.cachedStatement(sql: "SELECT * FROM verifications WHERE jobId = ?"), arguments: [job])
        }
    }

    public func verifications(in state: VerificationRecord.State) throws -> [VerificationRecord] {
        try pool.read { db in try VerificationRecord.filter(Column("state") == state.rawValue).fetchAll(db) }
    }

    /// Saves a verification's state; one that ended gets its `verify` audit record in the same
    /// transaction.
    public func save(_ verification: VerificationRecord) throws {
        try auditedWrite(effect: { _ in ("verification \(verification.state.rawValue)\(verification.repair ? ", repairing" : "")", job: verification.jobId) }) { db in
            try verification.save(db)
        } then: { _, db in
            if verification.state != .running { try Self.auditVerification(verification, db) }
        }
    }

    /// The entries of the job's directories (as its `directories` units set them) at `paths`
    /// (destination paths), for a repair that recreated files in them; read a unit at a time,
    /// ending once all are found.
    public func directoryEntries(job id: String, paths: Set<String>) throws -> [TaskFile] {
        guard !paths.isEmpty else { return [] }
        return try pool.read { db in
            var found: [TaskFile] = []
            let units = try UnitRecord.fetchCursor(db, sql: "SELECT * FROM units WHERE jobId = ? AND kind = 'directories' ORDER BY unitId", arguments: [id])
            while found.count < paths.count, let unit = try units.next() {
                found += unit.files.filter { paths.contains($0.entry.path) }
            }
            return found
        }
    }

    public func units(job id: String, state: UnitState? = nil) throws -> [UnitRecord] {
        try pool.read { db in
            var q = UnitRecord.filter(Column("jobId") == id)
            if let state { q = q.filter(Column("state") == state.rawValue) }
            return try q.order(Column("unitId")).fetchAll(db)
        }.withManifests(manifests)
    }
}

public enum JournalError: Error, Hashable, Sendable, CustomStringConvertible {
    case unknownJob(String)
    case unknownUnit(String, Int64)
    case unitNotPending(String, Int64, UnitState)
    /// A stored value does not read back (a damaged or foreign journal).
    case corrupt(String)
    /// The manifest files beside the journal cannot be written (a full disk, say): what, and
    /// the errno.
    case manifests(String, errno: Int32)
    /// The journal was migrated by a newer build (`unknown`: its migrations this build does not
    /// have; `newest`: this build's last).
    case newer(path: String, unknown: [String], newest: String)

    public var description: String {
        switch self {
        case .newer(let path, let unknown, let newest):
            "the journal \(path) was upgraded by a newer Barge: its schema has \(unknown.count == 1 ? "a migration" : "migrations") this build does not know (\(unknown.map { "'\($0)'" }.joined(separator: ", "))), and this build knows up to '\(newest)'. Run the newer build (a journal is never downgraded), or restore the state directory from a copy made before the upgrade"
        case .unknownJob(let id): "no job \(id)"
        case .unknownUnit(let id, let u): "job \(id) has no unit \(u)"
        case .unitNotPending(let id, let u, let s): "unit \(u) of job \(id) is \(s.rawValue), not pending"
        case .corrupt(let what): "the journal is damaged: \(what)"
        case .manifests(let what, _): "the journal's manifest files: \(what)"
        }
    }

    /// What says, in `error`, that the disk under the journal is full: SQLite's SQLITE_FULL, or
    /// ENOSPC or EDQUOT from a manifest file. Nil for any other error.
    public static func diskFull(_ error: any Error) -> String? {
        if let db = error as? DatabaseError, db.resultCode == .SQLITE_FULL { return db.message ?? "\(db.resultCode)" }
        if case .manifests(let what, let e)? = error as? JournalError, e == ENOSPC || e == EDQUOT { return what }
        return nil
    }

    /// The answer to a request whose change the journal could not take (503).
    static func unwritable(_ detail: String) -> String {
        "the coordinator cannot write its journal: the disk where its --state lies is full (\(detail)); nothing of this request was recorded: free space there, then send it again"
    }
}

extension Journal {
    /// A tier job's page is done, its counts added and its cursor moved in one transaction: files moved, files left where they were (`skipped`), and files
    /// that did not move because their cold copy is damaged (counted and named as entries not
    /// transferred).
    public func tierProgress(_ id: String, cursor: String?, files: Int64, bytes: Int64, packBytes: Int64, skipped: Int64,
                             damaged: [String] = []) throws {
        try pool.write { db in
            try db.execute(sql: """
                UPDATE jobs SET tierCursor = ?, filesDone = filesDone + ?, filesTotal = filesTotal + ? + ?,
                  bytesDone = bytesDone + ?, bytesTotal = bytesTotal + ?, wireBytes = wireBytes + ?, skippedFiles = skippedFiles + ?
                  WHERE id = ?
                """, arguments: [cursor, files, files, damaged.count, bytes, bytes, packBytes, skipped, id])
            try Self.addUntransferable(job: id, count: Int64(damaged.count), names: damaged, in: db)
        }
    }

    /// A tier job starts (or starts again): running, with its start time.
    public func startTier(_ id: String, now: Double) throws -> JobRecord {
        try auditedWrite(effect: { job in ("job \(job.state.rawValue)", job: id) }) { db in
            guard var job = try JobRecord.fetchOne(db, key: id) else { throw JournalError.unknownJob(id) }
            if job.state == .queued { job.state = try JobLifecycle.next(job.state, .start) }
            job.startedAt = job.startedAt ?? now
            try job.update(db)
            return job
        }
    }
}
