import NIOCore

/// Where a source agent sends a unit's chunks: the destination agent's name and data-plane address.
public struct DataPeer: Hashable, Sendable {
    public var name: String
    public var host: String
    public var port: UInt16

    public init(name: String, host: String, port: UInt16) {
        self.name = name
        self.host = host
        self.port = port
    }

    /// On the wire (`task assign`, `warm lanes`): name and host as strings, then the port (u16).
    static let minimumSize = 6

    init(from r: inout PayloadReader) throws(WireError) {
        name = try r.string("destination name", maxLength: Register.maxNameLength)
        host = try r.string("destination host", maxLength: Register.maxNameLength)
        port = try r.integer(UInt16.self, "destination port")
    }

    func write(to b: inout ByteBuffer) {
        b.writeWireString(name)
        b.writeWireString(host)
        b.writeInteger(port)
    }
}

/// One file (or directory, or link) of a unit: where to read it, the entry to produce at the
/// destination, and the byte range this unit covers. `finish` asks the sender to send `file done`
/// once every chunk of the range is acked (the unit holds the whole file, or is the file's last
/// step); `repair` sends the range as `chunk repair`, into the finished file. `tier` (protocol
/// version 10) is the tier the job's placement policy gave the file; nil leaves it to the
/// destination site's policy. `inPlace` (protocol version 17, flag 16) lets the destination keep
/// the file where it is when every chunk of it is found there unchanged: the coordinator sets it
/// for a `--checksum` job's large files, whose ranges and finish all go to one destination agent
/// (the file is pinned to it); a file a unit brings whole may be kept without it.
public struct TaskFile: Hashable, Sendable, Codable {
    public var sourcePath: String
    /// `path` is the destination path, relative to the destination agent's root; size, mode and
    /// mtime are those the scan saw, and the sender checks them again on every read.
    public var entry: FileEntry
    public var offset: UInt64
    public var length: UInt64
    public var finish: Bool
    public var repair: Bool
    public var tier: Placement?
    /// Set at assignment, never stored (the journal's rows, JSON before `v16`, lack it).
    public var inPlace: Bool = false

    enum CodingKeys: String, CodingKey { case sourcePath, entry, offset, length, finish, repair, tier }

    public init(sourcePath: String, entry: FileEntry, offset: UInt64 = 0, length: UInt64, finish: Bool, repair: Bool = false, tier: Placement? = nil,
                inPlace: Bool = false) {
        self.sourcePath = sourcePath
        self.entry = entry
        self.offset = offset
        self.length = length
        self.finish = finish
        self.repair = repair
        self.tier = tier
        self.inPlace = inPlace
    }
}

/// The tier a file is placed in at a destination site, as the wire carries it.
public enum Placement: UInt8, Hashable, Sendable, Codable {
    case hot = 1
    case cold = 2
}

extension TaskFile {
    /// A list of files as `task assign` carries them: a u32 count, then each file.
    static func list(from r: inout PayloadReader) throws(WireError) -> [TaskFile] {
        try r.list("files", minimumSize: 2 + FileEntry.minimumSize + 17) { (r: inout PayloadReader) throws(WireError) in
            let source = try r.string("source path", maxLength: ChunkPlace.maxPathLength)
            let entry = try FileEntry(from: &r)
            let offset = try r.quantity("offset")
            let length = try r.quantity("length")
            let flags = try r.integer(UInt8.self, "file flags")
            guard flags & ~31 == 0, flags & 12 != 12 else { throw .malformed(r.type, "unknown file flags 0x\(String(flags, radix: 16))") }
            guard offset <= entry.size, length <= entry.size - offset else {
                throw .malformed(r.type, "range \(offset)+\(length) overruns \(entry.size) bytes of \(entry.path)")
            }
            // A repair sends one chunk as it is: the source reads it whole into memory.
            guard flags & 2 == 0 || length <= UInt64(ChunkPlace.maxChunkLength) else {
                throw .malformed(r.type, "a repair of \(length) bytes, over the \(ChunkPlace.maxChunkLength) a chunk may have")
            }
            let tier: Placement? = flags & 4 != 0 ? .hot : flags & 8 != 0 ? .cold : nil
            return TaskFile(sourcePath: source, entry: entry, offset: offset, length: length, finish: flags & 1 != 0, repair: flags & 2 != 0, tier: tier,
                            inPlace: flags & 16 != 0)
        }
    }

