import BargeStore
import Foundation
import Testing

/// Paths are confined by the kernel (`openat2` beneath the root's descriptor), so that neither a
/// race with ordinary creation and renames is taken for an escape, nor a symbolic link swapped in
/// between a check and an open lets a write out of the root.
struct PathConfinementTests {
    /// One thread creates, renames and removes files the way a receiving agent does; another
    /// resolves the same names all the while. Not one resolve may call that a symbolic link.
    @Test func aNameThatAppearsWhileItIsResolvedIsNeverTakenForASymlink() throws {
        let s = try Sandbox()
        try s.file("d/seed")
        let root = s.root
        let stop = Flag(false)
        let churn = Thread {
            var i = 0
            while !stop.load() {
                let name = root + "/d/f\(i % 50)"
                let fd = open(name + ".barge-partial", O_WRONLY | O_CREAT, 0o600)
                if fd >= 0 { close(fd) }
                rename(name + ".barge-partial", name)
                if i % 3 == 0 { unlink(name) }
                if i % 7 == 0 { mkdir(root + "/d/sub\(i % 5)", 0o755); rmdir(root + "/d/sub\(i % 5)") }
                i += 1
            }
        }
        churn.start()
        defer { stop.store(true) }
        var escapes: [String] = []
        for i in 0..<20_000 {
            for path in ["d/f\(i % 50)", "d/f\(i % 50).barge-partial", "d/sub\(i % 5)/x"] {
                do {
                    _ = try RootedPath.resolve(path, under: root)
                } catch let error as StoreError {
                    if case .symlinkEscape = error { escapes.append(error.description) }
                }
            }
        }
        stop.store(true)
        #expect(escapes.isEmpty, "races taken for escapes: \(escapes.prefix(3))")
    }

    /// A directory of the path is swapped for a symbolic link to a directory outside the root, over
    /// and over, while partial files are created under it. Whatever wins each race, nothing may
    /// ever be created outside.
    @Test func aSymlinkSwappedInBetweenNeverLetsAWriteOut() throws {
        let s = try Sandbox()
        let outside = s.url.appendingPathComponent("outside").path
        try FileManager.default.createDirectory(atPath: outside, withIntermediateDirectories: true)
        let root = s.root
        try FileManager.default.createDirectory(atPath: root + "/swap", withIntermediateDirectories: true)
        let stop = Flag(false)
        let swapper = Thread {
            while !stop.load() {
                rename(root + "/swap", root + "/swap.dir")
                symlink(outside, root + "/swap")
                unlink(root + "/swap")
                rename(root + "/swap.dir", root + "/swap")
            }
        }
        swapper.start()
        defer { stop.store(true) }
        var created = 0
        for i in 0..<5_000 {
            if let target = try? RootedPath.resolve("swap/f\(i)", under: root), (try? PartialFileWriter(target, size: 1)) != nil {
                created += 1
            }
        }
        stop.store(true)
        Thread.sleep(forTimeInterval: 0.05)
        let leaked = try FileManager.default.contentsOfDirectory(atPath: outside)
        #expect(leaked.isEmpty, "written outside the root: \(leaked.prefix(5))")
        #expect(created > 0, "no create ever won its race, so the test proved nothing")
    }

    /// A file whose name is 255 bytes long (NAME_MAX) arrives: its partial copy has a short name.
    @Test func aNameOf255BytesArrivesThroughAShortPartialName() throws {
        let s = try Sandbox()
        let name = String(repeating: "n", count: 250) + ".data"
        #expect(name.utf8.count == 255)
        let target = try RootedPath.resolve("long/" + name, under: s.root)
        let writer = try PartialFileWriter(target, size: 5)
        #expect(writer.partialName.utf8.count <= 255 && writer.partialName.hasSuffix(".barge-partial"))
        #expect(FileManager.default.fileExists(atPath: writer.partialPath))
        try Array("hello".utf8).withUnsafeBytes { try writer.write($0, at: 0) }
        try writer.finish(mode: 0o644, mtimeSeconds: 1_700_000_000, mtimeNanoseconds: 0)
        #expect(try String(contentsOfFile: s.root + "/long/" + name, encoding: .utf8) == "hello")
        #expect(try FileManager.default.contentsOfDirectory(atPath: s.root + "/long") == [name])
    }

