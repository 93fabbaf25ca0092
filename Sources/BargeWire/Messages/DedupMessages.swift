import NIOCore

/// Source → destination, at the start of a unit (protocol version 2): the paths the unit will
/// write. The destination answers `have list` with the ids of the chunks it already holds for
/// them, which the source then sends by reference (`chunk ref`) instead of sending their bytes.
///
/// From protocol version 10 it also places the files: after the paths, one entry per path with
/// the tier the job's policy gave it (0: none, the site's policy decides; 1 hot; 2 cold), its
/// size and its mtime (Unix seconds), which a site policy's conditions look at. A source sends
/// it before any chunk of the unit even without dedup, and a destination that cannot place a
/// file cold (no cold store) answers a `files done reply` instead of a `have list`, refusing
/// those files (by index in `paths`) with `refusedPath` and the reason.
///
/// From protocol version 17 the tier byte's top bit (`wholeBit`) says every chunk of the file
/// comes to this destination agent, then its finish: the unit brings the whole file, or the
/// file's `task assign` has the in-place flag (a `--checksum` job's large file, whose ranges and
/// finish the coordinator pins to one agent). Such a file's chunks sent by reference that its
/// copy under its final name already holds at their place are checked there and left there,
/// rather than copied into a partial copy, and its finish keeps the file where it is when they
/// all were (`InPlaceFiles`). A source sets it only for a peer of version 17.
public struct HaveQuery: Hashable, Sendable, PayloadCodable {
    public struct Facts: Hashable, Sendable {
        public var tier: Placement?
        public var size: UInt64
        public var mtimeSeconds: Int64
        /// Version 17: every chunk of the file, then its finish, come to this agent.
        public var whole: Bool

        public init(tier: Placement?, size: UInt64, mtimeSeconds: Int64, whole: Bool = false) {
            self.tier = tier
            self.size = size
            self.mtimeSeconds = mtimeSeconds
            self.whole = whole
        }
    }

    /// The bit of a placement's tier byte that marks a file the unit brings whole (version 17).
    public static let wholeBit: UInt8 = 0x80

    public var job: String
    public var paths: [String]
    /// One per path, or empty (a source before version 10).
    public var facts: [Facts]

    public init(job: String, paths: [String], facts: [Facts] = []) {
        precondition(facts.isEmpty || facts.count == paths.count)
        self.job = job
        self.paths = paths
        self.facts = facts
    }

    init(from r: inout PayloadReader) throws(WireError) {
        job = try r.string("job", maxLength: ChunkPlace.maxJobLength)
        paths = try r.list("paths", minimumSize: 2) { (r: inout PayloadReader) throws(WireError) in
            try r.string("path", maxLength: ChunkPlace.maxPathLength)
        }
        guard r.buffer.readableBytes > 0 else {
            facts = []
            return
        }
        facts = try r.list("placements", minimumSize: 17) { (r: inout PayloadReader) throws(WireError) in
            let byte = try r.integer(UInt8.self, "tier")
            let raw = byte & ~HaveQuery.wholeBit
            guard raw <= 2 else { throw .malformed(r.type, "unknown tier \(byte)") }
            return Facts(tier: Placement(rawValue: raw), size: try r.quantity("size"), mtimeSeconds: try r.integer(Int64.self, "mtime"),
                         whole: byte & HaveQuery.wholeBit != 0)
        }
        guard facts.count == paths.count else { throw .malformed(r.type, "\(facts.count) placements for \(paths.count) paths") }
    }

    func write(to b: inout ByteBuffer) {
        b.writeWireString(job)
        b.writeList(paths) { b, p in b.writeWireString(p) }
        guard !facts.isEmpty else { return }
        b.writeList(facts) { b, f in
            b.writeInteger((f.tier?.rawValue ?? 0) | (f.whole ? HaveQuery.wholeBit : 0))
            b.writeInteger(f.size)
            b.writeInteger(f.mtimeSeconds)
        }
    }
}

/// The answer to `have query`: SHA-256 chunk ids, 32 bytes each.
public struct HaveList: Hashable, Sendable, PayloadCodable {
    /// The most ids a destination sends in one list.
    public static let maxIds = 1 << 16

    public var ids: [[UInt8]]

    public init(ids: [[UInt8]]) { self.ids = ids }

    init(from r: inout PayloadReader) throws(WireError) {
        ids = try r.list("ids", minimumSize: 32) { (r: inout PayloadReader) throws(WireError) in try r.bytes(32, "id") }
    }

    func write(to b: inout ByteBuffer) {
        b.writeList(ids) { b, id in b.writeBytes(id) }
    }
}

/// A chunk sent by reference (protocol version 2): "the bytes with this SHA-256 and XXH3-128 go
/// at this place". The destination copies them from where it holds them, after checking their
/// XXH3-128, and acks; or it nacks `need`, and the source sends the bytes.
public struct ChunkRef: Hashable, Sendable, PayloadCodable {
    public var place: ChunkPlace
    public var fileSize: UInt64
    public var length: UInt32
    public var id: [UInt8]
    /// XXH3-128 of the raw bytes, canonical (big-endian) form.
    public var xxh: [UInt8]

    public init(place: ChunkPlace, fileSize: UInt64, length: UInt32, id: [UInt8], xxh: [UInt8]) {
        precondition(id.count == 32 && xxh.count == 16)
        self.place = place
        self.fileSize = fileSize
        self.length = length
        self.id = id
        self.xxh = xxh
    }

    init(from r: inout PayloadReader) throws(WireError) {
        place = try r.place()
        fileSize = try r.quantity("file size")
        length = try r.integer(UInt32.self, "length")
        id = try r.bytes(32, "id")
        xxh = try r.bytes(16, "xxh3-128")
        guard place.offset <= fileSize, UInt64(length) <= fileSize - place.offset else {
            throw .malformed(.chunkRef, "\(length) bytes at \(place.offset) overrun a file of \(fileSize) bytes")
        }
        // The destination stages this many bytes before it looks for them.
        guard length <= ChunkPlace.maxChunkLength else { throw .malformed(.chunkRef, "a chunk of \(length) bytes, over the \(ChunkPlace.maxChunkLength) a chunk may have") }
    }

    func write(to b: inout ByteBuffer) {
        b.writePlace(place)
        b.writeInteger(fileSize)
        b.writeInteger(length)
        b.writeBytes(id)
        b.writeBytes(xxh)
    }
}

/// Coordinator → agent (protocol version 2): this agent is draining. It finishes the units it
/// holds and gets no new ones; it logs when it holds none, so that it can be stopped.
/// From version 20 the coordinator sends it again with `finished` once the agent holds no unit
/// as a source or as a destination (an agent knows only the units it sends): the agent logs
/// `drained` then, and not before.
public struct Drain: Hashable, Sendable, PayloadCodable {
    public var reason: String
    public var finished: Bool

    public init(reason: String, finished: Bool = false) {
        self.reason = reason.truncatedUTF8(ErrorMessage.maxReasonLength)
        self.finished = finished
    }

    init(from r: inout PayloadReader) throws(WireError) {
        reason = try r.reason("reason")
        finished = r.buffer.readableBytes > 0 ? try r.flag("finished") : false
    }

    func write(to b: inout ByteBuffer) {
        b.writeWireString(reason)
        if finished { b.writeFlag(true) }
    }
}