    static func write(_ files: [TaskFile], to b: inout ByteBuffer) {
        b.writeList(files) { b, f in
            b.writeWireString(f.sourcePath)
            f.entry.write(to: &b)
            b.writeInteger(f.offset)
            b.writeInteger(f.length)
            let tier: UInt8 = switch f.tier { case .hot: 4; case .cold: 8; case nil: 0 }
            b.writeInteger(UInt8((f.finish ? 1 : 0) | (f.repair ? 2 : 0) | (f.inPlace ? 16 : 0)) | tier)
        }
    }

    /// The files in the form `task assign` carries them, for storage (the coordinator's
    /// journal): several times cheaper to write and read than JSON. Their identities follow,
    /// when they have any.
    public static func encoded(_ files: [TaskFile]) -> [UInt8] {
        var b = ByteBuffer()
        // `inPlace` is an assignment's, never stored (a coordinator before 17 would refuse it).
        write(files.map { var f = $0; f.inPlace = false; return f }, to: &b)
        let identities = identities(files)
        if !identities.isEmpty { FileIdentity.write(identities, to: &b) }
        return b.readBytes(length: b.readableBytes) ?? []
    }

    /// `encoded`'s bytes back; anything short, long or malformed is a `WireError`.
    public static func decoded(_ bytes: some Collection<UInt8>) throws(WireError) -> [TaskFile] {
        var r = PayloadReader(buffer: ByteBuffer(bytes: bytes), type: .taskAssign)
        var files = try list(from: &r)
        if r.buffer.readableBytes > 0 { try readIdentities(into: &files, from: &r) }
        guard r.buffer.readableBytes == 0 else { throw .malformed(.taskAssign, "\(r.buffer.readableBytes) bytes after the files") }
        return files
    }

    /// The files' identities, by index.
    static func identities(_ files: [TaskFile]) -> [(Int, FileIdentity)] {
        files.enumerated().compactMap { i, f in f.entry.identity.map { (i, $0) } }
    }

    static func readIdentities(into files: inout [TaskFile], from r: inout PayloadReader) throws(WireError) {
        for (i, identity) in try FileIdentity.read(count: files.count, from: &r) { files[i].entry.identity = identity }
    }
}

/// The coordinator hands one unit of a job to a source agent.
/// Coordinator → source agent (protocol version 3): how to send a job's units. Sent before the
/// agent's first unit of the job, and again when the job's cap or the number of agents sharing it
/// changes (`barge set`). `bwlimit` is the job's cap as submitted (a rate or a timetable; empty:
/// none), of which this agent takes `share` millionths; `congestion` is the mode's code.
public struct JobSettings: Hashable, Sendable, PayloadCodable {
    public static let maxLimitLength = 512
    public var job: String
    public var bwlimit: String
    public var share: UInt32
    public var congestion: UInt8

    public init(job: String, bwlimit: String, share: UInt32, congestion: UInt8) {
        self.job = job
        self.bwlimit = bwlimit
        self.share = share
        self.congestion = congestion
    }

    init(from r: inout PayloadReader) throws(WireError) {
        job = try r.string("job", maxLength: ChunkPlace.maxJobLength)
        bwlimit = try r.string("bwlimit", maxLength: Self.maxLimitLength)
        share = try r.integer(UInt32.self, "share")
        guard (1...1_000_000).contains(share) else { throw .malformed(r.type, "share \(share) is not 1...1000000 millionths") }
        congestion = try r.integer(UInt8.self, "congestion mode")
    }

    func write(to b: inout ByteBuffer) {
        b.writeWireString(job)
        b.writeWireString(bwlimit)
        b.writeInteger(share)
        b.writeInteger(congestion)
    }
}

public struct TaskAssign: Hashable, Sendable, PayloadCodable {
    public var job: String
    public var unit: UInt64
    public var destination: DataPeer
    /// `auto`, `none`, `lz4`, `zstd-N` or a filter form, as `CodecChoice` parses.
    public var codec: String
    /// Chunk size in bytes for the ranges of this unit.
    public var chunkSize: UInt32
    public var files: [TaskFile]
    /// Which assignment of the unit this is (protocol version 4; 0 before): the agent's reports
    /// echo it, so a report from an earlier assignment is told from the current one's. On the
    /// wire only when non-zero, as a trailing u32.
    public var assignment: UInt32

    public init(job: String, unit: UInt64, destination: DataPeer, codec: String, chunkSize: UInt32, files: [TaskFile], assignment: UInt32 = 0) {
        self.job = job
        self.unit = unit
        self.destination = destination
        self.codec = codec
        self.chunkSize = chunkSize
        self.files = files
        self.assignment = assignment
    }

