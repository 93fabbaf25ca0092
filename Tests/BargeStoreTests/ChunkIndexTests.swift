@testable import BargeStore
import Foundation
import GRDB
import Testing

/// The destination's chunk index, on a real SQLite file.
struct ChunkIndexTests {
    func id(_ n: UInt8) -> [UInt8] { [UInt8](repeating: n, count: 32) }

    /// A lookup of a chunk held by thousands of files (identical small files are common) walks
    /// the index of (id, final) and stops at its limit, finished copies first; it no longer
    /// gathers and sorts every copy (13 ms a lookup at 50,000 copies, and minutes for a job).
    @Test func aLookupOfAChunkManyFilesHoldReadsOnlyWhatItReturns() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("barge-index-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let index = try ChunkIndex(path: dir.appendingPathComponent("index.sqlite").path, root: dir.path)
        let plan = try index.locationsPlan()
        #expect(plan.contains("USING INDEX chunks_by_id_final") && !plan.contains("TEMP B-TREE"), "\(plan)")
        let partial = (0..<3000).map { entry("p/f\($0)", 0, 1, of: 1, id(7)) }
        try index.finalize([], recording: partial)
        try index.finalize((0..<5).map { ChunkIndex.Finalized(path: "p/f\($0)", size: 1, mtimeSeconds: 1, mtimeNanoseconds: 0) })
        let found = try index.locations(id: id(7))
        #expect(found.count == 4 && found.allSatisfy(\.final), "\(found)")
        // Opened again, the index keeps its rows and its migrations.
        let again = try ChunkIndex(path: dir.appendingPathComponent("index.sqlite").path, root: dir.path)
        #expect(try again.count() == 3000)
    }

    /// Rows no agent writes (the index is a file another agent of the site, or anything that can
    /// write the root's `.barge`, may change) are left out of a lookup: a negative offset or size
    /// trapped the conversion, and a length over a chunk sized a buffer. Rows as agents write them
    /// are still found.
    @Test func foreignRowsAreLeftOutOfALookup() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("barge-index-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("index.sqlite").path
        let index = try ChunkIndex(path: path, root: dir.path)
        try index.finalize([], recording: [entry("good", 0, 4096, of: 4096, id(7))])
        let bad: [(String, Int64, Int64, Int64, Int, Int)] = [
            ("negative-offset", -1, 4096, 8192, 32, 16), ("negative-size", 0, 1, -5, 32, 16), ("huge-length", 0, 1 << 40, 1 << 41, 32, 16),
            ("past-the-end", 8192, 4096, 8192, 32, 16), ("short-id", 0, 10, 10, 31, 16), ("/absolute", 0, 10, 10, 32, 16),
        ]
        var sql = ""
        for (p, offset, length, size, idBytes, xxhBytes) in bad {
            sql += "INSERT INTO chunks (path, final, offset, length, fileSize, id, xxh) VALUES ('\(p)', 0, \(offset), \(length), \(size), "
                + "zeroblob(\(idBytes)), zeroblob(\(xxhBytes)));\n"
        }
        // Written as another process would, beside the agent's own connection.
        let writer = Process()
        writer.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        writer.arguments = ["python3", "-c", "import sqlite3,sys; db=sqlite3.connect(sys.argv[1]); db.executescript(sys.argv[2]); db.commit()", path,
                            sql.replacingOccurrences(of: "zeroblob(32)", with: "X'" + String(repeating: "07", count: 32) + "'")
                               .replacingOccurrences(of: "zeroblob(31)", with: "X'" + String(repeating: "07", count: 31) + "'")]
        try writer.run()
        writer.waitUntilExit()
        #expect(writer.terminationStatus == 0)
        #expect(try index.count() == 1 + bad.count)
        #expect(try index.locations(id: id(7), limit: 100).map(\.path) == ["good"])
    }

    func entry(_ path: String, _ offset: UInt64, _ length: Int, of size: UInt64, _ id: [UInt8]) -> ChunkIndex.Entry {
        ChunkIndex.Entry(path: path, offset: offset, length: length, fileSize: size, id: id, xxh: [UInt8](repeating: 9, count: 16))
    }

    func finished(_ path: String, _ size: UInt64) -> ChunkIndex.Finalized {
        ChunkIndex.Finalized(path: path, size: size, mtimeSeconds: 1_700_000_000, mtimeNanoseconds: 0)
    }

