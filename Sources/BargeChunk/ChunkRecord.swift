import BargeDigest

/// A chunk id is the SHA-256 of the chunk's raw bytes: the content address that deduplication
/// and verification key on.
public typealias ChunkID = SHA256Digest

/// One chunk of a file as the journal records it: where it is, its content address, and the fast
/// checksum receivers verify first.
public struct ChunkRecord: Hashable, Sendable {
    public var span: ChunkSpan
    public var id: ChunkID
    public var xxh128: XXH128Digest

    public init(span: ChunkSpan, id: ChunkID, xxh128: XXH128Digest) {
        self.span = span
        self.id = id
        self.xxh128 = xxh128
    }
}

/// A file's chunks and the Merkle root over their ids.
public struct FileManifest: Hashable, Sendable {
    public var chunks: [ChunkRecord]
    public var root: SHA256Digest
    public var length: UInt64 { chunks.last.map { $0.span.offset + UInt64($0.span.length) } ?? 0 }

    public init(chunks: [ChunkRecord]) {
        self.chunks = chunks
        self.root = MerkleTree.root(chunks.map(\.id))
    }

    /// Reads and hashes a whole file, one chunk in memory at a time.
    public static func build(path: String, strategy: ChunkingStrategy) throws -> FileManifest {
        let reader = try FileChunkReader(path: path, strategy: strategy)
        let sha = SHA256Hasher()
        var records: [ChunkRecord] = []
        try reader.forEachChunk { span, bytes in
            sha.update(bytes)
            records.append(ChunkRecord(span: span, id: sha.finalize(), xxh128: XXH3.hash128(bytes)))
        }
        return FileManifest(chunks: records)
    }
}
