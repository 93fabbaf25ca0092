import CBargeFS
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A path inside an agent's root. Every job path goes through `resolve` before anything is read or
/// written: `a:/ds` and `a:ds` both mean `<root>/ds`; `..` that would climb out of the root, and any
/// symbolic link on the way that leads outside it, are refused.
public struct RootedPath: Hashable, Sendable, CustomStringConvertible {
    /// The root, fully resolved (no symbolic links).
    public let root: String
    /// The path's components below the root; empty for the root itself.
    public let components: [String]

    public var relative: String { components.joined(separator: "/") }
    public var absolute: String { components.isEmpty ? root : root + "/" + relative }
    public var description: String { absolute }

    /// `lstat` of the path by its absolute name; one past PATH_MAX from `/` (a deep root, where a
    /// transfer wrote the file through the root's descriptor) through that descriptor instead.
    public func lstat(_ st: inout stat) -> Int32 {
        let result = Glibc.lstat(absolute, &st)
        guard result != 0, errno == ENAMETOOLONG, !components.isEmpty, let directory = try? RootDirectory.open(root) else { return result }
        return fstatat(directory.fd, relative, &st, AT_SYMLINK_NOFOLLOW)
    }

    /// `open` of the path by its absolute name, following no link at its end (`O_NOFOLLOW` is
    /// added); one past PATH_MAX from `/` is opened beneath the root's descriptor instead. Before,
    /// `verify` reported every such file a mismatch ("cannot open: File name too long") though
    /// the transfer had written it whole (a black-box review).
    public func openFollowingNoLinkAtTheEnd(_ flags: Int32) -> Int32 {
        let fd = Glibc.open(absolute, flags | O_NOFOLLOW | O_CLOEXEC)
        guard fd < 0, errno == ENAMETOOLONG, !components.isEmpty, let directory = try? RootDirectory.open(root) else { return fd }
        return directory.openBeneath(relative, flags | O_NOFOLLOW | O_CLOEXEC)
    }

    public static func resolve(_ path: String, under root: String) throws(StoreError) -> RootedPath {
        let directory = try RootDirectory.open(root)
        let rooted = try lexical(path, in: directory)
        try confine(rooted, path, directory)
        return rooted
    }

    /// `resolve`, then every link on the way taken out, the last one too (`realpath`), for what
    /// starts there and must know where it is: a scan of `a:/link/` walks the directory the link
    /// names, and a link to the root walks the root, leaving out `.barge` as the root's own walk
    /// does (a review: the agents' state would have been sent). Refused when it leads outside.
    public static func resolveThroughLinks(_ path: String, under root: String) throws(StoreError) -> RootedPath {
        let directory = try RootDirectory.open(root)
        let rooted = try resolve(path, under: root)
        guard let p = realpath(rooted.absolute, nil) else {
            throw .system(operation: "scan", path: rooted.relative.isEmpty ? "." : rooted.relative, errno: errno)
        }
        let real = String(cString: p)
        free(p)
        let base = directory.real == "/" ? "" : directory.real
        guard real == directory.real || real.hasPrefix(base + "/") else { throw .symlinkEscape(path: path, resolved: real) }
        return try lexical(String(real.dropFirst(base.count)), in: directory)
    }

    /// `resolve`, for a caller whose every open is itself beneath the root with no link followed
    /// (`RootDirectory.openDirectory`): where the check cannot look, because the agent may not
    /// search a directory of its own on the way (EACCES: mode 0000 or 0100, which those opens
    /// lift), the path is taken by its words, and the kernel still confines the opens.
    public static func resolveForOpensBeneath(_ path: String, under root: String) throws(StoreError) -> RootedPath {
        do {
            return try resolve(path, under: root)
        } catch where error.errno == EACCES && geteuid() != 0 {
            return try lexical(path, under: root)
        }
    }

    /// `resolve`, for a path whose last component may be a symbolic link that is taken as it is
    /// (the top of a scan: `rsync -a dir/link dst` copies the link, not what it points to).
    /// Only the directories above it are confined; the link itself may point anywhere, since
    /// nothing follows it. An absolute link was refused before as leading "outside the agent's
    /// root" though it pointed inside, while a relative one was copied as a link.
    public static func resolveTakingALinkAsIs(_ path: String, under root: String) throws(StoreError) -> RootedPath {
        let directory = try RootDirectory.open(root)
        let rooted = try lexical(path, in: directory)
        if let name = rooted.components.last {
            let parent = RootedPath(root: rooted.root, components: Array(rooted.components.dropLast()))
            try confine(parent, path, directory)
            let fd = directory.openBeneath(parent.relative, RootDirectory.oPath | O_DIRECTORY)
            if fd >= 0 {
                defer { close(fd) }
                var st = stat()
                if fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0, st.st_mode & S_IFMT == S_IFLNK { return rooted }
            }
        }
        try confine(rooted, path, directory)
        return rooted
    }

