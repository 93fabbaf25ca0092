#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Creates what a transfer produces besides regular files: directories (empty ones too) and
/// symbolic links, plus the parent directories every destination path needs. Links are created
/// under a temporary name and renamed into place, so a half-made link never shows.
public enum DestinationEntries {
    /// Access time left alone: UTIME_OMIT, a macro Swift cannot import ((1 << 30) - 2 on Linux).
    public static let omitTime = timespec(tv_sec: 0, tv_nsec: (1 << 30) - 2)
    /// How long a partial copy must have gone unwritten before a later job's directory removes
    /// it (`removeStalePartials`), in seconds.
    public static let stalePartialAge = 3600

    /// Creates each missing directory above `path` (mode 0755); existing ones are left as they are.
    /// Each open is confined to the root by the kernel.
    public static func createParents(of path: RootedPath) throws(StoreError) {
        guard path.components.count > 1 else { return }
        close(try RootDirectory.open(path.root).openDirectory(path.components.dropLast(), create: true, display: path.relative, throughLinks: false, lifting: true))
    }

    /// Creates the directory if missing, then gives it `mode` and `mtime`, each only where it
    /// differs: an unchanged re-sync changes nothing in an unchanged directory, its ctime included,
    /// as rsync leaves it (a review: every directory's ctime moved on every re-sync, which backup
    /// and snapshot tools read as a change). An existing non-directory under that name is an
    /// error, never replaced.
    public static func makeDirectory(_ path: RootedPath, mode: UInt32, mtimeSeconds: Int64, mtimeNanoseconds: Int32) throws(StoreError) {
        guard !path.components.isEmpty else { return }
        // Opened (and made, if missing) beneath the root: an existing non-directory is refused,
        // named (`RootDirectory.notADirectory`).
        let fd = try RootDirectory.open(path.root).openDirectory(path.components[...], create: true, display: path.relative, throughLinks: false, lifting: true)
        defer { close(fd) }
        // First: a removal moves the directory's mtime, which is set below.
        removeStalePartials(in: fd)
        var st = stat()
        let known = fstat(fd, &st) == 0
        var changed = false
        if !known || st.st_mode & 0o7777 != mode_t(mode & 0o7777) {
            guard fchmod(fd, mode_t(mode & 0o7777)) == 0 else { throw .system(operation: "chmod", path: path.relative, errno: errno) }
            changed = true
        }
        if !known || Int64(st.st_mtim.tv_sec) != mtimeSeconds || Int32(st.st_mtim.tv_nsec) != mtimeNanoseconds {
            var times = [omitTime, timespec(tv_sec: Int(mtimeSeconds), tv_nsec: Int(mtimeNanoseconds))]
            guard futimens(fd, &times) == 0 else { throw .system(operation: "set mtime of", path: path.relative, errno: errno) }
            changed = true
        }
        // Durable before it is acknowledged (the job may end with it): its mode, its mtime, and
        // (on journalling file systems) its own entry. Before, a power cut soon after a job's
        // success could lose empty directories, modes and mtimes (a reading review). Only what
        // changed: an unchanged re-sync syncs nothing.
        if changed { guard fsync(fd) == 0 else { throw .system(operation: "fsync directory", path: path.relative, errno: errno) } }
    }

