import Foundation
import GRDB

/// The journal's side of notifications. A trigger on `jobs` (migration v13) writes a row to
/// `job_events` in the same transaction as every change of a job's state, whichever code path
/// makes it, and one on `verifications` when a verification ends: so no event is lost to a crash.
/// `NotificationService` turns each event into one delivery per URL (`deliveries`), with the
/// CloudEvent's body fixed then, and deletes a delivery once its receiver has answered 2xx.
/// Each call is awaited on GRDB's queues, so the service's task never blocks a thread of the
/// cooperative pool on SQLite or an `fsync`.
extension Journal {
    public struct NotifiedEvent: Sendable, Hashable {
        public var seq: Int64
        public var jobId: String
        /// `started`, `succeeded`, `failed`, `cancelled` or `verified`.
        public var type: String
        public var at: Double
    }

    public struct Delivery: Sendable, Hashable {
        public var seq: Int64
        public var url: String
        public var body: String
        public var attempts: Int
    }

    static func registerNotifications(_ m: inout DatabaseMigrator) {
        m.registerMigration("v13: job events to notify, and their deliveries") { db in
            try db.execute(sql: """
                ALTER TABLE jobs ADD COLUMN notify TEXT;
                CREATE TABLE job_events (seq INTEGER PRIMARY KEY AUTOINCREMENT, jobId TEXT NOT NULL, type TEXT NOT NULL, at REAL NOT NULL);
                CREATE TRIGGER job_state_events AFTER UPDATE OF state ON jobs
                  WHEN NEW.state != OLD.state AND NEW.state IN ('running', 'succeeded', 'failed', 'cancelled')
                  BEGIN
                    INSERT INTO job_events (jobId, type, at)
                    VALUES (NEW.id, CASE NEW.state WHEN 'running' THEN 'started' ELSE NEW.state END, (julianday('now') - 2440587.5) * 86400.0);
                  END;
                CREATE TRIGGER verification_events AFTER UPDATE OF state ON verifications
                  WHEN NEW.state != OLD.state AND NEW.state IN ('succeeded', 'failed')
                  BEGIN
                    INSERT INTO job_events (jobId, type, at) VALUES (NEW.jobId, 'verified', (julianday('now') - 2440587.5) * 86400.0);
                  END;
                CREATE TABLE deliveries (seq INTEGER NOT NULL, url TEXT NOT NULL, body TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
                                         nextAt REAL NOT NULL, lastError TEXT, PRIMARY KEY (seq, url)) WITHOUT ROWID;
                CREATE INDEX deliveries_due ON deliveries(nextAt);
                """)
        }
    }

    /// The oldest events not yet expanded into deliveries.
    public func pendingEvents(limit: Int = 100) async throws -> [NotifiedEvent] {
        try await read { db in
            try Row.fetchAll(db, sql: "SELECT seq, jobId, type, at FROM job_events ORDER BY seq LIMIT ?", arguments: [limit]).map {
                NotifiedEvent(seq: $0[0], jobId: $0[1], type: $0[2], at: $0[3])
            }
        }
    }

    /// The job an event is about, as it stands now.
    public func eventJob(_ event: NotifiedEvent) async throws -> JobRecord? {
        try await read { db in try JobRecord.fetchOne(db, key: event.jobId) }
    }

    /// Replaces an event by its deliveries (none when nobody is to be told), in one transaction.
    public func expand(_ event: NotifiedEvent, into deliveries: [(url: String, body: String)], now: Double) async throws {
        try await pool.write { db in
            for d in deliveries {
                try db.execute(sql: "INSERT OR IGNORE INTO deliveries (seq, url, body, nextAt) VALUES (?, ?, ?, ?)", arguments: [event.seq, d.url, d.body, now])
            }
            try db.execute(sql: "DELETE FROM job_events WHERE seq = ?", arguments: [event.seq])
        }
    }

    /// Deliveries due at `now`, oldest first.
    public func dueDeliveries(now: Double, limit: Int = 32) async throws -> [Delivery] {
        try await read { db in
            try Row.fetchAll(db, sql: "SELECT seq, url, body, attempts FROM deliveries WHERE nextAt <= ? ORDER BY nextAt, seq LIMIT ?",
                             arguments: [now, limit]).map { Delivery(seq: $0[0], url: $0[1], body: $0[2], attempts: $0[3]) }
        }
    }

    public func delivered(_ d: Delivery) async throws {
        try await pool.write { db in try db.execute(sql: "DELETE FROM deliveries WHERE seq = ? AND url = ?", arguments: [d.seq, d.url]) }
    }

    public func deliveryFailed(_ d: Delivery, error: String, retryAt: Double) async throws {
        try await pool.write { db in
            try db.execute(sql: "UPDATE deliveries SET attempts = attempts + 1, nextAt = ?, lastError = ? WHERE seq = ? AND url = ?",
                           arguments: [retryAt, error, d.seq, d.url])
        }
    }
}
