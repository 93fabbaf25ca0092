import BargeBench
import BargeCodec
import BargeDigest
@testable import BargeTier
import Foundation
import Synchronization
import Testing

/// A root and a cold store in a temporary directory.
final class ColdSandbox {
    let dir: URL
    var root: String { dir.path + "/root" }
    var cold: String { dir.path + "/cold" }

    init() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("barge-cold-\(UUID().uuidString)")
        try FileManager.default.createDirectory(atPath: dir.path + "/root", withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(at: dir) }

    @discardableResult
    func file(_ path: String, _ bytes: [UInt8], mode: Int = 0o640, mtime: Int = 1_700_000_000) throws -> [UInt8] {
        let url = URL(fileURLWithPath: root + "/" + path)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(bytes).write(to: url)
        try FileManager.default.setAttributes([.posixPermissions: mode, .modificationDate: Date(timeIntervalSince1970: Double(mtime) + 0.25)],
                                              ofItemAtPath: url.path)
        return bytes
    }

    func read(_ path: String) -> [UInt8]? { FileManager.default.contents(atPath: root + "/" + path).map { Array($0) } }

    func attributes(_ path: String) throws -> (mode: Int, mtime: Double) {
        let a = try FileManager.default.attributesOfItem(atPath: root + "/" + path)
        return ((a[.posixPermissions] as! NSNumber).intValue, (a[.modificationDate] as! Date).timeIntervalSince1970)
    }

    /// Every byte of every file under the cold store (packs, catalog, config).
    func coldBytes() throws -> [UInt8] {
        var all: [UInt8] = []
        let e = FileManager.default.enumerator(atPath: cold)!
        while let name = e.nextObject() as? String {
            var isDir: ObjCBool = false
            if FileManager.default.fileExists(atPath: cold + "/" + name, isDirectory: &isDir), !isDir.boolValue {
                all += Array(FileManager.default.contents(atPath: cold + "/" + name) ?? Data())
            }
        }
        return all
    }
}

func archiveEncoder() -> AdaptiveEncoder { AdaptiveEncoder(sendRate: ColdStore.archiveRate) }

/// Flips one byte inside the blob of the chunk `id` where the store's catalog points it.
func flipByte(inChunk id: [UInt8], of store: ColdStore) throws {
    let location = try #require(try store.catalog.locations([id])[id])
    let handle = try FileHandle(forUpdating: URL(fileURLWithPath: store.layout.packPath(for: location.pack)))
    try handle.seek(toOffset: location.offset + 60)
    let old = try #require(try handle.read(upToCount: 1))
    try handle.seek(toOffset: location.offset + 60)
    try handle.write(contentsOf: Data([old[0] ^ 0x01]))
    try handle.close()
}

struct ColdStoreTests {
    /// Packs sealed in the background come back in the order given, each whole and named by its
    /// bytes; a seal that fails is reported by `wait` and leaves no temporary file.
    @Test func theSealerKeepsOrderAndReportsAFailedSeal() throws {
        let box = try ColdSandbox()
        let layout = ColdLayout(directory: box.cold)
        try layout.createDirectories()
        let sealer = PackSealer()
        var written: [[UInt8]] = []
        for k in 0..<3 {
            let w = try PackWriter(layout: layout, keys: nil)
            let blob = SampleData.random(bytes: 1000 + k, seed: UInt64(k))
            try blob.withUnsafeBytes { b in _ = try w.append(id: SHA256.hash(blob).bytes, encoded: b, rawLength: blob.count) }
            written.append(blob)
            sealer.seal(w)
        }
        let packs = try sealer.wait()
        #expect(packs.map { $0.entries.map(\.stored) } == written.map { [UInt32($0.count)] })
        for p in packs {
            let bytes = try #require(FileManager.default.contents(atPath: layout.packPath(for: p.id)))
            #expect(SHA256.hash(Array(bytes)).description == p.id && UInt64(bytes.count) == p.bytes)
        }

        // `packs/` is a file now: no pack can be moved into it.
        try FileManager.default.removeItem(atPath: layout.packsDirectory)
        #expect(FileManager.default.createFile(atPath: layout.packsDirectory, contents: Data()))
        let failing = PackSealer()
        let w = try PackWriter(layout: layout, keys: nil)
        failing.seal(w)
        #expect(throws: ColdStoreError.self) { try failing.wait() }
        #expect(try FileManager.default.contentsOfDirectory(atPath: layout.temporaryDirectory).filter { $0.hasPrefix("pack-") }.isEmpty)
    }

