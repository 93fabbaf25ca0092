import CBargeFS
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An agent's root, held open: its real path (no symbolic links) and a descriptor from which every
/// path below it is opened with `barge_open_beneath`, so that the kernel, not a check made a
/// moment earlier, keeps each open inside the root. One per root, shared and cached; a root that
/// was removed (and maybe made again) is opened anew.
public final class RootDirectory: Sendable {
    public let path: String
    /// The root, fully resolved.
    public let real: String
    /// O_PATH | O_DIRECTORY descriptor of the root.
    public let fd: Int32

    private init(path: String, real: String, fd: Int32) {
        self.path = path
        self.real = real
        self.fd = fd
    }

    deinit { close(fd) }

    public static let oPath = barge_o_path()

    private static let cache = Mutex<[PathKey: RootDirectory]>([:])

    /// The root `path`, opened (cached).
    public static func open(_ path: String) throws(StoreError) -> RootDirectory {
        if let cached = cache.withLock({ $0[PathKey(path)] }) {
            var st = stat()
            if fstat(cached.fd, &st) == 0, st.st_nlink > 0 { return cached }
        }
        guard let p = realpath(path, nil) else { throw .rootUnusable(root: path, reason: String(cString: strerror(errno))) }
        let real = String(cString: p)
        free(p)
        let fd = Glibc.open(real, Self.oPath | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw .rootUnusable(root: path, reason: String(cString: strerror(errno))) }
        let root = RootDirectory(path: path, real: real, fd: fd)
        cache.withLock { c in
            if c.count >= 256 { c.removeAll() }
            c[PathKey(path)] = root
        }
        return root
    }

    /// Opens `relative` (components joined by `/`, empty for the root) beneath the root; -1 with
    /// errno set on failure (EXDEV: it leads outside).
    /// `throughLinks` false: no symbolic link is followed on the way, even one that stays inside
    /// (ELOOP).
    public func openBeneath(_ relative: String, _ flags: Int32, mode: mode_t = 0, throughLinks: Bool = true) -> Int32 {
        barge_open_beneath_links(fd, relative, flags, UInt32(mode), throughLinks ? 1 : 0)
    }

    /// Opens the file `relative` beneath the root to read it, as a source reads what it sends:
    /// following no link at its end (a file swapped for one since the scan: ELOOP), and without
    /// waiting on a FIFO put under its name. -1 with errno set on failure (EXDEV: it leads outside).
    public func openForReading(_ relative: String) -> Int32 {
        openBeneath(relative, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
    }

    /// Opens the directory `relative` (for `*at` calls, `fsync` and `renameat`), creating it and
    /// any missing directory above it (mode 0755) when `create` is set.
    ///
    /// `throughLinks` false (what a destination writes into): a symbolic link on the way is not
    /// followed, even one that stays inside the root, and the error names it. A link where the
    /// source has a directory once took a job's files elsewhere: `sub -> .` put `sub/f` over `f`,
    /// and `sub -> ../other` wrote into another dataset, while the job succeeded.
    ///
    /// `lifting` (a destination's writers, its quick check and its demotions, at an agent that is
    /// not root): a directory of the agent's own user on the way that it may not read or search
    /// is opened lifted (`DirectoryLift.openDirectory`). Never on a source: a directory its owner
    /// closed stays closed, as rsync reports it.
    public func openDirectory(_ components: ArraySlice<String>, create: Bool, display: String, throughLinks: Bool = true,
                              lifting: Bool = false) throws(StoreError) -> Int32 {
        let relative = components.joined(separator: "/")
        let fd = openBeneath(relative, O_RDONLY | O_DIRECTORY, throughLinks: throughLinks)
        if fd >= 0 { return fd }
        if errno == ELOOP, !throughLinks, !create { throw .invalidPath(path: relative, reason: Self.aLinkOnTheWay) }
        // ENOTDIR (or a link) with `create`: the walk finds which name is in the way, and says so.
        // EACCES at an agent that is not root: the walk lifts the agent's own directories on the
        // way that it may not read or search (`DirectoryLift.openDirectory`).
        let lifted = lifting && errno == EACCES && geteuid() != 0
        guard (errno == ENOENT || errno == ENOTDIR || (errno == ELOOP && !throughLinks)) && create || lifted else {
            throw Self.failure(errno, "open directory", relative.isEmpty ? "." : relative, display: display)
        }
        // Walk down from the root, making each missing directory (`create`) and opening each one
        // lifted where the agent may not (`lifting`).
        var current = openBeneath("", O_RDONLY | O_DIRECTORY)
        guard current >= 0 else { throw .rootUnusable(root: path, reason: String(cString: strerror(errno))) }
        var done: [String] = []
        for component in components {
            done.append(component)
            let parent = current
            if create, DirectoryLift.retrying(in: parent, { mkdirat(parent, component, 0o755) }) != 0, errno != EEXIST {
                let error = StoreError.system(operation: "create directory", path: done.joined(separator: "/"), errno: errno, on: parent)
                close(current)
                throw error
            }
            // Beneath the root again from the top: the walk never trusts a name it did not check.
            // Refused (a directory of the agent's own user it may not read, or one above it it may
            // not search): opened from its parent, following no link, lifted for the open.
            var next = openBeneath(done.joined(separator: "/"), O_RDONLY | O_DIRECTORY, throughLinks: throughLinks)
            if next < 0, errno == EACCES, lifting { next = DirectoryLift.openDirectory(component, in: parent) }
            let e = errno
            close(current)
            guard next >= 0 else {
                // Made or found, yet no directory: what the destination holds there is something else.
                if e == ENOTDIR { throw .invalidPath(path: done.joined(separator: "/"), reason: Self.notADirectory) }
                if e == ELOOP, !throughLinks { throw .invalidPath(path: done.joined(separator: "/"), reason: Self.aLinkOnTheWay) }
                throw Self.failure(e, "open directory", done.joined(separator: "/"), display: display)
            }
            current = next
        }
        return current
    }

    /// Why a destination path whose directory is a file (or another non-directory) fails: the source
    /// has a directory there. Barge never deletes what is in the way, as a destination's data is
    /// not its to drop (rsync would delete a file there; a directory in the way of a file it
    /// refuses too).
    static let notADirectory = "is not a directory at the destination, where the transfer needs one (one of the source's, or the parent of its files); Barge never replaces it: move or remove it there, then submit again"

    /// Why a destination path through a symbolic link fails: Barge writes a job's files only into
    /// real directories, as the fallback walk (no `openat2`) always did.
    static let aLinkOnTheWay = "is a symbolic link at the destination (or goes through one), where the transfer needs a directory (one of the source's, or the parent of its files); Barge does not write through links there: replace it with a directory, or remove it, then submit again"

    /// `syncfs(2)` on the file system holding `fd`: 0, or -1 with errno set.
    public static func syncFileSystem(of fd: Int32) -> Int32 { barge_syncfs(fd) }

    /// The error for a failed open beneath the root.
    static func failure(_ e: Int32, _ operation: String, _ relative: String, display: String) -> StoreError {
        if e == EXDEV { return .symlinkEscape(path: display, resolved: "") }
        return .system(operation: operation, path: relative, errno: e)
    }
}