    init(from r: inout PayloadReader) throws(WireError) {
        job = try r.string("job", maxLength: ChunkPlace.maxJobLength)
        unit = try r.identifier("unit")
        destination = try DataPeer(from: &r)
        codec = try r.string("codec", maxLength: 64)
        chunkSize = try r.integer(UInt32.self, "chunk size")
        guard chunkSize > 0, chunkSize <= ChunkPlace.maxChunkLength else {
            throw .malformed(r.type, "chunk size \(chunkSize), not from 1 to \(ChunkPlace.maxChunkLength)")
        }
        files = try TaskFile.list(from: &r)
        assignment = r.buffer.readableBytes > 0 ? try r.integer(UInt32.self, "assignment") : 0
        // Protocol version 19: the files' identities as the scan saw them.
        if r.buffer.readableBytes > 0 { try TaskFile.readIdentities(into: &files, from: &r) }
    }

    func write(to b: inout ByteBuffer) {
        b.writeWireString(job)
        b.writeInteger(unit)
        destination.write(to: &b)
        b.writeWireString(codec)
        b.writeInteger(chunkSize)
        TaskFile.write(files, to: &b)
        let identities = TaskFile.identities(files)
        if assignment != 0 || !identities.isEmpty { b.writeInteger(assignment) }
        if !identities.isEmpty { FileIdentity.write(identities, to: &b) }
    }

    /// The same assignment without the files' identities, for an agent before protocol 19.
    public func withoutIdentities() -> TaskAssign {
        var t = self
        for i in t.files.indices { t.files[i].entry.identity = nil }
        return t
    }
}

/// Sent by the source agent while a unit runs: cumulative raw bytes acked and payload bytes sent.
public struct TaskProgress: Hashable, Sendable, PayloadCodable {
    public var job: String
    public var unit: UInt64
    public var bytesDone: UInt64
    public var wireBytes: UInt64
    /// The unit's lane as its congestion controller sees it (protocol version 3; nil before).
    public var lane: LaneFigures?

    public init(job: String, unit: UInt64, bytesDone: UInt64, wireBytes: UInt64, lane: LaneFigures? = nil) {
        self.job = job
        self.unit = unit
        self.bytesDone = bytesDone
        self.wireBytes = wireBytes
        self.lane = lane
    }

    init(from r: inout PayloadReader) throws(WireError) {
        job = try r.string("job", maxLength: ChunkPlace.maxJobLength)
        unit = try r.identifier("unit")
        bytesDone = try r.quantity("bytes done")
        wireBytes = try r.quantity("wire bytes")
        lane = r.buffer.readableBytes > 0 ? try LaneFigures(from: &r) : nil
    }

    func write(to b: inout ByteBuffer) {
        b.writeWireString(job)
        b.writeInteger(unit)
        b.writeInteger(bytesDone)
        b.writeInteger(wireBytes)
        lane?.write(to: &b)
    }
}

/// A lane's congestion figures: its RTT and queueing delay (microseconds), its window (bytes
/// in flight allowed) and its send rate (bytes per second, acked over the last second).
public struct LaneFigures: Hashable, Sendable, Codable {
    public var rttMicros: UInt32
    public var queueMicros: UInt32
    public var window: UInt64
    public var rate: UInt64

    public init(rttMicros: UInt32, queueMicros: UInt32, window: UInt64, rate: UInt64) {
        self.rttMicros = rttMicros
        self.queueMicros = queueMicros
        self.window = window
        self.rate = rate
    }

    init(from r: inout PayloadReader) throws(WireError) {
        rttMicros = try r.integer(UInt32.self, "rtt")
        queueMicros = try r.integer(UInt32.self, "queueing delay")
        window = try r.quantity("window")
        rate = try r.quantity("rate")
    }

    func write(to b: inout ByteBuffer) {
        b.writeInteger(rttMicros)
        b.writeInteger(queueMicros)
        b.writeInteger(window)
        b.writeInteger(rate)
    }
}

/// Raw and encoded bytes that one codec handled in a unit.
public struct CodecUsage: Hashable, Sendable, Codable {
    public var codec: String
    public var chunks: UInt32
    public var rawBytes: UInt64
    public var encodedBytes: UInt64

    public init(codec: String, chunks: UInt32, rawBytes: UInt64, encodedBytes: UInt64) {
        self.codec = codec
        self.chunks = chunks
        self.rawBytes = rawBytes
        self.encodedBytes = encodedBytes
    }
}

/// A verified chunk: which file of the unit (index into its files), where, and its SHA-256 id.
public struct ChunkReport: Hashable, Sendable {
    public var file: UInt32
    public var offset: UInt64
    public var length: UInt32
    public var id: [UInt8]

