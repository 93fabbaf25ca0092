import GRDB

/// A database a newer build of Barge migrated: its migrations include ones this build does not
/// know. It is refused before anything is written to it, as the journal is (`JournalError.newer`):
/// run on it, an older build writes rows without what the newer schema holds.
public struct NewerSchema: Error, CustomStringConvertible {
    /// What the database is, for the message ("the cold-store catalog", "the chunk index").
    public let what: String
    public let path: String
    /// Its migrations this build does not know, sorted.
    public let unknown: [String]
    /// This build's last migration.
    public let newest: String

    public var description: String {
        "\(what) \(path) was upgraded by a newer Barge: its schema has \(unknown.count == 1 ? "a migration" : "migrations") this build does not know (\(unknown.map { "'\($0)'" }.joined(separator: ", "))), and this build knows up to '\(newest)'. Run the newer build (it is never downgraded), or restore it from a copy made before the upgrade"
    }
}

extension DatabaseMigrator {
    /// Throws `NewerSchema` when `reader` holds migrations this migrator does not know; reads only.
    public func refuseNewer(_ reader: some DatabaseReader, what: String, path: String) throws {
        let unknown = try reader.read { db in try appliedIdentifiers(db) }.subtracting(migrations)
        if !unknown.isEmpty { throw NewerSchema(what: what, path: path, unknown: unknown.sorted(), newest: migrations.last ?? "") }
    }
}
