import NIOCore

/// Source → destination (protocol version 6): every chunk of these files has been acked, finish
/// them together. The destination checks that each file's bytes all arrived, makes the whole batch
/// durable at once (one `syncfs`, or an `fsync` per file for a small batch), then gives each file
/// its mode and mtime and its final name, syncs each directory once, and records the batch in its
/// chunk index in one transaction. It answers `files done reply`, naming the files it refused.
public struct FilesDone: Hashable, Sendable, PayloadCodable {
    /// The most files in one batch (a unit holds at most 256).
    public static let maxFiles = 1024

    public struct File: Hashable, Sendable {
        public var path: String
        public var size: UInt64
        public var mode: UInt32
        public var mtimeSeconds: Int64
        public var mtimeNanoseconds: Int32

        public init(path: String, size: UInt64, mode: UInt32, mtimeSeconds: Int64, mtimeNanoseconds: Int32) {
            self.path = path
            self.size = size
            self.mode = mode
            self.mtimeSeconds = mtimeSeconds
            self.mtimeNanoseconds = mtimeNanoseconds
        }
    }

    public var job: String
    public var files: [File]

    public init(job: String, files: [File]) {
        precondition(files.count <= Self.maxFiles)
        self.job = job
        self.files = files
    }

    init(from r: inout PayloadReader) throws(WireError) {
        job = try r.string("job", maxLength: ChunkPlace.maxJobLength)
        files = try r.list("files", minimumSize: 2 + 8 + 4 + 8 + 4) { (r: inout PayloadReader) throws(WireError) in try Self.file(from: &r) }
        guard !files.isEmpty, files.count <= Self.maxFiles else { throw .malformed(.filesDone, "\(files.count) files, not 1 to \(Self.maxFiles)") }
    }

    func write(to b: inout ByteBuffer) {
        b.writeWireString(job)
        b.writeList(files) { b, f in Self.write(f, to: &b) }
    }

    /// A file's path, size, mode and mtime, as `files done` and `file batch` carry them.
    static func file(from r: inout PayloadReader) throws(WireError) -> File {
        let path = try r.string("path", maxLength: ChunkPlace.maxPathLength)
        let size = try r.quantity("file size")
        let mode = try r.integer(UInt32.self, "mode")
        let seconds = try r.integer(Int64.self, "mtime seconds")
        let nanos = try r.integer(Int32.self, "mtime nanoseconds")
        guard mode <= 0o7777, (0..<1_000_000_000).contains(nanos) else { throw .malformed(r.type, "mode or mtime out of range") }
        return File(path: path, size: size, mode: mode, mtimeSeconds: seconds, mtimeNanoseconds: nanos)
    }

    static func write(_ f: File, to b: inout ByteBuffer) {
        b.writeWireString(f.path)
        b.writeInteger(f.size)
        b.writeInteger(f.mode)
        b.writeInteger(f.mtimeSeconds)
        b.writeInteger(f.mtimeNanoseconds)
    }
}

/// The answer to `files done`: the files refused, by their index in the batch, each with a reason
/// and words (as `chunk nack`). Every file not named is durable under its final name.
public struct FilesDoneReply: Hashable, Sendable, PayloadCodable {
    public struct Refusal: Hashable, Sendable {
        public var index: UInt32
        public var reason: ChunkNack.Reason
        public var detail: String

        public init(index: UInt32, reason: ChunkNack.Reason, detail: String) {
            self.index = index
            self.reason = reason
            self.detail = detail.truncatedUTF8(ErrorMessage.maxReasonLength)
        }
    }

    public var refused: [Refusal]

    public init(refused: [Refusal]) { self.refused = refused }

    init(from r: inout PayloadReader) throws(WireError) {
        refused = try r.list("refused", minimumSize: 4 + 1 + 2) { (r: inout PayloadReader) throws(WireError) in
            let index = try r.integer(UInt32.self, "index")
            let raw = try r.integer(UInt8.self, "reason")
            guard let reason = ChunkNack.Reason(rawValue: raw) else { throw .malformed(r.type, "unknown reason \(raw)") }
            return Refusal(index: index, reason: reason, detail: try r.reason("detail"))
        }
    }

    func write(to b: inout ByteBuffer) {
        b.writeList(refused) { b, x in
            b.writeInteger(x.index)
            b.writeInteger(x.reason.rawValue)
            b.writeWireString(x.detail)
        }
    }
}
