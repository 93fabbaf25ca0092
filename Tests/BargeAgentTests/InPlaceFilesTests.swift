@testable import BargeAgent
import BargeBench
import BargeDigest
import BargeStore
import BargeWire
import Foundation
import Testing

/// A file a unit brings whole (protocol version 17) whose chunks, sent by reference, are all
/// found at their own place in its final copy is kept there, as `rsync --checksum` leaves an
/// identical file alone; any other is received as before, through a partial copy.
struct InPlaceFilesTests {
    static let chunk = 1 << 20
    static let size = 3 * chunk + 12_345
    let roots: Roots
    let files: DestinationFiles
    let target: RootedPath
    var final: String { target.absolute }

    /// `racyWindow` 0: the files here were all written a moment ago (one test keeps the default).
    init(copyLimit: UInt64 = 256 << 20, racyWindow: Double = 0) throws {
        roots = try Roots()
        let index = try ChunkIndex(path: roots.url.appendingPathComponent("index.sqlite").path, root: roots.destination)
        files = DestinationFiles(index: index, inPlaceCopyLimit: copyLimit, inPlaceRacyWindow: racyWindow)
        try FileManager.default.createDirectory(atPath: roots.destination + "/in", withIntermediateDirectories: true)
        target = try RootedPath.lexical("in/big", under: roots.destination)
    }

    /// The file's chunks: 1 MiB each, the last shorter.
    static func chunks(_ bytes: [UInt8]) -> [(offset: UInt64, bytes: [UInt8], id: [UInt8], xxh: [UInt8])] {
        stride(from: 0, to: bytes.count, by: chunk).map { o in
            let part = Array(bytes[o..<min(o + chunk, bytes.count)])
            return (UInt64(o), part, SHA256.hash(part).bytes, XXH3.hash128(part).canonicalBytes)
        }
    }

    func place(_ job: String, whole: Bool) {
        #expect(files.place(job: job, paths: [target.relative], facts: [HaveQuery.Facts(tier: nil, size: UInt64(Self.size), mtimeSeconds: 1, whole: whole)]).isEmpty)
    }

    func byValue(_ job: String, _ c: (offset: UInt64, bytes: [UInt8], id: [UInt8], xxh: [UInt8])) throws {
        try c.bytes.withUnsafeBytes { try files.write(job: job, target: target, size: UInt64(Self.size), bytes: $0, at: c.offset, id: c.id, xxh: c.xxh) }
    }

