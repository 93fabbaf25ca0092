import NIOCore

/// Source → destination (protocol version 7): many small files whole in one message, each sent
/// by value (its encoded chunk) or by reference (its id and XXH3-128, which the destination copies
/// from where it already holds the bytes). The destination verifies each file's bytes, writes it,
/// and finishes the batch as `files done` does (grouped durability, then the final names), then
/// answers `file batch reply` with the same job and batch number, naming the files it refused.
/// A file of size 0 carries no bytes.
public struct FileBatch: Hashable, Sendable, PayloadCodable {
    /// The most files in one batch.
    public static let maxFiles = 1024

    public enum Form: UInt8, Hashable, Sendable {
        /// The encoded chunk follows ([chunk-format.md](chunk-format.md)); empty for a file of size 0.
        case bytes = 0
        /// No bytes: the destination holds a chunk with this id and XXH3-128.
        case reference = 1
    }

    public struct File: Hashable, Sendable {
        /// Its path, size, mode and mtime, as `files done` names a file.
        public var done: FilesDone.File
        /// SHA-256 of the file's bytes (the chunk id).
        public var id: [UInt8]
        /// XXH3-128 of the file's bytes, canonical form.
        public var xxh: [UInt8]
        public var form: Form
        /// The encoded chunk (shares the frame's storage when decoded); empty for a reference.
        public var encoded: ByteBuffer

        public init(path: String, size: UInt64, mode: UInt32, mtimeSeconds: Int64, mtimeNanoseconds: Int32, id: [UInt8], xxh: [UInt8],
                    form: Form, encoded: ByteBuffer) {
            precondition(id.count == 32 && xxh.count == 16)
            done = FilesDone.File(path: path, size: size, mode: mode, mtimeSeconds: mtimeSeconds, mtimeNanoseconds: mtimeNanoseconds)
            self.id = id
            self.xxh = xxh
            self.form = form
            self.encoded = encoded
        }

        public var path: String { done.path }
        public var size: UInt64 { done.size }
    }

    public var job: String
    /// Chosen by the sender, unique among its batches outstanding on the stream; the reply echoes it.
    public var batch: UInt64
    public var files: [File]

    public init(job: String, batch: UInt64, files: [File]) {
        precondition(!files.isEmpty && files.count <= Self.maxFiles)
        self.job = job
        self.batch = batch
        self.files = files
    }

    init(from r: inout PayloadReader) throws(WireError) {
        job = try r.string("job", maxLength: ChunkPlace.maxJobLength)
        batch = try r.identifier("batch")
        let count = try r.integer(UInt32.self, "count of files")
        let smallest = 2 + 8 + 4 + 8 + 4 + 32 + 16 + 1 + 4
        guard count >= 1, count <= UInt32(Self.maxFiles), Int(count) * smallest <= r.buffer.readableBytes else {
            throw .malformed(.fileBatch, "\(count) files, not 1 to \(Self.maxFiles) that fit in the payload")
        }
        var files: [File] = []
        files.reserveCapacity(Int(count))
        for _ in 0..<count {
            let done = try FilesDone.file(from: &r)
            let path = done.path, size = done.size
            let id = try r.bytes(32, "id")
            let xxh = try r.bytes(16, "xxh3-128")
            let rawForm = try r.integer(UInt8.self, "form")
            guard let form = Form(rawValue: rawForm) else { throw .malformed(.fileBatch, "unknown form \(rawForm)") }
            let length = Int(try r.integer(UInt32.self, "encoded length"))
            guard let encoded = r.buffer.readSlice(length: length) else { throw .malformed(.fileBatch, "truncated at the encoded bytes of \(path)") }
            guard form == .bytes || length == 0 else { throw .malformed(.fileBatch, "a reference to \(path) carries bytes") }
            guard size > 0 || (form == .bytes && length == 0) else { throw .malformed(.fileBatch, "\(path) is empty but carries bytes or a reference") }
            guard size == 0 || form == .reference || length > 0 else { throw .malformed(.fileBatch, "\(path) has \(size) bytes but none were sent") }
            files.append(File(path: path, size: size, mode: done.mode, mtimeSeconds: done.mtimeSeconds, mtimeNanoseconds: done.mtimeNanoseconds,
                              id: id, xxh: xxh, form: form, encoded: encoded))
        }
        self.files = files
    }

    func write(to b: inout ByteBuffer) {
        b.writeWireString(job)
        b.writeInteger(batch)
        b.writeInteger(UInt32(files.count))
        for f in files {
            FilesDone.write(f.done, to: &b)
            b.writeBytes(f.id)
            b.writeBytes(f.xxh)
            b.writeInteger(f.form.rawValue)
            b.writeInteger(UInt32(f.encoded.readableBytes))
            var encoded = f.encoded
            b.writeBuffer(&encoded)
        }
    }
}

/// The answer to `file batch`: its job and batch number, and the files refused, by their index in
/// the batch, each with a reason and words (as `chunk nack`: 1 corrupt and 6 need ask for the file
/// again, by value). Every file not named is durable under its final name.
public struct FileBatchReply: Hashable, Sendable, PayloadCodable {
    public var job: String
    public var batch: UInt64
    public var refused: [FilesDoneReply.Refusal]

    public init(job: String, batch: UInt64, refused: [FilesDoneReply.Refusal]) {
        self.job = job
        self.batch = batch
        self.refused = refused
    }

    init(from r: inout PayloadReader) throws(WireError) {
        job = try r.string("job", maxLength: ChunkPlace.maxJobLength)
        batch = try r.identifier("batch")
        refused = try FilesDoneReply(from: &r).refused
    }

    func write(to b: inout ByteBuffer) {
        b.writeWireString(job)
        b.writeInteger(batch)
        FilesDoneReply(refused: refused).write(to: &b)
    }
}
