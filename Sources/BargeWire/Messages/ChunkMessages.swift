import NIOCore

/// Where a chunk belongs: which job, which file (relative to the destination agent's job
/// directory), and where in it.
public struct ChunkPlace: Hashable, Sendable {
    public static let maxJobLength = 64
    public static let maxPathLength = 4096
    /// The longest chunk (the codec's `ChunkFormat.maxRawLength`): a peer's length over it is
    /// malformed, not something to allocate for.
    public static let maxChunkLength: UInt32 = 16 << 20

    public var job: String
    public var path: String
    public var offset: UInt64

    public init(job: String, path: String, offset: UInt64) {
        self.job = job
        self.path = path
        self.offset = offset
    }

    /// Equal and hashed by the path's bytes: Swift's `String` would take "é" and "e\u{301}",
    /// two names to Linux, for one (a source waits for replies by place).
    public static func == (a: ChunkPlace, b: ChunkPlace) -> Bool {
        a.offset == b.offset && a.job == b.job && a.path.utf8.count == b.path.utf8.count && a.path.utf8.elementsEqual(b.path.utf8)
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(job)
        hasher.combine(offset)
        hasher.combine(path.utf8.count)
        var bytes = path
        bytes.withUTF8 { hasher.combine(bytes: UnsafeRawBufferPointer($0)) }
    }
}

/// One chunk on the data plane: its place, the file's full size (so the receiver can create the
/// partial file at once), its SHA-256 id, and the encoded chunk (docs/chunk-format.md), which
/// fills the rest of the frame.
public struct ChunkData: Hashable, Sendable {
    public var place: ChunkPlace
    public var fileSize: UInt64
    public var id: [UInt8]
    public var encoded: ByteBuffer

    public init(place: ChunkPlace, fileSize: UInt64, id: [UInt8], encoded: ByteBuffer) {
        self.place = place
        self.fileSize = fileSize
        self.id = id
        self.encoded = encoded
    }
}

extension ChunkData {
    /// The bytes before the encoded chunk in a `chunk data` payload: place, file size and id.
    public static func prefixLength(_ place: ChunkPlace) -> Int {
        2 + place.job.utf8.count + 2 + place.path.utf8.count + 8 + 8 + 32
    }

    /// The length of an encoded chunk's header (docs/chunk-format.md), before a stored chunk's
    /// raw bytes: `ChunkHeader.size` of BargeCodec, which a test holds equal to it.
    public static let encodedHeaderLength = 40

    /// Where a stored chunk's raw bytes would begin in a `chunk data` or `chunk repair` payload
    /// whose first bytes are `peek` (its index in the payload), and the file offset they belong
    /// at; nil when `peek` ends before the offset. Read from bytes not yet authenticated: it may
    /// only place the payload in memory (`FrameCipher`), never decide anything else.
    public static func rawBytesPlacement(peek: UnsafeRawBufferPointer) -> (index: Int, fileOffset: UInt64)? {
        guard peek.count >= 2 else { return nil }
        let job = Int(peek[0]) << 8 | Int(peek[1])
        guard peek.count >= 2 + job + 2 else { return nil }
        let path = Int(peek[2 + job]) << 8 | Int(peek[3 + job])
        let at = 4 + job + path
        guard peek.count >= at + 8 else { return nil }
        var offset: UInt64 = 0
        for i in 0..<8 { offset = offset << 8 | UInt64(peek[at + i]) }
        return (at + 8 + 8 + 32 + encodedHeaderLength, offset)
    }

    /// Fills the `prefixLength` bytes at the start of `payload`'s readable bytes, so a sender can
    /// build a whole `chunk data` payload in one buffer, encoded chunk included, without a copy.
    public static func setPrefix(in payload: inout ByteBuffer, place: ChunkPlace, fileSize: UInt64, id: [UInt8]) {
        precondition(id.count == 32)
        var prefix = ByteBuffer()
        prefix.reserveCapacity(prefixLength(place))
        prefix.writePlace(place)
        prefix.writeInteger(fileSize)
        prefix.writeBytes(id)
        payload.setBuffer(prefix, at: payload.readerIndex)
    }
}

/// The chunk arrived, decoded to its checksum and was written.
public struct ChunkAck: Hashable, Sendable {
    public var place: ChunkPlace
    public init(place: ChunkPlace) { self.place = place }
}

/// The chunk was not stored, and why. `corrupt` asks the sender to read and send it again; the
/// others are not cured by resending.
public struct ChunkNack: Hashable, Sendable {
    public enum Reason: UInt8, Hashable, Sendable {
        case corrupt = 1
        case writeFailed = 2
        case refusedPath = 3
        case malformed = 4
        /// `file done` came before every byte of the file had arrived: send the file again.
        case incomplete = 5
        /// A `chunk ref` the destination cannot copy locally: send the bytes.
        case need = 6
    }

    public var place: ChunkPlace
    public var reason: Reason
    public var detail: String

    public init(place: ChunkPlace, reason: Reason, detail: String) {
        self.place = place
        self.reason = reason
        var d = detail
        while d.utf8.count > ErrorMessage.maxReasonLength { d.removeLast() }
        self.detail = d
    }
}

extension PayloadReader {
    mutating func place() throws(WireError) -> ChunkPlace {
        let job = try string("job", maxLength: ChunkPlace.maxJobLength)
        let path = try string("path", maxLength: ChunkPlace.maxPathLength)
        return ChunkPlace(job: job, path: path, offset: try quantity("offset"))
    }
}

extension PayloadReader {
    /// `chunk data` and `chunk repair`: the place, file size, id, then the encoded chunk to the end.
    mutating func chunkData() throws(WireError) -> ChunkData {
        let place = try place()
        let size = try quantity("file size")
        let id = try bytes(32, "chunk id")
        let encoded = buffer.readSlice(length: buffer.readableBytes)!
        return ChunkData(place: place, fileSize: size, id: id, encoded: encoded)
    }
}

extension ByteBuffer {
    mutating func writePlace(_ p: ChunkPlace) {
        precondition(p.job.utf8.count <= ChunkPlace.maxJobLength && p.path.utf8.count <= ChunkPlace.maxPathLength)
        writeWireString(p.job)
        writeWireString(p.path)
        writeInteger(p.offset)
    }
}

/// Every chunk of a file has been acked: the receiver checks that all `size` bytes arrived, makes
/// the file durable and gives it its final name, mode and mtime, then answers `chunk ack` for the
/// same place (offset 0) or `chunk nack`. A file of size 0 needs no chunk before it.
public struct FileDone: Hashable, Sendable {
    public var place: ChunkPlace
    public var size: UInt64
    public var mode: UInt32
    public var mtimeSeconds: Int64
    public var mtimeNanoseconds: Int32

    public init(place: ChunkPlace, size: UInt64, mode: UInt32, mtimeSeconds: Int64, mtimeNanoseconds: Int32) {
        self.place = place
        self.size = size
        self.mode = mode
        self.mtimeSeconds = mtimeSeconds
        self.mtimeNanoseconds = mtimeNanoseconds
    }
}
