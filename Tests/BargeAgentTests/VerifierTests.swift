@testable import BargeAgent
import BargeBench
import BargeCodec
import BargeDigest
import BargeTier
import BargeWire
import Foundation
import Testing

/// A destination agent's answer to `verify request` for files in the cold tier.
struct VerifierTests {
    /// A cold file whose catalog row is damaged (its chunks do not make its size) is named as
    /// such, not reported as a missing file: the reader's error was dropped, and the reason read
    /// "cannot open: No such file or directory" (h1 of session 52, finding 4).
    @Test func aColdFileWhoseRowIsDamagedIsNamedSo() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("barge-verifier-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let root = dir.path + "/root"
        try FileManager.default.createDirectory(atPath: root + "/d", withIntermediateDirectories: true)
        let bytes = SampleData.generate(.text, bytes: 3 << 20, seed: 5)
        try Data(bytes).write(to: URL(fileURLWithPath: root + "/d/f.txt"))
        let store = try ColdStore(directory: dir.path + "/cold")
        #expect(try store.demote(["d/f.txt"], root: root, encoder: AdaptiveEncoder(sendRate: ColdStore.archiveRate)).files.count == 1)
        let request = VerifyRequest(request: 1, files: [.init(path: "d/f.txt", size: UInt64(bytes.count))], chunks: [])
        #expect(Verifier.reply(to: request, root: root, cold: store).mismatches.isEmpty)

        var row = try #require(try store.catalog.file("d/f.txt"))
        row.chunks.removeLast()
        _ = try store.catalog.commit(packs: [], files: [row])
        let reply = Verifier.reply(to: request, root: root, cold: store)
        #expect(reply.mismatches.count == 1)
        let reason = reply.mismatches.first?.reason ?? ""
        #expect(reason.hasPrefix("not hot, and its cold copy cannot be read: ") && reason.contains("its chunks in the catalog make"), "\(reason)")
    }

    /// A pack whose end was cut off, or whose index was damaged, while every blob still reads: the
    /// cold file is a mismatch naming the pack. `verify` read blobs by the catalog's offsets only,
    /// and passed it (h1 of session 52, finding 3, 3 of 3).
    @Test(arguments: ["cut one byte", "flip a byte of the index"])
    func aPackWhoseIndexIsDamagedIsFound(_ damage: String) throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("barge-verifier-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let root = dir.path + "/root"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        let bytes = SampleData.generate(.text, bytes: 2 << 20, seed: 6)
        try Data(bytes).write(to: URL(fileURLWithPath: root + "/f.txt"))
        let store = try ColdStore(directory: dir.path + "/cold")
        _ = try store.demote(["f.txt"], root: root, encoder: AdaptiveEncoder(sendRate: ColdStore.archiveRate))
        let request = VerifyRequest(request: 1, files: [.init(path: "f.txt", size: UInt64(bytes.count))], chunks: [])
        #expect(Verifier.reply(to: request, root: root, cold: store).mismatches.isEmpty)

        let pack = try #require(try store.reader(for: "f.txt")?.packs.first)
        let path = store.layout.packPath(for: pack)
        let size = try #require(try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int)
        let handle = try #require(FileHandle(forUpdatingAtPath: path))
        if damage == "cut one byte" {
            try handle.truncate(atOffset: UInt64(size - 1))
        } else {
            // The index lies just before the 24-byte trailer.
            try handle.seek(toOffset: UInt64(size - 24 - 3))
            let byte = try #require(try handle.read(upToCount: 1)).first!
            try handle.seek(toOffset: UInt64(size - 24 - 3))
            try handle.write(contentsOf: Data([byte ^ 0x5A]))
        }
        try handle.close()
        let reply = Verifier.reply(to: request, root: root, cold: store)
        let reason = reply.mismatches.first?.reason ?? ""
        #expect(reply.mismatches.count == 1 && reason.hasPrefix("its cold copy reads back whole, but pack \(pack)"), "\(damage): \(reason)")
    }
}
