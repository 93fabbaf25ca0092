#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The directory a batch's last new file was created in, kept open for the next one. A batch of
/// small files comes in the source's scan order, directory by directory, and each new file
/// otherwise opened its parent beneath the root (`openat2`) and closed it again: two system calls
/// a file. One descriptor at most, for one thread (a batch is received on one); closed when the
/// batch is done.
///
/// The directory is confined when it is opened, as each file's was; a file created in it later
/// trusts it as a file's creation always trusted the descriptor opened a moment before. Its
/// rename at the batch's finish opens the directory beneath the root again.
public final class BatchParent {
    private var held: (root: PathKey, parent: PathKey, fd: Int32)?

    public init() {}

    deinit { if let held { close(held.fd) } }

    /// `final`'s directory, opened beneath `directory` (made when missing, never through a
    /// link); the descriptor is this object's, valid until the next call.
    func directory(of final: RootedPath, in directory: RootDirectory, display: String) throws(StoreError) -> Int32 {
        let root = PathKey(final.root), parent = PathKey(final.components.dropLast().joined(separator: "/"))
        if let held, held.root == root, held.parent == parent { return held.fd }
        let fd = try directory.openDirectory(final.components.dropLast(), create: true, display: display, throughLinks: false)
        if let held { close(held.fd) }
        held = (root, parent, fd)
        return fd
    }
}