    /// `.barge` at the root is every agent's own state, and a `--state` directory given below
    /// the root is one agent's: no job path may name them or anything in them, and a walk from
    /// a directory above leaves them out.
    @Test func agentsOwnStateIsOffLimitsDirectlyAndThroughAParent() throws {
        let s = try Sandbox()
        try s.file(".barge/a1/chunk-index.sqlite", "index")
        try s.file("data/x", "x")
        try s.file("data/state-b1/chunk-index.sqlite", "index")
        for path in [".barge", ".barge/a1/chunk-index.sqlite", "/.barge/new", "data/../.barge/a1", "./.barge"] {
            for lexical in [false, true] {
                do {
                    _ = lexical ? try RootedPath.lexical(path, under: s.root) : try RootedPath.resolve(path, under: s.root)
                    Issue.record("\(path) was taken")
                } catch {
                    #expect("\(error)".contains("no job may read or write"), "\(error)")
                }
            }
        }
        // A data directory of its own named .barge, below the root's top, is data.
        #expect(try RootedPath.lexical("data/.barge/y", under: s.root).relative == "data/.barge/y")

        // Before the agent protects its --state directory, it is a directory like any other.
        var walker = try TreeWalker(directory: RootedPath.resolve("", under: s.root))
        var seen: [String] = []
        while let e = try walker.next() { seen.append(e.path) }
        #expect(!seen.contains { $0.hasPrefix(".barge") })
        #expect(seen.contains("data/state-b1/chunk-index.sqlite"))

        try StatePaths.protect(s.root + "/data/state-b1/")
        #expect(FileManager.default.fileExists(atPath: s.root + "/data/state-b1/" + StatePaths.markerName))
        for path in ["data/state-b1", "data/state-b1/chunk-index.sqlite", "data/state-b1/new"] {
            #expect(throws: StoreError.self, "\(path)") { _ = try RootedPath.lexical(path, under: s.root) }
        }
        #expect(try RootedPath.lexical("data/state-b1x", under: s.root).relative == "data/state-b1x")
        for top in ["", "data"] {
            var walker = try TreeWalker(directory: RootedPath.resolve(top, under: s.root))
            var seen: [String] = []
            while let e = try walker.next() { seen.append(e.path) }
            #expect(seen.contains { $0.hasSuffix("x") })
            #expect(!seen.contains { $0.contains("state-b1") || $0.hasPrefix(".barge") }, "\(seen)")
        }

        // Another agent sharing this root marked its --state directory: this process never
        // registered it, and keeps out of it all the same, by the marker alone.
        try s.file("data/deep/state-b2/chunk-index.sqlite", "index")
        try s.file("data/deep/state-b2/" + StatePaths.markerName, StatePaths.markerText)
        try s.file("data/deep/kept", "kept")
        for path in ["data/deep/state-b2", "data/deep/state-b2/chunk-index.sqlite", "data/deep/state-b2/sub/new", "data/deep/../deep/state-b2/x"] {
            #expect(throws: StoreError.self, "\(path)") { _ = try RootedPath.lexical(path, under: s.root) }
            #expect(throws: StoreError.self, "\(path)") { _ = try RootedPath.resolve(path, under: s.root) }
        }
        #expect(try RootedPath.lexical("data/deep/kept", under: s.root).relative == "data/deep/kept")
        var marked = try TreeWalker(directory: RootedPath.resolve("data", under: s.root))
        var found: [String] = []
        while let e = try marked.next() { found.append(e.path) }
        #expect(found.contains("deep/kept") && !found.contains { $0.contains("state-b2") }, "\(found)")
    }

    /// A user's own file named `.barge-state` is data like any other: only the marker an agent
    /// writes, with its text, makes a directory an agent's state. Before, any file of that name
    /// left its directory and everything in it out of every job, without a word.
    @Test func aFileNamedLikeTheMarkerIsData() throws {
        let s = try Sandbox()
        try s.file("o2/results/data.csv", "important")
        try s.file("o2/results/" + StatePaths.markerName, "x")
        try s.file("o2/copy/" + StatePaths.markerName, StatePaths.markerText + "more")
        var walker = try TreeWalker(directory: RootedPath.resolve("o2", under: s.root))
        var seen: [String] = []
        while let e = try walker.next() { seen.append(e.path) }
        #expect(seen.contains("results/data.csv") && seen.contains("results/" + StatePaths.markerName), "\(seen)")
        #expect(seen.contains("copy/" + StatePaths.markerName), "\(seen)")
        #expect(walker.takeSkipped().isEmpty)
        #expect(try RootedPath.lexical("o2/results/data.csv", under: s.root).relative == "o2/results/data.csv")
        #expect(try RootedPath.resolve("o2/results/new", under: s.root).relative == "o2/results/new")
    }

    /// The files of one message are checked together (`lexical(files:)`): each directory on the
    /// way is looked at for a state marker once, yet a marker deeper than a directory already
    /// found clean still refuses its paths (and so does the marked directory named itself), and
    /// one made after a message is seen by the next.
    @Test func theFilesOfOneMessageAreCheckedTogether() throws {
        let s = try Sandbox()
        try s.file("data/deep/state-b2/chunk-index.sqlite", "index")
        try s.file("data/deep/state-b2/" + StatePaths.markerName, StatePaths.markerText)
        try s.file("data/deep/kept", "kept")
        let paths = ["data/a", "data/deep/b", "data/deep/state-b2/x", "data/deep/c", "data/deep/state-b2/sub/y",
                     "../out", "data/later/z", ".barge/a1/x", "data/deep/state-b2"]
        let results = RootedPath.lexical(files: paths, under: s.root)
        #expect(results.count == paths.count)
        let taken = zip(paths, results).compactMap { p, r in (try? r.get()).map { _ in p } }
        #expect(taken == ["data/a", "data/deep/b", "data/deep/c", "data/later/z"])
        for (p, r) in zip(paths, results) where p.contains("state-b2") || p.hasPrefix(".barge") {
            #expect(throws: StoreError.self) { try r.get() }
            if case .failure(let e) = r { #expect("\(e)".contains("no job may read or write"), "\(e)") }
        }
        #expect((try? results[1].get())?.relative == "data/deep/b")

        // A have query only looks paths up: the directories above each file are looked at, the
        // name itself is not (a batch that writes it still is, above).
        let looked = RootedPath.lexical(files: ["data/deep/state-b2/x", "data/a", "data/deep/state-b2"], under: s.root, directoriesOnly: true)
        #expect(throws: StoreError.self) { try looked[0].get() }
        #expect((try? looked[1].get())?.relative == "data/a")
        #expect((try? looked[2].get())?.relative == "data/deep/state-b2")

        // Another agent marks data/later after that message: the next one sees it.
        try s.file("data/later/" + StatePaths.markerName, StatePaths.markerText)
        #expect(throws: StoreError.self) { try RootedPath.lexical(files: ["data/a", "data/later/z"], under: s.root)[1].get() }

    }
}

/// A flag shared with a thread.
final class Flag: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Bool
    init(_ value: Bool) { self.value = value }
    func load() -> Bool { lock.withLock { value } }
    func store(_ v: Bool) { lock.withLock { value = v } }
}
