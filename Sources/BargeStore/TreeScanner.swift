#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One entry of a scanned tree.
public struct TreeEntry: Hashable, Sendable {
    public enum Kind: String, Hashable, Sendable, Codable {
        case file, directory, symlink
    }

    /// Relative to the scanned directory, `/`-separated; never empty.
    public var path: String
    public var kind: Kind
    public var size: UInt64
    /// Permission bits (and setuid/setgid/sticky), as `chmod` takes them.
    public var mode: UInt32
    public var mtimeSeconds: Int64
    public var mtimeNanoseconds: Int32
    /// For symbolic links: the target, exactly as stored (not followed, not checked).
    public var linkTarget: String?
    /// Its inode and ctime when it was looked at: which file the name held then. No one can set
    /// a ctime back, so a file replaced (a rename over it) or written since differs in one of them.
    public var inode: UInt64 = 0
    public var ctimeSeconds: Int64 = 0
    public var ctimeNanoseconds: Int32 = 0
}

/// Lists a tree the way a transfer needs it: regular files, directories (empty ones too) and
/// symbolic links, without following any link. Sockets, devices and FIFOs are not transferable and
/// are reported as skipped rather than silently dropped. Entries come in `TreeWalker`'s order:
/// depth first, each directory's entries by the bytes of their names.
public enum TreeScanner {
    public struct Result: Sendable {
        public var entries: [TreeEntry]
        /// Entries that cannot be transferred, with the reason.
        public var skipped: [StoreError]
    }

    /// Scans `start` (a directory, a file or a link). Paths in the result are relative to
    /// `start`'s parent when `start` is not a directory, so a single file scans as its own name.
    /// The whole tree in memory: for tests and small trees; agents page through `TreeWalker`.
    public static func scan(_ start: RootedPath) throws(StoreError) -> Result {
        var result = Result(entries: [], skipped: [])
        var st = stat()
        guard lstat(start.absolute, &st) == 0 else { throw .system(operation: "scan", path: start.absolute, errno: errno) }
        if st.st_mode & S_IFMT == S_IFDIR {
            var walker = try TreeWalker(directory: start)
            while let e = try walker.next() { result.entries.append(e) }
            result.skipped = walker.takeSkipped()
        } else {
            let name = start.components.last ?? ""
            do {
                if let entry = try entry(start.absolute, relative: name, st) { result.entries.append(entry) }
                else { result.skipped.append(.invalidPath(path: start.relative, reason: "not a regular file, directory or symbolic link")) }
            } catch {
                result.skipped.append(error)
            }
        }
        return result
    }

    /// The entry for `path` itself (not followed if it is a link), named by its last component.
    public static func entry(at path: RootedPath) throws(StoreError) -> TreeEntry {
        var st = stat()
        guard lstat(path.absolute, &st) == 0 else { throw .system(operation: "scan", path: path.relative.isEmpty ? "." : path.relative, errno: errno) }
        guard let e = try entry(path.absolute, relative: path.components.last ?? "", st) else {
            throw .invalidPath(path: path.relative, reason: "not a regular file, directory or symbolic link")
        }
        return e
    }

    /// An agent keeps its own state (the chunk index) in `<root>/.barge`; a scan of the whole root
    /// leaves it out.
    public static let stateDirectory = ".barge"

    /// The largest file a scan reports (what the protocol carries); bigger ones are left out.
    public static let largestFile: UInt64 = 1 << 56

    private static let partialSuffix = Array(PartialFileWriter.suffix.utf8)

    /// The longest path an entry may have, in bytes: one less than Linux's `PATH_MAX` (4096, which
    /// counts the terminating NUL), within what the wire carries (`ChunkPlace.maxPathLength`). A
    /// walk leaves out an entry whose path is longer, and does not enter such a directory.
    public static let longestPath = 4095

