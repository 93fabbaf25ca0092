import Foundation
import GRDB

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A destination agent's record of the chunks it has verified and written, in a SQLite file
/// (`<state>/chunk-index.sqlite`). Each row says: the bytes at `offset` of `path` (relative to the
/// root) have SHA-256 `id` and XXH3-128 `xxh`, in the file's partial copy or, once the file was
/// finished, in the file under its final name.
///
/// It serves two purposes:
/// - **partial files survive a restart**: the rows of a partial copy tell a restarted agent which
///   of its ranges already arrived;
/// - **dedup**: a chunk whose id is here is copied locally instead of crossing the network.
///
/// A row is a hint, never trusted blindly: whoever uses it re-reads the bytes and checks `xxh`
/// first. A final file whose size or mtime no longer matches what was recorded at its finish has
/// been changed since, and its rows are dropped.
public final class ChunkIndex: Sendable {
    public static let fileName = "chunk-index.sqlite"

    public struct Entry: Hashable, Sendable {
        public var path: String
        public var offset: UInt64
        public var length: Int
        /// The size of the whole file the chunk belongs to.
        public var fileSize: UInt64
        public var id: [UInt8]
        public var xxh: [UInt8]
        /// In the file under its final name (true), or in its `.barge-partial` copy.
        public var final: Bool

        public init(path: String, offset: UInt64, length: Int, fileSize: UInt64, id: [UInt8], xxh: [UInt8], final: Bool = false) {
            self.path = path
            self.offset = offset
            self.length = length
            self.fileSize = fileSize
            self.id = id
            self.xxh = xxh
            self.final = final
        }
    }

    public let root: String
    private let pool: DatabasePool

    public let path: String
    /// Opened by another agent's `SiblingIndexes`: only read.
    public let readOnly: Bool

    /// Opens (creating if needed) the index at `path` for files under `root`.
    public init(path: String, root: String) throws {
        self.root = root
        self.path = path
        readOnly = false
        pool = try DatabasePool(path: path)
        // One a newer build migrated is refused before anything is written to it.
        try Self.migrator.refuseNewer(pool, what: "the chunk index", path: path)
        try Self.migrator.migrate(pool)
    }

