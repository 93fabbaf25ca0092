import BargeBench
import BargeDigest
@testable import BargeTier
import Foundation
import GRDB
import Testing

/// Files placed cold as they arrive: chunks received by two agents of the site (two intakes on
/// one store), finished by either, read back whole; a file with a chunk missing stays incoming
/// and says why; `gc` keeps what files still arriving need; a duplicate chunk is stored once.
struct ColdIntakeTests {
    /// Feeds `bytes` to `intakes` in chunks of `chunk`, alternating between them.
    func arrive(_ path: String, _ bytes: [UInt8], chunk: Int, into intakes: [ColdIntake], skipping: Set<Int> = []) throws {
        var offset = 0, n = 0
        while offset < bytes.count {
            let end = min(offset + chunk, bytes.count)
            if !skipping.contains(n) {
                try bytes[offset..<end].withUnsafeBytes { b in
                    try intakes[n % intakes.count].store(path: path, fileSize: UInt64(bytes.count), offset: UInt64(offset), bytes: b)
                }
            }
            offset = end
            n += 1
        }
    }

    func arrived(_ path: String, _ size: Int) -> ColdIntake.Arrived {
        ColdIntake.Arrived(path: path, size: UInt64(size), mode: 0o640, mtimeSeconds: 1_700_000_000, mtimeNanoseconds: 5)
    }

    @Test func chunksReceivedByTwoAgentsMakeOneColdFileWhicheverFinishes() throws {
        let box = try ColdSandbox()
        let first = ColdIntake(store: try ColdStore(directory: box.cold))
        let second = ColdIntake(store: try ColdStore(directory: box.cold))
        let data = SampleData.float32Field(bytes: (3 << 20) + 4321)
        try arrive("raw/field.f32", data, chunk: 1 << 20, into: [first, second])
        // The first agent's open pack is sealed by its timer (or its next finish); the second
        // finishes the file.
        try first.seal()
        #expect(second.finish([arrived("raw/field.f32", data.count)]).isEmpty)
        let store = try ColdStore(directory: box.cold)
        let file = try #require(try store.catalog.file("raw/field.f32"))
        #expect(file.size == UInt64(data.count) && file.mode == 0o640 && file.mtimeNanoseconds == 5)
        let reader = try #require(try store.reader(for: "raw/field.f32"))
        #expect(try reader.read(offset: 0, length: data.count) == data)
        #expect(try store.catalog.incoming("raw/field.f32").isEmpty)
        #expect(!FileManager.default.fileExists(atPath: box.root + "/raw/field.f32"))

        // A second copy under another name stores nothing new; a late duplicate finish is fine.
        let before = try store.totals()
        try arrive("copy/field.f32", data, chunk: 1 << 20, into: [first])
        #expect(first.finish([arrived("copy/field.f32", data.count), arrived("raw/field.f32", data.count)]).isEmpty)
        let after = try store.totals()
        #expect(after.storedBytes == before.storedBytes && after.files == 2)
    }

    @Test func aFileWithAChunkMissingStaysIncomingAndGCKeepsWhatItHas() throws {
        let box = try ColdSandbox()
        let intake = ColdIntake(store: try ColdStore(directory: box.cold))
        let data = SampleData.generate(.text, bytes: (2 << 20) + 99, seed: 7)
        try arrive("logs/a.log", data, chunk: 1 << 20, into: [intake], skipping: [1])
        let failures = intake.finish([arrived("logs/a.log", data.count)])
        let missing = try #require(failures[0] as? ColdIntake.Missing)
        #expect(missing.description.contains("only 1048576 of its 2097251 bytes"), "\(missing)")
        #expect(try intake.store.catalog.file("logs/a.log") == nil)
        // gc keeps the pack its incoming rows point at.
        let gc = try intake.store.gc()
        #expect(gc.packsRemoved == 0 && gc.packsKept == 1)
        // The missing chunk arrives (the others again, by reference), and the file is finished.
        try data[(1 << 20)..<(2 << 20)].withUnsafeBytes { b in
            try intake.store(path: "logs/a.log", fileSize: UInt64(data.count), offset: 1 << 20, bytes: b)
        }
        let sha = SHA256.hash(Array(data[0..<(1 << 20)])).bytes
        #expect(try intake.adopt(path: "logs/a.log", fileSize: UInt64(data.count), offset: 0, length: 1 << 20, sha: sha))
        #expect(intake.finish([arrived("logs/a.log", data.count)]).isEmpty)
        #expect(try intake.store.reader(for: "logs/a.log")?.read(offset: 0, length: data.count) == data)
    }

