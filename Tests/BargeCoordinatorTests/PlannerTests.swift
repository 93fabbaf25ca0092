import BargeCoordinator
import BargeWire
import Testing

/// The planner and the lane picker: pure, so checked directly.
struct PlannerTests {
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
        #expect(kinds == [.range, .range, .range, .finish, .files, .files, .directories])
        // Ranges cover the file exactly, chunk-aligned, and do not finish it; the finish waits for them.
        #expect(plan.units[0..<3].map { $0.files[0].offset } == [0, 4 << 20, 8 << 20])
        #expect(plan.units[0..<3].reduce(0) { $0 + $1.files[0].length } == (9 << 20) + 1)
        #expect(!plan.units[0..<3].contains { $0.files[0].finish })
        #expect(plan.units[3].files[0].finish && plan.units[3].files[0].length == 0 && plan.units[3].dependsOn == "dst/big")
        // Batches of at most three, each file finished in its unit; paths mapped to both roots.
        #expect(plan.units[4].files.map(\.entry.path) == ["dst/d/a", "dst/d/b", "dst/d/c"])
        #expect(plan.units[4].files.map(\.sourcePath) == ["src/d/a", "src/d/b", "src/d/c"])
        #expect(plan.units[5].files.map(\.entry.path) == ["dst/d/e", "dst/l"])
        #expect(plan.units[4].files.allSatisfy { $0.finish })
        // Directories last, deepest first, after everything else.
        #expect(plan.units[6].files.map(\.entry.path) == ["dst/d", "dst"])
        #expect(plan.units[6].dependsOn == "*")
        #expect(plan.totals == PlanTotals(bytes: Int64((9 << 20) + 1 + 60), files: 6, chunks: 10 + 3))
    }

    @Test func manyDirectoriesAreSplitIntoOrderedUnits() {
        let planner = Planner(unitBytes: 1 << 20, chunkSize: 1 << 20, maxFilesPerUnit: 1)  // 16 directories per unit
        let dirs = (0..<40).map { dir("d\($0)") } + [dir("d0/deep/er")]
        let plan = planner.plan(entries: dirs, sourcePath: "", destinationPath: "x")
        #expect(plan.units.map(\.kind) == [.directories, .directories, .directories])
        #expect(plan.units.map(\.files.count) == [16, 16, 9])
        #expect(plan.units[0].files[0].entry.path == "x/d0/deep/er")
        #expect(plan.units.allSatisfy { $0.dependsOn == "*" })
    }

    @Test func aSingleFileLandsAtTheDestinationPath() {
        let plan = Planner().plan(entries: [file("", 5)], sourcePath: "data/x.bin", destinationPath: "in/y.bin")
        #expect(plan.units.count == 1)
        #expect(plan.units[0].files[0].sourcePath == "data/x.bin")
        #expect(plan.units[0].files[0].entry.path == "in/y.bin")
    }

    @Test func pathsAreNormalisedAndEscapesRefused() throws {
        #expect(try JobPath.normalize("/ds/") == "ds")
        #expect(try JobPath.normalize("ds/./a//b") == "ds/a/b")
        #expect(try JobPath.normalize("ds/../x") == "x")
        #expect(try JobPath.normalize("/") == "")
        #expect(throws: PlanError.outsideRoot("../etc")) { try JobPath.normalize("../etc") }
        #expect(throws: PlanError.outsideRoot("a/../../b")) { try JobPath.normalize("a/../../b") }
    }

    @Test func lanesGoToTheLeastLoadedAgentsWithinTheirBounds() {
        typealias C = LanePicker.Candidate
        let sources = [C(name: "a1", load: 2, bound: 2), C(name: "a2", load: 1, bound: 2)]
        let destinations = [C(name: "b1", load: 0, bound: 4), C(name: "b2", load: 0, bound: 4)]
        #expect(LanePicker.pick(sources: sources, destinations: destinations)! == ("a2", "b1"))
        #expect(LanePicker.pick(sources: sources, destinations: destinations, pinned: "b2")! == ("a2", "b2"))
        // A pinned destination that is full waits rather than going elsewhere.
        #expect(LanePicker.pick(sources: sources, destinations: [C(name: "b2", load: 4, bound: 4), C(name: "b1", load: 0, bound: 4)], pinned: "b2") == nil)
        #expect(LanePicker.pick(sources: [C(name: "a1", load: 2, bound: 2)], destinations: destinations) == nil)
        #expect(LanePicker.pick(sources: sources, destinations: []) == nil)
    }
}
