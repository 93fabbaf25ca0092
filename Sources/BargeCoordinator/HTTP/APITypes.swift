import Foundation
import BargeWire
import Hummingbird

/// One agent as `GET /v1/agents` and `barge agents --json` show it.
public struct AgentStatus: Codable, Hashable, Sendable, ResponseEncodable {
    public var name: String
    public var site: String
    public var state: AgentState
    public var address: String
    /// Its build version; absent for agents older than protocol 11.
    public var version: String?
    /// Its `--root`, as the agent gave it (the agents of a site share one directory, perhaps
    /// at different paths), shown for the agents whose root is compared (a root id, protocol
    /// 14); absent for the others.
    public var root: String?

    public init(_ info: AgentInfo) {
        name = info.name
        site = info.site
        state = info.state
        address = info.address
        version = info.build
        root = info.rootID == nil ? nil : info.root
    }
}

/// A job as `GET /v1/jobs/{id}` and `barge status --json` show it; the fields DESIGN.md fixes.
public struct JobStatus: Codable, Hashable, Sendable, ResponseEncodable {
    public var id: String
    public var state: JobState
    public var bytesTotal: Int64
    public var bytesDone: Int64
    public var wireBytes: Int64
    public var filesTotal: Int64
    public var filesDone: Int64
    public var chunksTotal: Int64
    public var chunksDone: Int64
    public var chunksRefetched: Int64
    public var dedupBytes: Int64
    /// Files the quick check found unchanged at the destination and did not send, and their bytes.
    public var skippedFiles: Int64
    public var skippedBytes: Int64
    /// Source entries the scan had to leave out (a name that is not UTF-8, shown with its bytes
    /// escaped; a socket, FIFO or device; an entry it could not stat), and why the first was; the
    /// job still succeeds, and the CLI exits 2. Always sent (absent only from coordinators before it).
    public var untransferableEntries: Int64?
    public var firstUntransferable: String?
    public var error: String?
    /// Beyond the fields DESIGN.md fixes: where from and to, the codec asked for, the codec mix
    /// so far, and when the job started and ended (Unix seconds).
    public var source: String
    public var destination: String
    public var codec: String
    public var codecs: [CodecMix]
    public var startedAt: Double?
    public var finishedAt: Double?
    /// Seconds it stood failed or cancelled before a resume: its elapsed time is from
    /// `started_at` to `finished_at` (or now) less these. Absent from coordinators before it.
    public var idleSeconds: Double?
    /// Units handed out again after their lane failed (a dropped or stalled stream, a write error,
    /// repeated corruption) or their agent went down.
    public var retries: Int64
    /// The job's cap (nil: none) and congestion mode.
    public var bwlimit: String?
    public var cc: String
    /// `submit --checksum`: files compared by content rather than by size and mtime.
    public var checksum: Bool
    /// While it runs: each lane's RTT, queueing delay, window and send rate.
    public var lanes: [LaneStatus] = []
    /// While it is queued or runs and cannot move: why (`JobWaiting`: a site of the job with no agent up).
    /// In `GET /v1/jobs/{id}` and the dashboard's snapshot; absent otherwise.
    public var waiting: String?
    /// Its latest verification, in `GET /v1/jobs/{id}` only.
    public var verification: VerifyProgress?
    /// `transfer`, `demote` or `promote` (absent from coordinators before tiers: a transfer).
    public var operation: String?
    /// A transfer's placement policy (`submit --tier`), or a demotion's; absent when none.
    public var tier: String?

    public struct CodecMix: Codable, Hashable, Sendable {
        public var codec: String
        public var chunks: UInt32
        public var rawBytes: UInt64
        public var encodedBytes: UInt64

        enum CodingKeys: String, CodingKey {
            case codec, chunks
            case rawBytes = "raw_bytes", encodedBytes = "encoded_bytes"
        }
    }

