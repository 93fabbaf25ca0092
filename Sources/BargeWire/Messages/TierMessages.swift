import NIOCore

/// What a `tier request` asks of an agent of a destination site (protocol 9).
public enum TierOperation: UInt8, Hashable, Sendable, CustomStringConvertible {
    /// Move hot files under `path` (those `policy` places cold, or all) into the cold store: one page.
    case demote = 1
    /// Bring cold files under `path` back as plain files: one page, after `after`.
    case promote = 2
    /// List files under `path`, hot and cold, with their tier: one page.
    case list = 3
    /// The cold store's totals.
    case stats = 4
    /// Remove packs nothing references.
    case gc = 5

    public var description: String {
        switch self {
        case .demote: "demote"
        case .promote: "promote"
        case .list: "list"
        case .stats: "stats"
        case .gc: "gc"
        }
    }
}

public struct TierRequest: Hashable, Sendable, PayloadCodable {
    /// The longest `after` (and `next`): a path, and a listing's two-byte mark before it (`h:`).
    public static let maxCursorLength = ChunkPlace.maxPathLength + 2

    public var request: UInt64
    public var operation: TierOperation
    /// The job the page belongs to (demote and promote), or empty.
    public var job: String
    public var path: String
    /// A placement policy (demote), or empty for the site's default.
    public var policy: String
    /// Where the previous page stopped (from its reply's `next`), or empty for the start.
    public var after: String
    /// Files per page.
    public var limit: UInt32

    public init(request: UInt64, operation: TierOperation, job: String = "", path: String, policy: String = "", after: String = "", limit: UInt32) {
        self.request = request
        self.operation = operation
        self.job = job
        self.path = path
        self.policy = policy
        self.after = after
        self.limit = limit
    }

    init(from r: inout PayloadReader) throws(WireError) {
        request = try r.identifier("request")
        let op = try r.integer(UInt8.self, "operation")
        guard let operation = TierOperation(rawValue: op) else { throw .malformed(r.type, "unknown tier operation \(op)") }
        self.operation = operation
        job = try r.string("job", maxLength: 64)
        path = try r.string("path", maxLength: ChunkPlace.maxPathLength)
        policy = try r.string("policy", maxLength: 4096)
        after = try r.string("after", maxLength: TierRequest.maxCursorLength)
        limit = try r.integer(UInt32.self, "limit")
    }

    func write(to b: inout ByteBuffer) {
        b.writeInteger(request)
        b.writeInteger(operation.rawValue)
        b.writeWireString(job)
        b.writeWireString(path)
        b.writeWireString(policy)
        b.writeWireString(after)
        b.writeInteger(limit)
    }
}

/// A file as `tier list` and the moves report it.
public struct TierEntry: Hashable, Sendable {
    /// 0 hot, 1 cold.
    public var cold: Bool
    public var kind: FileEntry.Kind
    public var path: String
    public var size: UInt64
    public var mtimeSeconds: Int64
    public var mode: UInt32

    public init(cold: Bool, kind: FileEntry.Kind, path: String, size: UInt64, mtimeSeconds: Int64, mode: UInt32) {
        self.cold = cold
        self.kind = kind
        self.path = path
        self.size = size
        self.mtimeSeconds = mtimeSeconds
        self.mode = mode
    }
}

/// Totals an agent reports with a tier reply; what each operation fills in is said by its field.
public struct TierCounters: Hashable, Sendable {
    /// Files moved (demote, promote).
    public var files: UInt64 = 0
    /// Their bytes.
    public var logicalBytes: UInt64 = 0
    /// Bytes of packs written (demote) or read (promote).
    public var packBytes: UInt64 = 0
    /// The store (stats): cold files, their bytes, pack bytes on disk, distinct raw chunk bytes, packs.
    public var storeFiles: UInt64 = 0
    public var storeLogicalBytes: UInt64 = 0
    public var storeStoredBytes: UInt64 = 0
    public var storeUniqueBytes: UInt64 = 0
    public var storePacks: UInt64 = 0
    /// gc: packs and bytes removed, packs kept.
    public var packsRemoved: UInt64 = 0
    public var bytesRemoved: UInt64 = 0
    public var packsKept: UInt64 = 0

    public init() {}

    static let count = 11
    var all: [UInt64] {
        [files, logicalBytes, packBytes, storeFiles, storeLogicalBytes, storeStoredBytes, storeUniqueBytes, storePacks, packsRemoved, bytesRemoved, packsKept]
    }

    init(_ v: [UInt64]) {
        (files, logicalBytes, packBytes, storeFiles, storeLogicalBytes, storeStoredBytes, storeUniqueBytes, storePacks, packsRemoved, bytesRemoved, packsKept) =
            (v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10])
    }
}

public struct TierReply: Hashable, Sendable, PayloadCodable {
    public struct Skipped: Hashable, Sendable {
        public var path: String
        public var reason: String
        public init(path: String, reason: String) {
            self.path = path
            self.reason = reason.truncatedUTF8(ErrorMessage.maxReasonLength)
        }
    }

    public var request: UInt64
    /// Empty when the operation ran; otherwise why it did not (no cold store, a bad policy…).
    public var error: String
    /// Where the next page starts; empty when this was the last.
    public var next: String
    /// Files moved (demote, promote) or listed (list).
    public var entries: [TierEntry]
    /// Files left where they were, with the reason.
    public var skipped: [Skipped]
    public var counters: TierCounters

    public init(request: UInt64, error: String = "", next: String = "", entries: [TierEntry] = [], skipped: [Skipped] = [], counters: TierCounters = .init()) {
        self.request = request
        self.error = error.truncatedUTF8(ErrorMessage.maxReasonLength)
        self.next = next
        self.entries = entries
        self.skipped = skipped
        self.counters = counters
    }

    init(from r: inout PayloadReader) throws(WireError) {
        request = try r.identifier("request")
        error = try r.reason("error")
        next = try r.string("next", maxLength: TierRequest.maxCursorLength)
        entries = try r.list("entries", minimumSize: 24) { (r: inout PayloadReader) throws(WireError) in
            let cold = try r.flag("cold")
            let k = try r.integer(UInt8.self, "kind")
            guard let kind = FileEntry.Kind(rawValue: k) else { throw .malformed(r.type, "unknown entry kind \(k)") }
            return TierEntry(cold: cold, kind: kind, path: try r.string("path", maxLength: ChunkPlace.maxPathLength),
                             size: try r.quantity("size"), mtimeSeconds: try r.integer(Int64.self, "mtime"),
                             mode: try r.integer(UInt32.self, "mode"))
        }
        skipped = try r.list("skipped", minimumSize: 4) { (r: inout PayloadReader) throws(WireError) in
            Skipped(path: try r.string("path", maxLength: ChunkPlace.maxPathLength), reason: try r.reason("reason"))
        }
        var values: [UInt64] = []
        for i in 0..<TierCounters.count { values.append(try r.quantity("counter \(i)")) }
        counters = TierCounters(values)
    }

    func write(to b: inout ByteBuffer) {
        b.writeInteger(request)
        b.writeWireString(error)
        b.writeWireString(next)
        b.writeList(entries) { b, e in
            b.writeFlag(e.cold)
            b.writeInteger(e.kind.rawValue)
            b.writeWireString(e.path)
            b.writeInteger(e.size)
            b.writeInteger(e.mtimeSeconds)
            b.writeInteger(e.mode)
        }
        b.writeList(skipped) { b, s in
            b.writeWireString(s.path)
            b.writeWireString(s.reason)
        }
        for v in counters.all { b.writeInteger(v) }
    }
}
