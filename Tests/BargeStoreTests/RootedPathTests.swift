import BargeStore
import Foundation
import Testing

struct RootedPathTests {
    @Test(arguments: [("ds", ["ds"]), ("/ds", ["ds"]), ("./a//b/", ["a", "b"]), ("a/../b", ["b"]), ("", []), ("/", []),
                      ("données/évènement 1.nc", ["données", "évènement 1.nc"])])
    func pathsAreTakenUnderTheRoot(_ path: String, _ components: [String]) throws {
        let s = try Sandbox()
        let r = try RootedPath.resolve(path, under: s.root)
        #expect(r.components == components)
        #expect(r.absolute.hasPrefix(r.root))
    }

    @Test(arguments: ["..", "../x", "a/../../x", "/../etc/passwd", "a/b/../../../c"])
    func climbingOutIsRefused(_ path: String) throws {
        let s = try Sandbox()
        #expect(throws: StoreError.escapesRoot(path: path)) { try RootedPath.resolve(path, under: s.root) }
    }

    @Test func symlinksLeadingOutAreRefusedAndInsideOnesAllowed() throws {
        let s = try Sandbox()
        try s.file("sub/data.bin", "x")
        try s.link("out", to: "/etc")
        try s.link("up", to: "..")
        try s.link("in", to: "sub")
        try s.link("dangling", to: "/nonexistent-barge-dir")
        for path in ["out/passwd", "out", "up/secret", "dangling/file"] {
            #expect(throws: StoreError.self, "\(path)") { try RootedPath.resolve(path, under: s.root) }
        }
        do {
            _ = try RootedPath.resolve("out/passwd", under: s.root)
        } catch {
            #expect(error.description.contains("/etc"))
        }
        #expect(try RootedPath.resolve("in/data.bin", under: s.root).components == ["in", "data.bin"])
        #expect(try RootedPath.resolve("sub/new/file", under: s.root).components == ["sub", "new", "file"])
        // A dangling link and a loop are named for what they are, not as a way out of the root.
        try s.link("nowhere", to: "missing-inside")
        try s.link("loop1", to: "loop2")
        try s.link("loop2", to: "loop1")
        #expect {
            try RootedPath.resolve("nowhere/file", under: s.root)
        } throws: { error in
            "\(error)".contains("symbolic link to 'missing-inside', which does not exist") && !"\(error)".contains("outside")
        }
        #expect {
            try RootedPath.resolve("loop1/file", under: s.root)
        } throws: { error in
            "\(error)".contains("symbolic links that loop") && !"\(error)".contains("outside")
        }
    }

    @Test func badInputIsNamed() throws {
        let s = try Sandbox()
        #expect(throws: StoreError.self) { try RootedPath.resolve("a\u{0}b", under: s.root) }
        #expect(throws: StoreError.self) { try RootedPath.resolve(String(repeating: "x", count: 256), under: s.root) }
        #expect(throws: StoreError.self) { try RootedPath.resolve("ds", under: s.root + "/missing") }
    }
}
