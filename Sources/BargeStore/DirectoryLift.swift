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
        // A set-group-ID directory of a group the agent is not in: a chmod by its owner would
        // clear the bit for good (the kernel drops it), so it is not lifted.
        guard fstat(directory, &st) == 0, st.st_mode & S_IFMT == S_IFDIR, st.st_uid == geteuid(), geteuid() != 0,
              st.st_mode & S_ISGID == 0 || inGroup(st.st_gid) else {
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
}
