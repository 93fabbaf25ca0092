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
}
