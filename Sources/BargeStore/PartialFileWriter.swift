#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes one destination file the safe way: chunks land by `pwrite` in `<name>.barge-partial`, in
/// any order. `finish` then runs `fsync`, sets the mode and mtime, renames the file atomically to its
/// final name, and syncs the directory. A partial file never appears under its final name, and a
/// failure names its errno (ENOSPC, EACCES, …). Sendable so that several data-plane connections
/// can share one file; callers serialise `write`, `finish` and `abandon` per writer (a write
/// racing `finish` could land on a reused descriptor).
public final class PartialFileWriter: @unchecked Sendable {
    public static let suffix = ".barge-partial"

    public let final: RootedPath
    public var partialPath: String { final.absolute + Self.suffix }
    private var fd: Int32
    /// The same file opened with O_DIRECT, where the file system allows it (not tmpfs): block-aligned
    /// writes from aligned memory go to the device without a copy into the page cache, and leave
    /// nothing for `fsync` to write back. -1 when unavailable.
    private var directFD: Int32 = -1
    /// Alignment O_DIRECT needs here: offset, length and memory address.
    public static let directAlignment = 4096

    /// Creates any missing parent directories (0755), then the partial file (0600) at its full size
    /// (sparse). An existing partial file is reopened, so a restarted transfer keeps what arrived.
    public init(_ final: RootedPath, size: UInt64) throws(StoreError) {
        guard !final.components.isEmpty else { throw .invalidPath(path: final.relative, reason: "the root itself is not a file") }
        self.final = final
        try DestinationEntries.createParents(of: final)
        // O_NOFOLLOW: a symbolic link planted under the partial name is refused, not followed.
        fd = open(final.absolute + Self.suffix, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .system(operation: "create", path: final.relative + Self.suffix, errno: errno) }
        guard ftruncate(fd, off_t(size)) == 0 else {
            let e = errno
            close(fd)
            throw .system(operation: "size", path: final.relative + Self.suffix, errno: e)
        }
        #if os(Linux)
        directFD = open(final.absolute + Self.suffix, O_WRONLY | O_NOFOLLOW | O_CLOEXEC | Self.oDirect)
        #endif
    }

    #if os(Linux)
    static let oDirect: Int32 = 0o40000  // O_DIRECT on x86-64 and arm64 (Glibc does not export it to Swift)
    #endif

    deinit {
        if fd >= 0 { close(fd) }
        if directFD >= 0 { close(directFD) }
    }

    /// Writes `bytes` at `offset`, all of them. The whole blocks among them bypass the page cache
    /// when the file system allows it and the memory is laid out like the file (the address of the
    /// byte at a block boundary is block-aligned); the partial blocks at either end are buffered.
    public func write(_ bytes: UnsafeRawBufferPointer, at offset: UInt64) throws(StoreError) {
        let a = Self.directAlignment
        let head = (a - Int(offset % UInt64(a))) % a
        guard directFD >= 0, bytes.count >= head + a, Int(bitPattern: bytes.baseAddress! + head) % a == 0 else {
            return try write(fd, bytes, at: offset)
        }
        let blocks = (bytes.count - head) / a * a
        if head > 0 { try write(fd, UnsafeRawBufferPointer(rebasing: bytes[0..<head]), at: offset) }
        try write(directFD, UnsafeRawBufferPointer(rebasing: bytes[head..<(head + blocks)]), at: offset + UInt64(head))
        if head + blocks < bytes.count {
            try write(fd, UnsafeRawBufferPointer(rebasing: bytes[(head + blocks)...]), at: offset + UInt64(head + blocks))
        }
    }

    private func write(_ target: Int32, _ bytes: UnsafeRawBufferPointer, at offset: UInt64) throws(StoreError) {
        var done = 0
        while done < bytes.count {
            let n = pwrite(target, bytes.baseAddress! + done, bytes.count - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                throw .system(operation: "write", path: final.relative + Self.suffix, errno: errno)
            }
            done += n
        }
    }

    /// Makes the file durable and gives it its final name, mode and mtime.
    public func finish(mode: UInt32, mtimeSeconds: Int64, mtimeNanoseconds: Int32) throws(StoreError) {
        let name = final.relative
        guard fsync(fd) == 0 else { throw .system(operation: "fsync", path: name + Self.suffix, errno: errno) }
        guard fchmod(fd, mode_t(mode & 0o7777)) == 0 else { throw .system(operation: "chmod", path: name + Self.suffix, errno: errno) }
        var times = [DestinationEntries.omitTime, timespec(tv_sec: Int(mtimeSeconds), tv_nsec: Int(mtimeNanoseconds))]
        guard futimens(fd, &times) == 0 else { throw .system(operation: "set mtime of", path: name + Self.suffix, errno: errno) }
        close(fd)
        fd = -1
        if directFD >= 0 { close(directFD); directFD = -1 }
        guard rename(partialPath, final.absolute) == 0 else { throw .system(operation: "rename", path: name, errno: errno) }
        // The rename is durable once the directory is synced.
        let parent = final.components.count > 1 ? final.root + "/" + final.components.dropLast().joined(separator: "/") : final.root
        let dfd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 {
            defer { close(dfd) }
            guard fsync(dfd) == 0 else { throw .system(operation: "fsync directory", path: parent, errno: errno) }
        }
    }

    /// Removes the partial file (a cancelled job, a file that changed at the source).
    public func abandon() {
        if fd >= 0 { close(fd); fd = -1 }
        if directFD >= 0 { close(directFD); directFD = -1 }
        unlink(partialPath)
    }
}
