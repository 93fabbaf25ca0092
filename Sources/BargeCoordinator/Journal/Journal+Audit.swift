import BargeChunk
import Foundation
import GRDB

/// The audit trail's journaled side (migration v10): each record gets the next number and the
/// head's hash in the transaction that writes it, so the chain's order is the journal's.
extension Journal {
    /// Appends `record` in `db`'s transaction; returns it numbered and chained.
    @discardableResult
    static func appendAudit(_ record: AuditRecord, _ db: Database) throws -> AuditRecord {
        var r = record
        let head = try Row.fetchOne(db.cachedStatement(sql: "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1"))
        r.seq = (head?["seq"] as Int64? ?? 0) + 1
        r.prev = head?["hash"] ?? AuditRecord.zeroHash
        let (line, hash) = try r.line()
        try db.cachedStatement(sql: "INSERT INTO audit (seq, hash, line) VALUES (?, ?, ?)").execute(arguments: [r.seq, hash, line])
        return r
    }

    /// Appends `record` in a transaction of its own (an action that changed nothing journaled).
    func appendAudit(_ record: AuditRecord) throws {
        try pool.write { db in _ = try Self.appendAudit(record, db) }
    }

    /// Journaled entries after `seq`, in order, for the file.
    func auditLines(after seq: Int64, limit: Int = 4096) throws -> [(seq: Int64, line: String)] {
        try pool.read { db in
            try Row.fetchAll(db, sql: "SELECT seq, line FROM audit WHERE seq > ? ORDER BY seq LIMIT ?", arguments: [seq, limit])
                .map { ($0["seq"], $0["line"]) }
        }
    }

    /// Forgets entries up to `seq` that the file holds durably, keeping the head.
    func forgetAudit(upTo seq: Int64) throws {
        try pool.write { db in
            try db.execute(sql: "DELETE FROM audit WHERE seq <= ? AND seq < (SELECT MAX(seq) FROM audit)", arguments: [seq])
        }
    }

    func auditCount() throws -> Int {
        try pool.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM audit") ?? 0 }
    }

    /// A job's outcome record, for the transaction that ends it.
    static func auditOutcome(_ job: JobRecord, _ db: Database) throws {
        var r = AuditRecord(kind: "job", actor: .init(name: "coordinator"))
        r.job = job.id
        r.outcome = .init(state: job.state.rawValue, source: "\(job.sourceSite):/\(job.sourcePath)",
                          destination: "\(job.destinationDescription)", bytes: job.bytesDone, files: job.filesDone,
                          chunks: job.chunksDone, skippedFiles: job.skippedFiles, error: job.error)
        try appendAudit(r, db)
    }

    /// A verification's outcome record, for the transaction that ends it: what it checked and
    /// found, so an auditor sees that a job was verified, and with what result, in the trail.
    static func auditVerification(_ v: VerificationRecord, _ db: Database) throws {
        var r = AuditRecord(kind: "verify", actor: .init(name: "coordinator"))
        r.job = v.jobId
        let complete = v.state == .succeeded
        r.verification = .init(state: v.state.rawValue, repair: v.repair, files: v.filesChecked, chunks: v.chunksChecked,
                               chunksTotal: v.chunksTotal, bytes: v.bytesChecked, mismatches: v.mismatchCount, repaired: v.repaired,
                               remaining: v.remainingCount, ok: complete && (v.repair ? v.remainingCount == 0 : v.mismatchCount == 0),
                               merkleRoot: complete ? (MerkleAccumulator(encoded: [UInt8](v.merkle)) ?? MerkleAccumulator()).root.description : nil,
                               error: v.error)
        try appendAudit(r, db)
    }
}
