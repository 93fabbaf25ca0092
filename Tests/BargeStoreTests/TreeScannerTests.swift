import BargeStore
import Foundation
import Testing

struct TreeScannerTests {
    @Test func everyKindOfEntryWithItsAttributes() throws {
        let s = try Sandbox()
        try s.file("ds/a.txt", "hello", mode: 0o640)
        try s.file("ds/empty", "")
        try s.file("ds/sub/deep/x.bin", "12345678", mode: 0o755)
        try s.file("ds/naïve name\nwith newline", "odd")
        try FileManager.default.createDirectory(atPath: s.root + "/ds/empty-dir", withIntermediateDirectories: true)
        try s.link("ds/link", to: "sub/deep/x.bin")
        try s.link("ds/abs-link", to: "/etc/passwd")
        #expect(mkfifo(s.root + "/ds/fifo", 0o644) == 0)
        // A name that is not UTF-8: "bad-" then the byte 0xFF.
        let raw: [UInt8] = Array((s.root + "/ds/bad-").utf8) + [0xFF, 0x00]
        let fd = raw.withUnsafeBufferPointer { p in p.baseAddress!.withMemoryRebound(to: CChar.self, capacity: raw.count) { open($0, O_CREAT | O_WRONLY, 0o644) } }
        #expect(fd >= 0)
        close(fd)

        let result = try TreeScanner.scan(try RootedPath.resolve("ds", under: s.root))
        let byPath = Dictionary(uniqueKeysWithValues: result.entries.map { ($0.path, $0) })
        #expect(result.entries.map(\.path) == ["a.txt", "abs-link", "empty", "empty-dir", "link", "naïve name\nwith newline",
                                               "sub", "sub/deep", "sub/deep/x.bin"])
        #expect(byPath["a.txt"]?.size == 5 && byPath["a.txt"]?.mode == 0o640 && byPath["a.txt"]?.kind == .file)
        #expect(byPath["empty"]?.size == 0)
        #expect(byPath["empty-dir"]?.kind == .directory)
        #expect(byPath["link"]?.kind == .symlink && byPath["link"]?.linkTarget == "sub/deep/x.bin")
        #expect(byPath["abs-link"]?.linkTarget == "/etc/passwd", "links are listed, never followed")
        #expect(byPath["sub/deep/x.bin"]?.mode == 0o755)
        #expect(result.skipped.count == 2)
        #expect(result.skipped.contains { $0.description.contains("bad-\\xff") })
        #expect(result.skipped.contains { $0.description.contains("fifo") })
    }

    @Test func aSingleFileScansAsItsName() throws {
        let s = try Sandbox()
        try s.file("one.dat", "abc")
        let result = try TreeScanner.scan(try RootedPath.resolve("one.dat", under: s.root))
        #expect(result.entries.map(\.path) == ["one.dat"])
        #expect(throws: StoreError.self) { try TreeScanner.scan(try RootedPath.resolve("missing", under: s.root)) }
    }
}