    enum CodingKeys: String, CodingKey {
        case id, state, error, source, destination, codec, codecs, retries, bwlimit, cc, lanes, checksum, verification, operation, tier, waiting
        case startedAt = "started_at", finishedAt = "finished_at", idleSeconds = "idle_seconds"
        case bytesTotal = "bytes_total", bytesDone = "bytes_done", wireBytes = "wire_bytes"
        case filesTotal = "files_total", filesDone = "files_done"
        case chunksTotal = "chunks_total", chunksDone = "chunks_done", chunksRefetched = "chunks_refetched"
        case dedupBytes = "dedup_bytes", skippedFiles = "skipped_files", skippedBytes = "skipped_bytes"
        case untransferableEntries = "untransferable_entries", firstUntransferable = "first_untransferable"
    }

    public init(_ r: JobRecord) {
        id = r.id
        state = r.state
        bytesTotal = r.bytesTotal
        bytesDone = r.bytesDone
        wireBytes = r.wireBytes
        filesTotal = r.filesTotal
        filesDone = r.filesDone
        chunksTotal = r.chunksTotal
        chunksDone = r.chunksDone
        skippedFiles = r.skippedFiles
        skippedBytes = r.skippedBytes
        untransferableEntries = r.untransferableEntries
        firstUntransferable = r.firstUntransferable
        chunksRefetched = r.chunksRefetched
        dedupBytes = r.dedupBytes
        error = r.error
        source = r.sourceDescription
        destination = r.destinationDescription
        codec = r.codec
        codecs = r.codecStats.map { CodecMix(codec: $0.codec, chunks: $0.chunks, rawBytes: $0.rawBytes, encodedBytes: $0.encodedBytes) }
        startedAt = r.startedAt
        finishedAt = r.finishedAt
        idleSeconds = r.idleSeconds
        retries = r.unitRetries
        bwlimit = r.bwlimit
        cc = r.congestion
        checksum = r.checksum
        operation = r.operation.rawValue
        tier = r.tierPolicy
    }

    /// The seconds it ran: from its start to its end (or `now`), less the time it stood ended
    /// before a resume. Nil before it started.
    public func elapsed(now: Double = Date().timeIntervalSince1970) -> Double? {
        startedAt.map { max(0, (finishedAt ?? now) - $0 - (idleSeconds ?? 0)) }
    }

    public init(_ r: JobRecord, lanes: [LaneStatus]) {
        self.init(r)
        self.lanes = lanes
    }

    /// `error` is always present in the JSON, null when there is none.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id)
        try c.encode(state, forKey: .state)
        try c.encode(bytesTotal, forKey: .bytesTotal)
        try c.encode(bytesDone, forKey: .bytesDone)
        try c.encode(wireBytes, forKey: .wireBytes)
        try c.encode(filesTotal, forKey: .filesTotal)
        try c.encode(filesDone, forKey: .filesDone)
        try c.encode(chunksTotal, forKey: .chunksTotal)
        try c.encode(chunksDone, forKey: .chunksDone)
        try c.encode(chunksRefetched, forKey: .chunksRefetched)
        try c.encode(dedupBytes, forKey: .dedupBytes)
        try c.encode(skippedFiles, forKey: .skippedFiles)
        try c.encode(skippedBytes, forKey: .skippedBytes)
        try c.encode(untransferableEntries ?? 0, forKey: .untransferableEntries)
        try c.encodeIfPresent(firstUntransferable, forKey: .firstUntransferable)
        try c.encode(error, forKey: .error)
        try c.encode(source, forKey: .source)
        try c.encode(destination, forKey: .destination)
        try c.encode(codec, forKey: .codec)
        try c.encode(codecs, forKey: .codecs)
        try c.encodeIfPresent(startedAt, forKey: .startedAt)
        try c.encodeIfPresent(finishedAt, forKey: .finishedAt)
        try c.encode(idleSeconds ?? 0, forKey: .idleSeconds)
        try c.encode(retries, forKey: .retries)
        try c.encode(bwlimit, forKey: .bwlimit)
        try c.encode(cc, forKey: .cc)
        try c.encode(checksum, forKey: .checksum)
        try c.encodeIfPresent(operation, forKey: .operation)
        try c.encodeIfPresent(tier, forKey: .tier)
        try c.encode(lanes, forKey: .lanes)
        try c.encodeIfPresent(verification, forKey: .verification)
        try c.encodeIfPresent(waiting, forKey: .waiting)
    }
}

