import GRDB
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What went wrong with a path or a file, in words an operator can act on. System errors keep their
/// errno and name it (ENOSPC, EACCES, …) so that logs and job errors say exactly what happened.
public enum StoreError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The path, after removing `.` and `..`, would leave the root.
    case escapesRoot(path: String)
    /// A symbolic link on the way leads outside the root.
    case symlinkEscape(path: String, resolved: String)
    case invalidPath(path: String, reason: String)
    case rootUnusable(root: String, reason: String)
    /// A file name that is not valid UTF-8, shown with its bytes escaped; it was not transferred.
    case invalidName(directory: String, escaped: String)
    /// A symbolic link whose target is not valid UTF-8, shown with its bytes escaped; it was not
    /// transferred.
    case invalidLinkTarget(path: String, escaped: String)
    /// A source entry whose name ends in `.barge-partial`, the suffix of a destination's
    /// unfinished copies; it was not transferred.
    case partialCopyName(path: String)
    /// A scanned entry whose path is longer than a path may be (`TreeScanner.longestPath`):
    /// its first bytes, and its length.
    case pathTooLong(start: String, bytes: Int)
    case system(operation: String, path: String, errno: Int32)
    /// A partial copy finished meanwhile by another writer: an agent sharing the root, or a run
    /// of this agent that outlived its assignment. Nothing more goes into it.
    case finishedElsewhere(path: String)

    /// A system call failed (`system`), rather than a path or name refused.
    public var isSystem: Bool {
        if case .system = self { return true }
        return false
    }

    public var description: String {
        switch self {
        case .escapesRoot(let p): "path '\(p)' leads outside the agent's root"
        case .symlinkEscape(let p, let r):
            r.isEmpty ? "path '\(p)' goes through a symbolic link that leads outside the agent's root"
                : "path '\(p)' goes through a symbolic link to \(r), outside the agent's root"
        case .invalidPath(let p, let why): "invalid path '\(p)': \(why)"
        case .rootUnusable(let r, let why): "root \(r) is unusable: \(why)"
        case .invalidName(let d, let e): "a file name in '\(Self.shortened(d))' is not valid UTF-8 (\(Self.shortened(e))); it cannot be transferred"
        case .invalidLinkTarget(let p, let e): "symbolic link '\(Self.shortened(p))' points to a name that is not valid UTF-8 (\(Self.shortened(e))); it cannot be transferred"
        case .partialCopyName(let p): "'\(Self.shortened(p))' is named as Barge names its unfinished copies (.barge-partial); it is not transferred"
        case .pathTooLong(let p, let n): "the path '\(p)…' is \(n) bytes long, over the \(TreeScanner.longestPath) a path may have (PATH_MAX); it cannot be transferred"
        case .system(let op, let p, let e): "\(op) \(p): \(Self.errnoName(e)) (\(String(cString: strerror(e))))"
        case .finishedElsewhere(let p): "'\(p)' was finished meanwhile by another writer; nothing more is written into it"
        }
    }

    /// A path as a message shows it: the first 300 bytes, so that the reason after it survives
    /// the 1024 bytes a reason may have on the wire (and the CLI's hint, which looks for it).
    public static func shortened(_ s: String) -> String {
        s.utf8.count <= 300 ? s : String(decoding: s.utf8.prefix(300), as: UTF8.self) + "…"
    }

    /// `system`, saying so when ENOSPC comes from a file system out of inodes rather than out of
    /// room (`df` shows space free, `df -i` shows none), given a descriptor on that file system.
    public static func system(operation: String, path: String, errno e: Int32, on fd: Int32) -> StoreError {
        var st = statvfs()
        guard e == ENOSPC, fstatvfs(fd, &st) == 0, st.f_files > 0, st.f_ffree == 0 else { return .system(operation: operation, path: path, errno: e) }
        return .system(operation: operation, path: path + " (its file system has no free inodes left: see df -i)", errno: e)
    }

    public var errno: Int32? {
        if case .system(_, _, let e) = self { return e }
        return nil
    }

    static func errnoName(_ e: Int32) -> String {
        switch e {
        case ENOSPC: "ENOSPC"
        case EACCES: "EACCES"
        case EPERM: "EPERM"
        case ENOENT: "ENOENT"
        case EEXIST: "EEXIST"
        case EROFS: "EROFS"
        case EDQUOT: "EDQUOT"
        case EIO: "EIO"
        case ENOTDIR: "ENOTDIR"
        case EISDIR: "EISDIR"
        case ELOOP: "ELOOP"
        case ENAMETOOLONG: "ENAMETOOLONG"
        default: "errno \(e)"
        }
    }

    /// The words for any error a store call threw, as a refusal's detail. A chunk index that
    /// SQLite cannot open (error 14, "unable to open database file") while this process is out
    /// of descriptors names the errno as a `StoreError` does, so that the source gives the
    /// attempt back rather than count it (`UnitSender.isOutOfDescriptors`): counted, a job whose
    /// destination agent took over a stopped sibling's files failed 2 of 2 times (h1 of session 50).
    /// `outOfDescriptors`: for tests.
    public static func describing(_ error: any Error, outOfDescriptors: () -> Int32? = StoreError.outOfDescriptors) -> String {
        if let db = error as? DatabaseError, db.resultCode == .SQLITE_CANTOPEN, let e = outOfDescriptors() {
            return "\(error): errno \(e) (\(String(cString: strerror(e))))"
        }
        return "\(error)"
    }

    /// EMFILE or ENFILE when no descriptor can be opened now; nil otherwise.
    public static func outOfDescriptors() -> Int32? {
        let fd = open("/dev/null", O_RDONLY | O_CLOEXEC)
        if fd >= 0 {
            close(fd)
            return nil
        }
        let e = lastErrno()
        return e == EMFILE || e == ENFILE ? e : nil
    }
}

/// errno, read where `StoreError.errno` does not hide it.
private func lastErrno() -> Int32 { errno }