    /// The names in a directory other than `.` and `..`, by their bytes; names that are not
    /// UTF-8 are reported in `skipped`.
    static func children(of directory: OpenDirectory, prefix: String, skipState: Bool, keepPartialCopies: Bool = false,
                         skipped: inout [StoreError]) throws(StoreError) -> [String] {
        // fdopendir takes its descriptor over: it gets a copy, and the level keeps its own.
        let copy = dup(directory.fd)
        guard copy >= 0, let dir = fdopendir(copy) else {
            let e = errno
            if copy >= 0 { close(copy) }
            throw .system(operation: "open directory", path: prefix.isEmpty ? "." : prefix, errno: e)
        }
        defer { closedir(dir) }
        var raw: [[UInt8]] = []
        while let ent = readdir(dir) {
            let name = withUnsafeBytes(of: ent.pointee.d_name) { bytes in Array(bytes.prefix { $0 != 0 }) }
            if name == [0x2E] || name == [0x2E, 0x2E] { continue }
            if skipState && name == Array(stateDirectory.utf8) { continue }
            raw.append(name)
        }
        // By memcmp: the generic `lexicographicallyPrecedes` walks both names through iterators,
        // and took a seventh of a re-sync's source CPU.
        raw.sort { a, b in
            a.withUnsafeBufferPointer { x in
                b.withUnsafeBufferPointer { y in
                    let c = memcmp(x.baseAddress!, y.baseAddress!, min(x.count, y.count))
                    return c != 0 ? c < 0 : x.count < y.count
                }
            }
        }
        var names: [String] = []
        names.reserveCapacity(raw.count)
        for name in raw {
            guard let valid = String(validating: name, as: UTF8.self) else {
                skipped.append(.invalidName(directory: prefix.isEmpty ? "." : prefix, escaped: escape(name)))
                continue
            }
            // Named as a destination names its unfinished copies: sent, "x.barge-partial" would
            // be taken at the destination for the partial copy of "x", and one would replace
            // the other (a leftover of a transfer into this tree that was interrupted).
            if !keepPartialCopies, name.count > partialSuffix.count, name.suffix(partialSuffix.count).elementsEqual(partialSuffix) {
                skipped.append(.partialCopyName(path: prefix.isEmpty ? valid : prefix + "/" + valid))
                continue
            }
            names.append(valid)
        }
        return names
    }

    /// The entry `name` of an open directory, not followed if it is a link; nil (with the reason
    /// in `skipped`) when it is gone or cannot be transferred.
    static func entry(named name: String, in directory: OpenDirectory, relative: String, skipped: inout [StoreError]) -> TreeEntry? {
        var st = stat()
        guard fstatat(directory.fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 else {
            skipped.append(.system(operation: "stat", path: relative, errno: errno))
            return nil
        }
        do {
            guard let e = try entry(relative: relative, st, linkTarget: { directory.linkTargetBytes(name) }) else {
                skipped.append(.invalidPath(path: relative, reason: "not a regular file, directory or symbolic link"))
                return nil
            }
            return e
        } catch {
            skipped.append(error)
            return nil
        }
    }

    private static func entry(_ absolute: String, relative: String, _ st: stat) throws(StoreError) -> TreeEntry? {
        try entry(relative: relative, st, linkTarget: { RootedPath.linkTargetBytes(absolute, in: AT_FDCWD) })
    }

    /// Nil for a device, socket or FIFO. A symbolic link whose target is not UTF-8 is refused
    /// (`invalidLinkTarget`), as names that are not: made from a decoded copy, it would point
    /// elsewhere at the destination.
    private static func entry(relative: String, _ st: stat, linkTarget: () -> [UInt8]?) throws(StoreError) -> TreeEntry? {
        let kind: TreeEntry.Kind
        switch st.st_mode & S_IFMT {
        case S_IFREG: kind = .file
        case S_IFDIR: kind = .directory
        case S_IFLNK: kind = .symlink
        default: return nil
        }
        var target: String?
        if kind == .symlink, let bytes = linkTarget() {
            guard let valid = String(validating: bytes, as: UTF8.self) else { throw .invalidLinkTarget(path: relative, escaped: escape(bytes)) }
            target = valid
        }
        // A sparse file may say more than the wire carries (2^56 bytes, `PayloadReader.quantity`):
        // left out and named, not sent to be refused with its whole scan page, again and again.
        if kind == .file, UInt64(st.st_size) > TreeScanner.largestFile {
            throw .invalidPath(path: relative, reason: "its size of \(st.st_size) bytes is over 2^56 (64 PiB), the most Barge moves")
        }
        return TreeEntry(
            path: relative, kind: kind, size: kind == .file ? UInt64(st.st_size) : 0, mode: UInt32(st.st_mode & 0o7777),
            mtimeSeconds: Int64(st.st_mtim.tv_sec), mtimeNanoseconds: Int32(st.st_mtim.tv_nsec),
            linkTarget: target, inode: UInt64(st.st_ino), ctimeSeconds: Int64(st.st_ctim.tv_sec), ctimeNanoseconds: Int32(st.st_ctim.tv_nsec))
    }

    /// Printable ASCII as is, everything else as \xNN.
    public static func escape(_ bytes: [UInt8]) -> String {
        bytes.map { $0 >= 0x20 && $0 < 0x7F && $0 != 0x5C ? String(UnicodeScalar($0)) : "\\x" + String($0, radix: 16).leftPadded(2) }.joined()
    }
}

extension String {
    func leftPadded(_ n: Int) -> String { String(repeating: "0", count: max(0, n - count)) + self }
}
