#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The directory a batch's last new file was created in, kept open for the next one. A batch of
/// small files comes in the source's scan order, directory by directory, and each new file
/// otherwise opened its parent beneath the root (`openat2`) and closed it again.
/// One descriptor at most, for one thread (a batch is received on one); closed when the batch is
/// done.
///
/// Before each reuse, the directory's path beneath the root is looked at again (`fstatat`, one
/// call): if it no longer names the held directory (moved, removed, swapped for another or for a
/// link), the directory is opened anew, confined as the first was. So a file is created in a
/// directory found at its path a moment before, as when each file opened its own.
public final class BatchParent {
    private var held: (root: PathKey, parent: PathKey, fd: Int32, device: UInt64, inode: UInt64)?

    public init() {}

    deinit { if let held { close(held.fd) } }

    /// `final`'s directory, opened beneath `directory` (made when missing, never through a
    /// link); the descriptor is this object's, valid until the next call.
    func directory(of final: RootedPath, in directory: RootDirectory) throws(StoreError) -> Int32 {
        let root = PathKey(final.root), parent = PathKey(final.components.dropLast().joined(separator: "/"))
        if let held, held.root == root, held.parent == parent {
            var st = stat()
            if fstatat(directory.fd, parent.string.isEmpty ? "." : parent.string, &st, AT_SYMLINK_NOFOLLOW) == 0,
               UInt64(st.st_dev) == held.device, UInt64(st.st_ino) == held.inode {
                return held.fd
            }
        }
        let fd = try directory.openDirectory(final.components.dropLast(), create: true, display: final.relative, throughLinks: false, lifting: true)
        var st = stat()
        _ = fstat(fd, &st)
        if let held { close(held.fd) }
        held = (root, parent, fd, UInt64(st.st_dev), UInt64(st.st_ino))
        return fd
    }
}
