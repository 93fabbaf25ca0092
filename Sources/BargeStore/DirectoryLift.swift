import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A directory that the agent's own user owns but may not write into, as a re-sync finds one that
/// an earlier job gave the source's read-only mode (0555): an agent that is not root could not
/// create or rename a file in it (EACCES), so a file changed there at the source never arrived.
/// Such a directory gets its owner's write and search bits for the one operation, and its mode
/// back at once (the job's `directories` unit sets it again at the end, with the mtime). rsync
/// lifts the directories it transfers for its run; this lifts any of the user's directories a
/// write meets, with no list of the job's. A directory of another user stays refused, and so
/// does a set-group-ID one of a group the agent is not in (a chmod would clear the bit); root is
/// never refused, so never lifts.
///
/// Rare by nature, so one lock per process serialises the lifts: two threads never lift and put
/// back one directory across each other's operation. Another process sharing the root (a second
/// agent) can still put the mode back under an operation of this one: the operation is tried
/// again, up to `attempts` times.
public enum DirectoryLift {
    static let attempts = 3
    private static let lock = Mutex(())

    static func inGroup(_ gid: gid_t) -> Bool {
        if getegid() == gid { return true }
        var groups = [gid_t](repeating: 0, count: Int(getgroups(0, nil)))
        let n = getgroups(Int32(groups.count), &groups)
        return n > 0 && groups.prefix(Int(n)).contains(gid)
    }

    /// Runs `operation` (a create, rename, link or mkdir in `directory`, returning -1 with errno
    /// set on failure). Refused with EACCES in a directory that may be lifted, it runs again with
    /// the directory lifted; the result and errno are the last run's.
    public static func retrying(in directory: Int32, _ operation: () -> Int32) -> Int32 {
        var result = operation()
        guard result < 0, errno == EACCES else { return result }
        var st = stat()
        // Not a set-group-ID directory of a group the agent is not in: a chmod by its owner would
        // clear the bit for good (the kernel drops it). `liftable` says so, and the rest.
        guard fstat(directory, &st) == 0, liftable(st) else {
            errno = EACCES
            return result
        }
        let needed = S_IWUSR | S_IXUSR
        for _ in 0..<attempts {
            result = lock.withLock { _ -> Int32 in
                guard fstat(directory, &st) == 0 else { return -1 }
                let mode = st.st_mode & 0o7777
                // Lifted by another agent meanwhile (or changed): only the operation again.
                guard mode & needed != needed else { return operation() }
                guard fchmod(directory, mode | needed) == 0 else { errno = EACCES; return -1 }
                let r = operation()
                let e = errno
                fchmod(directory, mode)
                errno = e
                return r
            }
            guard result < 0, errno == EACCES else { return result }
        }
        return result
    }

    /// Opens the regular file `path` to read it, at an agent that is not root, where the plain
    /// open by path is refused (EACCES): its directory is opened beneath the root through no link,
    /// lifted where the agent may not search it; the file is held by an `O_PATH` descriptor and
    /// opened through it, with its owner's read bit added for the open and its mode put back at
    /// once when the agent's own user may not read it (0000, 0100, 0300, as a job gave the
    /// source's modes). A verification then reads what the agent wrote: before, it reported such
    /// files as mismatches ("cannot open: Permission denied"), and `--repair` could not clear them
    /// (a review). -1 with errno set when it cannot.
    public static func openForReading(_ path: RootedPath) -> Int32 {
        let flags = O_RDONLY | O_NONBLOCK | O_CLOEXEC
        guard geteuid() != 0, let name = path.components.last else { errno = EACCES; return -1 }
        let parent: Int32
        do {
            parent = try RootDirectory.open(path.root).openDirectory(path.components.dropLast(), create: false, display: path.relative,
                                                                     throughLinks: false, lifting: true)
        } catch {
            errno = error.errno ?? EACCES
            return -1
        }
        defer { close(parent) }
        let held = retrying(in: parent) { openat(parent, name, RootDirectory.oPath | O_NOFOLLOW | O_CLOEXEC) }
        guard held >= 0 else { return -1 }
        defer { close(held) }
        let through = "/proc/self/fd/\(held)"
        let fd = open(through, flags)
        guard fd < 0, errno == EACCES else { return fd }
        var st = stat()
        guard fstat(held, &st) == 0, st.st_mode & S_IFMT == S_IFREG, st.st_uid == geteuid() else {
            errno = EACCES
            return -1
        }
        return lock.withLock { _ -> Int32 in
            guard chmod(through, (st.st_mode & 0o7777) | S_IRUSR) == 0 else { return -1 }
            let fd = open(through, flags)
            let e = errno
            chmod(through, st.st_mode & 0o7777)
            errno = e
            return fd
        }
    }

    /// Opens the directory `name` in `parent` (following no link) where the agent's own user
    /// may not: a directory an earlier job gave the source's mode 0300, 0100 or 0000 cannot be
    /// opened to write into it (EACCES; rsync, not root, re-syncs into it). The directory gets
    /// its owner's read and search bits for the open and its mode back at once; `parent`, when
    /// its owner may not search it, gets the search bit for the look. The same conditions as
    /// `retrying`: the agent's own directory, not root, not a set-group-ID one of another group.
    /// The directory is held by an `O_PATH` descriptor from the first look to the put-back and
    /// changed only through it, never by name: a name swapped for a link meanwhile is not
    /// followed to whatever it points at. Tried again, as `retrying` is, when another agent
    /// sharing the root put a mode back under the open. -1 with errno set on failure.
    public static func openDirectory(_ name: String, in parent: Int32) -> Int32 {
        let flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC
        var fd = openat(parent, name, flags)
        guard fd < 0, errno == EACCES, geteuid() != 0 else { return fd }
        for _ in 0..<attempts {
            fd = lock.withLock { _ -> Int32 in
                var p = stat()
                guard fstat(parent, &p) == 0 else { errno = EACCES; return -1 }
                let parentMode = p.st_mode & 0o7777
                let searchable = parentMode & S_IXUSR != 0
                guard searchable || (liftable(p) && fchmod(parent, parentMode | S_IXUSR) == 0) else { errno = EACCES; return -1 }
                defer { if !searchable { fchmod(parent, parentMode) } }
                let held = openat(parent, name, RootDirectory.oPath | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                guard held >= 0 else { return -1 }
                defer { close(held) }
                var st = stat()
                guard fstat(held, &st) == 0, liftable(st) else { errno = EACCES; return -1 }
                let mode = st.st_mode & 0o7777
                let needed = S_IRUSR | S_IXUSR
                guard mode & needed != needed else { return openat(held, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
                // The held directory itself, by its descriptor's name in /proc (a directory, never
                // a link: opened with O_NOFOLLOW and O_DIRECTORY).
                let itself = "/proc/self/fd/\(held)"
                guard chmod(itself, mode | needed) == 0 else { errno = EACCES; return -1 }
                let opened = openat(held, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
                let e = errno
                if opened >= 0 { fchmod(opened, mode) } else { chmod(itself, mode) }
                errno = e
                return opened
            }
            guard fd < 0, errno == EACCES else { return fd }
        }
        return fd
    }

    /// A directory of the agent's own user, which is not root, whose mode a chmod keeps.
    private static func liftable(_ st: stat) -> Bool {
        st.st_mode & S_IFMT == S_IFDIR && st.st_uid == geteuid() && geteuid() != 0 && (st.st_mode & S_ISGID == 0 || inGroup(st.st_gid))
    }
}
