import NIOCore

/// Which file a name held when the scan saw it: its inode and ctime (protocol version 19). A
/// source agent that opens the name to read a range finds the same file, or one replaced or
/// written since (no one can set a ctime back): a large file's ranges are read by several units,
/// and without it a file replaced by rename between two of them, with the same size and mtime,
/// arrived mixed of both and passed every check. The device is left out: agents of one site
/// that share a parallel file system see it under different device numbers.
public struct FileIdentity: Hashable, Sendable, Codable {
    public var inode: UInt64
    public var ctimeSeconds: Int64
    public var ctimeNanoseconds: Int32

    public init(inode: UInt64, ctimeSeconds: Int64, ctimeNanoseconds: Int32) {
        self.inode = inode
        self.ctimeSeconds = ctimeSeconds
        self.ctimeNanoseconds = ctimeNanoseconds
    }

    /// The identities of `entries` that have one, by index: `u32 count`, then `u32 index, u64
    /// inode, i64 ctime seconds, i32 ctime nanoseconds` each (the trailing section of `scan reply`
    /// and `task assign`).
    static func write(_ identities: [(Int, FileIdentity)], to b: inout ByteBuffer) {
        b.writeInteger(UInt32(identities.count))
        for (i, id) in identities {
            b.writeInteger(UInt32(i))
            b.writeInteger(id.inode)
            b.writeInteger(id.ctimeSeconds)
            b.writeInteger(id.ctimeNanoseconds)
        }
    }

    static func read(count: Int, from r: inout PayloadReader) throws(WireError) -> [(Int, FileIdentity)] {
        try r.list("identities", minimumSize: 24) { (r: inout PayloadReader) throws(WireError) -> (Int, FileIdentity) in
            let index = Int(try r.integer(UInt32.self, "identity index"))
            let inode = try r.integer(UInt64.self, "inode")
            let seconds = try r.integer(Int64.self, "ctime seconds")
            let nanos = try r.integer(Int32.self, "ctime nanoseconds")
            guard index < count, (0..<1_000_000_000).contains(nanos) else { throw .malformed(r.type, "identity \(index) of \(count) entries, or its ctime out of range") }
            return (index, FileIdentity(inode: inode, ctimeSeconds: seconds, ctimeNanoseconds: nanos))
        }
    }
}

/// One entry of a tree on the wire: a scanned entry at the source, or an entry to create at the
/// destination. Codable so the coordinator can journal it as is.
public struct FileEntry: Hashable, Sendable, Codable {
    public enum Kind: UInt8, Hashable, Sendable, Codable {
        case file = 1, directory = 2, symlink = 3
    }

    /// Relative, `/`-separated.
    public var path: String
    public var kind: Kind
    public var size: UInt64
    /// Permission bits with setuid, setgid and sticky (≤ 0o7777).
    public var mode: UInt32
    public var mtimeSeconds: Int64
    public var mtimeNanoseconds: Int32
    /// For symbolic links, the target as stored; empty otherwise.
    public var linkTarget: String
    /// A regular file's identity when the scan saw it (protocol version 19), carried beside the
    /// entry (`ScanReply`, `TaskAssign`), never in its own encoding; nil when not known.
    public var identity: FileIdentity?

    public init(path: String, kind: Kind, size: UInt64 = 0, mode: UInt32, mtimeSeconds: Int64, mtimeNanoseconds: Int32, linkTarget: String = "") {
        self.path = path
        self.kind = kind
        self.size = size
        self.mode = mode
        self.mtimeSeconds = mtimeSeconds
        self.mtimeNanoseconds = mtimeNanoseconds
        self.linkTarget = linkTarget
    }

    /// The smallest encoding: kind, empty path and target, and the fixed fields.
    static let minimumSize = 1 + 2 + 8 + 4 + 8 + 4 + 2
}

extension FileEntry: PayloadCodable {
    init(from r: inout PayloadReader) throws(WireError) {
        let raw = try r.integer(UInt8.self, "entry kind")
        guard let kind = Kind(rawValue: raw) else { throw .malformed(r.type, "unknown entry kind \(raw)") }
        let path = try r.string("entry path", maxLength: ChunkPlace.maxPathLength)
        let size = try r.quantity("entry size")
        let mode = try r.integer(UInt32.self, "entry mode")
        let seconds = try r.integer(Int64.self, "entry mtime seconds")
        let nanos = try r.integer(Int32.self, "entry mtime nanoseconds")
        let target = try r.string("link target", maxLength: ChunkPlace.maxPathLength)
        guard mode <= 0o7777, (0..<1_000_000_000).contains(nanos) else { throw .malformed(r.type, "entry mode or mtime out of range") }
        // No name on disk holds one: a link target with a NUL was made pointing at what came
        // before it.
        guard !path.utf8.contains(0), !target.utf8.contains(0) else { throw .malformed(r.type, "a NUL byte in an entry's path or link target") }
        self.init(path: path, kind: kind, size: size, mode: mode, mtimeSeconds: seconds, mtimeNanoseconds: nanos, linkTarget: target)
    }

    func write(to b: inout ByteBuffer) {
        precondition(path.utf8.count <= ChunkPlace.maxPathLength && linkTarget.utf8.count <= ChunkPlace.maxPathLength)
        b.writeInteger(kind.rawValue)
        b.writeWireString(path)
        b.writeInteger(size)
        b.writeInteger(mode)
        b.writeInteger(mtimeSeconds)
        b.writeInteger(mtimeNanoseconds)
        b.writeWireString(linkTarget)
    }
}

/// A directory or symbolic link to create at the destination (data plane). Directories get their
/// mode and mtime; links are created under a temporary name and renamed into place.
public struct MakeEntry: Hashable, Sendable, PayloadCodable {
    public var job: String
    /// `entry.path` is relative to the destination agent's root.
    public var entry: FileEntry

    public init(job: String, entry: FileEntry) {
        self.job = job
        self.entry = entry
    }

    init(from r: inout PayloadReader) throws(WireError) {
        job = try r.string("job", maxLength: ChunkPlace.maxJobLength)
        entry = try FileEntry(from: &r)
        guard entry.kind != .file else { throw .malformed(r.type, "regular files arrive as chunks, not as entries") }
    }

    func write(to b: inout ByteBuffer) {
        b.writeWireString(job)
        entry.write(to: &b)
    }
}
