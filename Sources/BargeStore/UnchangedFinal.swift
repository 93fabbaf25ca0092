#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A file already under its final name with exactly the bytes a transfer brings for it is kept
/// where it is, as `rsync --checksum` leaves an identical file alone: only its mode and mtime are
/// given, in place. Writing it again (a partial copy, `fsync`, a rename) gave an unchanged
/// `--checksum` re-sync a new inode for every file, and wrote the whole tree once more.
public enum UnchangedFinal {
    /// How a file was kept.
    public enum Outcome: Sendable {
        /// Its mode and mtime were already right: nothing changed.
        case untouched
        /// It was given its mode or mtime.
        case given
    }

    /// Keeps the file at `final` when it is a regular file of `size` bytes that `matches` accepts
    /// (the caller's hash of them; not asked for an empty file): it gets `mode` (without
    /// set-user-ID and set-group-ID, `FileModes`) and the mtime, made durable, and the result says
    /// whether they changed. Nil, with nothing changed, when that is not so, or not safely so (the
    /// transfer then writes the file as any other):
    /// - no regular file of that size is there, opened beneath the root through no link;
    /// - a partial copy of it lies beside it (the transfer takes that over, as it does today);
    /// - its mode or mtime must change but it has other names (a hard link: a change would reach
    ///   them too, and a rename leaves them alone), or the change is refused (not its owner);
    /// - it cannot be read, or `buffer` is shorter than `size`.
    ///
    /// Nothing is opened but through the root's descriptor: the file first as an `O_PATH`
    /// descriptor with no link followed (no side effect on a device or FIFO put there), then read
    /// through that same inode.
    public static func keep(_ final: RootedPath, in root: RootDirectory, size: UInt64, mode: UInt32, mtimeSeconds: Int64, mtimeNanoseconds: Int32,
                            buffer: UnsafeMutableRawBufferPointer, matches: (UnsafeRawBufferPointer) -> Bool) -> Outcome? {
        guard size <= UInt64(buffer.count), let (held, st) = openFinal(final, in: root, size: size) else { return nil }
        defer { close(held) }
        let fd = open("/proc/self/fd/\(held)", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        if size > 0 {
            let region = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<Int(size)])
            guard readAll(fd, into: region, at: 0), matches(UnsafeRawBufferPointer(region)) else { return nil }
        }
        return give(fd, st, mode: mode, mtimeSeconds: mtimeSeconds, mtimeNanoseconds: mtimeNanoseconds)
    }

    /// What a file under its final name was when its bytes were checked: a later look that finds
    /// the same device, inode, size, mtime and ctime finds the same bytes (a write, a truncation,
    /// a rename over it or a change of mode all change one of them).
    public struct Identity: Hashable, Sendable {
        public let device: UInt64
        public let inode: UInt64
        public let size: UInt64
        public let mtime: Int64
        public let mtimeNanoseconds: Int
        public let ctime: Int64
        public let ctimeNanoseconds: Int

        public init(_ st: stat) {
            device = UInt64(st.st_dev)
            inode = UInt64(st.st_ino)
            size = UInt64(st.st_size)
            mtime = Int64(st.st_mtim.tv_sec)
            mtimeNanoseconds = Int(st.st_mtim.tv_nsec)
            ctime = Int64(st.st_ctim.tv_sec)
            ctimeNanoseconds = Int(st.st_ctim.tv_nsec)
        }
    }

    /// Reads `region.count` bytes at `offset` of the regular file of `size` bytes at `final`
    /// (opened beneath the root through no link, with no partial copy beside it unless
    /// `besidePartial`) and returns what the file was while they were read: nil when it is not
    /// so, or it changed during the read.
    public static func read(_ final: RootedPath, in root: RootDirectory, size: UInt64, at offset: UInt64, into region: UnsafeMutableRawBufferPointer,
                            besidePartial: Bool = false) -> Identity? {
        guard let (held, before) = openFinal(final, in: root, size: size, besidePartial: besidePartial) else { return nil }
        defer { close(held) }
        let fd = open("/proc/self/fd/\(held)", O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var after = stat()
        guard readAll(fd, into: region, at: offset), fstat(fd, &after) == 0, Identity(after) == Identity(before) else { return nil }
        return Identity(before)
    }

    /// Keeps the file at `final` whose bytes were checked, chunk by chunk, while it was
    /// `identity` (`read`): it still is, so it holds them. It gets `mode` and the mtime as `keep`
    /// gives them, with the same refusals (a partial copy beside it, other names, not its owner).
    public static func keep(_ final: RootedPath, in root: RootDirectory, checkedAs identity: Identity, mode: UInt32, mtimeSeconds: Int64,
                            mtimeNanoseconds: Int32) -> Outcome? {
        guard let (held, st) = openFinal(final, in: root, size: identity.size) else { return nil }
        defer { close(held) }
        guard Identity(st) == identity else { return nil }
        let fd = open("/proc/self/fd/\(held)", O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        return give(fd, st, mode: mode, mtimeSeconds: mtimeSeconds, mtimeNanoseconds: mtimeNanoseconds)
    }

    /// The regular file of `size` bytes at `final` as an `O_PATH` descriptor, and its status;
    /// nil when there is none, opened beneath the root through no link, or a partial copy of it
    /// lies beside it (the transfer takes that over).
    private static func openFinal(_ final: RootedPath, in root: RootDirectory, size: UInt64, besidePartial: Bool = false) -> (Int32, stat)? {
        let held = root.openBeneath(final.relative, RootDirectory.oPath | O_NOFOLLOW | O_CLOEXEC, throughLinks: false)
        guard held >= 0 else { return nil }
        var st = stat()
        guard fstat(held, &st) == 0, st.st_mode & S_IFMT == S_IFREG, UInt64(st.st_size) == size else {
            close(held)
            return nil
        }
        guard !besidePartial else { return (held, st) }
        let partial = root.openBeneath(PartialFileWriter.partialRelative(of: final), RootDirectory.oPath | O_NOFOLLOW | O_CLOEXEC, throughLinks: false)
        if partial >= 0 {
            close(partial)
            close(held)
            return nil
        }
        return (held, st)
    }

    private static func readAll(_ fd: Int32, into region: UnsafeMutableRawBufferPointer, at offset: UInt64) -> Bool {
        var done = 0
        while done < region.count {
            let n = pread(fd, region.baseAddress! + done, region.count - done, off_t(offset) + off_t(done))
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { return false }
            done += n
        }
        return true
    }

    /// Gives the open file `fd` (status `st`) `mode` and the mtime, made durable; nil when that
    /// must change a file with other names or is refused.
    private static func give(_ fd: Int32, _ st: stat, mode: UInt32, mtimeSeconds: Int64, mtimeNanoseconds: Int32) -> Outcome? {
        let wanted = mode_t(FileModes.atDestination(mode) & 0o7777)
        let sameMode = st.st_mode & 0o7777 == wanted
        let sameTime = Int64(st.st_mtim.tv_sec) == mtimeSeconds && Int32(st.st_mtim.tv_nsec) == mtimeNanoseconds
        if sameMode && sameTime { return .untouched }
        guard st.st_nlink == 1 else { return nil }
        if !sameMode { guard fchmod(fd, wanted) == 0 else { return nil } }
        if !sameTime {
            var times = [DestinationEntries.omitTime, timespec(tv_sec: Int(mtimeSeconds), tv_nsec: Int(mtimeNanoseconds))]
            guard futimens(fd, &times) == 0 else { return nil }
        }
        return fsync(fd) == 0 ? .given : nil
    }
}
