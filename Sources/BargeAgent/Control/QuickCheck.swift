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
        // The same directories opened through no link, for the modes given in place.
        var unlinked: [PathKey: OpenDirectory?] = [:]
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
                if unlinked[key] == nil {
                    unlinked[key] = (try? RootedPath.lexical(String(parent), under: root)).flatMap { rooted in
                        (try? RootDirectory.open(root).openDirectory(rooted.components[...], create: false, display: rooted.relative,
                                                                    throughLinks: false, lifting: true)).map(OpenDirectory.init(fd:))
                    }
                }
                if let directory = unlinked[key] ?? nil, giveMode(entry, name: name, in: directory.fd) { return true }
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

    /// How `name` in `directory` compares with `entry`.
    static func verdict(_ entry: FileEntry, name: String, in directory: OpenDirectory) -> Verdict {
        var st = stat()
        // Lifted where the agent may not search a directory of its own (0000, as a job gave the
        // source's mode): the lookup, not only the open, needs the search bit. Before, every file
        // in such a directory at an agent that is not root was sent again on every re-sync.
        guard DirectoryLift.retrying(in: directory.fd, { fstatat(directory.fd, name, &st, AT_SYMLINK_NOFOLLOW) }) == 0 else { return .differs }
        switch entry.kind {
        case .file:
            guard st.st_mode & S_IFMT == S_IFREG, UInt64(st.st_size) == entry.size,
                  Int64(st.st_mtim.tv_sec) == entry.mtimeSeconds, Int32(st.st_mtim.tv_nsec) == entry.mtimeNanoseconds else { return .differs }
            return UInt32(st.st_mode & 0o7777) == FileModes.atDestination(entry.mode) ? .unchanged : .modeDiffers
        case .symlink:
            // By bytes: Swift's `==` takes "é" and "e\u{301}" for the same, and they are two names.
            // Its mtime too, as `rsync -a` sets a link's time again when only that changed.
            guard st.st_mode & S_IFMT == S_IFLNK, Int64(st.st_mtim.tv_sec) == entry.mtimeSeconds, Int32(st.st_mtim.tv_nsec) == entry.mtimeNanoseconds,
                  let target = Self.linkTarget(name, in: directory) else { return .differs }
            return target.elementsEqual(entry.linkTarget.utf8) ? .unchanged : .differs
        case .directory:
            return .differs
        }
    }

    /// The target of the link `name` in `directory`, lifted as `verdict`'s lookup is.
    static func linkTarget(_ name: String, in directory: OpenDirectory) -> [UInt8]? {
        var target: [UInt8]?
        _ = DirectoryLift.retrying(in: directory.fd) {
            target = directory.linkTargetBytes(name)
            return target == nil ? -1 : 0
        }
        return target
    }

    /// Gives the regular file `name` in `parent` (a directory opened beneath the root through no
    /// link) the permission bits of `entry` in place, when its size and mtime are still the
    /// entry's: a mode changed at the source (chmod) then costs a `chmod` here, as with rsync,
    /// rather than the whole file read, sent by reference and written again under a new inode.
    /// False, with nothing changed, when it may not be done so (the file is then sent):
    /// - the file has other names (a hard link: the change would reach them, where sending it
    ///   renames a new copy over this name alone);
    /// - the change would grant a bit the file lacks, unless the file and its directory belong to
    ///   the agent's user and no one else may write in that directory. The size and mtime do not
    ///   say the file is the one this name had: a user who may rename files in the directory could
    ///   put a root-owned 0600 file of the same size and mtime under a name the source has 0644,
    ///   and have it opened up (a review). A change that only takes bits away gives nothing away.
    ///
    /// Not synced: the file system commits the change with its own next commit (ext4: within 5 s).
    /// A crash before then leaves the old mode, which the next re-sync gives again. (An `fsync`
    /// per file, inside the reply the coordinator waits up to 10 s for, made a page of 1,024
    /// files on a slow disk time out, and the whole page was then sent.)
    static func giveMode(_ entry: FileEntry, name: String, in parent: Int32) -> Bool {
        let held = DirectoryLift.retrying(in: parent) { openat(parent, name, RootDirectory.oPath | O_NOFOLLOW | O_CLOEXEC) }
        guard held >= 0 else { return false }
        defer { close(held) }
        var st = stat()
        guard fstat(held, &st) == 0, st.st_mode & S_IFMT == S_IFREG, st.st_nlink == 1, UInt64(st.st_size) == entry.size,
              Int64(st.st_mtim.tv_sec) == entry.mtimeSeconds, Int32(st.st_mtim.tv_nsec) == entry.mtimeNanoseconds else { return false }
        let wanted = mode_t(FileModes.atDestination(entry.mode) & 0o7777)
        if wanted & ~(st.st_mode & 0o7777) != 0 {
            var dir = stat()
            guard st.st_uid == geteuid(), fstat(parent, &dir) == 0, dir.st_uid == geteuid(), dir.st_mode & 0o022 == 0 else { return false }
        }
        // Through the descriptor's own inode (an O_PATH descriptor takes no fchmod).
        return chmod("/proc/self/fd/\(held)", wanted) == 0
    }
}