    public init(file: UInt32, offset: UInt64, length: UInt32, id: [UInt8]) {
        self.file = file
        self.offset = offset
        self.length = length
        self.id = id
    }

    /// Encoded bytes: file index, offset, length, id.
    public static let size = 4 + 8 + 4 + 32

    init(from r: inout PayloadReader) throws(WireError) {
        file = try r.integer(UInt32.self, "chunk file")
        offset = try r.quantity("chunk offset")
        length = try r.integer(UInt32.self, "chunk length")
        // Journaled as the manifest, then a buffer of this size at the verifying agent.
        guard length <= ChunkPlace.maxChunkLength else { throw .malformed(r.type, "a chunk of \(length) bytes, over the \(ChunkPlace.maxChunkLength) a chunk may have") }
        id = try r.bytes(32, "chunk id")
    }

    func write(to b: inout ByteBuffer) {
        precondition(id.count == 32)
        b.writeInteger(file)
        b.writeInteger(offset)
        b.writeInteger(length)
        b.writeBytes(id)
    }
}

/// A unit finished: every chunk acked and every `finish` file renamed into place.
public struct TaskDone: Hashable, Sendable, PayloadCodable {
    public var job: String
    public var unit: UInt64
    public var bytes: UInt64
    public var wireBytes: UInt64
    /// Chunks sent again after a `corrupt` nack.
    public var refetched: UInt32
    public var codecs: [CodecUsage]
    public var chunks: [ChunkReport]
    /// Bytes of `bytes` that were copied at the destination from chunks it already held (sent by
    /// reference). On the wire only when non-zero (protocol version 2), as a trailing u64.
    public var dedupBytes: UInt64
    /// The `task assign`'s assignment this answers (protocol version 4; 0 before). When non-zero
    /// it trails the dedup bytes, which are then always written.
    public var assignment: UInt32
    /// Files this unit was to finish that it left out (protocol version 13), by index in the task:
    /// gone from the source when it came to read them (deleted or renamed since the scan), or
    /// changed since the scan (their size or mtime). They are not finished at the destination;
    /// the unit is done without them, as rsync goes on past a file that vanished or failed its
    /// check. `firstLeftOut` says which was the first and why, in words for `status`. When there
    /// are any, they trail the assignment, which is then always written.
    public var leftOut: [UInt32]
    public var firstLeftOut: String
    /// Why each of `leftOut` after the first was left out, in its order (protocol version 23; a
    /// trailing list, written only when there are any): before, `status` had words for the first
    /// alone. Each at most 1,024 bytes, as the first (a unit finishes at most 1,024 files: about
    /// 1 MiB in all; each reason names its file's path, which may be 4,095 bytes long).
    public var laterLeftOut: [String]

    public init(job: String, unit: UInt64, bytes: UInt64, wireBytes: UInt64, refetched: UInt32, codecs: [CodecUsage], chunks: [ChunkReport],
                dedupBytes: UInt64 = 0, assignment: UInt32 = 0, leftOut: [UInt32] = [], firstLeftOut: String = "", laterLeftOut: [String] = []) {
        self.dedupBytes = dedupBytes
        self.assignment = assignment
        self.leftOut = leftOut
        self.firstLeftOut = leftOut.isEmpty ? "" : firstLeftOut.truncatedUTF8(ErrorMessage.maxReasonLength)
        self.laterLeftOut = leftOut.count < 2 ? [] : laterLeftOut.prefix(leftOut.count - 1).map { $0.truncatedUTF8(ErrorMessage.maxReasonLength) }
        self.job = job
        self.unit = unit
        self.bytes = bytes
        self.wireBytes = wireBytes
        self.refetched = refetched
        self.codecs = codecs
        self.chunks = chunks
    }

