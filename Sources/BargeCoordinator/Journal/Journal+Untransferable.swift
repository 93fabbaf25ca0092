import Foundation
import GRDB

/// The entries a job could not transfer, each named (migration v26): left out by the scan, gone
/// or changed at the source while a unit read them, or a cold copy found damaged by a tier job.
/// Before, a job kept their count and the first alone, and `status` could name no other (rsync
/// names every one). The first `namedLimit` of a job are kept, in the order they were found; the
/// count (`untransferableEntries`) goes on past it. One row per entry that did not move, never
/// per file moved: a job of a million files that all vanish keeps 10,000 rows.
extension Journal {
    /// The most entries a job names.
    public static let namedLimit: Int64 = 10_000

    /// Adds `count` entries not transferred to a job, naming those of `names` that still fit
    /// (`names` may hold fewer than `count`: a unit's later files are named by path alone).
    /// Within the caller's transaction.
    static func addUntransferable(job: String, count: Int64, names: [String], in db: Database) throws {
        guard count > 0 else { return }
        let before = try Int64.fetchOne(db.cachedStatement(sql: "SELECT untransferableEntries FROM jobs WHERE id = ?"), arguments: [job]) ?? 0
        try db.cachedStatement(sql: "UPDATE jobs SET untransferableEntries = untransferableEntries + ?, firstUntransferable = COALESCE(firstUntransferable, ?) WHERE id = ?")
            .execute(arguments: [count, names.first, job])
        let room = max(0, Self.namedLimit - before)
        guard room > 0 else { return }
        let insert = try db.cachedStatement(sql: "INSERT INTO untransferable (jobId, entry) VALUES (?, ?)")
        for name in names.prefix(Int(min(room, count))) { try insert.execute(arguments: [job, name]) }
    }

    /// A page of a job's named entries, in the order they were found, after `cursor` (from the
    /// page before; nil: from the first). `next` is nil on the last page.
    /// `named`: how many the job names in all (at most `namedLimit`).
    public func untransferable(job: String, limit: Int, after cursor: Int64?) async throws -> (named: Int64, entries: [String], next: Int64?) {
        try await read { db in
            let named = try Int64.fetchOne(db, sql: "SELECT COUNT(*) FROM untransferable WHERE jobId = ?", arguments: [job]) ?? 0
            let rows = try Row.fetchAll(db, sql: """
                SELECT rowid, entry FROM untransferable WHERE jobId = ? AND rowid > ? ORDER BY rowid LIMIT ?
                """, arguments: [job, cursor ?? 0, limit + 1])
            let page = rows.prefix(limit)
            return (named, page.map { $0[1] }, rows.count > limit ? page.last.map { $0[0] } : nil)
        }
    }

    /// The words for a file a unit left out, when the agent's `task done` named only the first
    /// (an agent before protocol 23).
    static func leftOutByUnit(_ path: String) -> String {
        "'\(path)' was left out at the source during the transfer (gone, changed or unreadable there; an agent before 0.15 says why for the first file of a unit alone)"
    }
}
