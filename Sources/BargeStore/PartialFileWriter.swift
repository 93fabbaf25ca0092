import CBargeFS
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes one destination file the safe way: chunks land by `pwrite` in `<name>.barge-partial`, in
/// any order. `finish` then runs `fsync`, sets the mode and mtime, renames the file atomically to its
/// final name, and syncs the directory. A partial file never appears under its final name, and a
/// failure names its errno (ENOSPC, EACCES, …). Sendable so that several data-plane connections
/// can share one file: writes to different offsets may run at once, but callers serialise
/// `prepare`, `finish`, `seal` and `abandon` against every write (a write racing `finish` could
/// land on a reused descriptor).
public final class PartialFileWriter: @unchecked Sendable {
    public static let suffix = ".barge-partial"
    /// A partial copy is created with the sticky bit (meaningless on a regular file under Linux)
    /// and keeps it until `seal` gives the file its final mode. A writer that finds the bit gone
    /// knows that another writer finished the file (an agent sharing the root, or a run of its
    /// own that outlived a reassignment) and writes nothing more into it: its write would land in
    /// the finished file under its final name and move its mtime to now.
    static let partialMode: mode_t = 0o1600

    public let final: RootedPath
    private let directory: RootDirectory
    /// The partial copy's name beside the final one: `<name>.barge-partial`, or, where that would
    /// pass NAME_MAX (255 bytes), `.<128-bit hash of the name>.barge-partial`.
    public let partialName: String
    public var partialPath: String { Self.partialPath(of: final) }
    private var fd: Int32
    /// The partial copy was there before (an earlier run left it): what it holds may be kept.
    public let existed: Bool
    /// The file bears the partial copy's mark (`partialMode`), so every write checks it first. A
    /// file system that does not keep the bit, or a partial copy left by a version without the
    /// mark, goes unchecked, as before. A copy this writer created is marked even when its first
    /// look finds no mark, where the file system keeps it (`keepsMark`): a writer stopped
    /// (SIGSTOP) between its create and that look, while another agent sharing the root wrote,
    /// sealed and renamed the copy, took itself for unmarked, and wrote a chunk into the finished
    /// file when let go on, moving its mtime (h3 of session 50, 6 of 31 runs).
    private let marked: Bool
    /// The same file opened with O_DIRECT, where the file system allows it (not tmpfs), for large
    /// writes: block-aligned writes from aligned memory go to the device without a copy into the
    /// page cache, and leave nothing for `fsync` to write back. Opened at the first write that can
    /// use it; -1 until then or when unavailable. Small files never use it: their writes are
    /// buffered and made durable in batches.
    private var directFD: Int32 = -1
    private var directTried = false
    /// The file's identity while it is parked (`park`): its descriptor closed, to be opened
    /// again by name, and checked to be the same file, when it is next written or sealed.
    private var parked: (device: UInt64, inode: UInt64, ctime: timespec)?
    /// Alignment O_DIRECT needs here: offset, length and memory address.
    public static let directAlignment = 4096
    /// Writes shorter than this are buffered.
    public static let directMinimum = 256 * 1024

    /// The partial copy's name for a final file name.
    public static func partialName(of name: String) -> String {
        if name.utf8.count + suffix.utf8.count <= 255 { return name + suffix }
        return "." + NameHash.hex128(name) + suffix
    }

    /// Where the partial copy of `final` is, as an absolute path.
    public static func partialPath(of final: RootedPath) -> String {
        partialPath(root: final.root, relative: final.relative)
    }

    /// Where the partial copy of `final` is, relative to the root.
    static func partialRelative(of final: RootedPath) -> String {
        (final.components.dropLast() + [partialName(of: final.components.last ?? "")]).joined(separator: "/")
    }

    /// Where the partial copy of the file at `relative` (below `root`) is, as an absolute path.
    public static func partialPath(root: String, relative: String) -> String {
        root + "/" + partialPath(relative: relative)
    }

    /// Where the partial copy of the file at `relative` is, relative to the same root.
    public static func partialPath(relative: String) -> String {
        let slash = PathKey.lastSlash(relative)
        let name = slash.map { String(relative[relative.utf8.index(after: $0)...]) } ?? relative
        let parent = slash.map { String(relative[..<relative.utf8.index(after: $0)]) } ?? ""
        return parent + partialName(of: name)
    }

    /// Creates any missing parent directories (0755), then the partial file (`partialMode`, 01600: 0600 and the mark) at its full size
    /// (sparse). An existing partial file is reopened, so a restarted transfer keeps what arrived.
    /// Every open is confined to the root by the kernel. `parents`: a batch's held directory
    /// (its files come directory by directory), rather than one opened and closed for this file.
    public convenience init(_ final: RootedPath, size: UInt64, parents: BatchParent? = nil) throws(StoreError) {
        try self.init(final, size: size, parents: parents, afterOpen: nil)
    }

