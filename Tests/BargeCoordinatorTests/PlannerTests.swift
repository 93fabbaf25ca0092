import BargeCoordinator
import BargeTier
import BargeWire
import Testing

/// The planner and the scan order: pure, so checked directly.
struct PlannerTests {
    /// Destinations that may hold the same files: the same site, one path at or inside the
    /// other (the root holds everything); by bytes, so "é" and "e\u{301}" are two directories.
    /// The claims of waiting jobs answer as `JobPath.overlaps` does, pair by pair, on paths
    /// that nest, share a prefix without nesting, sit at the root, or differ only in bytes.
    @Test func destinationClaimsAgreeWithOverlaps() {
        let paths = ["", "a", "a/b", "a/b/c", "a/bc", "ab", "b", "b/a", "caf\u{E9}", "cafe\u{301}/x", "a/b/c/d/e"]
        for claimed in paths {
            for site in ["b", "c"] {
                var claims = DestinationClaims()
                claims.claim(site: "b", path: claimed, job: "j-claim")
                for asked in paths {
                    let expected = JobPath.overlaps(site: "b", claimed, withSite: site, asked)
                    #expect((claims.holder(site: site, path: asked) != nil) == expected, "\(claimed) against \(site):\(asked)")
                }
            }
        }
        // The first claim of a place is the one named.
        var claims = DestinationClaims()
        claims.claim(site: "b", path: "x/y", job: "j-first")
        claims.claim(site: "b", path: "x/y", job: "j-second")
        claims.claim(site: "b", path: "x/z", job: "j-third")
        #expect(claims.holder(site: "b", path: "x/y/f") == "j-first")
        #expect(claims.holder(site: "b", path: "x") == "j-first")
        #expect(claims.holder(site: "b", path: "x/z") == "j-third")
    }

    @Test func overlappingDestinations() {
        #expect(JobPath.overlaps(site: "b", "copy", withSite: "b", "copy"))
        #expect(JobPath.overlaps(site: "b", "copy", withSite: "b", "copy/sub"))
        #expect(JobPath.overlaps(site: "b", "copy/sub", withSite: "b", "copy"))
        #expect(JobPath.overlaps(site: "b", "", withSite: "b", "x/y"))
        #expect(!JobPath.overlaps(site: "b", "copy", withSite: "c", "copy"))
        #expect(!JobPath.overlaps(site: "b", "copy", withSite: "b", "copy2"))
        #expect(!JobPath.overlaps(site: "b", "copy/a", withSite: "b", "copy/b"))
        #expect(!JobPath.overlaps(site: "b", "caf\u{E9}", withSite: "b", "cafe\u{301}/x"))
    }

    func file(_ path: String, _ size: UInt64) -> FileEntry {
        FileEntry(path: path, kind: .file, size: size, mode: 0o644, mtimeSeconds: 1, mtimeNanoseconds: 0)
    }
    func dir(_ path: String) -> FileEntry { FileEntry(path: path, kind: .directory, mode: 0o755, mtimeSeconds: 2, mtimeNanoseconds: 0) }

