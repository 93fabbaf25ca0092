#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A directory descriptor held while its entries are looked up by name (`fstatat`, `openat`,
/// `readlinkat`), so the kernel walks one component per entry rather than a whole path. Closed
/// when the last holder is gone: a walk's level (also when a walk is dropped half way), or a
/// quick check's page.
public final class OpenDirectory: Sendable {
    public let fd: Int32
    /// The directory's device and inode, to tell it from one put in its place later.
    let identity: (device: UInt64, inode: UInt64)

    public init(fd: Int32) {
        self.fd = fd
        var st = stat()
        identity = fstat(fd, &st) == 0 ? (UInt64(st.st_dev), UInt64(st.st_ino)) : (0, 0)
    }

    deinit { close(fd) }

    /// `path`, opened as a directory (links followed); nil with errno set when it cannot be.
    public convenience init?(path: String) {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        self.init(fd: fd)
    }

    /// The subdirectory `name`, never through a link.
    convenience init?(_ name: String, in parent: OpenDirectory) {
        let fd = openat(parent.fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        self.init(fd: fd)
    }

    /// The target of the link `name` in this directory.
    public func linkTarget(_ name: String) -> String? { RootedPath.linkTarget(name, in: fd) }

    /// The target of the link `name` in this directory, as its bytes.
    public func linkTargetBytes(_ name: String) -> [UInt8]? { RootedPath.linkTargetBytes(name, in: fd) }
}
