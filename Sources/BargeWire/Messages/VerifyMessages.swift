import NIOCore

/// The coordinator asks a destination agent to re-hash finished files against the journal's
/// manifest: each file's expected size, and each chunk's range and SHA-256 id (`file` indexes
/// `files`).
public struct VerifyRequest: Hashable, Sendable, PayloadCodable {
    public struct File: Hashable, Sendable {
        public var path: String
        public var size: UInt64
        public init(path: String, size: UInt64) {
            self.path = path
            self.size = size
        }
    }

    public var request: UInt64
    public var files: [File]
    public var chunks: [ChunkReport]
    /// Protocol version 20: the verification repairs what differs (`verify --repair`). Only
    /// then may the agent change its cold store's catalog for a damaged chunk (point it at a
    /// whole copy in another pack, or forget it so that the repair stores it anew); a plain
    /// verification only reads. Before, every verification forgot such a chunk, and a pack put
    /// back whole from a backup no longer counted.
    public var repair: Bool

    /// A finished file's mode and mtime, as its finish set them (`file` indexes `files`).
    public struct Attributes: Hashable, Sendable {
        public var file: UInt32
        /// The mode the file was sent with; the agent expects it as a finish sets it
        /// (`FileModes.atDestination`).
        public var mode: UInt32
        public var mtimeSeconds: Int64
        public var mtimeNanoseconds: Int32
        public init(file: UInt32, mode: UInt32, mtimeSeconds: Int64, mtimeNanoseconds: Int32) {
            self.file = file
            self.mode = mode
            self.mtimeSeconds = mtimeSeconds
            self.mtimeNanoseconds = mtimeNanoseconds
        }
        /// Encoded bytes: file index, mode, mtime seconds and nanoseconds.
        public static let size = 20
    }

    /// Protocol version 22: the mode and mtime of each file the request's units finished, which
    /// the agent checks once the file's bytes match. Before, a file whose mode or mtime was
    /// changed after its transfer passed `verify` (h3 of session 50).
    public var attributes: [Attributes]
    /// Version 22: the agent sets the attributes that differ (a repair's step, sent once the
    /// coordinator has journaled what the check found). A check never changes them: set while
    /// checking, a check made again (a connection lost, a restart) found them clean, and the
    /// verification said nothing had differed.
    public var setAttributes: Bool

    public init(request: UInt64, files: [File], chunks: [ChunkReport], repair: Bool = false, attributes: [Attributes] = [], setAttributes: Bool = false) {
        self.request = request
        self.files = files
        self.chunks = chunks
        self.repair = repair
        self.attributes = attributes
        self.setAttributes = setAttributes
    }

    init(from r: inout PayloadReader) throws(WireError) {
        request = try r.identifier("request")
        files = try r.list("files", minimumSize: 10) { (r: inout PayloadReader) throws(WireError) in
            File(path: try r.string("path", maxLength: ChunkPlace.maxPathLength), size: try r.quantity("size"))
        }
        let fileCount = files.count
        chunks = try r.list("chunks", minimumSize: ChunkReport.size) { (r: inout PayloadReader) throws(WireError) in
            let c = try ChunkReport(from: &r)
            guard Int(c.file) < fileCount else { throw .malformed(r.type, "chunk names file \(c.file) of \(fileCount)") }
            return c
        }
        repair = r.buffer.readableBytes > 0 ? try r.flag("repair") : false
        attributes = r.buffer.readableBytes == 0 ? [] : try r.list("attributes", minimumSize: Attributes.size) { (r: inout PayloadReader) throws(WireError) in
            let a = Attributes(file: try r.integer(UInt32.self, "file"), mode: try r.integer(UInt32.self, "mode"),
                               mtimeSeconds: try r.integer(Int64.self, "mtime seconds"), mtimeNanoseconds: try r.integer(Int32.self, "mtime nanoseconds"))
            guard Int(a.file) < fileCount else { throw .malformed(r.type, "attributes name file \(a.file) of \(fileCount)") }
            guard (0..<1_000_000_000).contains(a.mtimeNanoseconds) else { throw .malformed(r.type, "mtime nanoseconds \(a.mtimeNanoseconds)") }
            return a
        }
        setAttributes = r.buffer.readableBytes > 0 ? try r.flag("set attributes") : false
    }

    func write(to b: inout ByteBuffer) {
        b.writeInteger(request)
        b.writeList(files) { b, f in
            b.writeWireString(f.path)
            b.writeInteger(f.size)
        }
        b.writeList(chunks) { b, c in c.write(to: &b) }
        // Each trailing field is written when it is set, or when one after it is.
        if repair || !attributes.isEmpty || setAttributes { b.writeFlag(repair) }
        if !attributes.isEmpty || setAttributes {
            b.writeList(attributes) { b, a in
                b.writeInteger(a.file)
                b.writeInteger(a.mode)
                b.writeInteger(a.mtimeSeconds)
                b.writeInteger(a.mtimeNanoseconds)
            }
        }
        if setAttributes { b.writeFlag(true) }
    }
}

/// What a verification found: bytes re-hashed, and each range that does not match (a chunk whose
/// hash differs, or a whole file that is missing or of the wrong size, as offset 0 and its size).
public struct VerifyReply: Hashable, Sendable, PayloadCodable {
    /// The reason of a mismatch that concerns one chunk; any other reason concerns the whole file.
    public static let chunkDiffers = "SHA-256 differs"
    /// How the reason of a mismatch of a file's mode or mtime begins (offset 0, length 0). Asked
    /// to (`VerifyRequest.setAttributes`), the agent sets them again, and says so in the reason.
    public static let attributesDiffer = "mode or mtime differs: "
    /// How such a reason ends when the agent set them again.
    public static let attributesSetAgain = "; set again"

    public struct Mismatch: Hashable, Sendable {
        public var file: UInt32
        public var offset: UInt64
        public var length: UInt64
        public var reason: String
        public init(file: UInt32, offset: UInt64, length: UInt64, reason: String) {
            self.file = file
            self.offset = offset
            self.length = length
            self.reason = reason.truncatedUTF8(ErrorMessage.maxReasonLength)
        }
    }

    public var request: UInt64
    public var error: String
    public var bytesChecked: UInt64
    public var mismatches: [Mismatch]

    public init(request: UInt64, error: String = "", bytesChecked: UInt64, mismatches: [Mismatch]) {
        self.request = request
        self.error = error.truncatedUTF8(ErrorMessage.maxReasonLength)
        self.bytesChecked = bytesChecked
        self.mismatches = mismatches
    }

    init(from r: inout PayloadReader) throws(WireError) {
        request = try r.identifier("request")
        error = try r.reason("error")
        bytesChecked = try r.quantity("bytes checked")
        mismatches = try r.list("mismatches", minimumSize: 22) { (r: inout PayloadReader) throws(WireError) in
            Mismatch(file: try r.integer(UInt32.self, "file"), offset: try r.quantity("offset"),
                     length: try r.quantity("length"), reason: try r.reason("reason"))
        }
    }

    func write(to b: inout ByteBuffer) {
        b.writeInteger(request)
        b.writeWireString(error)
        b.writeInteger(bytesChecked)
        b.writeList(mismatches) { b, m in
            b.writeInteger(m.file)
            b.writeInteger(m.offset)
            b.writeInteger(m.length)
            b.writeWireString(m.reason)
        }
    }
}