    @Test func largeFilesBecomeRangesAndAFinishSmallOnesBatches() {
        let planner = Planner(unitBytes: 4 << 20, chunkSize: 1 << 20, maxFilesPerUnit: 3)
        let entries = [dir(""), file("big", (9 << 20) + 1), dir("d"), file("d/a", 10), file("d/b", 0), file("d/c", 20), file("d/e", 30),
                       FileEntry(path: "l", kind: .symlink, mode: 0o777, mtimeSeconds: 3, mtimeNanoseconds: 0, linkTarget: "big")]
        let plan = planner.plan(entries: entries, sourcePath: "src", destinationPath: "dst")
        let kinds = plan.units.map(\.kind)
        #expect(kinds == [.finish, .files, .files, .directories, .directories])
        // The large file is one row standing for its three ranges, made as they are reached.
        let big = plan.units[0]
        #expect(big.rangesTotal == 3 && big.rangeBytes == 4 << 20 && big.files[0].finish && big.files[0].length == 0)
        let ranges = (0..<3).map { big.range(Int64($0), id: 100 + Int64($0)) }
        #expect(ranges.map { $0.files[0].offset } == [0, 4 << 20, 8 << 20])
        #expect(ranges.reduce(0) { $0 + $1.files[0].length } == (9 << 20) + 1)
        for r in ranges {
            #expect(!r.files[0].finish && r.finishUnit == Int64(0) && r.kind == UnitKind.range)
        }
        #expect(plan.workUnits == 1 + 3 + 2)
        // Batches of at most three, each file finished in its unit; paths mapped to both roots.
        #expect(plan.units[1].files.map(\.entry.path) == ["dst/d/a", "dst/d/b", "dst/d/c"])
        #expect(plan.units[1].files.map(\.sourcePath) == ["src/d/a", "src/d/b", "src/d/c"])
        #expect(plan.units[2].files.map(\.entry.path) == ["dst/d/e", "dst/l"])
        #expect(plan.units[1].files.allSatisfy { $0.finish })
        // Directories last, deepest first, after everything else.
        // Directories go by depth, deepest first, one unit per depth.
        #expect(plan.units[3].files.map(\.entry.path) == ["dst/d"] && plan.units[3].depth == 1)
        #expect(plan.units[4].files.map(\.entry.path) == ["dst"] && plan.units[4].depth == 0)
        #expect(plan.units.map(\.unitId) == Array(0..<5))
        #expect(plan.units[1].finishedFiles == 3 && plan.units[0].finishedFiles == 1 && plan.units[4].finishedFiles == 0)
        #expect(plan.totals == PlanTotals(bytes: Int64((9 << 20) + 1 + 60), files: 6, chunks: 10 + 3))
    }

    @Test func manyDirectoriesAreSplitIntoOrderedUnits() {
        let planner = Planner(unitBytes: 1 << 20, chunkSize: 1 << 20, maxFilesPerUnit: 1, maxDirectoriesPerUnit: 16)
        let dirs = (0..<40).map { dir("d\($0)") } + [dir("d0/deep/er")]
        let plan = planner.plan(entries: dirs, sourcePath: "", destinationPath: "x")
        #expect(plan.units.allSatisfy { $0.kind == .directories })
        #expect(plan.units.map(\.files.count) == [1, 16, 16, 8])
        #expect(plan.units[0].files[0].entry.path == "x/d0/deep/er")
        #expect(plan.units.map(\.depth) == [3, 1, 1, 1])
    }

    @Test func pagesContinueUnitIdsAndNeverShareABatch() {
        var builder = Planner.Builder(planner: Planner(maxFilesPerUnit: 10), job: "j", sourcePath: "s", destinationPath: "d")
        let first = builder.page([dir(""), file("a", 1), file("b", 1)])
        let second = builder.page([file("c", 1), dir("e")])
        #expect(first.units.map(\.unitId) == [0, 1] && first.units[0].files.count == 2)
        #expect(second.units.map(\.unitId) == [2, 3] && second.units[0].files.map(\.entry.path) == ["d/c"])
        #expect(first.workUnits == 1 && second.workUnits == 1)
        #expect(builder.nextUnit == 4)
    }

