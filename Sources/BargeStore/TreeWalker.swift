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
/// that walk), and a directory swapped for a link during the walk is not followed. Only the
/// deepest `heldLevels` levels hold their descriptor, so a tree a thousand directories deep does
/// not run an agent out of descriptors: a level further up lets its go and opens its directory
/// again by path when the walk comes back to it, and fails the walk if that is no longer the
/// same directory.
public struct TreeWalker: Sendable {
    private struct Level: Sendable {
        /// Nil once the level is more than `heldLevels` from the deepest.
        var directory: OpenDirectory?
        let identity: (device: UInt64, inode: UInt64)
        let absolute: String
        let prefix: String
        let names: [String]
        var next = 0
    }

    /// Levels that hold their directory open, counting from the deepest.
    static let heldLevels = 64

    private var stack: [Level] = []
    private var skipped: [StoreError] = []
    private let keepPartialCopies: Bool

    /// Walks below `directory`; paths are relative to it. At an agent's root, its `.barge`
    /// state directory is left out, and so is any directory `StatePaths` protects or marks.
    /// `keepPartialCopies`: list names ending in `.barge-partial` too (`barge ls` shows what is
    /// there); a transfer's scan leaves them out and reports them.
    public init(directory: RootedPath, keepPartialCopies: Bool = false) throws(StoreError) {
        self.keepPartialCopies = keepPartialCopies
        let fd = open(directory.absolute, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw .system(operation: "open directory", path: directory.relative.isEmpty ? "." : directory.relative, errno: errno) }
        let open = OpenDirectory(fd: fd)
        if StatePaths.isProtected(directory.absolute) { return }
        let names = try TreeScanner.children(of: open, prefix: "", skipState: directory.components.isEmpty, keepPartialCopies: keepPartialCopies, skipped: &skipped)
        stack = [Level(directory: open, identity: open.identity, absolute: directory.absolute, prefix: "", names: names)]
    }

    /// Walks below `directory` from just after the entry at `after` (a path relative to it, one
    /// the walk returned): what `next` would return after it, without walking what came before.
    /// A page of `barge ls` resumes so; counting its way there from the start made listing a
    /// tree quadratic (a page at entry 399,000 took 5.6 s). Names are compared by their bytes, as
    /// the walk orders them, so an entry removed since resumes at the name after it.
    public init(directory: RootedPath, keepPartialCopies: Bool = false, after: String) throws(StoreError) {
        try self.init(directory: directory, keepPartialCopies: keepPartialCopies)
        guard !after.isEmpty else { return }
        let components = after.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        for (depth, component) in components.enumerated() {
            guard let top = stack.last else { return }
            let key = Array(component.utf8)
            let i = top.names.firstIndex { !Self.before(Array($0.utf8), key) } ?? top.names.count
            let found = i < top.names.count && Array(top.names[i].utf8) == key
            stack[stack.count - 1].next = found ? i + 1 : i
            guard found else { return }
            // The entry itself was returned: a directory's contents come after it; on the way
            // to it, each directory is entered as the walk entered it.
            let relative = components[...depth].joined(separator: "/")
            let directory = try reopened(top)
            stack[stack.count - 1].directory = directory
            var unused: [StoreError] = []
            guard let e = TreeScanner.entry(named: component, in: directory, relative: relative, skipped: &unused), e.kind == .directory,
                  try descend(into: component, relative: relative, of: top.absolute, in: directory) else { return }
        }
    }

    /// By the bytes of the names, as `TreeScanner.children` sorts them.
    private static func before(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        a.withUnsafeBufferPointer { x in
            b.withUnsafeBufferPointer { y in
                let c = memcmp(x.baseAddress!, y.baseAddress!, min(x.count, y.count))
                return c != 0 ? c < 0 : x.count < y.count
            }
        }
    }

    /// The next entry, or nil at the end. A directory below the start that cannot be read (no
    /// permission, or gone) is left out and reported (`takeSkipped`); other failures fail the walk.
    public mutating func next() throws(StoreError) -> TreeEntry? {
        while let top = stack.last {
            guard top.next < top.names.count else {
                stack.removeLast()
                continue
            }
            let name = top.names[top.next]
            stack[stack.count - 1].next += 1
            let relative = top.prefix.isEmpty ? name : top.prefix + "/" + name
            guard relative.utf8.count <= TreeScanner.longestPath else {
                skipped.append(.pathTooLong(start: String(decoding: relative.utf8.prefix(80), as: UTF8.self), bytes: relative.utf8.count))
                continue
            }
            let directory = try reopened(top)
            stack[stack.count - 1].directory = directory
            guard let e = TreeScanner.entry(named: name, in: directory, relative: relative, skipped: &skipped) else { continue }
            if e.kind == .directory {
                // Protected, unreadable (reported) or another agent's state: not listed.
                guard try descend(into: name, relative: relative, of: top.absolute, in: directory) else { continue }
            }
            return e
        }
        return nil
    }

    /// Enters the directory `name` (at `relative`) of the level whose directory is `directory`:
    /// its level goes on the stack. False when it is not data to walk: an agent's state
    /// directory, or one that cannot be read (left out and reported, as an unreadable file is;
    /// the rest of the tree goes on, as rsync's "opendir failed", exit 23).
    private mutating func descend(into name: String, relative: String, of absoluteParent: String, in directory: OpenDirectory) throws(StoreError) -> Bool {
        let absolute = absoluteParent + "/" + name
        // An agent's state directory given with --state below the root is not data.
        if StatePaths.isProtected(absolute) { return false }
        guard let open = OpenDirectory(name, in: directory) else {
            let e = errno
            guard e == EACCES || e == EPERM || e == ENOENT else { throw .system(operation: "open directory", path: relative, errno: e) }
            skipped.append(.system(operation: "open directory", path: relative, errno: e))
            return false
        }
        let names = try TreeScanner.children(of: open, prefix: relative, skipState: false, keepPartialCopies: keepPartialCopies, skipped: &skipped)
        // Another agent's state directory (it carries the marker, with its text) is not data
        // either. Like `.barge`, it is left out without a report: it is no one's data, and a
        // report would make every job over a root that holds one end with exit 2.
        if StatePaths.isStateDirectory(open, names: names) { return false }
        stack.append(Level(directory: open, identity: open.identity, absolute: absolute, prefix: relative, names: names))
        if stack.count > Self.heldLevels { stack[stack.count - Self.heldLevels - 1].directory = nil }
        return true
    }

    /// The level's directory: held, or opened again by path (never through a link at its end)
    /// and checked to be the one the walk listed.
    private func reopened(_ level: Level) throws(StoreError) -> OpenDirectory {
        if let held = level.directory { return held }
        let display = level.prefix.isEmpty ? "." : level.prefix
        let fd = open(level.absolute, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw .system(operation: "open directory", path: display, errno: errno) }
        let again = OpenDirectory(fd: fd)
        guard again.identity == level.identity else { throw .invalidPath(path: display, reason: "was replaced by another directory during the scan") }
        return again
    }

    /// Entries that could not be transferred since the last call, with the reason.
    public mutating func takeSkipped() -> [StoreError] {
        defer { skipped = [] }
        return skipped
    }
}
