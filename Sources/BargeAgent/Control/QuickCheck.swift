import BargeStore
import BargeTier
import BargeWire

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A destination agent's answer to `compare request`: which of the source's entries it already
/// holds unchanged, by `lstat` alone (rsync's quick check). A regular file is unchanged when its
/// size, mtime (to the nanosecond) and permission bits match; a symbolic link when its target
/// and mtime do. Directories are never skipped: their modes and mtimes are set again after whatever
/// inside them changed. Nothing is read. A file with no plain copy is unchanged when the site's
/// cold catalog (`cold`) holds it with that size, mtime and mode. A regular file whose permission
/// bits alone differ gets them in place and counts as unchanged (`giveMode`), as rsync changes a
/// mode without sending the file. Synchronous: run it off the event loop.
enum QuickCheck {
    static func reply(to request: CompareRequest, root: String, cold: ColdCatalog? = nil) -> CompareReply {
        // Each directory is resolved once per page (it must lie inside the root) and held open:
        // its entries are looked up by name, so the kernel walks one component per entry.
        // By bytes (`PathKey`, and the last "/" byte): as Swift strings "é/" and "e\u{301}/" are
        // one directory, and a name that starts with a combining mark hides the "/" before it
        // in a `Character`.
        var directories: [PathKey: OpenDirectory?] = [:]
        let unchanged = request.entries.map { entry -> Bool in
            guard entry.kind != .directory else { return false }
            let path = entry.path
            let slash = path.utf8.lastIndex(of: UInt8(ascii: "/"))
            let parent = slash.map { path[..<$0] } ?? ""
            let name = String(slash.map { path[path.utf8.index(after: $0)...] } ?? Substring(path))
            guard !name.isEmpty, name != ".", name != ".." else { return false }
            let key = PathKey(parent)
            let opened: OpenDirectory?
            if let known = directories[key] {
                opened = known
            } else {
                // Opened beneath the root's descriptor by its path below the root: by its
                // absolute path, a directory whose path is under PATH_MAX below the root but not
                // from `/` could not be opened, and its files were sent again on every re-sync.
                // The kernel keeps the open inside the root (`openDirectory`, links inside followed).
                opened = (try? RootedPath.lexical(String(parent), under: root)).flatMap { rooted in
                    (try? RootDirectory.open(root).openDirectory(rooted.components[...], create: false, display: rooted.relative, lifting: true)).map(OpenDirectory.init(fd:))
                }
                directories[key] = opened
            }
            guard let directory = opened else { return false }
            switch verdict(entry, name: name, in: directory) {
            case .unchanged: return true
            case .modeDiffers:
                if let rooted = try? RootedPath.lexical(path, under: root), giveMode(entry, to: rooted) { return true }
            case .differs: break
            }
            guard let cold, entry.kind == .file, let relative = try? RootedPath.lexical(path, under: root).relative,
                  let file = try? cold.file(relative) else { return false }
            var st = stat()
            guard fstatat(directory.fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0 else { return false }  // a plain copy that differs wins
            return file.size == entry.size && file.mtimeSeconds == entry.mtimeSeconds && file.mtimeNanoseconds == entry.mtimeNanoseconds
                && file.mode == FileModes.atDestination(entry.mode)
        }
        return CompareReply(request: request.request, unchanged: unchanged)
    }

    enum Verdict {
        case unchanged
        /// A regular file of the same size and mtime, with other permission bits.
        case modeDiffers
        case differs
    }

    /// Whether `name` in `directory` is `entry` unchanged.
    static func matches(_ entry: FileEntry, name: String, in directory: OpenDirectory) -> Bool {
        if case .unchanged = verdict(entry, name: name, in: directory) { return true }
        return false
    }

    /// How `name` in `directory` compares with `entry`.
    static func verdict(_ entry: FileEntry, name: String, in directory: OpenDirectory) -> Verdict {
        var st = stat()
        guard fstatat(directory.fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 else { return .differs }
        switch entry.kind {
        case .file:
            guard st.st_mode & S_IFMT == S_IFREG, UInt64(st.st_size) == entry.size,
                  Int64(st.st_mtim.tv_sec) == entry.mtimeSeconds, Int32(st.st_mtim.tv_nsec) == entry.mtimeNanoseconds else { return .differs }
            return UInt32(st.st_mode & 0o7777) == FileModes.atDestination(entry.mode) ? .unchanged : .modeDiffers
        case .symlink:
            // By bytes: Swift's `==` takes "é" and "e\u{301}" for the same, and they are two names.
            // Its mtime too, as `rsync -a` sets a link's time again when only that changed.
            guard st.st_mode & S_IFMT == S_IFLNK, Int64(st.st_mtim.tv_sec) == entry.mtimeSeconds, Int32(st.st_mtim.tv_nsec) == entry.mtimeNanoseconds,
                  let target = directory.linkTargetBytes(name) else { return .differs }
            return target.elementsEqual(entry.linkTarget.utf8) ? .unchanged : .differs
        case .directory:
            return .differs
        }
    }

    /// Gives the regular file at `path` the permission bits of `entry` in place, made durable,
    /// when its size and mtime are still the entry's: a mode changed at the source (chmod) then
    /// costs a `chmod` here, as with rsync, rather than the whole file read, sent by reference and
    /// written again under a new inode. Only through no link (its directory opened beneath the
    /// root again without following any, the file as an `O_PATH` descriptor), and not for a
    /// file with other names (a hard link: the change would reach them, where sending it renames
    /// a new copy over this name alone). False, with nothing changed, when that cannot be done:
    /// the file is then sent.
    static func giveMode(_ entry: FileEntry, to path: RootedPath) -> Bool {
        guard let name = path.components.last,
              let parent = try? RootDirectory.open(path.root).openDirectory(path.components.dropLast(), create: false, display: path.relative,
                                                                             throughLinks: false, lifting: true) else { return false }
        defer { close(parent) }
        let held = openat(parent, name, RootDirectory.oPath | O_NOFOLLOW | O_CLOEXEC)
        guard held >= 0 else { return false }
        defer { close(held) }
        var st = stat()
        guard fstat(held, &st) == 0, st.st_mode & S_IFMT == S_IFREG, st.st_nlink == 1, UInt64(st.st_size) == entry.size,
              Int64(st.st_mtim.tv_sec) == entry.mtimeSeconds, Int32(st.st_mtim.tv_nsec) == entry.mtimeNanoseconds else { return false }
        let fd = open("/proc/self/fd/\(held)", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return fchmod(fd, mode_t(FileModes.atDestination(entry.mode) & 0o7777)) == 0 && fsync(fd) == 0
    }
}
