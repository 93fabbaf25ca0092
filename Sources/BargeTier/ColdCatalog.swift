import BargeStore
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import GRDB

/// A file in the cold tier: its metadata and its chunks, in offset order.
public struct ColdFile: Sendable, Hashable {
    public struct Chunk: Sendable, Hashable {
        /// The id the chunk is stored under (32 bytes).
        public var id: [UInt8]
        public var length: UInt32
    }

    /// Relative to the agents' root.
    public var path: String
    public var size: UInt64
    public var mode: UInt32
    public var mtimeSeconds: Int64
    public var mtimeNanoseconds: Int32
    public var chunks: [Chunk]

    /// Why the chunk list cannot be this file's (nil: it can): its chunks, none empty, make up
    /// exactly its size. The catalog is a file others may write; a list that fell short was read
    /// past its end, or promoted as a file of holes.
    var chunkListProblem: String? {
        var total: UInt64 = 0
        for c in chunks {
            guard c.length > 0 else { return "\(path): an empty chunk in its list in the catalog" }
            total += UInt64(c.length)
        }
        return total == size ? nil : "\(path): its chunks in the catalog make \(total) bytes, not its \(size)"
    }

    /// The chunk list as stored: 36 bytes per chunk (id, then the raw length, u32 LE).
    var encodedChunks: [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(chunks.count * 36)
        for c in chunks { out += c.id + PackFormat.le(UInt64(c.length), 4) }
        return out
    }

    static func decodeChunks(_ bytes: [UInt8]) -> [Chunk] {
        stride(from: 0, to: bytes.count - bytes.count % 36, by: 36).map {
            Chunk(id: Array(bytes[$0..<$0 + 32]), length: UInt32(PackFormat.readLE(bytes, $0 + 32, 4)))
        }
    }
}

/// A chunk of a file still arriving cold (placed cold at transfer time): where it goes in the
/// file, and the chunk, by the id it is stored under and by its SHA-256 (what a source names it
/// by). Rows are committed with the pack that holds the chunk, by whichever agent of the site
/// received it, and become the file's chunk list when the file is finished.
public struct IncomingChunk: Sendable, Hashable {
    public var path: String
    public var fileSize: UInt64
    public var offset: UInt64
    public var length: UInt32
    public var id: [UInt8]
    public var sha: [UInt8]

    public init(path: String, fileSize: UInt64, offset: UInt64, length: UInt32, id: [UInt8], sha: [UInt8]) {
        self.path = path
        self.fileSize = fileSize
        self.offset = offset
        self.length = length
        self.id = id
        self.sha = sha
    }
}

/// Where a stored chunk is.
public struct ChunkLocation: Sendable, Hashable {
    public var pack: String
    public var offset: UInt64
    public var stored: UInt32
    public var raw: UInt32
}

/// The site's catalog, `DIR/catalog.sqlite`, shared by the site's agents (SQLite in WAL mode, with
/// a busy timeout): every pack, every stored chunk (one row each: the dedup index, as restic's
/// index), and every cold file with its chunk list (one row per file, never one per chunk).
public final class ColdCatalog: Sendable {
    private let pool: DatabasePool

    /// Opens the pool. Switching a new database to WAL takes a lock that SQLite does not wait
    /// for (the busy timeout does not apply): a second agent of the site opening the new store at
    /// the same moment got "database is locked" and did not start. It tries again, for up to 5 s.
    private static func open(_ path: String, _ configuration: Configuration) throws -> DatabasePool {
        try retrying(100, when: { ($0 as? DatabaseError)?.resultCode == .SQLITE_BUSY }) {
            try DatabasePool(path: path, configuration: configuration)
        }
    }

    /// Runs `body` up to `attempts` times, 50 ms apart, while what it throws passes `when`.
    private static func retrying<T>(_ attempts: Int, when retry: (Error) -> Bool = { _ in true }, _ body: () throws -> T) throws -> T {
        var attempt = 1
        while true {
            do {
                return try body()
            } catch where attempt < attempts && retry(error) {
                attempt += 1
                usleep(50_000)
            }
        }
    }

