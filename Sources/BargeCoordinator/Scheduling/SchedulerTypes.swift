import BargeChunk
import BargeWire

/// What `POST /v1/jobs` asks for.
public struct SubmitRequest: Codable, Hashable, Sendable {
    public struct Endpoint: Codable, Hashable, Sendable {
        public var site: String
        public var path: String
        public init(site: String, path: String) {
            self.site = site
            self.path = path
        }
    }

    public var source: Endpoint
    public var destination: Endpoint
    /// `auto` (the default), `none`, `lz4`, `zstd-N` or a filter form such as `shuffle4+zstd-1`.
    public var codec: String?
    /// A cap on the job's wire bytes, all its agents together: a rate (`100MiB/s`), `off`, or a
    /// weekly timetable (`Mon-Fri 08:00-18:00 100MiB/s, 18:00 off`). Nil or `off`: none.
    public var bwlimit: String?
    /// Congestion mode: `fair` (the default), `scavenger` or `off`.
    public var cc: String?
    /// Compare every file by content (its chunks' SHA-256 against the destination's), instead of
    /// skipping those whose size, mtime and mode match at the destination (the default).
    public var checksum: Bool?
    /// A placement policy for the destination, as `TierPolicy` parses it (`cold:raw/**;hot`),
    /// with paths relative to the destination path. Nil: the destination site's own policy
    /// (`--tier-policy` on its agents), else everything hot.
    public var tier: String?
    /// An http(s) URL told of this job's events (CloudEvents JSON), beside the coordinator's
    /// `--notify` URLs.
    public var notify: String?

    public init(source: Endpoint, destination: Endpoint, codec: String? = nil, bwlimit: String? = nil, cc: String? = nil, checksum: Bool? = nil,
                tier: String? = nil, notify: String? = nil) {
        self.notify = notify
        self.checksum = checksum
        self.tier = tier
        self.source = source
        self.destination = destination
        self.codec = codec
        self.bwlimit = bwlimit
        self.cc = cc
    }
}

/// The body of `POST /v1/jobs/{id}/limit` (`barge set`).
public struct LimitRequest: Codable, Hashable, Sendable {
    /// The new cap, in `SubmitRequest.bwlimit`'s forms; `off` removes it.
    public var bwlimit: String

    public init(bwlimit: String) { self.bwlimit = bwlimit }
}

/// Why a request to the scheduler was refused; the HTTP layer maps each to a status.
public enum SchedulerError: Error, Hashable, Sendable, CustomStringConvertible {
    case unknownJob(String)
    case unknownSite(String, known: [String])
    case noAgentsUp(String)
    case invalid(String)
    case notVerifiable(String, JobState)
    case agentUnavailable(String)
    /// An agent's connection ended (or it registered again) while a request to it waited: its
    /// answer will not come, and the request is worth making again.
    case connectionLost(String)
    case timedOut(String)
    /// The request is well formed, but the job's or agent's state does not allow it (409).
    case conflict(String)
    /// The journal cannot be written now (`Scheduler.journalProblem`): nothing of the request was
    /// recorded (503).
    case journalUnavailable(String)

    public var description: String {
        switch self {
        case .unknownJob(let id): "no job \(id)"
        case .unknownSite(let s, let known):
            "unknown site '\(s)': no agent has registered from it" + (known.isEmpty ? " (no agents have registered yet)" : " (known sites: \(known.joined(separator: ", ")))")
        case .noAgentsUp(let s): "site '\(s)' has no agent up; start one with: barge agent --site \(s) …"
        case .invalid(let why): why
        case .notVerifiable(let id, let state): "job \(id) is \(state.rawValue); only a succeeded job can be verified"
        case .agentUnavailable(let why): why
        case .connectionLost(let why): why
        case .timedOut(let what): "timed out waiting for \(what)"
        case .conflict(let why): why
        case .journalUnavailable(let why): JournalError.unwritable(why)
        }
    }
}

/// A verification (`barge verify`), running or ended: what was checked, what did not match,
/// and what was repaired.
public struct VerifyOutcome: Codable, Hashable, Sendable {
    public struct Mismatch: Codable, Hashable, Sendable {
        public var path: String
        public var offset: UInt64
        public var length: UInt64
        public var reason: String
    }

    public var id: String
    /// `running`, `succeeded` (every chunk was checked) or `failed` (see `error`).
    public var state: String
    public var repair: Bool
    public var filesChecked: Int
    public var chunksChecked: Int
    public var chunksTotal: Int
    public var bytesChecked: UInt64
    /// What the first pass found (the first 1,000; `mismatch_count` has them all).
    public var mismatches: [Mismatch]
    public var mismatchCount: Int
    /// Chunks (or whole files) sent again by `--repair`.
    public var repaired: Int
    /// What a second pass over the repaired ones still found (the first 1,000).
    public var remaining: [Mismatch]
    public var remainingCount: Int
    /// Ended and found everything right (or repaired it).
    public var ok: Bool
    /// The Merkle root (hex) over the job's chunk ids in the journal's order (unit by unit, each
    /// unit's in its manifest's order), so far: a fingerprint of the job's manifest.
    public var merkleRoot: String
    public var error: String?

    enum CodingKeys: String, CodingKey {
        case id, state, repair, mismatches, repaired, remaining, ok, error
        case merkleRoot = "merkle_root", mismatchCount = "mismatch_count", remainingCount = "remaining_count"
        case filesChecked = "files_checked", chunksChecked = "chunks_checked", chunksTotal = "chunks_total", bytesChecked = "bytes_checked"
    }

    public init(_ v: VerificationRecord) {
        id = v.jobId
        state = v.state.rawValue
        repair = v.repair
        filesChecked = Int(v.filesChecked)
        chunksChecked = Int(v.chunksChecked)
        chunksTotal = Int(v.chunksTotal)
        bytesChecked = UInt64(v.bytesChecked)
        mismatches = v.mismatches
        mismatchCount = Int(v.mismatchCount)
        repaired = Int(v.repaired)
        remaining = v.remaining
        remainingCount = Int(v.remainingCount)
        ok = v.state == .succeeded && (v.repair ? v.remainingCount == 0 : v.mismatchCount == 0)
        merkleRoot = (MerkleAccumulator(encoded: [UInt8](v.merkle)) ?? MerkleAccumulator()).root.description
        error = v.error
    }
}