    @Test func anEncryptedIntakeStoresNoPlaintext() throws {
        let box = try ColdSandbox()
        let intake = ColdIntake(store: try ColdStore(directory: box.cold, keyMaterial: Array("a cold key of enough bytes".utf8)))
        let data = Array(String(repeating: "PLAINTEXT-MARKER ", count: 40_000).utf8)
        try arrive("secret.txt", data, chunk: 1 << 20, into: [intake])
        #expect(intake.finish([arrived("secret.txt", data.count)]).isEmpty)
        let all = try box.coldBytes()
        #expect(!all.isEmpty && all.firstRange(of: Array("PLAINTEXT-MARKER".utf8)) == nil)
        #expect(try intake.store.reader(for: "secret.txt")?.read(offset: 0, length: data.count) == data)
    }

    /// A file arriving whose chunk the store holds in a blob damaged since: the blob is read
    /// back, found damaged, forgotten, and the bytes received are stored again, so both the new
    /// file and the older one that shares the chunk read whole; by reference, the damaged chunk
    /// is not taken (its bytes are asked for). Before, the new file took the damaged blob and
    /// its transfer succeeded with a cold copy that could not be read.
    @Test func aChunkSharedWithADamagedBlobIsStoredAgainFromTheBytesReceived() throws {
        let box = try ColdSandbox()
        let first = ColdIntake(store: try ColdStore(directory: box.cold))
        let data = SampleData.generate(.text, bytes: (2 << 20) + 17, seed: 3)
        try arrive("old/a.txt", data, chunk: 1 << 20, into: [first])
        #expect(first.finish([arrived("old/a.txt", data.count)]).isEmpty)
        let damagedID = first.store.storedID(SHA256.hash(Array(data[(1 << 20)..<(2 << 20)])))
        try flipByte(inChunk: damagedID, of: first.store)
        #expect(throws: (any Error).self) { try first.store.reader(for: "old/a.txt")?.read(offset: 0, length: data.count) }

        let second = ColdIntake(store: try ColdStore(directory: box.cold))
        let sha = SHA256.hash(Array(data[(1 << 20)..<(2 << 20)])).bytes
        #expect(try !second.adopt(path: "new/a.txt", fileSize: UInt64(data.count), offset: 1 << 20, length: 1 << 20, sha: sha))
        try arrive("new/a.txt", data, chunk: 1 << 20, into: [second])
        #expect(second.finish([arrived("new/a.txt", data.count)]).isEmpty)
        let damage = second.takeDamage()
        #expect(damage.count == 1, "\(damage)")
        #expect(second.takeDamage().isEmpty)
        let store = try ColdStore(directory: box.cold)
        #expect(try store.reader(for: "new/a.txt")?.read(offset: 0, length: data.count) == data)
        #expect(try store.reader(for: "old/a.txt")?.read(offset: 0, length: data.count) == data)
        // The whole chunk, read back once, is taken again without reading it.
        let before = try store.totals()
        try arrive("third/a.txt", data, chunk: 1 << 20, into: [second])
        #expect(second.finish([arrived("third/a.txt", data.count)]).isEmpty)
        #expect(try store.totals().storedBytes == before.storedBytes)
    }