    func byReference(_ job: String, _ c: (offset: UInt64, bytes: [UInt8], id: [UInt8], xxh: [UInt8])) throws -> Bool {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Self.chunk, alignment: 16)
        defer { buffer.deallocate() }
        return try files.copyLocal(job: job, target: target, size: UInt64(Self.size), offset: c.offset, length: c.bytes.count, id: c.id, xxh: c.xxh, buffer: buffer)
    }

    func finish(_ job: String, mode: UInt32 = 0o640, seconds: Int64 = 1_600_000_000) throws {
        try files.finish(job: job, target: target, size: UInt64(Self.size), mode: mode, mtimeSeconds: seconds, mtimeNanoseconds: 7)
    }

    func look(_ path: String) -> stat {
        var st = stat()
        _ = lstat(path, &st)
        return st
    }

    /// Two bytes of the final copy's second chunk overwritten in place; with `mtimePutBack`, its
    /// mtime as `sendOnce` left it (so its index rows still look current).
    func damageSecondChunk(mtimePutBack: Bool = false) {
        let fd = open(final, O_WRONLY)
        #expect(pwrite(fd, [0x55, 0x66], 2, off_t(Self.chunk + 10)) == 2)
        close(fd)
        guard mtimePutBack else { return }
        var times = [timespec(tv_sec: 1_500_000_000, tv_nsec: 7), timespec(tv_sec: 1_500_000_000, tv_nsec: 7)]
        #expect(utimensat(AT_FDCWD, final, &times, 0) == 0)
    }

    /// The damaged second chunk sent by value, then the finish: the file arrives as `whole`.
    func sendSecondChunkAndFinish(_ parts: [(offset: UInt64, bytes: [UInt8], id: [UInt8], xxh: [UInt8])], whole bytes: [UInt8]) throws {
        try byValue("j1", parts[1])
        try finish("j1")
        #expect(content == bytes && !partial)
    }

    var partial: Bool { FileManager.default.fileExists(atPath: PartialFileWriter.partialPath(of: target)) }
    var content: [UInt8] { (try? [UInt8](Data(contentsOf: URL(fileURLWithPath: final)))) ?? [] }

    /// The file sent once, by value: in place, with rows in the index.
    func sendOnce(_ bytes: [UInt8]) throws {
        place("j0", whole: true)
        for c in Self.chunks(bytes) { try byValue("j0", c) }
        try finish("j0", mode: 0o644, seconds: 1_500_000_000)
        #expect(content == bytes)
    }

    /// Every chunk found in place: no partial copy, the same inode, only the mode and mtime
    /// given; the index still offers the chunks. Sent again with mode and mtime already right,
    /// even the ctime stays.
    @Test func aFileWhoseChunksAreAllInPlaceKeepsItsInode() throws {
        let bytes = SampleData.random(bytes: Self.size, seed: 71)
        try sendOnce(bytes)
        let before = look(final)
        place("j1", whole: true)
        for c in Self.chunks(bytes) {
            #expect(try byReference("j1", c))
            #expect(!partial, "no partial copy is opened for a chunk found in place")
        }
        try finish("j1")
        let after = look(final)
        #expect(after.st_ino == before.st_ino && after.st_mode == S_IFREG | 0o640 && after.st_mtim.tv_sec == 1_600_000_000 && after.st_mtim.tv_nsec == 7)
        #expect(content == bytes && !partial && files.inPlace.count == 0)
        #expect(try files.heldIds(paths: [target.relative]) == Set(Self.chunks(bytes).map(\.id)), "its rows stay current with its new mtime")

        place("j2", whole: true)
        for c in Self.chunks(bytes) { #expect(try byReference("j2", c)) }
        try finish("j2")
        let again = look(final)
        #expect(again.st_ino == before.st_ino && again.st_ctim.tv_sec == after.st_ctim.tv_sec && again.st_ctim.tv_nsec == after.st_ctim.tv_nsec, "untouched")
        // A late duplicate of a chunk is taken for one (the receiver acks it), and opens no
        // partial copy.
        #expect(throws: DestinationFiles.AlreadyFinished.self) { try byReference("j2", Self.chunks(bytes)[1]) }
        #expect(!partial)
    }

    /// A chunk that must be written (by value) opens a partial copy, and the chunks found in
    /// place before it are copied into it first: the file arrives whole under a new inode. Those
    /// found after it go into the partial copy too.
    @Test func aChangedChunkMakesTheFileArriveAsAnyOther() throws {
        let bytes = SampleData.random(bytes: Self.size, seed: 72)
        try sendOnce(bytes)
        let before = look(final)
        var changed = bytes
        for i in Self.chunk..<(Self.chunk + 100) { changed[i] ^= 0xFF }
        let parts = Self.chunks(changed)
        place("j1", whole: true)
        #expect(try byReference("j1", parts[0]) && !partial)
        try byValue("j1", parts[1])
        #expect(partial)
        #expect(try byReference("j1", parts[2]) && byReference("j1", parts[3]))
        try finish("j1")
        #expect(look(final).st_ino != before.st_ino && content == changed && !partial)
    }

    /// The final copy changed after its chunks were found there: the finish copies what still
    /// checks out into a partial copy and refuses the file as incomplete (sent again, it
    /// arrives whole); it never keeps a file that changed.
    @Test func aFinalCopyChangedSinceItsChunksWereFoundIsNotKept() throws {
        let bytes = SampleData.random(bytes: Self.size, seed: 73)
        try sendOnce(bytes)
        place("j1", whole: true)
        let parts = Self.chunks(bytes)
        for c in parts { #expect(try byReference("j1", c)) }
        damageSecondChunk()
        #expect(throws: DestinationFiles.Incomplete.self) { try finish("j1") }
        #expect(partial, "the chunks that still check out are kept in a partial copy")
        try sendSecondChunkAndFinish(parts, whole: bytes)
    }

    /// Found in place while the file was one inode, then the name given to another file with the
    /// same bytes: the chunk found then does not join the earlier ones, and the file arrives
    /// through a partial copy with the bytes checked.
    @Test func aFileReplacedBetweenChunksIsNotKept() throws {
        let bytes = SampleData.random(bytes: Self.size, seed: 74)
        try sendOnce(bytes)
        place("j1", whole: true)
        let parts = Self.chunks(bytes)
        #expect(try byReference("j1", parts[0]))
        try Data(bytes).write(to: URL(fileURLWithPath: final + ".new"))
        #expect(rename(final + ".new", final) == 0)
        let swapped = look(final)
        for c in parts.dropFirst() { #expect(try byReference("j1", c)) }
        #expect(partial)
        try finish("j1")
        #expect(look(final).st_ino != swapped.st_ino && content == bytes && !partial)
    }

    /// Not marked whole (a large file's range, or a peer before version 17), or a hard link whose
    /// mtime must change: received as before, under a new inode, the other name left alone.
    @Test func aFileNotWholeOrWithOtherNamesIsWrittenAgain() throws {
        let bytes = SampleData.random(bytes: Self.size, seed: 75)
        try sendOnce(bytes)
        let first = look(final)
        place("j1", whole: false)
        for c in Self.chunks(bytes) { #expect(try byReference("j1", c)) }
        #expect(partial)
        try finish("j1")
        let second = look(final)
        #expect(second.st_ino != first.st_ino && content == bytes)

        let other = roots.destination + "/other"
        #expect(link(final, other) == 0)
        place("j2", whole: true)
        for c in Self.chunks(bytes) { #expect(try byReference("j2", c)) }
        #expect(!partial)
        try finish("j2", seconds: 1_650_000_000)
        #expect(look(final).st_ino != second.st_ino && content == bytes && look(final).st_mtim.tv_sec == 1_650_000_000 && !partial)
        let kept = look(other)
        #expect(kept.st_ino == second.st_ino && kept.st_mtim.tv_sec == 1_600_000_000 && kept.st_nlink == 1)
    }

    /// A large file's ranges come in units of their own, each with its `have query`, and its
    /// finish in another (the coordinator pins them all to one agent): what the earlier ranges
    /// found stays. Past the copy limit the chunks are no longer listed; the file is still kept,
    /// and the index keeps offering its chunks, with its new mtime.
    @Test func aLargeFilesRangesFoundInPlaceAcrossUnitsKeepIt() throws {
        let t = try InPlaceFilesTests(copyLimit: 1 << 20)
        let bytes = SampleData.random(bytes: Self.size, seed: 77)
        try t.sendOnce(bytes)
        let before = t.look(t.final)
        let parts = Self.chunks(bytes)
        // The second range and the finish from a source of version 16 (a rolling update), which
        // marks nothing: what the first found stays.
        for (range, marked) in [(parts[0..<2], true), (parts[2..<4], false)] {
            t.place("j1", whole: marked)
            for c in range { #expect(try t.byReference("j1", c)) }
        }
        #expect(!t.partial)
        t.place("j1", whole: false)  // the finish unit's query
        try t.finish("j1", seconds: 1_600_000_123)
        #expect(t.look(t.final).st_ino == before.st_ino && t.look(t.final).st_mtim.tv_sec == 1_600_000_123 && t.content == bytes && !t.partial)
        #expect(try t.files.heldIds(paths: [t.target.relative]) == Set(parts.map(\.id)), "the rows stay current with the new mtime")
    }

    /// Past the copy limit, a file kept by the agent that did not finish it last (two agents
    /// share the root): that agent's rows, stale with the new mtime, become this one's, so the
    /// next re-sync still finds the file's chunks to send by reference.
    @Test func pastTheCopyLimitAFileKeptByTheOtherAgentKeepsItsRows() throws {
        let roots = try Roots()
        let state = roots.destination + "/.barge"
        let agents = try ["b1", "b2"].map { name in
            try FileManager.default.createDirectory(atPath: state + "/" + name, withIntermediateDirectories: true)
            let index = try ChunkIndex(path: state + "/" + name + "/" + ChunkIndex.fileName, root: roots.destination)
            return DestinationFiles(index: index, siblings: SiblingIndexes(root: roots.destination, own: index.path), inPlaceCopyLimit: 1 << 20, inPlaceRacyWindow: 0)
        }
        try FileManager.default.createDirectory(atPath: roots.destination + "/in", withIntermediateDirectories: true)
        let target = try RootedPath.lexical("in/big", under: roots.destination)
        let bytes = SampleData.random(bytes: Self.size, seed: 82)
        let parts = Self.chunks(bytes)
        let facts = [HaveQuery.Facts(tier: nil, size: UInt64(Self.size), mtimeSeconds: 1, whole: true)]
        #expect(agents[0].place(job: "j0", paths: [target.relative], facts: facts).isEmpty)
        for c in parts { try c.bytes.withUnsafeBytes { try agents[0].write(job: "j0", target: target, size: UInt64(Self.size), bytes: $0, at: c.offset, id: c.id, xxh: c.xxh) } }
        try agents[0].finish(job: "j0", target: target, size: UInt64(Self.size), mode: 0o644, mtimeSeconds: 1_500_000_000, mtimeNanoseconds: 0)
        let inode = look(target.absolute).st_ino
        #expect(agents[1].place(job: "j1", paths: [target.relative], facts: facts).isEmpty)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Self.chunk, alignment: 16)
        defer { buffer.deallocate() }
        for c in parts {
            #expect(try agents[1].copyLocal(job: "j1", target: target, size: UInt64(Self.size), offset: c.offset, length: c.bytes.count, id: c.id, xxh: c.xxh, buffer: buffer))
        }
        try agents[1].finish(job: "j1", target: target, size: UInt64(Self.size), mode: 0o644, mtimeSeconds: 1_600_000_000, mtimeNanoseconds: 0)
        #expect(look(target.absolute).st_ino == inode && look(target.absolute).st_mtim.tv_sec == 1_600_000_000)
        #expect(try agents[1].heldIds(paths: [target.relative]) == Set(parts.map(\.id)))
    }

    /// Past the copy limit, a chunk that must be written opens a partial copy that the chunks
    /// found in place are not copied into: the finish refuses the file as incomplete (the
    /// coordinator sends it again), and sent again the file arrives whole, through the copy.
    @Test func pastTheCopyLimitAChangedFileIsRefusedThenArrivesWhenSentAgain() throws {
        let t = try InPlaceFilesTests(copyLimit: 1 << 20)
        let bytes = SampleData.random(bytes: Self.size, seed: 78)
        try t.sendOnce(bytes)
        var changed = bytes
        for i in (2 * Self.chunk)..<(2 * Self.chunk + 10) { changed[i] ^= 0x5A }
        let parts = Self.chunks(changed)
        t.place("j1", whole: true)
        #expect(try t.byReference("j1", parts[0]) && t.byReference("j1", parts[1]))
        try t.byValue("j1", parts[2])
        #expect(try t.byReference("j1", parts[3]))
        #expect(throws: DestinationFiles.Incomplete.self) { try t.finish("j1") }
        t.place("j1", whole: true)
        for c in parts where c.offset != parts[2].offset { #expect(try t.byReference("j1", c)) }
        try t.finish("j1")
        #expect(t.content == changed && !t.partial)
    }

    /// Only part of a file found here by its finish (its other chunks went to another agent):
    /// refused as incomplete, and nothing is made for it, not even a partial copy.
    @Test func aFileFoundOnlyInPartIsRefusedAndLeftAsItWas() throws {
        let bytes = SampleData.random(bytes: Self.size, seed: 79)
        try sendOnce(bytes)
        let before = look(final)
        place("j1", whole: true)
        #expect(try byReference("j1", Self.chunks(bytes)[0]))
        #expect(throws: DestinationFiles.Incomplete.self) { try finish("j1") }
        #expect(!partial && look(final).st_ino == before.st_ino && look(final).st_ctim.tv_nsec == before.st_ctim.tv_nsec && content == bytes)
    }

    /// A file changed a moment ago (here: just written) is not trusted to stay as read, as git
    /// treats a racily clean file: its chunks go into a partial copy, and it arrives anew.
    @Test func aFileChangedAMomentAgoIsNotKept() throws {
        let t = try InPlaceFilesTests(racyWindow: 2)
        let bytes = SampleData.random(bytes: Self.size, seed: 80)
        try t.sendOnce(bytes)
        let before = t.look(t.final)
        t.place("j1", whole: true)
        #expect(try t.byReference("j1", Self.chunks(bytes)[0]))
        #expect(t.partial)
        for c in Self.chunks(bytes).dropFirst() { #expect(try t.byReference("j1", c)) }
        try t.finish("j1")
        #expect(t.look(t.final).st_ino != before.st_ino && t.content == bytes)
    }

    /// A final copy changed at one place, its mtime put back (so its rows still look current):
    /// a chunk sent by reference for that place is refused (`need`) and only its row goes; the
    /// file's other chunks are still offered and copied. Before, every row of the file went, and
    /// the rest of it crossed the wire (336 MiB of a 340 MiB file with one MiB changed).
    @Test func aFinalCopyChangedAtOnePlaceKeepsOfferingTheRest() throws {
        let bytes = SampleData.random(bytes: Self.size, seed: 81)
        try sendOnce(bytes)
        damageSecondChunk(mtimePutBack: true)
        let parts = Self.chunks(bytes)
        place("j1", whole: false)
        #expect(try !byReference("j1", parts[1]))
        #expect(try files.heldIds(paths: [target.relative]) == Set([parts[0], parts[2], parts[3]].map(\.id)))
        for c in [parts[0], parts[2], parts[3]] { #expect(try byReference("j1", c)) }
        try sendSecondChunkAndFinish(parts, whole: bytes)
    }

    /// The source left the file out: what was found of it is forgotten, and nothing stays.
    @Test func aFileLeftOutIsForgotten() throws {
        let bytes = SampleData.random(bytes: Self.size, seed: 76)
        try sendOnce(bytes)
        place("j1", whole: true)
        #expect(try byReference("j1", Self.chunks(bytes)[0]))
        #expect(files.inPlace.count == 1)
        try files.leftOut(job: "j1", target: target)
        #expect(files.inPlace.count == 0 && !partial && content == bytes)
    }
}