    /// `afterOpen`: for tests, run between the open (a create or a reopen) and the first look at
    /// the file.
    init(_ final: RootedPath, size: UInt64, parents: BatchParent?, afterOpen: (() -> Void)?) throws(StoreError) {
        guard let name = final.components.last else { throw .invalidPath(path: final.relative, reason: "the root itself is not a file") }
        self.final = final
        directory = try RootDirectory.open(final.root)
        partialName = Self.partialName(of: name)
        let display = final.relative + Self.suffix
        let parent: Int32
        if let parents {
            parent = try parents.directory(of: final, in: directory)
        } else {
            parent = try directory.openDirectory(final.components.dropLast(), create: true, display: final.relative, throughLinks: false, lifting: true)
        }
        defer { if parents == nil { close(parent) } }
        // A directory under the final name would refuse the rename at the end: said before any
        // byte is written, and no partial copy is left beside it. One that is an agent's state
        // (its marker inside) is named so (a batch's paths are checked for markers above the
        // file only).
        var st = stat()
        if fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) == 0, st.st_mode & S_IFMT == S_IFDIR {
            if StatePaths.isMarker(in: parent, at: name + "/" + StatePaths.markerName) { throw .invalidPath(path: final.relative, reason: StatePaths.insideState) }
            throw .invalidPath(path: final.relative, reason: Self.directoryInTheWay)
        }
        // O_NOFOLLOW: a symbolic link planted under the partial name is refused, not followed.
        // O_NONBLOCK: one that became a FIFO since the look below fails (ENXIO) rather than
        // waits; it changes nothing for a regular file.
        // In a read-only directory of the agent's own user, lifted for the create (`DirectoryLift`).
        let partialName = partialName
        let create = { DirectoryLift.retrying(in: parent) { openat(parent, partialName, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, Self.partialMode) } }
        var fd = create()
        var reopened = fd < 0 && errno == EEXIST
        if reopened {
            // Something other than a file under the partial name (a link, a FIFO, a socket, a
            // device): opened for writing, a FIFO would hold the thread until a reader came.
            // Looked at only when the name is taken (O_EXCL creates nothing over anything).
            // Both lifted in a directory of the agent's own user it may not search (`DirectoryLift`).
            if DirectoryLift.retrying(in: parent, { fstatat(parent, partialName, &st, AT_SYMLINK_NOFOLLOW) }) == 0, !Self.mayHold(st) {
                throw .invalidPath(path: display, reason: Self.notAFile(st.st_mode))
            }
            fd = DirectoryLift.retrying(in: parent) { openat(parent, partialName, O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC) }
            // A copy sealed by a run that stopped before its rename (`seal` gives it the final
            // mode, 0444 for a read-only source file): the agent's own, so it gives it its write
            // bit back and opens it. Before, every later run failed on it with EACCES, for good,
            // until someone ran chmod (a reading review). Not the mark: a copy without it is
            // written unchecked, as one left by a version without the mark.
            // The mode is changed through a descriptor of the file itself (O_PATH, never through a
            // link: one put under the name in between is not followed).
            if fd < 0, errno == EACCES {
                let held = DirectoryLift.retrying(in: parent) { openat(parent, partialName, barge_o_path() | O_NOFOLLOW | O_CLOEXEC) }
                if held >= 0 {
                    defer { close(held) }
                    if fstat(held, &st) == 0, st.st_mode & S_IFMT == S_IFREG, st.st_uid == geteuid(),
                       chmod("/proc/self/fd/\(held)", (st.st_mode & 0o7777) | S_IRUSR | S_IWUSR) == 0 {
                        fd = DirectoryLift.retrying(in: parent) { openat(parent, partialName, O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC) }
                    }
                }
            }
            // A file with other names (a hard link under the partial name: a snapshot made with
            // `cp -al`, a hard-linking dedup tool) is not written into: its other names would
            // change with it. This name goes, and a new partial copy is made.
            if fd >= 0, fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG, st.st_nlink > 1 {
                close(fd)
                guard DirectoryLift.retrying(in: parent, { unlinkat(parent, partialName, 0) }) == 0 || errno == ENOENT else {
                    throw .system(operation: "remove a hard link under the partial name", path: display, errno: errno)
                }
                fd = create()
                reopened = false
            }
        }
        existed = reopened
        guard fd >= 0 else { throw .system(operation: "create", path: display, errno: errno, on: parent) }
        afterOpen?()
        guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG else {
            close(fd)
            throw .invalidPath(path: display, reason: Self.notAFile(st.st_mode))
        }
        self.fd = fd
        // A copy no longer under the partial name was finished (renamed) by another writer since
        // it was opened here, or removed: a writer stopped between its open and this look (a
        // stop lands as a system call returns) took such a sealed copy for an unmarked one and
        // wrote into the finished file. It is taken for finished: marked, so that every write
        // finds the mark gone and refuses, and not resized.
        file = (UInt64(st.st_dev), UInt64(st.st_ino))
        var named = stat()
        let gone = DirectoryLift.retrying(in: parent, { fstatat(parent, partialName, &named, AT_SYMLINK_NOFOLLOW) }) != 0
            || named.st_dev != st.st_dev || named.st_ino != st.st_ino
        marked = gone || st.st_mode & S_ISVTX != 0 || (!reopened && Self.keepsMark(device: UInt64(st.st_dev), in: parent))
        // One left by an earlier run may be longer. A new file large enough to hold a hole is
        // given its size at once: a run of zeros at its end is left as a hole (`write`), and must
        // still count in its size. Every byte must still arrive before `finish`. Under the lock
        // of those bytes, and only while the copy is still partial: resized (even to its own
        // size) once finished, its mtime would move.
        if !gone, existed || size >= UInt64(Self.holeMinimum) {
            let locked = marked ? lockingBytes(0, Int(clamping: size)) : false
            defer { if locked { Self.lock(fd, .none, 0, Int(clamping: size)) } }
            guard (marked && Self.isPartial(fd) == false) || ftruncate(fd, off_t(size)) == 0 else {
                let e = errno
                close(fd)
                self.fd = -1
                throw .system(operation: "size", path: display, errno: e)
            }
        }
    }

    deinit {
        if fd >= 0 { close(fd) }
        if directFD >= 0 { close(directFD) }
    }

    /// Closes the descriptors of a copy whose bytes have all been written and that waits for its
    /// batch's finish: an agent near its open-file limit (`ulimit -n`) with a thousand small files
    /// of a batch open failed with EMFILE, and so did its units' retries. The next `prepare`,
    /// `write` or `seal` opens it again by name, beneath the root, and refuses another file
    /// found under the name.
    public func park() {
        guard fd >= 0, parked == nil else { return }
        var st = stat()
        guard fstat(fd, &st) == 0 else { return }
        parked = (UInt64(st.st_dev), UInt64(st.st_ino), st.st_ctim)
        close(fd)
        fd = -1
        if directFD >= 0 { close(directFD); directFD = -1 }
        directTried = false
    }

    /// Whether the copy is parked (`park`).
    public var isParked: Bool { parked != nil }

    /// Opens a parked copy again (`park`).
    private func unpark() throws(StoreError) {
        guard let identity = parked else { return }
        let display = final.relative + Self.suffix
        let parent = try directory.openDirectory(final.components.dropLast(), create: false, display: display, throughLinks: false, lifting: true)
        defer { close(parent) }
        let partialName = partialName
        let reopened = DirectoryLift.retrying(in: parent) { openat(parent, partialName, O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC) }
        guard reopened >= 0 else { throw .system(operation: "open again", path: display, errno: errno, on: parent) }
        var st = stat()
        // Its ctime too: a file made under the name after this one was removed may get its inode
        // number at once.
        // Any change is taken for another file (its bytes may not be those written here): the
        // write or seal fails retryable (ESTALE), and the caller opens the copy afresh, keeping
        // only what still hashes right (a changed ctime that is the same file costs one retry).
        guard fstat(reopened, &st) == 0, UInt64(st.st_dev) == identity.device, UInt64(st.st_ino) == identity.inode,
              st.st_ctim.tv_sec == identity.ctime.tv_sec, st.st_ctim.tv_nsec == identity.ctime.tv_nsec else {
            close(reopened)
            throw .system(operation: "open again (changed under its name since its bytes were written)", path: display, errno: ESTALE)
        }
        fd = reopened
        parked = nil
    }

    /// Writes `bytes` at `offset`, all of them. Each aligned stretch of `holeMinimum` zeros among
    /// them is left as a hole (`sparse`); the rest is written by `place`.
    public func write(_ bytes: UnsafeRawBufferPointer, at offset: UInt64) throws(StoreError) {
        // Writes run side by side, so a parked copy is opened again by `prepare` (serialised
        // against them), never here: its caller does not write when that failed.
        try Self.leavingHoles(bytes, at: offset, hole: { i, end throws(StoreError) in try sparse(offset + UInt64(i), count: end - i) },
                              write: { from, to throws(StoreError) in try place(UnsafeRawBufferPointer(rebasing: bytes[from..<to]), at: offset + UInt64(from)) })
    }

    /// Walks `bytes`, to be written at `offset`: each aligned stretch of `holeMinimum` zeros
    /// among them (`from..<to`, indices into `bytes`) is offered to `hole`, which makes it a hole
    /// or answers false (the file system makes none), and `write` is given the rest, in order.
    static func leavingHoles(_ bytes: UnsafeRawBufferPointer, at offset: UInt64, hole: (Int, Int) throws(StoreError) -> Bool,
                             write: (Int, Int) throws(StoreError) -> Void) throws(StoreError) {
        let h = holeMinimum
        var i = (h - Int(offset % UInt64(h))) % h, placed = 0
        while i + h <= bytes.count {
            guard allZero(UnsafeRawBufferPointer(rebasing: bytes[i..<(i + h)])) else { i += h; continue }
            var end = i + h
            while end + h <= bytes.count, allZero(UnsafeRawBufferPointer(rebasing: bytes[end..<(end + h)])) { end += h }
            if try hole(i, end) {
                if i > placed { try write(placed, i) }
                placed = end
            }
            i = end
        }
        if placed < bytes.count { try write(placed, bytes.count) }
    }

    /// Writes `bytes` at `offset`. The whole blocks among them bypass the page cache when the
    /// write is large, the file system allows it and the memory is laid out like the file (the
    /// address of the byte at a block boundary is block-aligned); the partial blocks at either
    /// end are buffered.
    private func place(_ bytes: UnsafeRawBufferPointer, at offset: UInt64) throws(StoreError) {
        let a = Self.directAlignment
        let head = (a - Int(offset % UInt64(a))) % a
        guard bytes.count >= Self.directMinimum, directFD >= 0, Int(bitPattern: bytes.baseAddress! + head) % a == 0 else {
            return try write(fd, bytes, at: offset)
        }
        let blocks = (bytes.count - head) / a * a
        if head > 0 { try write(fd, UnsafeRawBufferPointer(rebasing: bytes[0..<head]), at: offset) }
        try write(directFD, UnsafeRawBufferPointer(rebasing: bytes[head..<(head + blocks)]), at: offset + UInt64(head))
        if head + blocks < bytes.count {
            try write(fd, UnsafeRawBufferPointer(rebasing: bytes[(head + blocks)...]), at: offset + UInt64(head + blocks))
        }
    }

    /// Zeros in stretches of this length, at offsets that are multiples of it, are left as holes
    /// rather than written (a sparse source file, an array allocated and never filled): they
    /// take no room at the destination, as `rsync -S` and `cp --sparse` leave them.
    public static let holeMinimum = 64 * 1024

    /// Whether every byte is zero. memcmp of the range against itself one byte on compares each
    /// byte with the next with libc's vector code, and stops at the first difference: at once
    /// for data that is not zeros.
    static func allZero(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return true }
        return base.load(as: UInt8.self) == 0 && memcmp(base, base + 1, bytes.count - 1) == 0
    }

    /// Makes `count` bytes at `offset` (whole blocks) a hole, which reads as zeros and holds no
    /// blocks: fallocate's PUNCH_HOLE, which also clears what an earlier run left there. False
    /// where the file system makes no holes (the caller writes the zeros instead).
    private func sparse(_ offset: UInt64, count: Int) throws(StoreError) -> Bool {
        let locked = marked ? lockingBytes(offset, count) : false
        defer { if locked { Self.lock(fd, .none, offset, count) } }
        if marked, Self.isPartial(fd) == false { throw .finishedElsewhere(path: final.relative) }
        return try Self.punchHole(fd, offset, count: count, display: final.relative + Self.suffix)
    }

    /// `count` bytes at `offset` of `fd` made a hole; false where the file system makes none.
    static func punchHole(_ fd: Int32, _ offset: UInt64, count: Int, display: String) throws(StoreError) -> Bool {
        #if os(Linux)
        guard barge_punch_hole(fd, Int64(offset), Int64(count)) == 0 else {
            // A file system without holes answers so each time; one call per stretch of zeros
            // costs nothing beside the write that follows.
            guard errno == EOPNOTSUPP || errno == ENOSYS else { throw .system(operation: "punch a hole in", path: display, errno: errno) }
            return false
        }
        return true
        #else
        return false
        #endif
    }

    /// Whether the open file still bears the partial copy's mark; nil when `fstat` fails.
    private static func isPartial(_ fd: Int32) -> Bool? {
        var st = stat()
        guard fstat(fd, &st) == 0 else { return nil }
        return st.st_mode & S_ISVTX != 0
    }

    #if os(Linux)
    static let oDirect = barge_o_direct()
    #endif

    /// Readies the file for a write of `count` bytes: opens the O_DIRECT descriptor at the first
    /// write large enough to use it. Writes to different offsets may then run side by side, as long
    /// as the caller serialises `prepare`, `seal` and `abandon` against them.
    /// A parked copy is opened again here (`park`); the error when that fails, and the caller
    /// then writes nothing.
    @discardableResult
    public func prepare(forWriteOf count: Int) -> StoreError? {
        do { try unpark() } catch { return error }
        #if os(Linux)
        guard count >= Self.directMinimum, !directTried, fd >= 0 else { return nil }
        directTried = true
        // The descriptor already open, reopened through /proc: the same file, whatever happened
        // to its name since.
        directFD = open("/proc/self/fd/\(fd)", O_WRONLY | O_CLOEXEC | Self.oDirect)
        #endif
        return nil
    }

    private func write(_ target: Int32, _ bytes: UnsafeRawBufferPointer, at offset: UInt64) throws(StoreError) {
        // Checked before each of a chunk's writes (its head, whole blocks and tail), under a
        // lock of the bytes written (`lockingBytes`), which a seal elsewhere waits for: a
        // writer paused (SIGSTOP) anywhere in a chunk while another finished the file writes no
        // more of it once it goes on, since the seal either came first (the check refuses) or
        // waited for this write to land.
        let locked = marked ? lockingBytes(offset, bytes.count) : false
        defer { if locked { Self.lock(fd, .none, offset, bytes.count) } }
        if marked, Self.isPartial(fd) == false { throw .finishedElsewhere(path: final.relative) }
        try Self.writeAll(target, bytes, at: offset, display: final.relative + Self.suffix)
    }

    /// All of `bytes` written at `offset` of `fd` (pwrite until done, past EINTR).
    static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, at offset: UInt64, display: String) throws(StoreError) {
        var done = 0
        while done < bytes.count {
            let n = pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                throw .system(operation: "write", path: display, errno: errno)
            }
            done += n
        }
    }

    /// Makes the file durable and gives it its final name, mode and mtime.
    public func finish(mode: UInt32, mtimeSeconds: Int64, mtimeNanoseconds: Int32, lockWait: Duration = PartialFileWriter.lockWait) throws(StoreError) {
        try seal(mode: mode, mtimeSeconds: mtimeSeconds, mtimeNanoseconds: mtimeNanoseconds, sync: true, lockWait: lockWait)
        let parent = try directory.openDirectory(final.components.dropLast(), create: false, display: final.relative, throughLinks: false, lifting: true)
        defer { close(parent) }
        try rename(in: parent)
        guard fsync(parent) == 0 else { throw .system(operation: "fsync directory of", path: final.relative, errno: errno) }
    }

    /// The first half of `finish`: with `sync`, `fsync`s the bytes (a batch that made them durable
    /// some other way passes false), then sets the mode and mtime and closes the file.
    ///
    /// The mark goes under a lock of the whole file, so that no other writer's write (each under a
    /// lock of its own bytes, `lockingBytes`) lands after it: such a write would move the finished
    /// file's mtime. One held past `lockWait` (a writer of another agent sharing the root, stopped
    /// between its check and its write) is left behind: the bytes are copied into a new file,
    /// which takes the partial copy's name and is sealed instead (`takeFreshCopy`).
    public func seal(mode: UInt32, mtimeSeconds: Int64, mtimeNanoseconds: Int32, sync: Bool, lockWait: Duration = PartialFileWriter.lockWait) throws(StoreError) {
        let name = final.relative + Self.suffix
        try unpark()
        guard fd >= 0 else { throw .invalidPath(path: final.relative, reason: "its partial copy is already closed") }
        // Durable first, outside the lock: the bytes are all there, and a write that lands
        // before the lock below only puts back the same verified bytes.
        if sync { guard fsync(fd) == 0 else { throw .system(operation: "fsync", path: name, errno: errno) } }
        if marked {
            if excluding(within: lockWait) {
                // Sealed elsewhere meanwhile (this seal was stopped before its lock): finished.
                if Self.isPartial(fd) == false {
                    Self.lock(fd, .none)
                    throw .finishedElsewhere(path: final.relative)
                }
            } else {
                try takeFreshCopy()
            }
        }
        // Any failure below lets go of the lock (its close), so no writer waits on a copy left open.
        guard fchmod(fd, mode_t(mode & 0o7777)) == 0 else {
            let e = errno
            Self.lock(fd, .none)
            throw .system(operation: "chmod", path: name, errno: e)
        }
        var times = [DestinationEntries.omitTime, timespec(tv_sec: Int(mtimeSeconds), tv_nsec: Int(mtimeNanoseconds))]
        guard futimens(fd, &times) == 0 else {
            let e = errno
            Self.lock(fd, .none)
            throw .system(operation: "set mtime of", path: name, errno: e)
        }
        close(fd)
        fd = -1
        if directFD >= 0 { close(directFD); directFD = -1 }
    }

    /// How long a seal waits for other writers' writes into the same copy to land, and a write
    /// for another writer's seal to end, before going on without them (`seal`, `lockingBytes`).
    /// A write takes milliseconds (a write the kernel throttles while it writes back dirty pages,
    /// a fraction of a second); only a stopped process holds its lock longer. At 5 s, a job whose
    /// destination agent was stopped mid-write ended that much later (h1 of session 51).
    public static let lockWait: Duration = .seconds(2)

    /// The locks a writer and a seal take (`barge_ofd_lock`): a writer's is shared, on the bytes
    /// it writes, and a seal's exclusive, on the whole file. A copy is opened for reading and
    /// writing, since a shared lock needs a file open for reading. Writers do not exclude each
    /// other: exclusive, a live agent that took over a stopped one's unit, and wrote the chunk the
    /// stopped one held, waited out its lock and failed, three times, and the job with it (h1 of
    /// session 51).
    enum LockKind: Int32 { case shared = 0, exclusive = 1, none = 2 }

    /// Takes (or, `.none`, lets go of) an open file description lock on `count` bytes at `offset`
    /// (0: the whole file), without waiting; false with errno set when it is held elsewhere
    /// (EAGAIN) or the file system keeps no such locks.
    @discardableResult
    static func lock(_ fd: Int32, _ kind: LockKind, _ offset: UInt64 = 0, _ count: Int = 0) -> Bool {
        barge_ofd_lock(fd, kind.rawValue, Int64(offset), Int64(count), 0) == 0
    }

    /// Locks (shared) the `count` bytes at `offset` about to be written, so that a seal by another
    /// writer of the same copy waits for the write to land (`seal`). False where the file system
    /// keeps no such locks, and when a seal holds the file past `lockWait`: a process stopped in
    /// the middle of its seal, before or after the mark went. The write then goes on unlocked, as
    /// it did before the lock: its check refuses it once the mark has gone, and before that it
    /// lands ahead of the stopped seal's mtime. (Failed instead, the write of a live agent that
    /// took over the stopped one's unit failed, and the job with it.)
    /// Once a seal held the file past the wait, later writes do not wait for it again (`sealHeld`):
    /// a stopped seal would otherwise cost every chunk of the file `lockWait`.
    private func lockingBytes(_ offset: UInt64, _ count: Int) -> Bool {
        guard count > 0 else { return false }
        let deadline = ContinuousClock.now + (sealHeld.load(ordering: .relaxed) ? .zero : Self.lockWait)
        while true {
            if Self.lock(fd, .shared, offset, count) {
                sealHeld.store(false, ordering: .relaxed)
                return true
            }
            guard errno == EAGAIN || errno == EACCES else { return false }
            guard ContinuousClock.now < deadline else {
                sealHeld.store(true, ordering: .relaxed)
                return false
            }
            usleep(2_000)
        }
    }

    /// A seal held the file past `lockWait` at the last write that asked (`lockingBytes`).
    private let sealHeld = Atomic<Bool>(false)

    /// Takes the exclusive lock of the whole file for its seal: true once held, or where the file
    /// system keeps no such locks; false when another writer's write held it past `wait`.
    private func excluding(within wait: Duration) -> Bool {
        let deadline = ContinuousClock.now + wait
        while true {
            if Self.lock(fd, .exclusive) { return true }
            guard errno == EAGAIN || errno == EACCES else { return true }
            guard ContinuousClock.now < deadline else { return false }
            usleep(2_000)
        }
    }

    /// Gives the copy a new file: its bytes copied into a file made beside it, which then takes
    /// the partial copy's name. The old file loses its mark first, so a writer still holding it
    /// refuses its next write, and the one it was stopped in lands in a file no name holds. The
    /// copy costs a read and a write of the file (a clone where the file system shares blocks),
    /// paid only for a writer stopped in the middle of a write.
    /// The new file is made durable here, whatever the seal's `sync`: a batch's `syncfs` ran
    /// before it existed.
    private func takeFreshCopy() throws(StoreError) {
        let display = final.relative + Self.suffix
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw .system(operation: "stat", path: display, errno: errno) }
        let parent = try directory.openDirectory(final.components.dropLast(), create: false, display: display, throughLinks: false, lifting: true)
        defer { close(parent) }
        let source = open("/proc/self/fd/\(fd)", O_RDONLY | O_CLOEXEC)
        guard source >= 0 else { throw .system(operation: "read again", path: display, errno: errno) }
        defer { close(source) }
        // A name of its own (two seals of one file at once, at two agents, each make one), with
        // the partial copy's suffix (a crash leaves it to the sweep of stale partial copies) and
        // its mark, and held under this seal's lock from the start: a writer that opens it under
        // the partial name checks it and waits for the seal.
        let freshName = "." + NameHash.hex128(partialName + "/fresh/\(getpid())/\(UInt64.random(in: 0...UInt64.max))") + Self.suffix
        let fresh = DirectoryLift.retrying(in: parent) { openat(parent, freshName, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, Self.partialMode) }
        guard fresh >= 0 else { throw .system(operation: "create a fresh copy of", path: display, errno: errno, on: parent) }
        Self.lock(fresh, .exclusive)
        // The old file loses its mark now, and gets it back if the copy fails.
        _ = fchmod(fd, 0o600)
        var failure: StoreError?
        if let e = Self.copyAll(from: source, to: fresh, size: Int64(st.st_size)) {
            failure = .system(operation: "copy into a fresh copy", path: display, errno: e)
        } else if fsync(fresh) != 0 {
            failure = .system(operation: "fsync", path: display, errno: errno)
        } else if DirectoryLift.retrying(in: parent, { renameat(parent, freshName, parent, partialName) }) != 0 {
            failure = .system(operation: "rename a fresh copy to", path: display, errno: errno)
        }
        if let failure {
            close(fresh)
            _ = DirectoryLift.retrying(in: parent) { unlinkat(parent, freshName, 0) }
            _ = fchmod(fd, st.st_mode & 0o7777)
            throw failure
        }
        close(fd)
        if directFD >= 0 { close(directFD); directFD = -1 }
        fd = fresh
        if fstat(fresh, &st) == 0 { file = (UInt64(st.st_dev), UInt64(st.st_ino)) }
        leftBehind = true
    }

    /// The file this writer writes (the one opened, or its fresh copy), which `rename` gives its
    /// final name only while the partial copy's name still holds it.
    private var file: (device: UInt64, inode: UInt64)

    /// The seal left behind a write held past `lockWait` (`takeFreshCopy`), for the caller's log.
    public private(set) var leftBehind = false

    /// Copies `size` bytes from the start of `source` into `target`: `copy_file_range` (a clone or
    /// an in-kernel copy), else reads and writes. An errno on failure.
    static func copyAll(from source: Int32, to target: Int32, size: Int64) -> Int32? {
        var done: Int64 = 0
        var inOffset: Int64 = 0, outOffset: Int64 = 0
        while done < size {
            let n = barge_copy_file_range(source, &inOffset, target, &outOffset, min(size - done, 1 << 30))
            if n > 0 { done += n; continue }
            if n < 0, errno == EINTR { continue }
            // Nothing copied (some FUSE and network file systems answer 0), or no such call
            // here: read and write the rest.
            guard n == 0 || [EXDEV, ENOSYS, EINVAL, EOPNOTSUPP].contains(errno) else { return errno }
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
            defer { buffer.deallocate() }
            while done < size {
                let r = pread(source, buffer.baseAddress!, min(buffer.count, Int(size - done)), off_t(done))
                if r < 0, errno == EINTR { continue }
                guard r > 0 else { return r == 0 ? EIO : errno }
                var w = 0
                while w < r {
                    let m = pwrite(target, buffer.baseAddress! + w, r - w, off_t(done) + off_t(w))
                    if m < 0, errno == EINTR { continue }
                    guard m > 0 else { return errno }
                    w += m
                }
                done += Int64(r)
            }
        }
        return ftruncate(target, off_t(size)) == 0 ? nil : errno
    }

    /// File systems by device, as far as this process has seen: whether a file created with the
    /// partial copy's mark keeps it.
    private static let markKept = Mutex<[UInt64: Bool]>([:])

    /// Whether the file system of `device` keeps the mark of a new file: a probe file made with
    /// it in `parent` (a directory of that file system) and looked at, once per file system.
    /// False where no probe can be made: the copy then goes unchecked, as before.
    static func keepsMark(device: UInt64, in parent: Int32) -> Bool {
        if let known = markKept.withLock({ $0[device] }) { return known }
        let name = ".barge-mark-probe-\(getpid())-\(UInt64.random(in: 0...UInt64.max))" + suffix
        let probe = DirectoryLift.retrying(in: parent) { openat(parent, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, partialMode) }
        guard probe >= 0 else { return false }
        var st = stat()
        let kept = fstat(probe, &st) == 0 && st.st_mode & S_ISVTX != 0
        close(probe)
        _ = DirectoryLift.retrying(in: parent) { unlinkat(parent, name, 0) }
        markKept.withLock { $0[device] = kept }
        return kept
    }

    /// The descriptor, for a batch's `syncfs`; -1 once sealed, or while parked.
    public var descriptor: Int32 { fd }

    /// A new descriptor on the copy's file system, for a batch's `syncfs` (the caller closes it):
    /// a copy of the file's own, or, while it is parked, its directory opened beneath the root.
    /// -1 when there is none (sealed, or EMFILE).
    public func fileSystemDescriptor() -> Int32 {
        if fd >= 0 { return dup(fd) }
        guard parked != nil else { return -1 }
        return (try? directory.openDirectory(final.components.dropLast(), create: false, display: final.relative, throughLinks: false, lifting: false)) ?? -1
    }

    /// The second half: renames the sealed partial copy to its final name inside `parent` (a
    /// descriptor of its directory, opened beneath the root). The rename is durable once the
    /// directory is synced.
    /// A name that holds another file than the one sealed here (a seal stopped and let go on after
    /// another agent finished the file, and a later job made a new partial copy under the name)
    /// is not renamed: it fails as a copy gone (ENOENT), which the caller takes for done when the
    /// final name holds the file as this finish would leave it.
    public func rename(in parent: Int32) throws(StoreError) {
        let name = final.components.last!, partialName = partialName
        var st = stat()
        if DirectoryLift.retrying(in: parent, { fstatat(parent, partialName, &st, AT_SYMLINK_NOFOLLOW) }) == 0,
           UInt64(st.st_dev) != file.device || UInt64(st.st_ino) != file.inode {
            throw .system(operation: "rename (its partial copy's name holds another file now)", path: final.relative, errno: ENOENT)
        }
        guard DirectoryLift.retrying(in: parent, { renameat(parent, partialName, parent, name) }) == 0 else {
            // A directory under the final name: the partial copy stays, for a run after it is gone.
            if errno == EISDIR || errno == ENOTEMPTY || errno == EEXIST { throw .invalidPath(path: final.relative, reason: Self.directoryInTheWay) }
            throw .system(operation: "rename", path: final.relative, errno: errno)
        }
    }

    /// Whether what lies under a partial copy's name may be taken over: a regular file (an
    /// earlier run's copy). A link planted there is refused and named (O_NOFOLLOW would refuse it
    /// too, with a bare ELOOP).
    static func mayHold(_ st: stat) -> Bool { st.st_mode & S_IFMT == S_IFREG }

    /// Why a partial copy's name that holds a symbolic link fails.
    static let aLinkInTheWay = "is a symbolic link at the destination under the name of the file's partial copy; Barge does not write through it: remove it there, then submit again"


    /// Why a partial copy's name that holds a FIFO, socket or device fails.
    static let notAFile = "is not a regular file at the destination (a FIFO, socket or device has the name of the file's partial copy); Barge does not write into it: move or remove it there, then submit again"

    /// Why the partial copy's name is unusable, for what holds it (`st_mode`): a link, a
    /// directory, or a FIFO, socket or device.
    static func notAFile(_ mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFLNK: aLinkInTheWay
        case S_IFDIR: "is a directory at the destination under the name of the file's partial copy; Barge does not write into it: move or remove it there, then submit again"
        default: notAFile
        }
    }

    /// Why a file whose final name is a directory at the destination fails. Barge never deletes
    /// what is in the way (rsync refuses a non-empty directory there too).
    static let directoryInTheWay = "is a directory at the destination, where the source has a file; Barge never replaces it: move or remove it there, then submit again (to put a single file you submitted inside that directory, end the destination with a slash: SITE:DIR/)"

    /// Removes the partial copy of `final`, when a regular file is under its name (a link or a
    /// directory there is left to a later transfer of the file, which names it), through its
    /// directory opened beneath the root and lifted where it must be. No directory: nothing to do.
    public static func removePartial(of final: RootedPath) throws(StoreError) {
        guard let name = final.components.last else { return }
        let partial = partialName(of: name), display = final.relative + suffix
        let parent: Int32
        do {
            parent = try RootDirectory.open(final.root).openDirectory(final.components.dropLast(), create: false, display: display, throughLinks: false, lifting: true)
        } catch {
            if case .system(_, _, ENOENT) = error { return }
            throw error
        }
        defer { close(parent) }
        var st = stat()
        guard DirectoryLift.retrying(in: parent, { fstatat(parent, partial, &st, AT_SYMLINK_NOFOLLOW) }) == 0, st.st_mode & S_IFMT == S_IFREG else { return }
        guard DirectoryLift.retrying(in: parent, { unlinkat(parent, partial, 0) }) == 0 || errno == ENOENT else {
            throw .system(operation: "remove", path: display, errno: errno)
        }
    }

    /// Removes the partial copy this writer made, unless another writer has written into it
    /// since (it holds blocks): an agent sharing the root that took over this one's unit while
    /// it was stopped may be filling it. Closed either way.
    public func abandonIfUntouched() {
        var st = stat()
        if fd >= 0, fstat(fd, &st) == 0, st.st_blocks > 0 {
            parked = nil
            close(fd)
            fd = -1
            if directFD >= 0 { close(directFD); directFD = -1 }
            return
        }
        abandon()
    }

    /// Removes the partial file (a cancelled job, a file that changed at the source).
    public func abandon() {
        parked = nil
        if fd >= 0 { close(fd); fd = -1 }
        if directFD >= 0 { close(directFD); directFD = -1 }
        // Beneath the root, by the partial copy's own name, lifted in a read-only directory.
        let partial = RootedPath(root: final.root, components: Array(final.components.dropLast()) + [partialName])
        _ = DestinationEntries.removeFile(partial)
    }
}

/// A 128-bit FNV-1a of a name, in hex: short names for partial copies of long ones.
enum NameHash {
    static func hex128(_ name: String) -> String {
        var a: UInt64 = 0xcbf2_9ce4_8422_2325
        var b: UInt64 = 0x8422_2325_cbf2_9ce4
        for byte in name.utf8 {
            a = (a ^ UInt64(byte)) &* 0x0000_0100_0000_01b3
            b = (b ^ UInt64(byte)) &* 0x0000_0100_0000_01b3 &+ 0x9e37_79b9_7f4a_7c15
        }
        return String(a, radix: 16).leftPadded(16) + String(b, radix: 16).leftPadded(16)
    }
}