    /// A chunk this intake read back whole, then forgotten (`verify --repair` found it damaged),
    /// is not taken again from memory: the next file that has it stores its bytes, and reads whole.
    @Test func aChunkReadBackThenForgottenIsStoredAgain() throws {
        let box = try ColdSandbox()
        let intake = ColdIntake(store: try ColdStore(directory: box.cold))
        let data = SampleData.generate(.random, bytes: 5000, seed: 11)
        try arrive("first.bin", data, chunk: 1 << 20, into: [intake])
        #expect(intake.finish([arrived("first.bin", data.count)]).isEmpty)
        try arrive("second.bin", data, chunk: 1 << 20, into: [intake])  // read back, and remembered
        #expect(intake.finish([arrived("second.bin", data.count)]).isEmpty)
        try intake.store.catalog.forgetChunk(intake.store.storedID(SHA256.hash(data)))
        try arrive("third.bin", data, chunk: 1 << 20, into: [intake])
        #expect(intake.finish([arrived("third.bin", data.count)]).isEmpty)
        #expect(try intake.store.reader(for: "third.bin")?.read(offset: 0, length: data.count) == data)
    }

    /// A file assembled from chunks one of which `verify --repair` forgets before the file is
    /// finished is left out, and its incoming rows for that chunk go, so that its bytes are
    /// asked for again; the other files of the finish become cold.
    @Test func aChunkForgottenBeforeTheFinishLeavesItsFileIncoming() throws {
        let box = try ColdSandbox()
        let intake = ColdIntake(store: try ColdStore(directory: box.cold))
        let a = SampleData.generate(.random, bytes: (1 << 20) + 5, seed: 1), b = SampleData.generate(.random, bytes: 4000, seed: 2)
        try arrive("a.bin", a, chunk: 1 << 20, into: [intake])
        try arrive("b.bin", b, chunk: 1 << 20, into: [intake])
        try intake.seal()
        let catalog = intake.store.catalog
        let rows = try catalog.incoming("a.bin")
        #expect(rows.count == 2)
        let files = [ColdFile(path: "a.bin", size: UInt64(a.count), mode: 0o640, mtimeSeconds: 1, mtimeNanoseconds: 0,
                              chunks: rows.map { ColdFile.Chunk(id: $0.id, length: $0.length) }),
                     ColdFile(path: "b.bin", size: UInt64(b.count), mode: 0o640, mtimeSeconds: 1, mtimeNanoseconds: 0,
                              chunks: try catalog.incoming("b.bin").map { ColdFile.Chunk(id: $0.id, length: $0.length) })]
        try catalog.forgetChunk(rows[1].id)
        #expect(try catalog.finishIncoming(files) == ["a.bin"])
        #expect(try catalog.file("a.bin") == nil && catalog.file("b.bin") != nil)
        #expect(try catalog.incoming("a.bin").map(\.offset) == [0])
        // Its forgotten bytes arrive again, and it is finished.
        try a[(1 << 20)...].withUnsafeBytes { try intake.store(path: "a.bin", fileSize: UInt64(a.count), offset: 1 << 20, bytes: $0) }
        #expect(intake.finish([arrived("a.bin", a.count)]).isEmpty)
        #expect(try intake.store.reader(for: "a.bin")?.read(offset: 0, length: a.count) == a)
    }

    /// A cold-store catalog a newer build migrated is refused, named, with nothing written to it:
    /// the site's older agents would write rows without what the newer schema holds.
    @Test func aCatalogANewerBuildMigratedIsRefused() throws {
        let box = try ColdSandbox()
        let path = try ColdStore(directory: box.cold).layout.catalogPath
        try DatabaseQueue(path: path).write { try $0.execute(sql: "INSERT INTO grdb_migrations (identifier) VALUES ('v99: from a newer build')") }
        func migrations() throws -> [String] { try DatabaseQueue(path: path).read { try String.fetchAll($0, sql: "SELECT identifier FROM grdb_migrations") } }
        let before = try migrations()
        #expect { try ColdStore(directory: box.cold) } throws: { error in
            "\(error)".contains("the cold-store catalog \(path) was upgraded by a newer Barge") && "\(error)".contains("'v99: from a newer build'")
        }
        #expect(try migrations() == before)
    }
}