    /// Removes the partial copies left in a directory the job has finished with: a directory's
    /// mode and mtime are set once everything below it is done, and the jobs that write into one
    /// directory take turns, so a partial copy still there then is no file's of this job, but an
    /// earlier run's whose file has gone from the source since (rsync leaves no temporary file
    /// after a run that succeeds). Before, it stayed for good. Only a copy Barge made and never
    /// finished: a regular file named as a partial copy that still bears the partial mark
    /// (`PartialFileWriter.partialMode`'s sticky bit), of the agent's own user; anything else of
    /// that name is left alone. And only one not written for `stalePartialAge`: a copy written
    /// meanwhile by a writer outside the turn-taking (`verify --repair`, another site name on
    /// the same root), or a failed or cancelled job's that `barge resume` would go on with, was
    /// removed too (its rename failed, or the resume sent the whole file again; a review).
    static func removeStalePartials(in directory: Int32) {
        let oldest = time(nil) - stalePartialAge
        let listing = dup(directory)
        guard listing >= 0, let dir = fdopendir(listing) else { if listing >= 0 { close(listing) }; return }
        defer { closedir(dir) }
        var stale: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self) }
            guard name.hasSuffix(PartialFileWriter.suffix), name != PartialFileWriter.suffix else { continue }
            var st = stat()
            guard fstatat(directory, name, &st, AT_SYMLINK_NOFOLLOW) == 0, st.st_mode & S_IFMT == S_IFREG,
                  st.st_mode & S_ISVTX != 0, st.st_uid == geteuid(), st.st_mtim.tv_sec <= oldest else { continue }
            stale.append(name)
        }
        for name in stale { _ = DirectoryLift.retrying(in: directory) { unlinkat(directory, name, 0) } }
    }

    /// Removes the file `path` from its directory, opened beneath the root (never through a
    /// link), lifted when it is a read-only directory of the agent's own user (`DirectoryLift`):
    /// an old copy or a partial one in a directory given the source's 0555 once stayed (and a
    /// file placed cold beside its old hot copy was sent again on every re-sync). 0, or -1 with
    /// errno set.
    public static func removeFile(_ path: RootedPath) -> Int32 {
        guard let name = path.components.last else { errno = EISDIR; return -1 }
        let parent: Int32
        do {
            parent = try RootDirectory.open(path.root).openDirectory(path.components.dropLast(), create: false, display: path.relative, throughLinks: false, lifting: true)
        } catch {
            if case .system(_, _, let e) = error { errno = e } else { errno = ENOTDIR }
            return -1
        }
        defer { close(parent) }
        return DirectoryLift.retrying(in: parent) { unlinkat(parent, name, 0) }
    }

    /// Creates the link `name` in `parent` pointing at `target` (stored as is, never followed),
    /// replacing an existing link or file of that name but never a directory.
    public static func makeSymlink(in parent: RootedPath, name: String, target: String, mtimeSeconds: Int64, mtimeNanoseconds: Int32) throws(StoreError) {
        guard !name.isEmpty, name != ".", name != "..", !name.utf8.contains(UInt8(ascii: "/")) else { throw .invalidPath(path: name, reason: "not a file name") }
        let display = parent.components.isEmpty ? name : parent.relative + "/" + name
        let dirfd = try RootDirectory.open(parent.root).openDirectory(parent.components[...], create: true, display: display, throughLinks: false, lifting: true)
        defer { close(dirfd) }
        var st = stat()
        if fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0, st.st_mode & S_IFMT == S_IFDIR {
            throw .invalidPath(path: display, reason: "a directory is in the way of the symbolic link")
        }
        let temporary = temporaryLinkName(for: name)
        unlinkat(dirfd, temporary, 0)
        // In a read-only directory of the agent's own user, lifted for the link (`DirectoryLift`).
        guard DirectoryLift.retrying(in: dirfd, { symlinkat(target, dirfd, temporary) }) == 0 else { throw .system(operation: "create symbolic link", path: display, errno: errno) }
        var times = [omitTime, timespec(tv_sec: Int(mtimeSeconds), tv_nsec: Int(mtimeNanoseconds))]
        guard utimensat(dirfd, temporary, &times, AT_SYMLINK_NOFOLLOW) == 0 else {
            let e = errno
            _ = DirectoryLift.retrying(in: dirfd) { unlinkat(dirfd, temporary, 0) }
            throw .system(operation: "set mtime of", path: display, errno: e)
        }
        guard DirectoryLift.retrying(in: dirfd, { renameat(dirfd, temporary, dirfd, name) }) == 0 else {
            let e = errno
            _ = DirectoryLift.retrying(in: dirfd) { unlinkat(dirfd, temporary, 0) }
            throw .system(operation: "rename", path: display, errno: e)
        }
        // Not synced here: one fsync per link cost seconds for a tree of many links. The job's
        // `directories` unit sets this directory's mtime after every link in it is made (the
        // link moved it), and syncs it then (`makeDirectory`), before the job can succeed.
    }

    /// The name a link is made under before it is renamed to `name`: `.<name>.barge-link-<pid>`
    /// (the process's own, so that two agents sharing the root never rename each other's), or,
    /// where that would pass NAME_MAX (255 bytes), `.<128-bit hash of the name>.barge-link-<pid>`.
    /// A link whose name was 236 bytes or more failed with ENAMETOOLONG.
    static func temporaryLinkName(for name: String) -> String {
        let tail = ".barge-link-\(getpid())"
        if 1 + name.utf8.count + tail.utf8.count <= 255 { return "." + name + tail }
        return "." + NameHash.hex128(name) + tail
    }

    /// Writes verified bytes in place into a finished file (`verify --repair`), then syncs it and
    /// puts its mtime back, unless the mtime changed since the write (another agent's `repair
    /// done` gave the file the scan's mtime meanwhile: an agent stopped in the `fsync` and let go
    /// on later put the damage's mtime back over it, 7 of 10 runs in h3 of session 50). The file
    /// must exist with exactly `size` bytes; it is never created. Aligned stretches of zeros are
    /// left as holes, as a transfer leaves them (`writeSparse`).
    public static func repair(_ path: RootedPath, size: UInt64, bytes: UnsafeRawBufferPointer, at offset: UInt64) throws(StoreError) {
        let (fd, st) = try openFinished(path, size: size, flags: O_WRONLY, refusal: "it cannot be repaired in place")
        defer { close(fd) }
        try writeSparse(fd, bytes, at: offset, path: path)
        var written = stat()
        guard fstat(fd, &written) == 0 else { throw .system(operation: "stat", path: path.relative, errno: errno) }
        guard fsync(fd) == 0 else { throw .system(operation: "fsync", path: path.relative, errno: errno) }
        var now = stat()
        guard fstat(fd, &now) == 0 else { throw .system(operation: "stat", path: path.relative, errno: errno) }
        guard now.st_mtim.tv_sec == written.st_mtim.tv_sec, now.st_mtim.tv_nsec == written.st_mtim.tv_nsec else { return }
        var times = [omitTime, st.st_mtim]
        guard futimens(fd, &times) == 0 else { throw .system(operation: "set mtime of", path: path.relative, errno: errno) }
    }

    /// Writes `bytes` at `offset`, all of them, each aligned stretch of
    /// `PartialFileWriter.holeMinimum` zeros punched as a hole (written where the file system
    /// makes none), as `PartialFileWriter.write` leaves them: a repaired chunk of zeros was written
    /// out, and the file stopped being sparse there (h2 of session 53, F6).
    static func writeSparse(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, at offset: UInt64, path: RootedPath) throws(StoreError) {
        try PartialFileWriter.leavingHoles(bytes, at: offset, hole: { i, end throws(StoreError) in
            try PartialFileWriter.punchHole(fd, offset + UInt64(i), count: end - i, display: path.relative)
        }, write: { from, to throws(StoreError) in
            try PartialFileWriter.writeAll(fd, UnsafeRawBufferPointer(rebasing: bytes[from..<to]), at: offset + UInt64(from), display: path.relative)
        })
    }

    /// A file repaired in place gets its mode and mtime (`repair done`, protocol version 15).
    /// Like `repair`, it must exist with exactly `size` bytes and is never created nor followed
    /// through a link.
    public static func repaired(_ path: RootedPath, size: UInt64, mode: UInt32, mtime: (seconds: Int64, nanoseconds: Int32)) throws(StoreError) {
        let (fd, _) = try openFinished(path, size: size, flags: O_RDONLY, refusal: "its repair cannot be finished")
        defer { close(fd) }
        guard fchmod(fd, mode_t(FileModes.atDestination(mode))) == 0 else { throw .system(operation: "set mode of", path: path.relative, errno: errno) }
        var times = [omitTime, timespec(tv_sec: Int(mtime.seconds), tv_nsec: Int(mtime.nanoseconds))]
        guard futimens(fd, &times) == 0 else { throw .system(operation: "set mtime of", path: path.relative, errno: errno) }
    }

    /// Opens a finished file for its repair, never through a link nor creating it, and checks it
    /// is a regular file of exactly `size` bytes; returns the descriptor (the caller closes it)
    /// and its status.
    private static func openFinished(_ path: RootedPath, size: UInt64, flags: Int32, refusal: String) throws(StoreError) -> (Int32, stat) {
        let fd = path.openFollowingNoLinkAtTheEnd(flags | O_NONBLOCK)
        guard fd >= 0 else { throw .system(operation: "open for repair", path: path.relative, errno: errno) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            let e = errno
            close(fd)
            throw .system(operation: "stat", path: path.relative, errno: e)
        }
        guard st.st_mode & S_IFMT == S_IFREG, UInt64(st.st_size) == size else {
            close(fd)
            throw .invalidPath(path: path.relative, reason: "is not a regular file of \(size) bytes; \(refusal)")
        }
        return (fd, st)
    }
}