    /// Opens another agent's index, to read only: it must exist and be migrated.
    public init(readingOnly path: String, root: String) throws {
        self.root = root
        self.path = path
        readOnly = true
        var configuration = Configuration()
        configuration.readonly = true
        // Its owner writes meanwhile: wait for a lock rather than give up the lookup.
        configuration.busyMode = .timeout(2)
        pool = try DatabasePool(path: path, configuration: configuration)
        guard try pool.read({ db in try db.tableExists("chunks") }) else { throw DatabaseError(message: "\(path) is not a chunk index") }
    }

    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1: chunks and finished files") { db in
            try db.create(table: "chunks") { t in
                t.column("path", .text).notNull()
                t.column("final", .boolean).notNull()
                t.column("offset", .integer).notNull()
                t.column("length", .integer).notNull()
                t.column("fileSize", .integer).notNull()
                t.column("id", .blob).notNull()
                t.column("xxh", .blob).notNull()
                t.primaryKey(["path", "final", "offset"])
            }
            try db.create(index: "chunks_by_id", on: "chunks", columns: ["id"])
            try db.create(table: "files") { t in
                t.primaryKey("path", .text)
                t.column("size", .integer).notNull()
                t.column("mtimeSeconds", .integer).notNull()
                t.column("mtimeNanoseconds", .integer).notNull()
            }
        }
        // `locations` asks for a few copies of an id, finished files first. On the index of id
        // alone SQLite read every row with that id and sorted them: 50,000 one-byte files (256
        // distinct contents) cost 13 ms a lookup, and a job of them ran for minutes.
        m.registerMigration("v2: chunks by id, then final") { db in
            try db.create(index: "chunks_by_id_final", on: "chunks", columns: ["id", "final"])
            try db.drop(index: "chunks_by_id")
        }
        return m
    }

    /// The chunks recorded for the partial copy of `path` at `fileSize` bytes. Rows for another
    /// size (an older partial copy) are dropped.
    public func partialChunks(path: String, fileSize: UInt64) throws -> [Entry] {
        try pool.write { db in
            try db.execute(sql: "DELETE FROM chunks WHERE path = ? AND final = 0 AND fileSize != ?", arguments: [path, Int64(fileSize)])
            return try Self.entries(db, "SELECT * FROM chunks WHERE path = ? AND final = 0 ORDER BY offset", [path])
        }
    }

    /// A file whose one chunk is `id`: its path, size and mtime.
    public struct WholeFile: Sendable {
        public var path: String
        public var size: UInt64
        public var id: [UInt8]
        public var mtimeSeconds: Int64
        public var mtimeNanoseconds: Int32

        public init(path: String, size: UInt64, id: [UInt8], mtimeSeconds: Int64, mtimeNanoseconds: Int32) {
            self.path = path
            self.size = size
            self.id = id
            self.mtimeSeconds = mtimeSeconds
            self.mtimeNanoseconds = mtimeNanoseconds
        }
    }

    /// Which of `files` (by index) this index holds already as finished, with that size and
    /// mtime and that one chunk: one read, a statement per file.
    public func holds(_ files: [WholeFile]) throws -> Set<Int> {
        guard !files.isEmpty else { return [] }
        return try pool.read { db in
            let held = try db.cachedStatement(sql: """
                SELECT 1 FROM chunks JOIN files ON files.path = chunks.path
                WHERE chunks.path = ? AND chunks.final = 1 AND chunks.offset = 0 AND chunks.length = ? AND chunks.id = ?
                  AND files.size = ? AND files.mtimeSeconds = ? AND files.mtimeNanoseconds = ?
                """)
            var result = Set<Int>()
            for (i, f) in files.enumerated() where f.size > 0 {
                let arguments: StatementArguments = [f.path, Int64(f.size), Data(f.id), Int64(f.size), f.mtimeSeconds, f.mtimeNanoseconds]
                if try Int.fetchOne(held, arguments: arguments) != nil { result.insert(i) }
            }
            return result
        }
    }

    /// Forgets chunks of a partial copy (their bytes did not check out, or the copy is gone).
    public func forgetPartial(path: String, offsets: [UInt64]? = nil) throws {
        try pool.write { db in
            if let offsets {
                for o in offsets { try db.execute(sql: "DELETE FROM chunks WHERE path = ? AND final = 0 AND offset = ?", arguments: [path, Int64(o)]) }
            } else {
                try db.execute(sql: "DELETE FROM chunks WHERE path = ? AND final = 0", arguments: [path])
            }
        }
    }

    /// A file that now has its final name, size and mtime.
    public struct Finalized: Sendable {
        public var path: String
        public var size: UInt64
        public var mtimeSeconds: Int64
        public var mtimeNanoseconds: Int32

        public init(path: String, size: UInt64, mtimeSeconds: Int64, mtimeNanoseconds: Int32) {
            self.path = path
            self.size = size
            self.mtimeSeconds = mtimeSeconds
            self.mtimeNanoseconds = mtimeNanoseconds
        }
    }

    /// The partial copy of `path` now has its final name, size and mtime: its rows replace those
    /// of whatever file had that name before.
    public func finalize(path: String, size: UInt64, mtimeSeconds: Int64, mtimeNanoseconds: Int32) throws {
        try finalize([Finalized(path: path, size: size, mtimeSeconds: mtimeSeconds, mtimeNanoseconds: mtimeNanoseconds)])
    }

    /// Records chunks written into partial copies (`entries`), then each file's finish, in one
    /// transaction.
    ///
    /// A file finished here whose one chunk is among `entries` (a small file of a batch: offset 0,
    /// its whole size) has all its rows in hand: the rows of whatever had its name go, and its row
    /// goes in as final at once, rather than in as partial and then moved to final (an `UPDATE` of
    /// the primary key, which SQLite does as a delete and an insert): three statements a file,
    /// not four.
    public func finalize(_ files: [Finalized], recording entries: [Entry] = []) throws {
        guard !files.isEmpty || !entries.isEmpty else { return }
        // By bytes (`PathKey`): "é" and "e\u{301}" are two files.
        var whole: [PathKey: Entry] = [:]
        if !files.isEmpty {
            let finishing = Set(files.map { PathKey($0.path) })
            for e in entries where !e.final && e.offset == 0 && UInt64(e.length) == e.fileSize && finishing.contains(PathKey(e.path)) {
                whole[PathKey(e.path)] = e
            }
        }
        try pool.write { db in
            let insert = try db.cachedStatement(sql: """
                INSERT OR REPLACE INTO chunks (path, final, offset, length, fileSize, id, xxh) VALUES (?, ?, ?, ?, ?, ?, ?)
                """)
            func record(_ e: Entry, final: Bool) throws {
                try insert.execute(arguments: [e.path, final, Int64(e.offset), e.length, Int64(e.fileSize), Data(e.id), Data(e.xxh)])
            }
            // Every row but the whole files' own, which go in below with their finish.
            for e in entries where whole[PathKey(e.path)] != e { try record(e, final: e.final) }
            let dropOld = try db.cachedStatement(sql: "DELETE FROM chunks WHERE path = ? AND (final = 1 OR fileSize != ?)")
            let dropAll = try db.cachedStatement(sql: "DELETE FROM chunks WHERE path = ?")
            let promote = try db.cachedStatement(sql: "UPDATE chunks SET final = 1 WHERE path = ? AND final = 0")
            let file = try db.cachedStatement(sql: "INSERT OR REPLACE INTO files (path, size, mtimeSeconds, mtimeNanoseconds) VALUES (?, ?, ?, ?)")
            for f in files {
                if let e = whole[PathKey(f.path)], e.fileSize == f.size {
                    try dropAll.execute(arguments: [f.path])
                    try record(e, final: true)
                } else {
                    if let e = whole[PathKey(f.path)] { try record(e, final: false) }  // another size: as any row
                    // Rows of an older partial copy of another size went with it.
                    try dropOld.execute(arguments: [f.path, Int64(f.size)])
                    try promote.execute(arguments: [f.path])
                }
                try file.execute(arguments: [f.path, Int64(f.size), f.mtimeSeconds, f.mtimeNanoseconds])
            }
        }
    }

    /// The ids of chunks held for `paths` (final files that are unchanged since their finish, and
    /// partial copies): what a source may send by reference.
    public func ids(paths: [String]) throws -> Set<[UInt8]> {
        var result = Set<[UInt8]>()
        // A unit names up to 1,024 paths, most of them never seen here: a few statements for a
        // slice of paths (`IN`) rather than two per path, which cost 4-9% of the destination's
        // CPU on small files.
        func slices() -> [ArraySlice<String>] {
            stride(from: 0, to: paths.count, by: Self.pathsPerStatement).map { paths[$0..<min(paths.count, $0 + Self.pathsPerStatement)] }
        }
        func marks(_ n: Int) -> String { Array(repeating: "?", count: n).joined(separator: ",") }
        if readOnly {
            // Another agent's: stale rows are left for it to drop.
            try pool.read { db in
                for part in slices() {
                    let arguments = StatementArguments(Array(part))
                    let stale = Set(try Row.fetchAll(db, sql: "SELECT * FROM files WHERE path IN (\(marks(part.count)))", arguments: arguments)
                        .compactMap { row -> PathKey? in
                            let path: String = row["path"]
                            return current(path, row) ? nil : PathKey(path)
                        })
                    for row in try Row.fetchAll(db, sql: "SELECT path, final, id FROM chunks WHERE path IN (\(marks(part.count)))", arguments: arguments) {
                        let final: Bool = row["final"], path: String = row["path"], id: Data = row["id"]
                        if !final || !stale.contains(PathKey(path)) { result.insert([UInt8](id)) }
                    }
                }
            }
            return result
        }
        try pool.write { db in
            for part in slices() {
                let arguments = StatementArguments(Array(part))
                for row in try Row.fetchAll(db, sql: "SELECT * FROM files WHERE path IN (\(marks(part.count)))", arguments: arguments) {
                    let path: String = row["path"]
                    if !current(path, row) { try Self.dropFinal(db, path) }
                }
                for id in try Data.fetchAll(db, sql: "SELECT id FROM chunks WHERE path IN (\(marks(part.count)))", arguments: arguments) {
                    result.insert([UInt8](id))
                }
            }
        }
        return result
    }

    /// Paths looked up per statement by `ids(paths:)`, well inside SQLite's limit on parameters.
    static let pathsPerStatement = 500

    /// Where a chunk with this id may be found (at most `limit` places, final files first).
    public func locations(id: [UInt8], limit: Int = 4) throws -> [Entry] {
        try pool.read { db in try Self.entries(db, Self.locationsQuery, [Data(id), limit]) }
    }

    static let locationsQuery = "SELECT * FROM chunks WHERE id = ? ORDER BY final DESC LIMIT ?"

    /// SQLite's plan for `locations`, one step a line (tests: it must walk an index in order,
    /// not gather and sort every copy of the id).
    func locationsPlan() throws -> String {
        try pool.read { db in
            try Row.fetchAll(db, sql: "EXPLAIN QUERY PLAN " + Self.locationsQuery, arguments: [Data(count: 32), 4])
                .map { ($0["detail"] as String?) ?? "" }.joined(separator: "\n")
        }
    }

    /// The rows recorded for the partial copy of `path` at `fileSize` bytes, read only (another
    /// agent's index: it drops its own stale rows).
    public func partialRows(path: String, fileSize: UInt64) throws -> [Entry] {
        try pool.read { db in
            try Self.entries(db, "SELECT * FROM chunks WHERE path = ? AND final = 0 AND fileSize = ? ORDER BY offset", [path, Int64(fileSize)])
        }
    }

    /// The final file at `path`, of `size` bytes, was kept in place with its bytes and given
    /// this mtime: its rows stay current. False, with nothing changed, when the index does not
    /// hold it at that size.
    public func retime(path: String, size: UInt64, mtimeSeconds: Int64, mtimeNanoseconds: Int32) throws -> Bool {
        try pool.write { db in
            try db.execute(sql: "UPDATE files SET mtimeSeconds = ?, mtimeNanoseconds = ? WHERE path = ? AND size = ?",
                           arguments: [mtimeSeconds, mtimeNanoseconds, path, Int64(size)])
            return db.changesCount > 0
        }
    }

    /// The rows of the final file at `path`, of `size` bytes (another agent's index, read only).
    public func finalRows(path: String, size: UInt64) throws -> [Entry] {
        try pool.read { db in
            try Self.entries(db, "SELECT * FROM chunks WHERE path = ? AND final = 1 AND fileSize = ? ORDER BY offset", [path, Int64(size)])
        }
    }

    /// A final file whose bytes did not match its rows: it changed after its finish. With
    /// `offsets`, only the rows at those places go (the file differs there; its other rows stay,
    /// checked whenever they are used); without, every row of the file and its record.
    public func forgetFinal(path: String, offsets: [UInt64]? = nil) throws {
        try pool.write { db in
            guard let offsets else { return try Self.dropFinal(db, path) }
            for o in offsets { try db.execute(sql: "DELETE FROM chunks WHERE path = ? AND final = 1 AND offset = ?", arguments: [path, Int64(o)]) }
        }
    }

    /// Rows in the index (for tests and logs).
    public func count() throws -> Int {
        try pool.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM chunks") ?? 0 }
    }

    private static func dropFinal(_ db: Database, _ path: String) throws {
        try db.execute(sql: "DELETE FROM chunks WHERE path = ? AND final = 1", arguments: [path])
        try db.execute(sql: "DELETE FROM files WHERE path = ?", arguments: [path])
    }

    /// Whether the file under its final name still has the size and mtime recorded at its finish.
    private func current(_ path: String, _ row: Row) -> Bool {
        var st = stat()
        // From the root's descriptor: a path under PATH_MAX below the root may not be from `/`.
        guard let directory = try? RootDirectory.open(root), fstatat(directory.fd, path, &st, AT_SYMLINK_NOFOLLOW) == 0,
              st.st_mode & S_IFMT == S_IFREG else { return false }
        return Int64(st.st_size) == row["size"] && Int64(st.st_mtim.tv_sec) == row["mtimeSeconds"]
            && Int64(st.st_mtim.tv_nsec) == row["mtimeNanoseconds"]
    }

    /// The rows as entries, leaving out any that no agent writes: another agent's index is read
    /// too, and the file is another process's, so a damaged or foreign row is not trusted to be
    /// a chunk (a negative offset trapped the conversion; a length sized a buffer).
    private static func entries(_ db: Database, _ sql: String, _ arguments: StatementArguments) throws -> [Entry] {
        try Row.fetchAll(db, sql: sql, arguments: arguments).compactMap { row in
            guard let path = row["path"] as String?, !path.isEmpty, !path.hasPrefix("/"), !path.utf8.contains(0),
                  let offset = row["offset"] as Int64?, let length = row["length"] as Int64?, let fileSize = row["fileSize"] as Int64?,
                  let id = row["id"] as Data?, let xxh = row["xxh"] as Data?, let final = row["final"] as Bool?,
                  offset >= 0, (0...maxChunkLength).contains(length), fileSize >= 0, offset <= fileSize - length,
                  id.count == 32, xxh.count == 16 else { return nil }
            return Entry(path: path, offset: UInt64(offset), length: Int(length), fileSize: UInt64(fileSize), id: [UInt8](id), xxh: [UInt8](xxh), final: final)
        }
    }

    /// The longest chunk a row may name (the codec's `ChunkFormat.maxRawLength`).
    static let maxChunkLength: Int64 = 16 << 20
}