    /// The path under the root by its words alone: `.` and `..` taken out, a climb above the root
    /// refused, nothing on disk looked at. For callers whose every open goes through the root's
    /// descriptor beneath it (the receiving data plane: `PartialFileWriter`, `renameat` in a
    /// directory opened beneath), where the kernel refuses a symbolic link that leads out.
    public static func lexical(_ path: String, under root: String) throws(StoreError) -> RootedPath {
        try lexical(path, in: try RootDirectory.open(root))
    }

    /// `lexical(_:under:)` for the files of one message (a batch, a have query): the root is
    /// opened once, and each directory on the way is looked at for a state marker once for them
    /// all rather than once per path (20,000 small files in 200 directories: 6% of the
    /// destination agent's CPU went to those looks).
    ///
    /// `directoriesOnly`: the file itself is not looked at for a marker, only the directories
    /// above it. That look failed for every new file and cost a path walk per file. For paths
    /// only looked up (a have query, a source's reads) or written by `PartialFileWriter`, which
    /// refuses a directory under a file's name and names a marked one as state (a batch).
    public static func lexical(files paths: [String], under root: String, directoriesOnly: Bool = false) -> [Result<RootedPath, StoreError>] {
        let directory: RootDirectory
        do { directory = try RootDirectory.open(root) } catch { return paths.map { _ in .failure(error) } }
        var memo = StatePaths.Unmarked()
        return paths.map { path in Result { () throws(StoreError) in try lexical(path, in: directory, memo: &memo, parentsOnly: directoriesOnly) } }
    }

    private static func lexical(_ path: String, in directory: RootDirectory) throws(StoreError) -> RootedPath {
        var memo = StatePaths.Unmarked()
        return try lexical(path, in: directory, memo: &memo)
    }

    private static func lexical(_ path: String, in directory: RootDirectory, memo: inout StatePaths.Unmarked,
                                parentsOnly: Bool = false) throws(StoreError) -> RootedPath {
        guard !path.utf8.contains(0) else { throw .invalidPath(path: path, reason: "contains a NUL byte") }
        var components: [String] = []
        for part in PathKey.components(path) {
            switch part {
            case ".": continue
            case "..":
                guard !components.isEmpty else { throw .escapesRoot(path: path) }
                components.removeLast()
            default:
                guard part.utf8.count <= 255 else { throw .invalidPath(path: path, reason: "a component is over 255 bytes") }
                components.append(String(part))
            }
        }
        let rooted = RootedPath(root: directory.real, components: components)
        try StatePaths.check(rooted, path, directory, memo: &memo, parentsOnly: parentsOnly)
        return rooted
    }

    /// Checks, through the kernel (`openat2` beneath the root's descriptor), that the deepest part
    /// of the path that exists resolves inside the root; what does not exist yet will be created
    /// inside it (by opens that are themselves confined). A name that appears while this looks
    /// (its own rename, another stream) is looked at again, never taken for a symbolic link; only
    /// a link that leads outside the root, or whose target is missing, is refused.
    private static func confine(_ rooted: RootedPath, _ path: String, _ directory: RootDirectory) throws(StoreError) {
        var existing = rooted.components[...]
        var retries = 0
        while true {
            let relative = existing.joined(separator: "/")
            let fd = directory.openBeneath(relative, RootDirectory.oPath)
            if fd >= 0 {
                close(fd)
                return
            }
            let e = errno
            switch e {
            case EXDEV:
                let full = directory.real + "/" + relative
                throw .symlinkEscape(path: path, resolved: realPath(full) ?? linkTarget(full) ?? "")
            case ELOOP:
                throw .invalidPath(path: path, reason: "goes through symbolic links that loop (or nest too deeply)")
            case ENOENT where !existing.isEmpty:
                // Not there yet, or a symbolic link whose target is missing: creating through the
                // link would follow it wherever it points.
                var st = stat()
                if fstatat(directory.fd, relative, &st, AT_SYMLINK_NOFOLLOW) == 0 {
                    if st.st_mode & S_IFMT == S_IFLNK {
                        let target = linkTarget(directory.real + "/" + relative).map { "'\($0)'" } ?? "a target"
                        throw .invalidPath(path: path, reason: "goes through a symbolic link to \(target), which does not exist; Barge does not create anything through it")
                    }
                    retries += 1  // it appeared in between: look again
                    guard retries < 64 else { throw .system(operation: "resolve", path: path, errno: e) }
                    continue
                }
                existing = existing.dropLast()
            default:
                throw .system(operation: "resolve", path: directory.real + (relative.isEmpty ? "" : "/" + relative), errno: e)
            }
        }
    }

    static func linkTarget(_ path: String) -> String? { linkTarget(path, in: AT_FDCWD) }

    /// The target of the link `name` in the directory open as `fd` (`AT_FDCWD`: `name` is a path).
    static func linkTarget(_ name: String, in fd: Int32) -> String? {
        linkTargetBytes(name, in: fd).map { String(decoding: $0, as: UTF8.self) }
    }