    public init(path: String) throws {
        do {
            var configuration = Configuration()
            configuration.busyMode = .timeout(30)
            pool = try Self.open(path, configuration)
            // GRDB's WAL set-up leaves synchronous at NORMAL, which can lose the last commit on
            // power loss: a demotion unlinks hot copies right after its commit, so it must be durable.
            try pool.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA synchronous = FULL") }
            // One a newer build migrated is refused before anything is written to it.
            try Self.migrator.refuseNewer(pool, what: "the cold-store catalog", path: path)
            // The site's agents may open a new store at once: each migration is its own
            // transaction, so one that lost the race ("table already exists") is rolled back and
            // tried again, and then finds it applied.
            try Self.retrying(20) { try Self.migrator.migrate(pool) }
        } catch let error as NewerSchema {
            throw ColdStoreError("\(error)")
        } catch { throw ColdStoreError("cannot open the cold-store catalog \(path): \(error)") }
    }

    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1") { db in
            try db.create(table: "packs") { t in
                t.primaryKey("id", .text)
                t.column("bytes", .integer).notNull()
                t.column("chunks", .integer).notNull()
            }
            try db.create(table: "chunks", options: .withoutRowID) { t in
                t.primaryKey("id", .blob)
                t.column("pack", .text).notNull()
                t.column("offset", .integer).notNull()
                t.column("stored", .integer).notNull()
                t.column("raw", .integer).notNull()
            }
            try db.create(index: "chunks_by_pack", on: "chunks", columns: ["pack"])
            try db.create(table: "files", options: .withoutRowID) { t in
                t.primaryKey("path", .text)
                t.column("size", .integer).notNull()
                t.column("mode", .integer).notNull()
                t.column("mtimeSeconds", .integer).notNull()
                t.column("mtimeNanoseconds", .integer).notNull()
                t.column("chunks", .blob).notNull()
            }
        }
        m.registerMigration("v2: directory mtimes to put back") { db in
            // A demotion or promotion records a directory's mtime before it first changes the
            // directory, and deletes the row once the mtime is back: a row left by a crash is
            // put back by the next page under it.
            try db.create(table: "dirtimes", options: .withoutRowID) { t in
                t.primaryKey("path", .text)
                t.column("seconds", .integer).notNull()
                t.column("nanoseconds", .integer).notNull()
            }
        }
        m.registerMigration("v3: files arriving cold") { db in
            // One row per chunk of a file still arriving (placed cold at transfer time); the
            // file's finish turns them into its `files` row and deletes them.
            try db.create(table: "incoming", options: .withoutRowID) { t in
                t.column("path", .text).notNull()
                t.column("offset", .integer).notNull()
                t.column("size", .integer).notNull()
                t.column("length", .integer).notNull()
                t.column("id", .blob).notNull()
                t.column("sha", .blob).notNull()
                t.primaryKey(["path", "offset"])
            }
        }
        m.registerMigration("v4: what tier jobs' pages did") { db in
            // One row per page of a demotion or promotion, written as the page ends: a page asked
            // again (its reply lost with the coordinator, or with the agent that ran it) answers
            // what it did, rather than run over files it already moved, find none and count none.
            try db.create(table: "tier_pages", options: .withoutRowID) { t in
                t.column("job", .text).notNull()
                t.column("after", .text).notNull()
                t.column("outcome", .text).notNull()
                t.column("at", .double).notNull()
                t.primaryKey(["job", "after"])
            }
        }
        m.registerMigration("v5: tier pages by age") { db in
            try db.execute(sql: "CREATE INDEX tier_pages_by_age ON tier_pages(at)")
        }
        return m
    }

    /// What a tier job's page did, as its reply says it: where the next page starts (empty: it
    /// was the last), the files moved, their bytes, the pack bytes written or read, and the files
    /// left where they were.
    public struct PageOutcome: Codable, Sendable, Hashable {
        public var next: String
        public var files: UInt64
        public var logicalBytes: UInt64
        public var packBytes: UInt64
        public var skipped: [ColdStore.Skipped]
        /// A demotion's page whose catalog is committed and whose hot copies are still being
        /// removed: the files to remove (`ColdStore.finishRemovals`). Nil once the page ended.
        public var removing: [String]?

        public init(next: String, files: UInt64, logicalBytes: UInt64, packBytes: UInt64, skipped: [ColdStore.Skipped], removing: [String]? = nil) {
            self.next = next
            self.files = files
            self.logicalBytes = logicalBytes
            self.packBytes = packBytes
            self.skipped = skipped
            self.removing = removing
        }
    }

    /// How long a page's outcome is kept: far longer than a coordinator takes to ask again.
    static let pageOutcomesKept: Double = 7 * 86_400

    /// What the page of `job` after `after` did, if it ended.
    public func pageOutcome(job: String, after: String) throws -> PageOutcome? {
        try read { db in
            try String.fetchOne(db, sql: "SELECT outcome FROM tier_pages WHERE job = ? AND after = ?", arguments: [job, after])
                .flatMap { try? JSONDecoder().decode(PageOutcome.self, from: Data($0.utf8)) }
        }
    }

    /// Records what the page of `job` after `after` did, and forgets pages older than a week.
    public func record(_ outcome: PageOutcome, job: String, after: String, now: Double = Date().timeIntervalSince1970) throws {
        try write { db in
            try Self.record(outcome, job: job, after: after, now: now, in: db)
            // By the index of `at`: this ran at every page, and scanned a week of pages.
            try db.execute(sql: "DELETE FROM tier_pages WHERE at < ?", arguments: [now - Self.pageOutcomesKept])
        }
    }

    private static func record(_ outcome: PageOutcome, job: String, after: String, now: Double, in db: Database) throws {
        let text = String(decoding: try JSONEncoder().encode(outcome), as: UTF8.self)
        try db.execute(sql: "INSERT OR REPLACE INTO tier_pages (job, after, outcome, at) VALUES (?, ?, ?, ?)", arguments: [job, after, text, now])
    }

    /// Records a directory's mtime unless one is recorded already (the original wins).
    public func rememberDirectory(_ path: String, seconds: Int64, nanoseconds: Int64) throws {
        try write { db in
            try db.execute(sql: "INSERT OR IGNORE INTO dirtimes (path, seconds, nanoseconds) VALUES (?, ?, ?)", arguments: [path, seconds, nanoseconds])
        }
    }

    /// Directories at `prefix` or below with a recorded mtime.
    public func rememberedDirectories(under prefix: String) throws -> [(path: String, seconds: Int64, nanoseconds: Int64)] {
        try read { db in
            let rows = prefix.isEmpty
                ? try Row.fetchAll(db, sql: "SELECT * FROM dirtimes")
                : try Row.fetchAll(db, sql: "SELECT * FROM dirtimes WHERE path = ? OR (path >= ? AND path < ?)", arguments: [prefix, prefix + "/", prefix + "0"])
            return rows.map { ($0["path"], $0["seconds"], $0["nanoseconds"]) }
        }
    }

    public func forgetDirectory(_ path: String) throws {
        try write { db in try db.execute(sql: "DELETE FROM dirtimes WHERE path = ?", arguments: [path]) }
    }

    private func write<T>(_ body: (Database) throws -> T) throws -> T {
        do { return try pool.write(body) } catch let e as ColdStoreError { throw e } catch let e as DatabaseError where e.resultCode == .SQLITE_FULL {
            // As ENOSPC is named on a pack's path: what the operator must do, not SQLite's words.
            throw ColdStoreError("cannot write the cold-store catalog \(pool.path): ENOSPC (No space left on device): free space on the cold store's disk, then resume")
        } catch { throw ColdStoreError("cold-store catalog: \(error)") }
    }

    private func read<T>(_ body: (Database) throws -> T) throws -> T {
        do { return try pool.read(body) } catch let e as ColdStoreError { throw e } catch { throw ColdStoreError("cold-store catalog: \(error)") }
    }

    /// Which of `ids` the store already holds.
    public func known(_ ids: [[UInt8]]) throws -> Set<[UInt8]> {
        try read { db in
            var found = Set<[UInt8]>()
            let statement = try db.cachedStatement(sql: "SELECT 1 FROM chunks WHERE id = ?")
            for id in ids where try Bool.fetchOne(statement, arguments: [Data(id)]) != nil { found.insert(id) }
            return found
        }
    }

    /// Records sealed packs and the files whose chunks they (or earlier packs) hold, in one
    /// transaction: after it, the files are cold. Returns the paths of files left out because a
    /// chunk of theirs is no longer listed (`forgetChunk` ran meanwhile): they are not cold.
    /// `page`: a demotion's page, recorded in the same transaction as under way, with the files
    /// committed as those whose hot copies it removes next (`PageOutcome.removing`).
    @discardableResult
    public func commit(packs: [SealedPack], files: [ColdFile], incoming: [IncomingChunk] = [],
                       page: (job: String, after: String, outcome: PageOutcome)? = nil) throws -> Set<String> {
        try write { db in
            let arriving = try db.cachedStatement(sql: "INSERT OR REPLACE INTO incoming (path, offset, size, length, id, sha) VALUES (?, ?, ?, ?, ?, ?)")
            for c in incoming {
                try arriving.execute(arguments: [c.path, Int64(c.offset), Int64(c.fileSize), Int64(c.length), Data(c.id), Data(c.sha)])
            }
            for p in packs {
                try db.execute(sql: "INSERT OR IGNORE INTO packs (id, bytes, chunks) VALUES (?, ?, ?)", arguments: [p.id, Int64(p.bytes), p.entries.count])
                let statement = try db.cachedStatement(sql: "INSERT OR IGNORE INTO chunks (id, pack, offset, stored, raw) VALUES (?, ?, ?, ?, ?)")
                for e in p.entries {
                    try statement.execute(arguments: [Data(e.id), p.id, Int64(e.offset), Int64(e.stored), Int64(e.raw)])
                }
            }
            let statement = try db.cachedStatement(sql: """
                INSERT OR REPLACE INTO files (path, size, mode, mtimeSeconds, mtimeNanoseconds, chunks) VALUES (?, ?, ?, ?, ?, ?)
                """)
            var listed = ListedChunks(try db.cachedStatement(sql: "SELECT 1 FROM chunks WHERE id = ?"))
            var left = Set<String>()
            for f in files {
                guard try listed.unlisted(in: f).isEmpty else { left.insert(f.path); continue }
                try statement.execute(arguments: [f.path, Int64(f.size), Int64(f.mode), f.mtimeSeconds, Int64(f.mtimeNanoseconds), Data(f.encodedChunks)])
            }
            if let (job, after, outcome) = page {
                var pending = outcome
                pending.removing = files.map(\.path).filter { !left.contains($0) }
                pending.skipped += files.filter { left.contains($0.path) }.map { ColdStore.Skipped(path: $0.path, reason: ColdStore.forgottenMeanwhile) }
                try Self.record(pending, job: job, after: after, now: Date().timeIntervalSince1970, in: db)
            }
            return left
        }
    }

    /// Which of `paths` are cold files (one indexed lookup each).
    public func coldPaths(_ paths: [String]) throws -> Set<PathKey> {
        try read { db in
            let statement = try db.cachedStatement(sql: "SELECT 1 FROM files WHERE path = ?")
            return Set(try paths.filter { try Int.fetchOne(statement, arguments: [$0]) != nil }.map(PathKey.init))
        }
    }

    public func file(_ path: String) throws -> ColdFile? {
        try read { db in try Row.fetchOne(db, sql: "SELECT * FROM files WHERE path = ?", arguments: [path]).map(Self.file) }
    }

    /// Cold files at `prefix` or below it (all of them for ""), by path, a page at a time.
    public func files(under prefix: String, after: String? = nil, limit: Int = 1000) throws -> [ColdFile] {
        try read { db in
            let start = after ?? ""
            if prefix.isEmpty {
                return try Row.fetchAll(db, sql: "SELECT * FROM files WHERE path > ? ORDER BY path LIMIT ?", arguments: [start, limit]).map(Self.file)
            }
            // The path itself, then anything below "prefix/" (the range ["prefix/", "prefix0"), as
            // '0' follows '/'), from the cursor on: a range of the primary key each. One query
            // with both (`path = ? OR (…)`) collected and sorted every file under the prefix for
            // each page: 0.10–0.16 s a page with 400,000 files, against 0.2 ms.
            var found: [ColdFile] = []
            if Self.precedes(start, prefix),
               let row = try Row.fetchOne(db, sql: "SELECT * FROM files WHERE path = ?", arguments: [prefix]) {
                found.append(Self.file(row))
            }
            let below = prefix + "/"
            let from = Self.precedes(start, below) ? below : start
            let op = Self.precedes(start, below) ? ">=" : ">"
            found += try Row.fetchAll(db, sql: "SELECT * FROM files WHERE path \(op) ? AND path < ? ORDER BY path LIMIT ?",
                                      arguments: [from, prefix + "0", limit - found.count]).map(Self.file)
            return found
        }
    }

    /// Whether `a` sorts before `b` as SQLite compares text: byte by byte.
    static func precedes(_ a: String, _ b: String) -> Bool {
        a.utf8.lexicographicallyPrecedes(b.utf8)
    }

    /// The chunks recorded so far of a file arriving cold, by offset.
    public func incoming(_ path: String) throws -> [IncomingChunk] {
        try read { db in
            try Row.fetchAll(db, sql: "SELECT offset, size, length, id, sha FROM incoming WHERE path = ? ORDER BY offset", arguments: [path]).map { row in
                IncomingChunk(path: path, fileSize: UInt64(row[1] as Int64), offset: UInt64(row[0] as Int64), length: UInt32(row[2] as Int64),
                              id: Array(row[3] as Data), sha: Array(row[4] as Data))
            }
        }
    }

    /// The chunk recorded at `offset` of a file arriving cold, if any (one row, by its key).
    public func incoming(_ path: String, at offset: UInt64) throws -> IncomingChunk? {
        try read { db in
            try Row.fetchOne(db, sql: "SELECT size, length, id, sha FROM incoming WHERE path = ? AND offset = ?", arguments: [path, Int64(offset)]).map { row in
                IncomingChunk(path: path, fileSize: UInt64(row[0] as Int64), offset: offset, length: UInt32(row[1] as Int64),
                              id: Array(row[2] as Data), sha: Array(row[3] as Data))
            }
        }
    }

    /// The SHA-256 of every chunk recorded for these files arriving cold (a source resending
    /// them sends those by reference).
    public func incomingSHAs(_ paths: [String]) throws -> Set<[UInt8]> {
        try read { db in
            var out = Set<[UInt8]>()
            let statement = try db.cachedStatement(sql: "SELECT sha FROM incoming WHERE path = ?")
            for p in paths {
                for sha in try Data.fetchAll(statement, arguments: [p]) { out.insert(Array(sha)) }
            }
            return out
        }
    }

    /// Drops recorded chunks of a file arriving cold (they turned out missing from the store).
    public func forgetIncoming(_ path: String, offsets: [UInt64]) throws {
        try write { db in
            for o in offsets { try db.execute(sql: "DELETE FROM incoming WHERE path = ? AND offset = ?", arguments: [path, Int64(o)]) }
        }
    }

    /// Files that arrived cold become cold files, in one transaction: their rows go in, and
    /// their incoming chunks go. Returns the paths of files left out because a chunk of theirs
    /// is no longer listed (`forgetChunk` ran since they were assembled, as `commit` checks):
    /// their incoming rows for such chunks go, so that those bytes are sent again.
    @discardableResult
    public func finishIncoming(_ files: [ColdFile]) throws -> Set<String> {
        try write { db in
            let insert = try db.cachedStatement(sql: """
                INSERT OR REPLACE INTO files (path, size, mode, mtimeSeconds, mtimeNanoseconds, chunks) VALUES (?, ?, ?, ?, ?, ?)
                """)
            let drop = try db.cachedStatement(sql: "DELETE FROM incoming WHERE path = ?")
            var listed = ListedChunks(try db.cachedStatement(sql: "SELECT 1 FROM chunks WHERE id = ?"))
            let dropChunk = try db.cachedStatement(sql: "DELETE FROM incoming WHERE path = ? AND id = ?")
            var left = Set<String>()
            for f in files {
                let unlisted = try listed.unlisted(in: f)
                guard unlisted.isEmpty else {
                    left.insert(f.path)
                    for id in unlisted { try dropChunk.execute(arguments: [f.path, Data(id)]) }
                    continue
                }
                try insert.execute(arguments: [f.path, Int64(f.size), Int64(f.mode), f.mtimeSeconds, Int64(f.mtimeNanoseconds), Data(f.encodedChunks)])
                try drop.execute(arguments: [f.path])
            }
            return left
        }
    }

    /// Takes files out of the cold tier, with anything still arriving cold under their names
    /// (a transfer placed them hot now). One transaction; nothing to do costs one read.
    public func remove(paths: [String]) throws {
        guard !paths.isEmpty else { return }
        let present = try read { db in
            let statement = try db.cachedStatement(sql: "SELECT 1 FROM files WHERE path = ? UNION ALL SELECT 1 FROM incoming WHERE path = ? LIMIT 1")
            return try paths.filter { try Bool.fetchOne(statement, arguments: [$0, $0]) != nil }
        }
        guard !present.isEmpty else { return }
        try write { db in
            for p in present {
                try db.execute(sql: "DELETE FROM files WHERE path = ?", arguments: [p])
                try db.execute(sql: "DELETE FROM incoming WHERE path = ?", arguments: [p])
            }
        }
    }

    /// Takes `path` out of the cold tier (it was promoted); its chunks stay until `gc`.
    public func remove(_ path: String) throws {
        try remove(promoted: [path])
    }

    /// Takes the files of a promotion's page out of the cold tier, in one transaction.
    public func remove(promoted paths: [String]) throws {
        guard !paths.isEmpty else { return }
        try write { db in
            let statement = try db.cachedStatement(sql: "DELETE FROM files WHERE path = ?")
            for p in paths { try statement.execute(arguments: [p]) }
        }
    }

    public func locations(_ ids: [[UInt8]]) throws -> [[UInt8]: ChunkLocation] {
        try read { db in
            var out: [[UInt8]: ChunkLocation] = [:]
            let statement = try db.cachedStatement(sql: "SELECT pack, offset, stored, raw FROM chunks WHERE id = ?")
            for id in Set(ids) {
                if let row = try Row.fetchOne(statement, arguments: [Data(id)]) {
                    out[id] = ChunkLocation(pack: row[0], offset: UInt64(row[1] as Int64), stored: UInt32(row[2] as Int64), raw: UInt32(row[3] as Int64))
                }
            }
            return out
        }
    }

    /// The chunks the catalog places in pack `id`, as its index should list them.
    public func chunks(inPack id: String) throws -> [PackFormat.Entry] {
        try read { db in
            try Row.fetchAll(db, sql: "SELECT id, offset, stored, raw FROM chunks WHERE pack = ?", arguments: [id]).map {
                PackFormat.Entry(id: [UInt8]($0[0] as Data), offset: UInt64($0[1] as Int64), stored: UInt32($0[2] as Int64), raw: UInt32($0[3] as Int64))
            }
        }
    }

    /// Whether the catalog records this pack (committed by a demotion).
    public func hasPack(_ id: String) throws -> Bool {
        try read { db in try Bool.fetchOne(db, sql: "SELECT 1 FROM packs WHERE id = ?", arguments: [id]) != nil }
    }

    /// Forgets a chunk with no good copy left, so that the next demotion of a file holding it
    /// stores it again (and a promotion of a file that needs it says so).
    public func forgetChunk(_ id: [UInt8]) throws {
        try write { db in try db.execute(sql: "DELETE FROM chunks WHERE id = ?", arguments: [Data(id)]) }
    }

    /// Points `id` at another copy (a repair that found the chunk whole in another pack).
    public func relocate(_ id: [UInt8], to location: ChunkLocation) throws {
        try write { db in
            try db.execute(sql: "UPDATE chunks SET pack = ?, offset = ?, stored = ?, raw = ? WHERE id = ?",
                           arguments: [location.pack, Int64(location.offset), Int64(location.stored), Int64(location.raw), Data(id)])
        }
    }

    public struct Totals: Sendable, Codable, Equatable {
        public var files: Int
        public var logicalBytes: UInt64
        public var packs: Int
        public var storedBytes: UInt64
        /// Raw bytes of the distinct chunks stored (logical bytes after dedup, before compression).
        public var uniqueBytes: UInt64
    }

    public func totals() throws -> Totals {
        try read { db in
            let files = try Row.fetchOne(db, sql: "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM files")!
            let packs = try Row.fetchOne(db, sql: "SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM packs")!
            let unique = try Int64.fetchOne(db, sql: "SELECT COALESCE(SUM(raw), 0) FROM chunks") ?? 0
            return Totals(files: files[0], logicalBytes: UInt64(files[1] as Int64), packs: packs[0],
                          storedBytes: UInt64(packs[1] as Int64), uniqueBytes: UInt64(unique))
        }
    }

    /// Every pack the catalog knows, with whether any cold file (or file still arriving cold)
    /// references one of its chunks.
    /// Walks the file rows once (a set of live ids), so its memory is the live chunk count.
    public func packUse() throws -> (all: [String], live: Set<String>) {
        try read { db in
            var liveIDs = Set<[UInt8]>()
            let rows = try Row.fetchCursor(db, sql: "SELECT chunks FROM files")
            while let row = try rows.next() {
                let data: Data = row[0]
                for c in ColdFile.decodeChunks(Array(data)) { liveIDs.insert(c.id) }
            }
            // Files still arriving keep their chunks too: their transfer goes on from them.
            for id in try Data.fetchAll(db, sql: "SELECT id FROM incoming") { liveIDs.insert(Array(id)) }
            var live = Set<String>()
            let chunkRows = try Row.fetchCursor(db, sql: "SELECT id, pack FROM chunks")
            while let row = try chunkRows.next() {
                let id: Data = row[0]
                if liveIDs.contains(Array(id)) { live.insert(row[1]) }
            }
            return (try String.fetchAll(db, sql: "SELECT id FROM packs ORDER BY id"), live)
        }
    }

    /// Forgets packs (their files are removed next) and their chunk rows.
    public func forget(packs: [String]) throws {
        try write { db in
            for p in packs {
                try db.execute(sql: "DELETE FROM chunks WHERE pack = ?", arguments: [p])
                try db.execute(sql: "DELETE FROM packs WHERE id = ?", arguments: [p])
            }
        }
    }

    private static func file(_ row: Row) -> ColdFile {
        let chunks: Data = row["chunks"]
        // Held in range: the catalog is a file others may write, and a value out of range
        // trapped the conversion (a size then fails `FileReader`'s check, which names it).
        return ColdFile(path: row["path"], size: UInt64(clamping: row["size"] as Int64), mode: UInt32(clamping: row["mode"] as Int64) & 0o7777,
                        mtimeSeconds: row["mtimeSeconds"], mtimeNanoseconds: Int32(clamping: min(max(row["mtimeNanoseconds"] as Int64, 0), 999_999_999)),
                        chunks: ColdFile.decodeChunks(Array(chunks)))
    }
}

/// Which chunks a file names are not listed in the catalog (`forgetChunk` ran), within one
/// transaction; a chunk found listed is not looked up again for the next file.
private struct ListedChunks {
    let statement: Statement
    var checked = Set<[UInt8]>()

    init(_ statement: Statement) { self.statement = statement }

    mutating func unlisted(in file: ColdFile) throws -> Set<[UInt8]> {
        var out = Set<[UInt8]>()
        for c in file.chunks where !checked.contains(c.id) && !out.contains(c.id) {
            if try Bool.fetchOne(statement, arguments: [Data(c.id)]) != nil { checked.insert(c.id) } else { out.insert(c.id) }
        }
        return out
    }
}