/// A verification's progress, as `status` shows it.
public struct VerifyProgress: Codable, Hashable, Sendable {
    public var state: String
    public var repair: Bool
    public var chunksChecked: Int
    public var chunksTotal: Int
    public var mismatches: Int
    public var repaired: Int
    public var remaining: Int

    enum CodingKeys: String, CodingKey {
        case state, repair, mismatches, repaired, remaining
        case chunksChecked = "chunks_checked", chunksTotal = "chunks_total"
    }

    public init(_ v: VerifyOutcome) {
        state = v.state
        repair = v.repair
        chunksChecked = v.chunksChecked
        chunksTotal = v.chunksTotal
        mismatches = v.mismatchCount
        repaired = v.repaired
        remaining = v.remainingCount
    }
}

/// One lane of a running job, as `status` shows it.
public struct LaneStatus: Codable, Hashable, Sendable {
    public var source: String
    public var destination: String
    public var rttMs: Double
    public var queueingDelayMs: Double
    public var windowBytes: UInt64
    public var sendRate: UInt64

    public init(source: String, destination: String, figures f: LaneFigures) {
        self.source = source
        self.destination = destination
        rttMs = Double(f.rttMicros) / 1000
        queueingDelayMs = Double(f.queueMicros) / 1000
        windowBytes = f.window
        sendRate = f.rate
    }

    enum CodingKeys: String, CodingKey {
        case source, destination
        case rttMs = "rtt_ms", queueingDelayMs = "queueing_delay_ms", windowBytes = "window_bytes", sendRate = "send_rate"
    }
}

public struct AgentList: Codable, Sendable, ResponseEncodable {
    public var agents: [AgentStatus]
}

public struct JobList: Codable, Sendable, ResponseEncodable {
    public var jobs: [JobStatus]
    /// The id to pass as `after` for the next page; absent on the last page.
    public var next: String?
}

/// The answer to `GET /v1/jobs/{id}/untransferable`: the entries the job could not transfer, each
/// named in words, in the order they were found. `total` counts them all; the first
/// `Journal.namedLimit` are named (`named`).
public struct UntransferableList: Codable, Sendable, ResponseEncodable {
    public var job: String
    public var total: Int64
    public var named: Int64
    public var entries: [String]
    /// The value to pass as `after` for the next page; absent on the last page.
    public var next: String?
}

/// The answer to `POST /v1/jobs/prune`.
public struct PruneOutcome: Codable, Sendable, ResponseEncodable {
    public var pruned: [String]
}

extension VerifyOutcome: ResponseEncodable {}

/// The answer to `POST /v1/agents/{name}/drain`.
public struct DrainOutcome: Codable, Sendable, ResponseEncodable {
    public var agent: String
    public var state: String
    public var unitsHeld: Int

    enum CodingKeys: String, CodingKey {
        case agent, state
        case unitsHeld = "units_held"
    }
}

public struct Health: Codable, Sendable, ResponseEncodable {
    public let status: String
}

/// An API token as listed: its name, role and creation time, never its secret.
public struct TokenInfo: Codable, Sendable, ResponseEncodable {
    public let name: String
    public let role: APIRole
    public let createdAt: Double

    init(_ entry: APITokens.Entry) {
        name = entry.name
        role = entry.role
        createdAt = entry.createdAt
    }

    enum CodingKeys: String, CodingKey {
        case name, role
        case createdAt = "created_at"
    }
}

