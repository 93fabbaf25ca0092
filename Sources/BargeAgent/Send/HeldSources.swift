import BargeStore
import NIOConcurrencyHelpers

#if canImport(Glibc)
import Glibc
#endif

/// A unit's source files that it reads in more than one chunk, each opened once for the whole
/// unit, with its ctime then: every chunk of the file comes from that one file, and a ctime
/// moved since (which no one can put back) is a change. Opened again for each chunk, a file
/// replaced by rename midway (the same size and mtime: `mv new f` after `touch -r f new`) gave
/// the old bytes before the rename and the new ones after, and the mixed file passed every check;
/// so did a write in place whose mtime was put back. Now the file held loses its name (its ctime
/// moves with its link count), or is written (so does its ctime): found changed, left out.
///
/// Chunks of one file read by other units (the ranges of a large file, or a unit tried again)
/// open the path again, and find the file the scan saw by its identity (protocol version 19:
/// inode and ctime, `ChunkSource.checkUnchanged`); with a coordinator before 19, by its size and
/// mtime alone.
final class HeldSources: Sendable {
    struct Held {
        let fd: Int32
        let ctime: timespec
    }
    private let files = NIOLockedValueBox<[Int: Held]>([:])

    /// File `index`'s descriptor, opened by `open` the first time. When `open` fails, its error
    /// is thrown, and the file's next chunk tries again.
    func descriptor(_ index: Int, path: String, open: () throws -> Int32) throws -> Held {
        try files.withLockedValue { held in
            if let h = held[index] { return h }
            let fd = try open()
            var st = stat()
            guard fstat(fd, &st) == 0 else {
                let e = errno
                close(fd)
                throw StoreError.system(operation: "stat", path: path, errno: e)
            }
            let h = Held(fd: fd, ctime: st.st_ctim)
            held[index] = h
            return h
        }
    }

    /// Closes every file; the unit has ended.
    func closeAll() {
        let all = files.withLockedValue { held in
            defer { held = [:] }
            return Array(held.values)
        }
        for h in all { close(h.fd) }
    }

    deinit { closeAll() }
}