    @Test(arguments: [false, true])
    func demoteAndPromoteRoundTripByteForByteWithModesAndMtimes(encrypted: Bool) throws {
        let s = try ColdSandbox()
        let key: [UInt8]? = encrypted ? Array("a test key of thirty-two bytes!!".utf8) : nil
        let store = try ColdStore(directory: s.cold, keyMaterial: key)
        let files: [(String, [UInt8], Int)] = [
            ("raw/f32.bin", SampleData.generate(.float32, bytes: 3 << 20, seed: 3) + [1, 2, 3], 0o640),
            ("raw/deep/logs.txt", SampleData.generate(.text, bytes: 700_000, seed: 4), 0o600),
            ("raw/random.bin", SampleData.generate(.random, bytes: 1_500_000, seed: 5), 0o755),
            ("raw/empty", [], 0o644),
            ("raw/twice.bin", SampleData.generate(.int16, bytes: 1 << 20, seed: 6) + SampleData.generate(.int16, bytes: 1 << 20, seed: 6), 0o644),
        ]
        for (path, bytes, mode) in files { try s.file(path, bytes, mode: mode) }
        let before = try files.map { try s.attributes($0.0) }

        let demoted = try store.demote(files.map(\.0), root: s.root, encoder: archiveEncoder())
        #expect(demoted.skipped.isEmpty, "\(demoted.skipped)")
        #expect(demoted.files.count == files.count)
        for (path, _, _) in files { #expect(s.read(path) == nil, "\(path) still hot") }
        #expect(try store.catalog.file("raw/f32.bin")?.chunks.count == 4)
        let totals = try store.totals()
        #expect(totals.files == files.count && totals.packs == 1)
        #expect(totals.storedBytes < totals.logicalBytes, "\(totals)")
        // The repeated 1 MiB of twice.bin is stored once.
        #expect(totals.uniqueBytes == totals.logicalBytes - (1 << 20), "\(totals)")
        #expect(try store.verify(under: "", repair: false).damaged.isEmpty)

        let promoted = try store.promote(files.map(\.0), root: s.root)
        #expect(promoted.skipped.isEmpty, "\(promoted.skipped)")
        for ((path, bytes, _), attributes) in zip(files, before) {
            #expect(s.read(path) == bytes, "\(path)")
            let after = try s.attributes(path)
            #expect(after.mode == attributes.mode && abs(after.mtime - attributes.mtime) < 1e-6, "\(path): \(after) vs \(attributes)")
        }
        #expect(try store.catalog.files(under: "").isEmpty)
        let leftovers = try FileManager.default.subpathsOfDirectory(atPath: s.root).filter { $0.hasSuffix(".barge-partial") }
        #expect(leftovers.isEmpty)
    }

    @Test func aSecondCopyAddsAlmostNothing() throws {
        let s = try ColdSandbox()
        let store = try ColdStore(directory: s.cold)
        var paths: [String] = []
        for i in 0..<6 {
            let bytes = SampleData.generate(i % 2 == 0 ? .float32 : .text, bytes: 2 << 20, seed: UInt64(i))
            try s.file("a/\(i)", bytes)
            try s.file("b/\(i)", bytes)
            paths.append("\(i)")
        }
        let first = try store.demote(paths.map { "a/" + $0 }, root: s.root, encoder: archiveEncoder())
        let second = try store.demote(paths.map { "b/" + $0 }, root: s.root, encoder: archiveEncoder())
        #expect(first.files.count == 6 && second.files.count == 6)
        #expect(second.newChunks == 0 && second.storedBytes == 0, "\(second.storedBytes)")
        #expect(try store.totals().packs == 1)
    }

    /// Large files are demoted in content-defined chunks, as they are cut in transit: the same
    /// bytes shifted by an insertion share all but the chunks around it. With fixed chunks (the
    /// agent's `--cdc-above off`) the shifted copy shares nothing.
    @Test(arguments: [true, false])
    func aShiftedCopySharesItsChunksWhenCutByContent(contentDefined: Bool) throws {
        let s = try ColdSandbox()
        let store = try ColdStore(directory: s.cold)
        let field = SampleData.generate(.float32, bytes: 12 << 20, seed: 9)
        try s.file("a/field.f32", field)
        try s.file("b/field.f32", [1, 2, 3] + field)
        let above: UInt64? = contentDefined ? 8 << 20 : nil
        let first = try store.demote(["a/field.f32"], root: s.root, encoders: [archiveEncoder()], contentDefinedAbove: above)
        let second = try store.demote(["b/field.f32"], root: s.root, encoders: [archiveEncoder()], contentDefinedAbove: above)
        #expect(first.skipped.isEmpty && second.skipped.isEmpty)
        let chunks = try #require(try store.catalog.file("b/field.f32")?.chunks)
        #expect(chunks.reduce(0) { $0 + Int($1.length) } == field.count + 3)
        if contentDefined {
            #expect(chunks.contains { $0.length != 1 << 20 }, "cut by content, not at every MiB")
            #expect(second.newChunks <= 2, "\(second.newChunks) new of \(chunks.count)")
            #expect(second.storedBytes * 5 < first.storedBytes, "\(second.storedBytes) against \(first.storedBytes)")
        } else {
            #expect(chunks.allSatisfy { $0.length == 1 << 20 || $0 == chunks.last })
            #expect(second.newChunks == chunks.count)
        }
        let promoted = try store.promote(["a/field.f32", "b/field.f32"], root: s.root)
        #expect(promoted.skipped.isEmpty, "\(promoted.skipped)")
        #expect(s.read("a/field.f32") == field && s.read("b/field.f32") == [1, 2, 3] + field)
    }

    @Test func withoutTheKeyNothingInTheStoreIsReadable() throws {
        let s = try ColdSandbox()
        let marker = Array("CONFIDENTIAL-PATIENT-RECORD-".utf8)
        var content: [UInt8] = []
        while content.count < 3 << 20 { content += marker + Array("\(content.count)".utf8) }
        try s.file("records.txt", content)
        let key = Array((0..<32).map { UInt8($0) })
        let store = try ColdStore(directory: s.cold, keyMaterial: key)
        #expect(try store.demote(["records.txt"], root: s.root, encoder: archiveEncoder()).files.count == 1)
        let stored = try s.coldBytes()
        #expect(!stored.isEmpty)
        #expect(stored.firstRange(of: marker.prefix(12)) == nil, "the plaintext is in the cold store")
        // The chunk ids it holds are keyed, not the plain SHA-256 of the content.
        let sha = SHA256.hash(Array(content.prefix(1 << 20))).bytes
        #expect(stored.firstRange(of: sha) == nil)

        #expect(throws: ColdStoreError.self) { _ = try ColdStore(directory: s.cold) }
        do {
            _ = try ColdStore(directory: s.cold, keyMaterial: Array(repeating: 7, count: 32))
            Issue.record("a wrong key was taken")
        } catch { #expect("\(error)".contains("does not hold the key"), "\(error)") }
        do {
            _ = try ColdStore(directory: s.cold)
            Issue.record("no key was taken")
        } catch { #expect("\(error)".contains("is encrypted: pass --cold-key-file"), "\(error)") }
        // With the key it comes back whole.
        let again = try ColdStore(directory: s.cold, keyMaterial: key)
        #expect(try again.promote(["records.txt"], root: s.root).files.count == 1)
        #expect(s.read("records.txt") == content)
    }

    @Test func aFlippedByteInAPackIsFoundAndRepairedFromAnotherCopy() throws {
        let s = try ColdSandbox()
        let store = try ColdStore(directory: s.cold)
        let bytes = SampleData.generate(.float64, bytes: 2 << 20, seed: 9)
        try s.file("x.bin", bytes)
        _ = try store.demote(["x.bin"], root: s.root, encoder: archiveEncoder())
        let file = try #require(try store.catalog.file("x.bin"))
        // A second pack holding the same chunks, as two agents demoting at once can leave.
        let writer = try PackWriter(layout: store.layout, keys: nil)
        let encoder = ChunkEncoder()
        for (i, chunk) in file.chunks.enumerated() {
            let encoded = try encoder.encode(Array(bytes[(i << 20)..<((i + 1) << 20)]), as: .zstd(1))
            try encoded.withUnsafeBytes { try writer.append(id: chunk.id, encoded: $0, rawLength: Int(chunk.length)) }
        }
        let spare = try writer.seal()
        // Committed as a second demotion commits its packs (its chunk rows are ignored: the ids exist).
        try store.catalog.commit(packs: [spare], files: [])

        let location = try #require(try store.catalog.locations([file.chunks[1].id])[file.chunks[1].id])
        let path = store.layout.packPath(for: location.pack)
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: path))
        try handle.seek(toOffset: location.offset + 60)
        let old = try handle.read(upToCount: 1)!
        try handle.seek(toOffset: location.offset + 60)
        try handle.write(contentsOf: Data([old[0] ^ 0x01]))
        try handle.close()

        let found = try store.verify(under: "", repair: false)
        #expect(found.damaged.count == 1 && found.damaged[0].contains(location.pack), "\(found.damaged)")
        let fixed = try store.verify(under: "", repair: true)
        #expect(fixed.repaired == 1 && fixed.damaged.isEmpty, "\(fixed)")
        #expect(try store.catalog.locations([file.chunks[1].id])[file.chunks[1].id]?.pack == spare.id)
        #expect(try store.verify(under: "", repair: false).damaged.isEmpty)
        _ = try store.promote(["x.bin"], root: s.root)
        #expect(s.read("x.bin") == bytes)
    }

    @Test func gcRemovesOnlyPacksNothingReferences() throws {
        let s = try ColdSandbox()
        let store = try ColdStore(directory: s.cold)
        let a = try s.file("a.bin", SampleData.generate(.random, bytes: 1 << 20, seed: 1))
        let b = try s.file("b.bin", SampleData.generate(.random, bytes: 1 << 20, seed: 2))
        _ = try store.demote(["a.bin"], root: s.root, encoder: archiveEncoder())
        _ = try store.demote(["b.bin"], root: s.root, encoder: archiveEncoder())
        #expect(try store.packsOnDisk().count == 2)
        // Left by a crash: a temporary pack, and a sealed pack the catalog never recorded.
        FileManager.default.createFile(atPath: store.layout.temporaryDirectory + "/pack-0123.tmp", contents: Data([1, 2, 3]))
        // And a config a start wrote before it was killed, before its link; one being linked now
        // (written within the last minute) stays.
        let stray = store.layout.temporaryDirectory + "/config-00ff.json"
        FileManager.default.createFile(atPath: stray, contents: Data("{}".utf8))
        try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSinceNow: -600)], ofItemAtPath: stray)
        let recent = store.layout.temporaryDirectory + "/config-11ee.json"
        FileManager.default.createFile(atPath: recent, contents: Data("{}".utf8))
        let orphan = try PackWriter(layout: store.layout, keys: nil)
        try ChunkEncoder().encode([1, 2, 3], as: .none).withUnsafeBytes { try orphan.append(id: Array(repeating: 9, count: 32), encoded: $0, rawLength: 3) }
        _ = try orphan.seal()
        #expect(try store.packsOnDisk().count == 3)

        let nothing = try store.gc()
        #expect(nothing.packsRemoved == 1 && nothing.packsKept == 2 && nothing.temporaryRemoved == 2, "\(nothing)")
        #expect(!FileManager.default.fileExists(atPath: stray) && FileManager.default.fileExists(atPath: recent))
        _ = try store.promote(["a.bin"], root: s.root)
        let one = try store.gc()
        #expect(one.packsRemoved == 1 && one.packsKept == 1, "\(one)")
        _ = try store.promote(["b.bin"], root: s.root)
        #expect(s.read("a.bin") == a && s.read("b.bin") == b)
    }

    @Test func redoneAfterACrashEachFileEndsWholeInOneTier() throws {
        let s = try ColdSandbox()
        let store = try ColdStore(directory: s.cold)
        let bytes = try s.file("d/x.bin", SampleData.generate(.text, bytes: 1_300_000, seed: 2))
        // A crash after the catalog commit and before the unlink: both tiers hold it.
        _ = try store.demote(["d/x.bin"], root: s.root, encoder: archiveEncoder())
        try s.file("d/x.bin", bytes)  // the hot copy, as it was (same size and mtime)
        let redo = try store.demote(["d/x.bin"], root: s.root, encoder: archiveEncoder())
        #expect(redo.files.count == 1 && redo.newChunks == 0 && s.read("d/x.bin") == nil)

        // A crash in the middle of a promotion: a partial copy is left behind.
        FileManager.default.createFile(atPath: s.root + "/d/x.bin.barge-partial", contents: Data(repeating: 0x55, count: 4096))
        _ = try store.promote(["d/x.bin"], root: s.root)
        #expect(s.read("d/x.bin") == bytes)
        #expect(!FileManager.default.fileExists(atPath: s.root + "/d/x.bin.barge-partial"))
        // A crash after the rename and before the catalog update: promoting again only updates it.
        _ = try store.demote(["d/x.bin"], root: s.root, encoder: archiveEncoder())
        _ = try store.promote(["d/x.bin"], root: s.root)
        let file = ColdFile(path: "d/x.bin", size: UInt64(bytes.count), mode: 0o640, mtimeSeconds: 1_700_000_000, mtimeNanoseconds: 250_000_000, chunks: [])
        try store.catalog.commit(packs: [], files: [file])
        #expect(try store.promote(["d/x.bin"], root: s.root).files.count == 1)
        #expect(try store.catalog.file("d/x.bin") == nil && s.read("d/x.bin") == bytes)

        // A file changed while it was being demoted stays hot.
        #expect(try store.demote(["nope"], root: s.root, encoder: archiveEncoder()).skipped.count == 1)
    }

    /// A page of a promotion that fails with an error drops the files it had promoted from the
    /// catalog before it throws: none stays listed cold beside its hot copy until a resume (a
    /// re-sync meanwhile placed a changed one cold again). The page asked again promotes the
    /// rest. (A page cut short by a crash keeps them listed, and the page asked again counts
    /// them: `TierProcessTests.aKilledAgentDuringDemotionAndPromotionLosesNothing`.)
    @Test func aPageFailingWithAnErrorLeavesNoFileInBothTiers() throws {
        let s = try ColdSandbox()
        let store = try ColdStore(directory: s.cold)
        let a = try s.file("a.bin", SampleData.generate(.text, bytes: 300_000, seed: 41))
        let b = try s.file("b.bin", SampleData.generate(.int16, bytes: 200_000, seed: 42))
        let c = try s.file("z/c.bin", SampleData.generate(.text, bytes: 100_000, seed: 43))
        let page = ["a.bin", "b.bin", "z/c.bin"]
        #expect(try store.demote(page, root: s.root, encoder: archiveEncoder()).files.count == 3)
        // A file where the last one's directory was: its promotion cannot create it.
        try FileManager.default.removeItem(atPath: s.root + "/z")
        FileManager.default.createFile(atPath: s.root + "/z", contents: Data("in the way".utf8))
        #expect(throws: (any Error).self) { try store.promote(page, root: s.root) }
        #expect(s.read("a.bin") == a && s.read("b.bin") == b)
        #expect(try store.catalog.file("a.bin") == nil && store.catalog.file("b.bin") == nil && store.catalog.file("z/c.bin") != nil)

        try FileManager.default.removeItem(atPath: s.root + "/z")
        let again = try store.promote(["z/c.bin"], root: s.root)
        #expect(again.files.map(\.path) == ["z/c.bin"] && again.logicalBytes == UInt64(c.count), "\(again.files.map(\.path)) \(again.skipped)")
        #expect(try s.read("z/c.bin") == c && store.catalog.file("z/c.bin") == nil)
    }

    /// A tier job's pages run one at a time, whoever asks (the lock is a file in the store, so
    /// the other agent of the site waits too): a page asked again while a run of it still goes
    /// waits for it. Another job's page does not wait.
    @Test func aJobsPagesRunOneAtATime() throws {
        let s = try ColdSandbox()
        let store = try ColdStore(directory: s.cold)
        let other = try ColdStore(directory: s.cold)  // another agent's, as far as locks go
        let events = Mutex<[String]>([])
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) let first = store
        Thread.detachNewThread {
            try? first.withPageLock(job: "j-1") {
                events.withLock { $0.append("first in") }
                usleep(300_000)
                events.withLock { $0.append("first out") }
            }
            done.signal()
        }
        usleep(80_000)
        try other.withPageLock(job: "j-2") { events.withLock { $0.append("other job") } }
        try other.withPageLock(job: "j-1") { events.withLock { $0.append("again in") } }
        done.wait()
        #expect(events.withLock { $0 } == ["first in", "other job", "first out", "again in"])
    }

    /// A file promoted before a crash whose catalog row stayed (the page's rows go at its end)
    /// is counted as moved, bytes too, by the page asked again, which only drops the row.
    @Test func aFileHotWithItsRowStillListedCountsAsMoved() throws {
        let s = try ColdSandbox()
        let store = try ColdStore(directory: s.cold)
        let a = try s.file("a.bin", SampleData.generate(.text, bytes: 300_000, seed: 44))
        _ = try store.demote(["a.bin"], root: s.root, encoder: archiveEncoder())
        let row = try #require(try store.catalog.file("a.bin"))
        _ = try store.promote(["a.bin"], root: s.root)
        try store.catalog.commit(packs: [], files: [row])  // as the crash left it
        let again = try store.promote(["a.bin"], root: s.root)
        #expect(again.files.map(\.path) == ["a.bin"] && again.logicalBytes == UInt64(a.count))
        #expect(try store.catalog.file("a.bin") == nil && s.read("a.bin") == a)
    }

    /// A promotion opens only the packs that hold the file's chunks: with another file's pack
    /// gone from the disk, it still promotes, and reads no more than its own stored bytes.
    @Test func aPromotionReadsOnlyThePacksItNeeds() throws {
        let s = try ColdSandbox()
        let store = try ColdStore(directory: s.cold)
        let a = try s.file("a.bin", SampleData.generate(.int16, bytes: 3 << 20, seed: 21))
        try s.file("b.bin", SampleData.generate(.text, bytes: 3 << 20, seed: 22))
        let first = try store.demote(["a.bin"], root: s.root, encoder: archiveEncoder())
        _ = try store.demote(["b.bin"], root: s.root, encoder: archiveEncoder())
        let packs = try store.packsOnDisk()
        #expect(packs.count == 2)
        let aPacks = Set(try store.catalog.locations(try #require(try store.catalog.file("a.bin")).chunks.map(\.id)).values.map(\.pack))
        for pack in packs where !aPacks.contains(pack) { try FileManager.default.removeItem(atPath: store.layout.packPath(for: pack)) }
        let promoted = try store.promote(["a.bin"], root: s.root)
        #expect(promoted.skipped.isEmpty, "\(promoted.skipped)")
        #expect(s.read("a.bin") == a)
        #expect(promoted.packBytesRead <= first.storedBytes, "\(promoted.packBytesRead) read for \(first.storedBytes) stored")
    }

    /// A chunk damaged in its only pack stops that file's promotion: nothing appears under its
    /// name, no partial file is left, and it stays cold, listed with the reason.
    @Test func aDamagedChunkLeavesTheFileColdAndNoPartial() throws {
        let s = try ColdSandbox()
        let store = try ColdStore(directory: s.cold)
        let good = try s.file("good.txt", SampleData.generate(.text, bytes: 1 << 20, seed: 31))
        try s.file("bad.bin", SampleData.generate(.float64, bytes: 2 << 20, seed: 32))
        _ = try store.demote(["good.txt", "bad.bin"], root: s.root, encoder: archiveEncoder())
        let bad = try #require(try store.catalog.file("bad.bin"))
        try flipByte(inChunk: bad.chunks[1].id, of: store)

        let promoted = try store.promote(["bad.bin", "good.txt"], root: s.root)
        #expect(promoted.files.map(\.path) == ["good.txt"] && s.read("good.txt") == good)
        #expect(promoted.skipped.map(\.path) == ["bad.bin"] && promoted.skipped.first?.reason.contains("damaged") == true,
                "\(promoted.skipped)")
        #expect(s.read("bad.bin") == nil)
        #expect(try FileManager.default.contentsOfDirectory(atPath: s.root).filter { $0.contains("barge-partial") }.isEmpty)
        #expect(try store.catalog.file("bad.bin") == bad)
    }

    /// A pack that is gone is damage: the files that need it stay cold, named as damaged, and
    /// the others are promoted. Before, the missing pack failed the whole promotion, and the
    /// files after it were never promoted (h3 of session 49).
    @Test func aMissingPackLeavesItsFilesColdAndTheRestArePromoted() throws {
        let s = try ColdSandbox()
        let store = try ColdStore(directory: s.cold)
        let a = try s.file("a.bin", SampleData.generate(.random, bytes: 1 << 20, seed: 51))
        try s.file("m.bin", SampleData.generate(.random, bytes: 1 << 20, seed: 52))
        let z = try s.file("z.bin", SampleData.generate(.random, bytes: 1 << 20, seed: 53))
        _ = try store.demote(["m.bin"], root: s.root, encoder: archiveEncoder())
        _ = try store.demote(["a.bin", "z.bin"], root: s.root, encoder: archiveEncoder())
        let m = try #require(try store.catalog.file("m.bin"))
        let pack = try #require(try store.catalog.locations([m.chunks[0].id])[m.chunks[0].id]?.pack)
        try FileManager.default.removeItem(atPath: store.layout.packPath(for: pack))
        let outcome = try store.promote(["a.bin", "m.bin", "z.bin"], root: s.root)
        #expect(outcome.files.map(\.path) == ["a.bin", "z.bin"], "\(outcome.files.map(\.path))")
        #expect(outcome.skipped.map(\.path) == ["m.bin"] && outcome.skipped[0].reason.hasPrefix(ColdStoreError.damagedPrefix), "\(outcome.skipped)")
        #expect(s.read("a.bin") == a && s.read("z.bin") == z && s.read("m.bin") == nil)
    }

    /// A file whose chunks are already stored (dedup) is demoted only if those older blobs read
    /// back whole: one damaged since it was written leaves the new file hot, named as damage, so
    /// its hot copy, the only whole one, is kept. Before, the demotion removed it (a reading
    /// review, h4 of session 48). The same file demoted again after a repair goes cold.
    @Test func aFileDedupedAgainstADamagedBlobStaysHot() throws {
        let s = try ColdSandbox()
        let store = try ColdStore(directory: s.cold)
        let bytes = try s.file("first.bin", SampleData.generate(.float64, bytes: 2 << 20, seed: 41))
        _ = try store.demote(["first.bin"], root: s.root, encoder: archiveEncoder())
        let first = try #require(try store.catalog.file("first.bin"))
        try flipByte(inChunk: first.chunks[1].id, of: store)

        try s.file("second.bin", bytes)
        let outcome = try store.demote(["second.bin"], root: s.root, encoder: archiveEncoder())
        #expect(outcome.files.isEmpty, "\(outcome.files.map(\.path))")
        #expect(outcome.skipped.map(\.path) == ["second.bin"] && outcome.skipped[0].reason.hasPrefix(ColdStoreError.damagedPrefix), "\(outcome.skipped)")
        #expect(s.read("second.bin") == bytes)
        #expect(try store.catalog.file("second.bin") == nil)
    }

    /// A demotion's commit leaves out a file one of whose chunks is no longer listed
    /// (`verify --repair` forgot it as damaged, holding the store's lock shared as a demotion
    /// does): the file is not made cold. Before, its row named a chunk the store did not have,
    /// and its hot copy was removed.
    @Test func aCommitLeavesOutAFileWhoseChunkWasForgotten() throws {
        let s = try ColdSandbox()
        let store = try ColdStore(directory: s.cold)
        try s.file("a.bin", SampleData.generate(.float64, bytes: 2 << 20, seed: 42))
        _ = try store.demote(["a.bin"], root: s.root, encoder: archiveEncoder())
        let a = try #require(try store.catalog.file("a.bin"))
        try store.catalog.forgetChunk(a.chunks[0].id)
        var copy = a
        copy.path = "b.bin"
        var whole = a
        whole.path = "c.bin"
        whole.chunks = [a.chunks[1]]
        whole.size = UInt64(a.chunks[1].length)
        let left = try store.catalog.commit(packs: [], files: [copy, whole])
        #expect(left == ["b.bin"])
        #expect(try store.catalog.file("b.bin") == nil && store.catalog.file("c.bin") == whole)
    }

    /// A catalog row another process changed (the catalog is in the shared cold directory, meant
    /// to be read without Barge) makes its file damaged, named, not a trap: chunks that do not
    /// make up the file's size read past the chunk list, and a negative size, mode or mtime
    /// trapped their conversions. The other files still come back.
    @Test func aCatalogRowThatDoesNotAddUpIsDamagedNotATrap() throws {
        let s = try ColdSandbox()
        let store = try ColdStore(directory: s.cold)
        let good = try s.file("good.txt", SampleData.generate(.text, bytes: 1 << 20, seed: 41))
        try s.file("short.bin", SampleData.generate(.float64, bytes: 3 << 20, seed: 42))
        try s.file("negative.bin", SampleData.generate(.float64, bytes: 1 << 20, seed: 43))
        _ = try store.demote(["good.txt", "short.bin", "negative.bin"], root: s.root, encoder: archiveEncoder())
        #expect(try #require(try store.catalog.file("short.bin")).chunks.count > 1)
        let edit = Process()
        edit.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        edit.arguments = ["python3", "-c", """
            import sqlite3, sys
            db = sqlite3.connect(sys.argv[1])
            chunks = db.execute("SELECT chunks FROM files WHERE path = 'short.bin'").fetchone()[0]
            db.execute("UPDATE files SET chunks = ? WHERE path = 'short.bin'", (chunks[:36],))
            db.execute("UPDATE files SET size = -5, mode = -1, mtimeNanoseconds = -7 WHERE path = 'negative.bin'")
            db.commit()
            """, s.cold + "/catalog.sqlite"]
        try edit.run()
        edit.waitUntilExit()
        #expect(edit.terminationStatus == 0)
        for path in ["short.bin", "negative.bin"] {
            #expect(throws: ColdStoreError.self, "\(path)") { _ = try store.reader(for: path) }
        }
        let promoted = try store.promote(["short.bin", "negative.bin", "good.txt"], root: s.root)
        #expect(promoted.files.map(\.path) == ["good.txt"] && s.read("good.txt") == good)
        #expect(Set(promoted.skipped.map(\.path)) == ["short.bin", "negative.bin"], "\(promoted.skipped)")
        #expect(promoted.skipped.allSatisfy { $0.reason.contains("damaged") }, "\(promoted.skipped)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: s.root).filter { $0.contains("barge-partial") }.isEmpty)
    }

    /// A demotion larger than a pack fills packs of about 64 MiB, each written once, and the
    /// files come back whole.
    @Test func aLargeDemotionRollsOverIntoPacksOfAbout64MiB() throws {
        let s = try ColdSandbox()
        let store = try ColdStore(directory: s.cold)
        var files: [(String, [UInt8])] = []
        for i in 0..<3 {
            files.append(("big/\(i).bin", try s.file("big/\(i).bin", SampleData.generate(.random, bytes: 30 << 20, seed: UInt64(40 + i)))))
        }
        let demoted = try store.demote(files.map(\.0), root: s.root, encoders: ColdStore.archiveEncoders())
        #expect(demoted.skipped.isEmpty && demoted.files.count == 3)
        let packs = try store.packsOnDisk()
        #expect(packs.count == 2, "\(packs.count) packs for 90 MiB")
        for pack in packs {
            let size = try #require(try FileManager.default.attributesOfItem(atPath: store.layout.packPath(for: pack))[.size] as? NSNumber).intValue
            #expect(size <= PackFormat.targetPackBytes + (5 << 20), "\(pack): \(size) bytes")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: store.layout.temporaryDirectory).isEmpty)
        _ = try store.promote(files.map(\.0), root: s.root)
        for (path, bytes) in files { #expect(s.read(path) == bytes, "\(path)") }
    }

    /// `gc` never races a demotion: run at the same moment again and again, from another
    /// `ColdStore` on the same directory (as another agent of the site), it waits for the
    /// demotion's lock, so it never removes a pack the demotion is writing or has yet to commit.
    @Test func gcRunAlongsideADemotionRemovesNothingItNeeds() throws {
        let s = try ColdSandbox()
        let other = try ColdStore(directory: s.cold)
        var files: [(String, [UInt8])] = []
        // No promotion until the end, so no pack is ever unreferenced: gc must remove none.
        for round in 0..<4 {
            let path = "r\(round).bin"
            files.append((path, try s.file(path, SampleData.generate(.float32, bytes: 6 << 20, seed: UInt64(50 + round)))))
            let demotion = DispatchGroup()
            nonisolated(unsafe) var failure: Error?
            let (cold, root) = (s.cold, s.root)
            DispatchQueue.global().async(group: demotion) {
                do { _ = try ColdStore(directory: cold).demote([path], root: root, encoder: archiveEncoder()) } catch { failure = error }
            }
            var removed = 0, runs = 0
            while demotion.wait(timeout: .now()) == .timedOut {
                removed += try other.gc().packsRemoved
                runs += 1
            }
            removed += try other.gc().packsRemoved
            #expect(failure == nil, "\(String(describing: failure))")
            #expect(removed == 0, "round \(round): gc removed \(removed) packs in \(runs + 1) runs")
        }
        #expect(try other.verify(under: "", repair: false).damaged.isEmpty)
        let promoted = try other.promote(files.map(\.0), root: s.root)
        #expect(promoted.skipped.isEmpty, "\(promoted.skipped)")
        for (path, bytes) in files { #expect(s.read(path) == bytes, "\(path)") }
    }

    /// Putting back the directory times a crash left waits for a page under way (here one that
    /// holds the store's lock, as a stopped agent's page still running does): that page changes
    /// the directories it recorded until it ends. Before, the times were put back and forgotten
    /// meanwhile, and the directory kept the time of the page's last rename (a black-box review:
    /// 4 of about 25 promotions interrupted by SIGTERM).
    @Test func directoryTimesArePutBackOnlyOnceNoPageIsUnderWay() throws {
        let s = try ColdSandbox()
        let store = try ColdStore(directory: s.cold)
        try s.file("d/f", [1, 2, 3])
        try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSince1970: 1_500_000_000)], ofItemAtPath: s.root + "/d")
        try store.catalog.rememberDirectory("d", seconds: 1_400_000_000, nanoseconds: 0)
        let page = try StoreLock(store.layout.lockPath, exclusive: false)
        let restored = DispatchGroup()
        nonisolated(unsafe) var failure: Error?
        let (cold, root) = (s.cold, s.root)
        DispatchQueue.global().async(group: restored) {
            do { try ColdStore(directory: cold).restoreDirectoryTimes(under: "", root: root) } catch { failure = error }
        }
        #expect(restored.wait(timeout: .now() + 0.5) == .timedOut, "put back while a page was under way")
        #expect(try s.attributes("d").mtime == 1_500_000_000)
        #expect(try store.catalog.rememberedDirectories(under: "").count == 1)
        page.release()
        #expect(restored.wait(timeout: .now() + 10) == .success)
        #expect(failure == nil, "\(String(describing: failure))")
        #expect(try s.attributes("d").mtime == 1_400_000_000)
        #expect(try store.catalog.rememberedDirectories(under: "").isEmpty)
    }

    /// A transfer's partial file (`NAME.barge-partial`, being written or left by a crash) is
    /// never demoted: its transfer renames it, or the next one replaces it. It stays hot, with
    /// the reason, and the file beside it goes cold.
    @Test func aTransfersPartialFileIsNotDemoted() throws {
        let s = try ColdSandbox()
        let store = try ColdStore(directory: s.cold)
        let partial = try s.file("d/x.bin.barge-partial", SampleData.generate(.text, bytes: 100_000, seed: 61))
        try s.file("d/y.bin", SampleData.generate(.text, bytes: 100_000, seed: 62))
        let demoted = try store.demote(["d/x.bin.barge-partial", "d/y.bin"], root: s.root, encoder: archiveEncoder())
        #expect(demoted.files.map(\.path) == ["d/y.bin"])
        #expect(demoted.skipped.map(\.path) == ["d/x.bin.barge-partial"] && demoted.skipped[0].reason.contains("partial"), "\(demoted.skipped)")
        #expect(s.read("d/x.bin.barge-partial") == partial && s.read("d/y.bin") == nil)
        #expect(try store.catalog.file("d/x.bin.barge-partial") == nil)
    }

    /// Packs are written and read back before anything hot goes: a demotion whose packs cannot be
    /// stored fails, and every file stays hot, untouched, with no catalog row.
    @Test func aDemotionWhosePacksCannotBeStoredLeavesEveryFileHot() throws {
        let s = try ColdSandbox()
        let store = try ColdStore(directory: s.cold)
        let a = try s.file("a.txt", SampleData.generate(.text, bytes: 300_000, seed: 81))
        let b = try s.file("b.bin", SampleData.generate(.int16, bytes: 2 << 20, seed: 82))
        // `packs/` is a file now: no sealed pack can be moved into it.
        try FileManager.default.removeItem(atPath: store.layout.packsDirectory)
        #expect(FileManager.default.createFile(atPath: store.layout.packsDirectory, contents: Data()))
        #expect(throws: ColdStoreError.self) { try store.demote(["a.txt", "b.bin"], root: s.root, encoder: archiveEncoder()) }
        #expect(s.read("a.txt") == a && s.read("b.bin") == b)
        #expect(try store.catalog.files(under: "").isEmpty)
        #expect(try FileManager.default.contentsOfDirectory(atPath: store.layout.temporaryDirectory).isEmpty)
    }

    /// The hot copy is removed through its directory opened beneath the root. A directory moved
    /// out of the root and replaced by a link to where it went, after the files were stored and
    /// before their hot copies go, does not take the removal outside: the file there stays, and
    /// so does the hot copy the root now shows; its catalog row goes. Before, `unlink` of the
    /// absolute path followed the link and removed the file outside the root.
    @Test func aDirectorySwappedForALinkOutOfTheRootKeepsTheRemovalInside() throws {
        let s = try ColdSandbox()
        let store = try ColdStore(directory: s.cold)
        let bytes = try s.file("d/x.bin", SampleData.generate(.text, bytes: 100_000, seed: 91))
        try s.file("e/y.bin", SampleData.generate(.text, bytes: 100_000, seed: 92))
        let outside = s.dir.path + "/outside"
        try FileManager.default.createDirectory(atPath: outside, withIntermediateDirectories: true)
        store.willRemoveHotCopies = {
            try? FileManager.default.moveItem(atPath: s.root + "/d", toPath: outside + "/d")
            try? FileManager.default.createSymbolicLink(atPath: s.root + "/d", withDestinationPath: "../outside/d")
        }
        let demoted = try store.demote(["d/x.bin", "e/y.bin"], root: s.root, encoder: archiveEncoder())
        let keptOutside = FileManager.default.contents(atPath: outside + "/d/x.bin").map { Array($0) } == bytes
        #expect(keptOutside, "the file outside the root was removed or changed")
        #expect(demoted.files.map(\.path) == ["e/y.bin"] && s.read("e/y.bin") == nil)
        #expect(demoted.skipped.map(\.path) == ["d/x.bin"], "\(demoted.skipped)")
        #expect(try store.catalog.file("d/x.bin") == nil)
    }
}
