@testable import BargeTier
import Foundation
import Testing

/// The cold catalog's listing by prefix, a page at a time, on a real SQLite file.
struct ColdCatalogListingTests {
    /// Every file at a prefix or below it comes once, in byte order, whatever the page size: the
    /// prefix's own file first, and none of the names beside it ("a-b", "a0", "ab") that share
    /// its first bytes. Each page starts from its cursor (a range of the key), rather than
    /// collecting everything under the prefix again.
    @Test func aPrefixIsListedOncePageByPageAndNothingBesideIt() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("barge-cold-listing-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let catalog = try ColdCatalog(path: dir.appendingPathComponent("catalog.sqlite").path)
        let below = ["a/x", "a/y", "a/z/w", "a/\u{e9}", "a/Z", "a/-", "a/0"]
        let beside = ["a-b", "a0", "ab", "A", "", "b/a", "a.txt"]
        let files = (["a"] + below + beside).filter { !$0.isEmpty }.map {
            ColdFile(path: $0, size: 0, mode: 0o644, mtimeSeconds: 0, mtimeNanoseconds: 0, chunks: [])
        }
        try catalog.commit(packs: [], files: files)
        let expected = (["a"] + below).sorted { ColdCatalog.precedes($0, $1) }
        for limit in [1, 2, 3, 100] {
            var listed: [String] = []
            var after: String?
            while true {
                let page = try catalog.files(under: "a", after: after, limit: limit)
                #expect(page.count <= limit)
                listed += page.map(\.path)
                guard page.count == limit, let last = page.last else { break }
                after = last.path
            }
            #expect(listed == expected, "page size \(limit)")
        }
        // A cursor past the prefix's own file, or within the names below it.
        #expect(try catalog.files(under: "a", after: "a/x").map(\.path) == ["a/y", "a/z/w", "a/\u{e9}"])
        #expect(try catalog.files(under: "a/z").map(\.path) == ["a/z/w"])
        #expect(try catalog.files(under: "").count == files.count)
    }
}