    @Test func scanOrderIsDepthFirstByNameBytes() {
        // '-' (0x2D) sorts before '/' (0x2F) as bytes of a whole path, but a directory's contents
        // come right after it in a depth-first walk.
        let walk = ["", "a", "a/b", "a/b/c", "a-c", "b"]
        for (i, x) in walk.enumerated() {
            for (j, y) in walk.enumerated() { #expect(ScanOrder.precedes(x, y) == (i < j), "\(x) vs \(y)") }
        }
    }

    @Test func aSingleFileLandsAtTheDestinationPath() {
        let plan = Planner().plan(entries: [file("", 5)], sourcePath: "data/x.bin", destinationPath: "in/y.bin")
        #expect(plan.units.count == 1)
        #expect(plan.units[0].files[0].sourcePath == "data/x.bin")
        #expect(plan.units[0].files[0].entry.path == "in/y.bin")
    }

    /// `b:/dst/` names a directory: a single file lands inside it under its own name (as `rsync
    /// file dst/` and `cp file dst/`), a directory's contents under it as without the slash.
    @Test func aSingleFileSentIntoADirectoryLandsInsideItUnderItsName() {
        var builder = Planner.Builder(planner: Planner(), job: "j", sourcePath: "data/x.bin", destinationPath: "in", destinationIsDirectory: true)
        let page = builder.page([file("", 5)])
        #expect(page.units[0].files[0].sourcePath == "data/x.bin")
        #expect(page.units[0].files[0].entry.path == "in/x.bin")
        // The root as destination.
        let root = Planner.Builder(planner: Planner(), job: "j", sourcePath: "data/x.bin", destinationPath: "", destinationIsDirectory: true)
        #expect(root.destination(of: "", kind: .file) == "x.bin")
        #expect(root.destination(of: "", kind: .symlink) == "x.bin")
        // A directory: its contents land under the path, the slash or not.
        let tree = Planner.Builder(planner: Planner(), job: "j", sourcePath: "data", destinationPath: "in", destinationIsDirectory: true)
        #expect(tree.destination(of: "", kind: .directory) == "in")
        #expect(tree.destination(of: "a/b", kind: .file) == "in/a/b")
    }

    /// A placement policy sees a single file under the name it lands with: its own inside a
    /// directory, the destination's name at the path itself.
    @Test func aPlacementPolicySeesASingleFileByTheNameItLandsUnder() throws {
        let policy = try TierPolicy(parsing: "cold:*.h5")
        var into = Planner.Builder(planner: Planner(), job: "j", sourcePath: "data/x.h5", destinationPath: "arch", destinationIsDirectory: true, placement: policy)
        #expect(into.page([file("", 5)]).units[0].files[0].tier == .cold)
        var renamed = Planner.Builder(planner: Planner(), job: "j", sourcePath: "data/x.h5", destinationPath: "arch/y.txt", placement: policy)
        #expect(renamed.page([file("", 5)]).units[0].files[0].tier == .hot)
        var at = Planner.Builder(planner: Planner(), job: "j", sourcePath: "data/x.txt", destinationPath: "arch/y.h5", placement: policy)
        #expect(at.page([file("", 5)]).units[0].files[0].tier == .cold)
    }

    @Test func aDestinationNamesADirectoryByItsSlashOrAsTheRoot() {
        for path in ["in/", "/in/", "in/.", "in//", "/", "", ".", "in/sub/.."] { #expect(JobPath.namesDirectory(path), "\(path)") }
        for path in ["in", "/in", "in/y.bin", "./in"] { #expect(!JobPath.namesDirectory(path), "\(path)") }
        #expect(JobPath.name("data/x.bin") == "x.bin")
        #expect(JobPath.name("x.bin") == "x.bin")
    }

    @Test func pathsAreNormalisedAndEscapesRefused() throws {
        #expect(try JobPath.normalize("/ds/") == "ds")
        #expect(try JobPath.normalize("ds/./a//b") == "ds/a/b")
        #expect(try JobPath.normalize("ds/../x") == "x")
        #expect(try JobPath.normalize("/") == "")
        #expect(throws: PlanError.outsideRoot("../etc")) { try JobPath.normalize("../etc") }
        #expect(throws: PlanError.outsideRoot("a/../../b")) { try JobPath.normalize("a/../../b") }
        // A path Linux cannot open (PATH_MAX, 4096, counts the final NUL) is refused at submit;
        // one a byte shorter is not.
        let fits = String(repeating: "d/", count: 2047) + "x"
        #expect(try JobPath.normalize(fits).utf8.count == 4095)
        #expect(throws: PlanError.self) { try JobPath.normalize(fits + "z") }
    }

    /// A scanned entry whose path at either end would pass PATH_MAX is named, not planned: the
    /// longer of the two counts (a short source under a long destination, and the other way).
    @Test func entriesWhosePathsWouldBeTooLongAreNamed() {
        let relative = String(repeating: "n", count: 4000)
        #expect(JobPath.tooLong(relative, source: "s", destination: "d") == nil)
        let long = String(repeating: "l", count: 100)
        let why = JobPath.tooLong(relative, source: "s", destination: long)
        #expect(why?.contains("4101 bytes long, over the 4095") == true, "\(why ?? "")")
        #expect(JobPath.tooLong(relative, source: long, destination: "") != nil)
        #expect(JobPath.tooLong(relative, source: "", destination: String(repeating: "x", count: 94)) == nil)  // 94 + 1 + 4000
        #expect(JobPath.tooLong(relative, source: "", destination: String(repeating: "x", count: 95)) != nil)  // 4096
    }
}