    init(from r: inout PayloadReader) throws(WireError) {
        job = try r.string("job", maxLength: ChunkPlace.maxJobLength)
        unit = try r.identifier("unit")
        bytes = try r.quantity("bytes")
        wireBytes = try r.quantity("wire bytes")
        refetched = try r.integer(UInt32.self, "refetched")
        codecs = try r.list("codecs", minimumSize: 22) { (r: inout PayloadReader) throws(WireError) in
            CodecUsage(codec: try r.string("codec", maxLength: 64), chunks: try r.integer(UInt32.self, "codec chunks"),
                       rawBytes: try r.quantity("raw bytes"), encodedBytes: try r.quantity("encoded bytes"))
        }
        chunks = try r.list("chunks", minimumSize: ChunkReport.size) { (r: inout PayloadReader) throws(WireError) in try ChunkReport(from: &r) }
        dedupBytes = r.buffer.readableBytes > 0 ? try r.quantity("dedup bytes") : 0
        assignment = r.buffer.readableBytes > 0 ? try r.integer(UInt32.self, "assignment") : 0
        if r.buffer.readableBytes > 0 {
            leftOut = try r.list("files left out", minimumSize: 4) { (r: inout PayloadReader) throws(WireError) in try r.integer(UInt32.self, "file left out") }
            firstLeftOut = try r.reason("why the first was left out")
            if leftOut.isEmpty != firstLeftOut.isEmpty { throw .malformed(.taskDone, "files left out without why, or why without files") }
            // At most one fewer than the files, refused on its count before any is read.
            laterLeftOut = r.buffer.readableBytes > 0
                ? try r.list("reasons for the files left out after the first", minimumSize: 2, maxCount: max(0, leftOut.count - 1)) {
                    (r: inout PayloadReader) throws(WireError) in try r.reason("why one was left out")
                }
                : []
        } else {
            leftOut = []
            firstLeftOut = ""
            laterLeftOut = []
        }
    }

    func write(to b: inout ByteBuffer) {
        b.writeWireString(job)
        b.writeInteger(unit)
        b.writeInteger(bytes)
        b.writeInteger(wireBytes)
        b.writeInteger(refetched)
        b.writeList(codecs) { b, c in
            b.writeWireString(c.codec)
            b.writeInteger(c.chunks)
            b.writeInteger(c.rawBytes)
            b.writeInteger(c.encodedBytes)
        }
        b.writeList(chunks) { b, c in c.write(to: &b) }
        if dedupBytes > 0 || assignment != 0 || !leftOut.isEmpty { b.writeInteger(dedupBytes) }
        if assignment != 0 || !leftOut.isEmpty { b.writeInteger(assignment) }
        if !leftOut.isEmpty {
            b.writeList(leftOut) { b, i in b.writeInteger(i) }
            b.writeWireString(firstLeftOut)
            if !laterLeftOut.isEmpty { b.writeList(laterLeftOut) { b, s in b.writeWireString(s) } }
        }
    }
}

/// A unit could not finish. `retryable` units go back to pending (another lane, or later);
/// the others fail the job with `reason` (a path outside the root, a source that cannot be read;
/// before version 13, also a source file that vanished or changed).
public struct TaskFailed: Hashable, Sendable, PayloadCodable {
    public var job: String
    public var unit: UInt64
    public var retryable: Bool
    public var reason: String
    /// As in `task done` (protocol version 4; 0 before): a trailing u32 when non-zero, and
    /// always when `lane` follows.
    public var assignment: UInt32
    /// The unit failed on its data plane, not on its own data (protocol version 18): the
    /// destination agent's connection could not be made, closed, was refused or stalled. The
    /// coordinator gives such an attempt back, as for an agent that went down. A trailing flag,
    /// present only when set.
    public var lane: Bool

    public init(job: String, unit: UInt64, retryable: Bool, reason: String, assignment: UInt32 = 0, lane: Bool = false) {
        self.job = job
        self.unit = unit
        self.retryable = retryable
        self.reason = reason.truncatedUTF8(ErrorMessage.maxReasonLength)
        self.assignment = assignment
        self.lane = lane
    }

    init(from r: inout PayloadReader) throws(WireError) {
        job = try r.string("job", maxLength: ChunkPlace.maxJobLength)
        unit = try r.identifier("unit")
        retryable = try r.flag("retryable")
        reason = try r.reason("reason")
        assignment = r.buffer.readableBytes > 0 ? try r.integer(UInt32.self, "assignment") : 0
        lane = r.buffer.readableBytes > 0 ? try r.flag("lane") : false
    }

    func write(to b: inout ByteBuffer) {
        b.writeWireString(job)
        b.writeInteger(unit)
        b.writeFlag(retryable)
        b.writeWireString(reason)
        if assignment != 0 || lane { b.writeInteger(assignment) }
        if lane { b.writeFlag(true) }
    }
}

/// The coordinator tells agents to stop a job's units.
public struct CancelJob: Hashable, Sendable, PayloadCodable {
    public var job: String

    public init(job: String) { self.job = job }

    init(from r: inout PayloadReader) throws(WireError) {
        job = try r.string("job", maxLength: ChunkPlace.maxJobLength)
    }

    func write(to b: inout ByteBuffer) { b.writeWireString(job) }
}