    /// A batch finishes small files whose one chunk it records at the same time: each goes in as
    /// final, and every row its name had before goes (the chunks of an older, larger file of that
    /// name; a partial row an interrupted job left). A large file finished in the same batch,
    /// whose first chunk was recorded earlier, has both its rows made final.
    @Test func aSmallFileFinishedInABatchReplacesEveryRowOfItsName() throws {
        let s = try Sandbox()
        let index = try ChunkIndex(path: s.url.appendingPathComponent("index.sqlite").path, root: s.root)
        let mib: UInt64 = 1 << 20
        try index.finalize([finished("a", 2 * mib)], recording: [entry("a", 0, 1 << 20, of: 2 * mib, id(1)), entry("a", mib, 1 << 20, of: 2 * mib, id(2))])
        try index.finalize([], recording: [entry("b", 0, 10, of: 10, id(4))])
        try index.finalize([], recording: [entry("c", 0, 1 << 20, of: 2 * mib, id(5))])
        #expect(try index.locations(id: id(1)).map(\.final) == [true])
        #expect(try index.partialChunks(path: "b", fileSize: 10).count == 1)

        try index.finalize([finished("a", 10), finished("b", 10), finished("c", 2 * mib)],
                           recording: [entry("a", 0, 10, of: 10, id(3)), entry("b", 0, 10, of: 10, id(3)), entry("c", mib, 1 << 20, of: 2 * mib, id(6))])

        for gone in [1, 2, 4] as [UInt8] { #expect(try index.locations(id: id(gone)).isEmpty, "id \(gone)") }
        let small = try index.locations(id: id(3))
        #expect(Set(small.map(\.path)) == ["a", "b"])
        #expect(small.allSatisfy { $0.final && $0.offset == 0 && $0.length == 10 && $0.fileSize == 10 })
        #expect(try index.partialChunks(path: "a", fileSize: 10).isEmpty)
        #expect(try index.partialChunks(path: "b", fileSize: 10).isEmpty)
        #expect(try index.locations(id: id(5)).map(\.final) == [true])
        #expect(try index.locations(id: id(6)).map(\.final) == [true])
        #expect(try index.partialChunks(path: "c", fileSize: 2 * mib).isEmpty)
    }

    /// `ids(paths:)` over more paths than one statement takes: the ids of unchanged finished files
    /// and of partial copies, in either slice; none for a finished file that changed or went
    /// (whose rows its own index drops, and another agent's reading leaves), nor for paths never seen.
    @Test func aHaveQueryOfManyPathsFindsWhatIsHeldInEverySlice() throws {
        let s = try Sandbox()
        let path = s.url.appendingPathComponent("index.sqlite").path
        let index = try ChunkIndex(path: path, root: s.root)
        let paths = (0..<1_200).map { String(format: "d/p%04d", $0) }
        #expect(paths.count > 2 * 500)
        func onDisk(_ name: String, _ size: Int) throws {
            try s.file(name, String(repeating: "x", count: size))
            try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSince1970: 1_700_000_000)], ofItemAtPath: s.root + "/" + name)
        }
        // Unchanged, changed since its finish, gone, and a partial copy.
        try index.finalize([finished("d/p0010", 10), finished("d/p0600", 10), finished("d/p0700", 10)],
                           recording: [entry("d/p0010", 0, 10, of: 10, id(1)), entry("d/p0600", 0, 10, of: 10, id(2)), entry("d/p0700", 0, 10, of: 10, id(3))])
        try index.finalize([], recording: [entry("d/p1100", 0, 1 << 20, of: 2 << 20, id(4))])
        try onDisk("d/p0010", 10)
        try onDisk("d/p0600", 11)

        let other = try ChunkIndex(readingOnly: path, root: s.root)
        #expect(try other.ids(paths: paths) == [id(1), id(4)])
        #expect(try index.locations(id: id(2)).count == 1, "another agent's reading drops nothing")

        #expect(try index.ids(paths: paths) == [id(1), id(4)])
        #expect(try index.locations(id: id(2)).isEmpty && index.locations(id: id(3)).isEmpty)
        #expect(try index.locations(id: id(1)).count == 1 && index.locations(id: id(4)).count == 1)
        #expect(try index.ids(paths: []).isEmpty)
        #expect(try index.ids(paths: ["d/p0010"]) == [id(1)])
    }

    /// A chunk index a newer build migrated is refused, named, with nothing written to it (as the
    /// journal is): an older agent would write rows without what the newer schema holds.
    @Test func anIndexANewerBuildMigratedIsRefused() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("barge-index-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("index.sqlite").path
        _ = try ChunkIndex(path: path, root: dir.path)
        try DatabaseQueue(path: path).write { try $0.execute(sql: "INSERT INTO grdb_migrations (identifier) VALUES ('v99: from a newer build')") }
        func migrations() throws -> [String] { try DatabaseQueue(path: path).read { try String.fetchAll($0, sql: "SELECT identifier FROM grdb_migrations") } }
        let before = try migrations()
        #expect { try ChunkIndex(path: path, root: dir.path) } throws: { error in
            (error as? NewerSchema)?.unknown == ["v99: from a newer build"] && "\(error)".contains("the chunk index \(path) was upgraded by a newer Barge")
        }
        #expect(try migrations() == before)
    }
}
