import NIOCore

/// The coordinator asks a source agent to list the tree at `path` (under the agent's root).
public struct ScanRequest: Hashable, Sendable, PayloadCodable {
    public var request: UInt64
    public var path: String
    /// The pages are to carry each regular file's identity (protocol version 19: a trailing
    /// flag, sent only to an agent that speaks it).
    public var identities: Bool

    public init(request: UInt64, path: String, identities: Bool = false) {
        self.request = request
        self.path = path
        self.identities = identities
    }

    init(from r: inout PayloadReader) throws(WireError) {
        request = try r.identifier("request")
        path = try r.string("path", maxLength: ChunkPlace.maxPathLength)
        identities = r.buffer.readableBytes > 0 ? try r.flag("identities") : false
    }

    func write(to b: inout ByteBuffer) {
        b.writeInteger(request)
        b.writeWireString(path)
        if identities { b.writeFlag(true) }
    }
}

/// One page of a scan's answer; the last page has `final` set. A scan that failed answers one
/// final page with `error` set and no entries. `skipped` names entries that cannot be
/// transferred (devices, sockets, FIFOs, names or link targets that are not UTF-8, names of
/// partial copies, paths past PATH_MAX), with the reason.
public struct ScanReply: Hashable, Sendable, PayloadCodable {
    /// Entries per page, so that a page stays far below the frame limit.
    public static let pageSize = 1024

    public var request: UInt64
    public var final: Bool
    public var error: String
    public var entries: [FileEntry]
    public var skipped: [String]

    public init(request: UInt64, final: Bool, error: String = "", entries: [FileEntry] = [], skipped: [String] = []) {
        self.request = request
        self.final = final
        self.error = error.truncatedUTF8(ErrorMessage.maxReasonLength)
        self.entries = entries
        self.skipped = skipped.map { $0.truncatedUTF8(ErrorMessage.maxReasonLength) }
    }

    init(from r: inout PayloadReader) throws(WireError) {
        request = try r.identifier("request")
        final = try r.flag("final")
        error = try r.reason("error")
        entries = try r.list("entries", minimumSize: FileEntry.minimumSize) { (r: inout PayloadReader) throws(WireError) in try FileEntry(from: &r) }
        skipped = try r.list("skipped", minimumSize: 2) { (r: inout PayloadReader) throws(WireError) in try r.reason("skipped") }
        // Protocol version 19, asked for by the request: the regular files' identities.
        if r.buffer.readableBytes > 0 {
            for (i, identity) in try FileIdentity.read(count: entries.count, from: &r) { entries[i].identity = identity }
        }
    }

    func write(to b: inout ByteBuffer) {
        b.writeInteger(request)
        b.writeFlag(final)
        b.writeWireString(error)
        b.writeList(entries) { b, e in e.write(to: &b) }
        b.writeList(skipped) { b, s in b.writeWireString(s) }
        let identities = entries.enumerated().compactMap { i, e in e.identity.map { (i, $0) } }
        if !identities.isEmpty { FileIdentity.write(identities, to: &b) }
    }
}

/// Coordinator → destination agent (protocol version 5): the quick check of a scan page, as
/// rsync does by default. `entries` are the source's, with paths under the destination agent's
/// root; the agent says which of them it already holds unchanged.
public struct CompareRequest: Hashable, Sendable, PayloadCodable {
    public var request: UInt64
    public var entries: [FileEntry]

    public init(request: UInt64, entries: [FileEntry]) {
        self.request = request
        self.entries = entries
    }

    init(from r: inout PayloadReader) throws(WireError) {
        request = try r.identifier("request")
        entries = try r.list("entries", minimumSize: FileEntry.minimumSize) { (r: inout PayloadReader) throws(WireError) in try FileEntry(from: &r) }
    }

    func write(to b: inout ByteBuffer) {
        b.writeInteger(request)
        b.writeList(entries) { b, e in e.write(to: &b) }
    }
}

/// The answer to `compare request`: one bit per entry, in order (bit i of byte i/8, least
/// significant first), set when the entry is unchanged at the destination and need not be sent.
public struct CompareReply: Hashable, Sendable, PayloadCodable {
    public var request: UInt64
    public var unchanged: [Bool]

    public init(request: UInt64, unchanged: [Bool]) {
        self.request = request
        self.unchanged = unchanged
    }

    init(from r: inout PayloadReader) throws(WireError) {
        request = try r.identifier("request")
        let count = Int(try r.integer(UInt32.self, "entry count"))
        guard (count + 7) / 8 <= r.buffer.readableBytes else { throw .malformed(r.type, "\(count) entries do not fit in \(r.buffer.readableBytes) bytes") }
        let bits = try r.bytes((count + 7) / 8, "unchanged bits")
        unchanged = (0..<count).map { bits[$0 / 8] & (1 << UInt8($0 % 8)) != 0 }
    }

    func write(to b: inout ByteBuffer) {
        b.writeInteger(request)
        b.writeInteger(UInt32(unchanged.count))
        var bits = [UInt8](repeating: 0, count: (unchanged.count + 7) / 8)
        for (i, u) in unchanged.enumerated() where u { bits[i / 8] |= 1 << UInt8(i % 8) }
        b.writeBytes(bits)
    }
}