    /// The target of the link `name` in the directory open as `fd`, as its bytes (which need not
    /// be UTF-8).
    static func linkTargetBytes(_ name: String, in fd: Int32) -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlinkat(fd, name, &buffer, buffer.count - 1)
        guard n >= 0 else { return nil }
        return Array(buffer[0..<n])
    }

    private static func realPath(_ path: String) -> String? {
        guard let p = realpath(path, nil) else { return nil }
        defer { free(p) }
        return String(cString: p)
    }
}

/// What no job may read or write: `.barge` at an agent's root (every agent's own state), and
/// the state directory any agent was given with `--state`, whether a job names it, names
/// something inside it, or walks into it from a directory above. An agent marks its state
/// directory with a `.barge-state` file (`protect`), so that every agent sharing the root keeps
/// out of it too, not only the agent that owns it.
public enum StatePaths {
    /// The file that marks a directory as an agent's state.
    public static let markerName = ".barge-state"
    public static let markerText = "This directory holds a Barge agent's own state (its chunk index and path memory).\nNo Barge job may read or write it, at any agent that can see it.\n"

    private static let registered = Mutex<[String]>([])

    /// Keeps jobs out of `directory` (resolved to its real path when it exists): this agent's
    /// own list, and the marker file for every other agent.
    public static func protect(_ directory: String) throws(StoreError) {
        var real = directory
        if let p = realpath(directory, nil) {
            real = String(cString: p)
            free(p)
        }
        while real.count > 1 && real.hasSuffix("/") { real.removeLast() }
        registered.withLock { if !$0.contains(real) { $0.append(real) } }
        let marker = real + "/" + markerName
        let fd = open(marker, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        if fd < 0 {
            guard errno == EEXIST else { throw .system(operation: "mark the state directory", path: marker, errno: errno) }
            return
        }
        defer { close(fd) }
        let written = markerText.utf8CString.withUnsafeBufferPointer { write(fd, $0.baseAddress, $0.count - 1) }
        guard written == markerText.utf8.count, fsync(fd) == 0 else {
            throw .system(operation: "mark the state directory", path: marker, errno: errno)
        }
    }

    /// `absolute` (a real path below an agent's root) is this agent's protected directory or inside it.
    public static func isProtected(_ absolute: String) -> Bool {
        registered.withLock { list in list.contains { PathKey.isWithin(absolute, $0) } }
    }

    /// Whether the directory `directory` (whose entries are `names`) is an agent's state: it
    /// holds the marker, a regular file with the marker's own text. A user's file that happens to
    /// be named `.barge-state` does not make a directory of data into state: that once left a
    /// directory and everything in it out of a job, without a word.
    public static func isStateDirectory(_ directory: OpenDirectory, names: [String]) -> Bool {
        names.contains(markerName) && isMarker(in: directory.fd, at: markerName)
    }

    /// Whether `path` (relative to the directory `dirfd`) is a marker: a regular file holding
    /// exactly `markerText`. Read only where a file of that name exists.
    static func isMarker(in dirfd: Int32, at path: String) -> Bool {
        let fd = openat(dirfd, path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var st = stat()
        let expected = Array(markerText.utf8)
        guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG, st.st_size == expected.count else { return false }
        var bytes = [UInt8](repeating: 0, count: expected.count)
        let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, expected.count, 0) }
        return n == expected.count && bytes == expected
    }

    /// The directories (relative paths) already found without a marker while checking the paths
    /// of one message. Kept only for that message: a marker made later is seen by the next.
    struct Unmarked {
        var directories: Set<PathKey> = []
    }

    /// Whether a directory on the way to `rooted` (or `rooted` itself, unless `parentsOnly`)
    /// carries the marker: one `fstatat` per component not in `memo`, beneath the root's descriptor.
    static func marked(_ rooted: RootedPath, _ directory: RootDirectory, memo: inout Unmarked, parentsOnly: Bool = false) -> Bool {
        var prefix = ""
        var st = stat()
        for component in parentsOnly ? rooted.components.dropLast() : rooted.components[...] {
            prefix = prefix.isEmpty ? component : prefix + "/" + component
            if memo.directories.contains(PathKey(prefix)) { continue }
            if fstatat(directory.fd, prefix + "/" + markerName, &st, AT_SYMLINK_NOFOLLOW) == 0 {
                // Only the agent's own marker; errno is not looked at here (the look succeeded).
                if isMarker(in: directory.fd, at: prefix + "/" + markerName) { return true }
            } else if errno == ENOTDIR {
                return false  // a file: nothing below it
            }
            memo.directories.insert(PathKey(prefix))
        }
        return false
    }

    /// Why a path in an agent's state directory fails.
    static let insideState = "it is inside an agent's state directory (marked by \(markerName)), which no job may read or write"

    static func check(_ rooted: RootedPath, _ path: String, _ directory: RootDirectory, memo: inout Unmarked, parentsOnly: Bool = false) throws(StoreError) {
        if rooted.components.first == TreeScanner.stateDirectory {
            throw .invalidPath(path: path, reason: "it is inside .barge, the agents' own state, which no job may read or write")
        }
        if isProtected(rooted.absolute) || marked(rooted, directory, memo: &memo, parentsOnly: parentsOnly) {
            throw .invalidPath(path: path, reason: insideState)
        }
    }
}
