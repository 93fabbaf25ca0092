#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Walks a directory tree one entry at a time, depth first: a directory comes right before its
/// contents, and each directory's entries come by the bytes of their names (the order of
/// `ScanOrder` in the wire protocol). It holds one directory's names per level, never the whole
/// tree, so an agent pages through ten million files in bounded memory. Links are not followed.
///
/// Each level keeps its directory open: entries are looked up by name from that descriptor
/// (`fstatat`), and subdirectories opened from it with `O_NOFOLLOW`, so the kernel walks one
/// component per entry rather than the whole path (a tenth of a re-sync's source CPU went to
/// that walk), and a directory swapped for a link during the walk is not followed.
public struct TreeWalker: Sendable {
    private struct Level: Sendable {
        let directory: OpenDirectory
        let absolute: String
        let prefix: String
        let names: [String]
        var next = 0
    }

    private var stack: [Level] = []
    private var skipped: [StoreError] = []

    /// Walks below `directory`; paths are relative to it. At an agent's root, its `.barge`
    /// state directory is left out, and so is any directory `StatePaths` protects or marks.
    public init(directory: RootedPath) throws(StoreError) {
        let fd = open(directory.absolute, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw .system(operation: "open directory", path: directory.relative.isEmpty ? "." : directory.relative, errno: errno) }
        let open = OpenDirectory(fd: fd)
        if StatePaths.isProtected(directory.absolute) { return }
        let names = try TreeScanner.children(of: open, prefix: "", skipState: directory.components.isEmpty, skipped: &skipped)
        stack = [Level(directory: open, absolute: directory.absolute, prefix: "", names: names)]
    }

    /// The next entry, or nil at the end. A directory that cannot be opened fails the walk.
    public mutating func next() throws(StoreError) -> TreeEntry? {
        while let top = stack.last {
            guard top.next < top.names.count else {
                stack.removeLast()
                continue
            }
            let name = top.names[top.next]
            stack[stack.count - 1].next += 1
            let relative = top.prefix.isEmpty ? name : top.prefix + "/" + name
            guard let e = TreeScanner.entry(named: name, in: top.directory, relative: relative, skipped: &skipped) else { continue }
            if e.kind == .directory {
                let absolute = top.absolute + "/" + name
                // An agent's state directory given with --state below the root is not data.
                if StatePaths.isProtected(absolute) { continue }
                let fd = openat(top.directory.fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                guard fd >= 0 else { throw .system(operation: "open directory", path: relative, errno: errno) }
                let open = OpenDirectory(fd: fd)
                let names = try TreeScanner.children(of: open, prefix: relative, skipState: false, skipped: &skipped)
                // Another agent's state directory (it carries the marker) is not data either.
                if StatePaths.isStateDirectory(names: names) { continue }
                stack.append(Level(directory: open, absolute: absolute, prefix: relative, names: names))
            }
            return e
        }
        return nil
    }

    /// Entries that could not be transferred since the last call, with the reason.
    public mutating func takeSkipped() -> [StoreError] {
        defer { skipped = [] }
        return skipped
    }
}

/// A directory descriptor held while its entries are looked up by name; closed when the last
/// holder is gone (a walk's level, also when a walk is dropped half way; a quick check's page).
public final class OpenDirectory: Sendable {
    public let fd: Int32
    public init(fd: Int32) { self.fd = fd }
    deinit { close(fd) }

    /// `path`, opened as a directory (links followed); nil with errno set when it cannot be.
    public convenience init?(path: String) {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        self.init(fd: fd)
    }
}