public struct TokenList: Codable, Sendable, ResponseEncodable {
    public let tokens: [TokenInfo]
}

public struct CreateTokenRequest: Codable, Sendable {
    public let name: String
    public let role: APIRole

    public init(name: String, role: APIRole) {
        self.name = name
        self.role = role
    }
}

/// A new token: the only time its secret is shown.
public struct CreatedToken: Codable, Sendable, ResponseEncodable {
    public let name: String
    public let role: APIRole
    public let token: String
}

/// `POST /v1/tiers/demote` and `/v1/tiers/promote`: a tier job over `site:path`.
public struct TierJobRequest: Codable, Sendable {
    public var site: String
    public var path: String
    /// demote only: a placement policy; files it does not place cold stay hot.
    public var policy: String?

    public init(site: String, path: String, policy: String? = nil) {
        self.site = site
        self.path = path
        self.policy = policy
    }
}

/// A file as `GET /v1/sites/{site}/files` lists it.
public struct SiteFile: Codable, Hashable, Sendable {
    public var path: String
    public var tier: String
    public var kind: String
    public var size: UInt64
    public var mtime: Int64
    public var mode: String

    public init(_ e: TierEntry) {
        path = e.path
        tier = e.cold ? "cold" : "hot"
        switch e.kind {
        case .file: kind = "file"
        case .directory: kind = "directory"
        case .symlink: kind = "symlink"
        }
        size = e.size
        mtime = e.mtimeSeconds
        mode = String(e.mode, radix: 8)
    }
}

public struct SiteFileList: Codable, Sendable, ResponseEncodable {
    public var files: [SiteFile]
    /// Pass as `after` for the next page; absent on the last.
    public var next: String?
}

/// `GET /v1/sites/{site}/tiers`: the site's cold store.
public struct TierStats: Codable, Sendable, ResponseEncodable {
    public var site: String
    public var files: UInt64
    public var logicalBytes: UInt64
    public var storedBytes: UInt64
    public var uniqueBytes: UInt64
    public var packs: UInt64
    /// Logical over unique bytes.
    public var dedupRatio: Double
    /// Unique over stored bytes.
    public var compressionRatio: Double
    /// Logical over stored bytes.
    public var storedRatio: Double

    enum CodingKeys: String, CodingKey {
        case site, files, packs
        case logicalBytes = "logical_bytes", storedBytes = "stored_bytes", uniqueBytes = "unique_bytes"
        case dedupRatio = "dedup_ratio", compressionRatio = "compression_ratio", storedRatio = "stored_ratio"
    }

    public init(site: String, _ c: TierCounters) {
        self.site = site
        files = c.storeFiles
        logicalBytes = c.storeLogicalBytes
        storedBytes = c.storeStoredBytes
        uniqueBytes = c.storeUniqueBytes
        packs = c.storePacks
        dedupRatio = c.storeUniqueBytes > 0 ? Double(c.storeLogicalBytes) / Double(c.storeUniqueBytes) : 1
        compressionRatio = c.storeStoredBytes > 0 ? Double(c.storeUniqueBytes) / Double(c.storeStoredBytes) : 1
        storedRatio = c.storeStoredBytes > 0 ? Double(c.storeLogicalBytes) / Double(c.storeStoredBytes) : 1
    }
}

/// `POST /v1/sites/{site}/tiers/gc`.
public struct TierGCOutcome: Codable, Sendable, ResponseEncodable {
    public var site: String
    public var packsRemoved: UInt64
    public var bytesRemoved: UInt64
    public var packsKept: UInt64

    enum CodingKeys: String, CodingKey {
        case site
        case packsRemoved = "packs_removed", bytesRemoved = "bytes_removed", packsKept = "packs_kept"
    }

    public init(site: String, _ c: TierCounters) {
        self.site = site
        packsRemoved = c.packsRemoved
        bytesRemoved = c.bytesRemoved
        packsKept = c.packsKept
    }
}
