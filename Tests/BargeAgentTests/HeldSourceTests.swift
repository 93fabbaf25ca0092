import BargeAgent
import BargeBench
import BargeDigest
import BargeWire
import Foundation
import Testing

/// A file a unit reads in several chunks is read through one descriptor (`HeldSources`), whose
/// ctime is checked after every chunk: a file put in its place by rename midway, with the same
/// size and mtime, and a write in place whose mtime was put back, are both found changed.
struct HeldSourceTests {
    func held(_ fd: Int32) -> (fd: Int32, ctime: timespec) {
        var st = stat()
        #expect(fstat(fd, &st) == 0)
        return (fd, st.st_ctim)
    }

    /// `name` under `roots`' source, opened as a unit holds it: the source, the descriptor and its
    /// ctime, and the mtime the scan saw.
    func holding(_ name: String, in roots: Roots) throws -> (source: ChunkSource, held: (fd: Int32, ctime: timespec), mtime: (Int64, Int32)) {
        var st = stat()
        #expect(stat(roots.source + "/" + name, &st) == 0)
        let source = ChunkSource(root: roots.source, codec: .fixed(.none))
        return (source, held(try source.open(name)), (Int64(st.st_mtim.tv_sec), Int32(st.st_mtim.tv_nsec)))
    }

    func setMtime(_ path: String, like other: String) {
        var st = stat()
        #expect(stat(other, &st) == 0)
        var times = [st.st_atim, st.st_mtim]
        #expect(utimensat(AT_FDCWD, path, &times, 0) == 0)
    }

    @Test func aFileReplacedByRenameMidwayIsFoundChangedNotMixed() throws {
        let roots = try Roots()
        let size = 3 << 20
        let old = SampleData.random(bytes: size, seed: 1), new = SampleData.random(bytes: size, seed: 2)
        let path = roots.source + "/f", next = roots.source + "/new"
        try Data(old).write(to: URL(fileURLWithPath: path))
        try Data(new).write(to: URL(fileURLWithPath: next))
        setMtime(next, like: path)
        let (source, kept, mtime) = try holding("f", in: roots)
        defer { close(kept.fd) }
        func chunk(_ k: Int, held: (fd: Int32, ctime: timespec)?) throws -> [UInt8] {
            try source.prepare(sourcePath: "f", held: held, offset: UInt64(k << 20), length: 1 << 20, fileSize: UInt64(size), mtime: mtime,
                               destination: ChunkPlace(job: "j", path: "f", offset: UInt64(k << 20))).id
        }
        #expect(try chunk(0, held: kept) == SHA256.hash(Array(old[0..<(1 << 20)])).bytes)
        usleep(20_000)  // past a coarse clock's tick
        #expect(rename(next, path) == 0)
        // The file first opened lost its name (its ctime moves with its link count): the file is
        // found changed, and left out rather than finished mixed; the reason says it has no name.
        let replaced = #expect(throws: SourceChanged.self) { _ = try chunk(1, held: kept) }
        #expect(replaced?.what.contains("deleted, or another file renamed over it") == true, "\(String(describing: replaced))")
        // Opened again for the chunk (as before), it reads the new file: the mix that passed.
        #expect(try chunk(1, held: nil) == SHA256.hash(Array(new[(1 << 20)..<(2 << 20)])).bytes)
    }

    /// A file deleted while its unit reads it is said to be deleted ("written to, or its
    /// attributes changed" before: the last name's removal moves the ctime too).
    @Test func aFileDeletedMidwayIsSaidToBeDeleted() throws {
        let roots = try Roots()
        let size = 2 << 20
        try Data(SampleData.random(bytes: size, seed: 4)).write(to: URL(fileURLWithPath: roots.source + "/f"))
        let (source, kept, mtime) = try holding("f", in: roots)
        defer { close(kept.fd) }
        let place = ChunkPlace(job: "j", path: "f", offset: 0)
        _ = try source.prepare(sourcePath: "f", held: kept, offset: 0, length: 1 << 20, fileSize: UInt64(size), mtime: mtime, destination: place)
        #expect(unlink(roots.source + "/f") == 0)
        let deleted = #expect(throws: SourceChanged.self) {
            _ = try source.prepare(sourcePath: "f", held: kept, offset: 1 << 20, length: 1 << 20, fileSize: UInt64(size), mtime: mtime, destination: place)
        }
        #expect(deleted?.what.hasPrefix("it was deleted") == true, "\(String(describing: deleted))")
    }

    @Test func aWriteInPlaceWhoseMtimeWasPutBackIsFoundByTheCtime() throws {
        let roots = try Roots()
        let size = 2 << 20
        let path = roots.source + "/f"
        try Data(SampleData.random(bytes: size, seed: 3)).write(to: URL(fileURLWithPath: path))
        let (source, kept, mtime) = try holding("f", in: roots)
        defer { close(kept.fd) }
        var st = stat()
        #expect(stat(path, &st) == 0)
        let place = ChunkPlace(job: "j", path: "f", offset: 0)
        _ = try source.prepare(sourcePath: "f", held: kept, offset: 0, length: 1 << 20, fileSize: UInt64(size), mtime: mtime, destination: place)
        // The ctime has whole nanoseconds on ext4 and tmpfs, but a coarse clock may give the
        // write the ctime the file already had: wait for the next tick.
        usleep(20_000)
        let other = open(path, O_WRONLY)
        #expect(pwrite(other, [UInt8](repeating: 7, count: 4096), 4096, off_t(1 << 20)) == 4096)
        close(other)
        var times = [st.st_atim, st.st_mtim]
        #expect(utimensat(AT_FDCWD, path, &times, 0) == 0)
        #expect(throws: SourceChanged.self) {
            _ = try source.prepare(sourcePath: "f", held: kept, offset: 1 << 20, length: 1 << 20, fileSize: UInt64(size), mtime: mtime, destination: place)
        }
    }
}
