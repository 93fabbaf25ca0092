import BargeDigest
import Foundation
import GRDB

/// API tokens (migration v9): a name, a role and the SHA-256 of the secret.
extension Journal {
    func apiTokens() throws -> [(SHA256Digest, APITokens.Entry)] {
        try pool.read { db in
            try Row.fetchAll(db, sql: "SELECT name, role, hash, createdAt FROM api_tokens").compactMap { row in
                guard let hash = SHA256Digest(bytes: [UInt8](row["hash"] as Data)), let role = APIRole(rawValue: row["role"]) else {
                    throw JournalError.corrupt("api token '\(row["name"] as String)' has a damaged hash or role")
                }
                return (hash, APITokens.Entry(name: row["name"], role: role, createdAt: row["createdAt"]))
            }
        }
    }

    func insertAPIToken(_ entry: APITokens.Entry, hash: SHA256Digest) throws {
        try auditedWrite(effect: { _ in ("token '\(entry.name)' (\(entry.role.rawValue)) created", job: nil) }) { db in
            try db.execute(sql: "INSERT INTO api_tokens (name, role, hash, createdAt) VALUES (?, ?, ?, ?)",
                           arguments: [entry.name, entry.role.rawValue, Data(hash.bytes), entry.createdAt])
        }
    }

    func deleteAPIToken(name: String) throws {
        try auditedWrite(effect: { _ in ("token '\(name)' revoked", job: nil) }) { db in
            try db.execute(sql: "DELETE FROM api_tokens WHERE name = ?", arguments: [name])
        }
    }
}
