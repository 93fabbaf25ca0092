import NIOCore

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
