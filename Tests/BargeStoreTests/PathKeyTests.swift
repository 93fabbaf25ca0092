import BargeStore
import Testing

/// Paths are told apart by their bytes: Swift's `String` takes "é" (U+00E9) and "e\u{301}" for one
/// string, and splits "a/\u{301}b" as one character-level part.
struct PathKeyTests {
    let nfc = "\u{E9}"
    let nfd = "e\u{301}"

    @Test func canonicallyEquivalentNamesAreTwoKeys() {
        #expect(nfc == nfd)  // what makes `String` unfit as a path key
        #expect(PathKey(nfc) != PathKey(nfd))
        #expect(PathKey(nfc) == PathKey("\u{E9}"))
        #expect(Set([PathKey(nfc), PathKey(nfd), PathKey(nfc + "/x"), PathKey(nfd + "/x")]).count == 4)
        var byPath: [PathKey: Int] = [:]
        byPath[PathKey(nfc)] = 1
        byPath[PathKey(nfd)] = 2
        #expect(byPath[PathKey(nfc)] == 1 && byPath[PathKey(nfd)] == 2)
        #expect(!PathKey.sameBytes(nfc, nfd) && PathKey.sameBytes(nfd, "e\u{301}"))
        // Ordered as memcmp orders the bytes: 0x65 ("e") before 0xC3.
        #expect(PathKey(nfd) < PathKey(nfc) && !(PathKey(nfc) < PathKey(nfd)))
    }

    @Test func pathsSplitAtEverySlashByte() {
        #expect("a/\u{301}b/c".split(separator: "/").count == 2)  // the "/" and the mark are one character
        // Compared by bytes: `==` on strings would take "\u{E9}b" for "e\u{301}b".
        #expect(PathKey.components("a/\u{301}b/c").map { Array($0.utf8) } == [[0x61], [0xCC, 0x81, 0x62], [0x63]])
        #expect(PathKey.components("//a//b/").map { Array($0.utf8) } == [[0x61], [0x62]])
        #expect(PathKey.components("").isEmpty && PathKey.components("/").isEmpty)
        let path = "d/\u{301}x"
        let slash = try! #require(PathKey.lastSlash(path))
        #expect(String(path[path.utf8.index(after: slash)...]).utf8.elementsEqual("\u{301}x".utf8))
        #expect(PathKey.lastSlash("name") == nil)
    }

    @Test func withinComparesBytesAndWholeComponents() {
        #expect(PathKey.isWithin("\(nfc)/x", nfc) && PathKey.isWithin(nfc, nfc))
        #expect(!PathKey.isWithin("\(nfd)/x", nfc) && !PathKey.isWithin(nfd, nfc))
        #expect(!PathKey.isWithin("ab/x", "a") && PathKey.isWithin("a/\u{301}x", "a"))
        #expect(!PathKey.isWithin("a", "a/b"))
    }
}
