import BargeWire
import Foundation
import GRDB

/// A job as the journal stores it. The counters are those of `status --json`.
/// What a job does.
public enum JobOperation: String, Codable, Hashable, Sendable {
    case transfer, demote, promote
}

public struct JobRecord: Codable, Hashable, Sendable, FetchableRecord, PersistableRecord {
    public static let databaseTableName = "jobs"

    public var id: String
    public var state: JobState
    public var sourceSite: String
    public var sourcePath: String
    public var destinationSite: String
    public var destinationPath: String
    public var bytesTotal: Int64 = 0
    public var bytesDone: Int64 = 0
    public var wireBytes: Int64 = 0
    public var filesTotal: Int64 = 0
    public var filesDone: Int64 = 0
    public var chunksTotal: Int64 = 0
    public var chunksDone: Int64 = 0
    public var chunksRefetched: Int64 = 0
    public var dedupBytes: Int64 = 0
    public var error: String?
    /// Unix seconds.
    public var createdAt: Int64
    /// `auto` or a fixed codec name.
    public var codec: String = "auto"
    public var chunkSize: Int64 = 1 << 20
    /// Raw and encoded bytes per codec, summed over finished units.
    public var codecStats: [CodecUsage] = []
    /// Unix seconds, fractional: when planning ended, and when the job reached a terminal state.
    public var startedAt: Double?
    public var finishedAt: Double?
    /// Seconds the job stood failed or cancelled before a `resume`: not time it ran, so its
    /// elapsed time and rate leave them out (they counted the night a job stood failed).
    public var idleSeconds: Double = 0
    /// Units handed out again after their lane failed or their agent went down.
    public var unitRetries: Int64 = 0
    /// The job's cap as submitted or last set (a rate or a timetable); nil for none.
    public var bwlimit: String?
    /// `fair`, `scavenger` or `off`.
    public var congestion: String = "fair"
    /// Units journaled so far, and how many of them are done.
    public var unitsTotal: Int64 = 0
    public var unitsDone: Int64 = 0
    /// The scan has ended and every unit is journaled: the job ends when its units are done.
    public var planned: Bool = false
    /// Files found unchanged at the destination and not sent (quick check), and their bytes.
    public var skippedFiles: Int64 = 0
    public var skippedBytes: Int64 = 0
    /// Source entries the scan found but had to leave out (a name that is not UTF-8, a socket,
    /// FIFO or device, an entry it could not stat), so they were not transferred; and the reason
    /// for the first of them.
    public var untransferableEntries: Int64 = 0
    public var firstUntransferable: String?
    /// The last scanned path planned, in scan order: a scan that starts again skips up to it.
    public var scanMark: String?
    /// The id the next journaled unit gets (planned, or a range made from its file's finish).
    public var nextUnit: Int64 = 0
    /// `submit --checksum`: no quick check; every file is read and compared by content.
    public var checksum: Bool = false
    /// `transfer`, or a tier job run by agents of one site (`demote`, `promote`), whose source
    /// and destination are that site and path.
    public var operation: JobOperation = .transfer
    /// `tier demote --policy`: which files go cold; nil for all of them.
    public var tierPolicy: String?
    /// `submit --notify`: a web hook told of this job's events, beside the coordinator's own.
    public var notify: String?
    /// Where a tier job's next page starts (the agent's `next`).
    public var tierCursor: String?
    /// The destination was given as a directory to put things in (`b:/dst/`, `JobPath.namesDirectory`):
    /// a single file lands inside it under its own name rather than at the path itself.
    public var destinationIsDirectory: Bool = false
    /// The source was given with a slash (`a:/src/`): a symbolic link there is followed to the
    /// directory it names, as `rsync -a link/ dst` copies what it points to, while `a:/src` sends
    /// the link itself, as `rsync -a link dst` does. Before, the slash was dropped and a link to
    /// a directory arrived as a link, dangling at the destination (a black-box review).
    public var sourceNamesDirectory: Bool = false

    /// `SITE:/PATH` as the job's source was given: with its slash when it has one.
    public var sourceDescription: String {
        "\(sourceSite):/\(sourcePath)\(sourceNamesDirectory && !sourcePath.isEmpty ? "/" : "")"
    }

    /// `SITE:/PATH` as the job's destination was given: with its slash when it names a directory.
    public var destinationDescription: String {
        "\(destinationSite):/\(destinationPath)\(destinationIsDirectory && !destinationPath.isEmpty ? "/" : "")"
    }

    public init(id: String, sourceSite: String, sourcePath: String, destinationSite: String, destinationPath: String, createdAt: Int64) {
        self.id = id
        self.state = .queued
        self.sourceSite = sourceSite
        self.sourcePath = sourcePath
        self.destinationSite = destinationSite
        self.destinationPath = destinationPath
        self.createdAt = createdAt
    }
}

/// A job's row, read by hand: `GET /v1/jobs/{id}` reads one per request, and the generic
/// `Codable` path (its codec figures through JSONDecoder) was most of that request's time.
extension JobRecord {
    public init(row: Row) throws {
        id = row["id"]
        state = row["state"]
        sourceSite = row["sourceSite"]
        sourcePath = row["sourcePath"]
        destinationSite = row["destinationSite"]
        destinationPath = row["destinationPath"]
        bytesTotal = row["bytesTotal"]
        bytesDone = row["bytesDone"]
        wireBytes = row["wireBytes"]
        filesTotal = row["filesTotal"]
        filesDone = row["filesDone"]
        chunksTotal = row["chunksTotal"]
        chunksDone = row["chunksDone"]
        chunksRefetched = row["chunksRefetched"]
        dedupBytes = row["dedupBytes"]
        error = row["error"]
        createdAt = row["createdAt"]
        codec = row["codec"]
        chunkSize = row["chunkSize"]
        let stats: String = row["codecStats"]
        if stats != "[]" {
            do { codecStats = try JSONDecoder().decode([CodecUsage].self, from: Data(stats.utf8)) } catch {
                throw JournalError.corrupt("job \(id)'s codec figures: \(error)")
            }
        }
        startedAt = row["startedAt"]
        finishedAt = row["finishedAt"]
        idleSeconds = row["idleSeconds"] ?? 0
        unitRetries = row["unitRetries"]
        bwlimit = row["bwlimit"]
        congestion = row["congestion"]
        unitsTotal = row["unitsTotal"]
        unitsDone = row["unitsDone"]
        planned = row["planned"]
        skippedFiles = row["skippedFiles"]
        skippedBytes = row["skippedBytes"]
        untransferableEntries = row["untransferableEntries"]
        firstUntransferable = row["firstUntransferable"]
        scanMark = row["scanMark"]
        nextUnit = row["nextUnit"]
        checksum = row["checksum"]
        operation = row["operation"]
        tierPolicy = row["tierPolicy"]
        notify = row["notify"]
        tierCursor = row["tierCursor"]
        destinationIsDirectory = row["destinationIsDirectory"]
        sourceNamesDirectory = row["sourceNamesDirectory"]
    }
}

extension JobState: DatabaseValueConvertible {}
extension JobOperation: DatabaseValueConvertible {}

/// The state of a work unit: a chunk range of one file, or a batch of small files.
public enum UnitState: String, Codable, Hashable, Sendable, DatabaseValueConvertible {
    case pending, assigned, done, failed
}

/// What a unit does. `files`: a batch of whole files and links; `range`: part of a large file;
/// `finish`: `file done` for a large file once all its ranges are in; `directories`: every
/// directory's mode and mtime, once everything else is done.
public enum UnitKind: String, Codable, Hashable, Sendable, DatabaseValueConvertible {
    case files, range, finish, directories
}

/// One unit of work and where it is.
public struct UnitRecord: Codable, Hashable, Sendable, FetchableRecord, PersistableRecord {
    public static let databaseTableName = "units"

    public var jobId: String
    public var unitId: Int64
    public var path: String
    public var offset: Int64
    public var length: Int64
    public var state: UnitState = .pending
    /// The lane's agents while assigned.
    public var sourceAgent: String?
    public var destinationAgent: String?
    public var attempts: Int64 = 0
    public var kind: UnitKind = .range
    /// What the source agent is told to send (`task assign`).
    public var files: [TaskFile] = []
    /// Kept from journals before v5 (a path, or `*`); dependencies are now `finishUnit` and `depth`.
    public var dependsOn: String?
    /// A `range` unit's file: the id of the `finish` unit that waits for it.
    public var finishUnit: Int64?
    /// A `directories` unit's depth: deeper ones go first, one depth at a time.
    public var depth: Int64 = 0
    /// Files (and links) this unit finishes, for the job's `files_done`.
    public var finishedFiles: Int64 = 0
    /// The chunks its source reported when it was done (`UnitManifest`). The journal keeps
    /// them in its `ManifestLog` (`manifestAt`, `manifestLength`), or in the row when empty or
    /// written before v16; readers of done units get them here (`withManifests`).
    public var manifest: Data?
    /// Where the manifest is in its job's `ManifestLog` file, and its size in bytes.
    public var manifestAt: Int64?
    public var manifestLength: Int64 = 0
    /// A `finish` unit's file is sent as this many `range` units of `rangeBytes` each. They are
    /// made (journaled as units) only as the scheduler reaches them, so a petabyte of large files
    /// is planned as one row per file; `rangesDone` of them are done.
    public var rangesTotal: Int64 = 0
    public var rangesMade: Int64 = 0
    public var rangesDone: Int64 = 0
    public var rangeBytes: Int64 = 0
    /// Times it was handed to a lane, never reset (`attempts` is, by `resume`): its agent's
    /// reports name the assignment they answer, and one from an earlier assignment is stale.
    public var assignments: Int64 = 0
    /// Of its bytes, those its destination copied from what it held (`task done`'s dedup
    /// bytes), so that sending a file's ranges again (`resend`) takes them back off its job.
    public var dedupBytes: Int64 = 0
    /// Its files (by index in `files`) it left out, gone from the source or changed since the
    /// scan: not finished at the destination, so `verify` leaves them out.
    public var leftOut: [UInt32] = []
    /// The bytes its `task done` counted toward the job's `bytes_done` (nil in rows written
    /// before v20), which sending a file's ranges again (`resend`) takes back off. A range that
    /// left its file out (changed at the source) counts only what it sent: taking its length
    /// back made a job's bytes done negative (-18 MiB of 9 MiB, a black-box review).
    public var bytesCounted: Int64?

    public init(jobId: String, unitId: Int64, path: String, offset: Int64, length: Int64) {
        self.jobId = jobId
        self.unitId = unitId
        self.path = path
        self.offset = offset
        self.length = length
    }

    public init(jobId: String, unitId: Int64, kind: UnitKind, files: [TaskFile], finishUnit: Int64? = nil, depth: Int64 = 0) {
        self.init(jobId: jobId, unitId: unitId, path: files.first?.entry.path ?? "", offset: Int64(files.first?.offset ?? 0),
                  length: Int64(files.reduce(0) { $0 + $1.length }))
        self.kind = kind
        self.files = files
        self.finishUnit = finishUnit
        self.depth = depth
        self.finishedFiles = Int64(files.filter { $0.finish && $0.entry.kind != .directory }.count)
    }

    /// What the scheduling policy needs of it.
    public var planned: PlannedUnit {
        PlannedUnit(id: UInt64(unitId), kind: kind, finish: finishUnit.map { UInt64($0) }, depth: Int(depth),
                    waitsFor: kind == .finish ? Int(rangesTotal - rangesDone) : 0, files: max(1, files.count))
    }

    /// The `index`th range of this finish unit's file, as a unit with id `id`.
    public func range(_ index: Int64, id: Int64) -> UnitRecord {
        let file = files[0]
        let offset = UInt64(index * rangeBytes)
        let length = min(UInt64(rangeBytes), file.entry.size - offset)
        return UnitRecord(jobId: jobId, unitId: id, kind: .range,
                          files: [TaskFile(sourcePath: file.sourcePath, entry: file.entry, offset: offset, length: length, finish: false, tier: file.tier)],
                          finishUnit: unitId)
    }
}

/// A verified chunk of a finished file, as the manifest `verify` checks against.
public struct ChunkRecordRow: Codable, Hashable, Sendable, FetchableRecord, PersistableRecord {
    public static let databaseTableName = "chunks"

    public var jobId: String
    /// Destination path, relative to the destination agent's root.
    public var path: String
    public var offset: Int64
    public var length: Int64
    /// SHA-256 of the raw bytes.
    public var id: Data

    public init(jobId: String, path: String, offset: Int64, length: Int64, id: Data) {
        self.jobId = jobId
        self.path = path
        self.offset = offset
        self.length = length
        self.id = id
    }
}

/// Totals of a plan, as the job's counters start.
public struct PlanTotals: Hashable, Sendable {
    public var bytes: Int64
    public var files: Int64
    public var chunks: Int64

    public init(bytes: Int64, files: Int64, chunks: Int64) {
        self.bytes = bytes
        self.files = files
        self.chunks = chunks
    }
}

extension CodecUsage {
    /// Sums usage per codec name, sorted by name.
    public static func merge(_ a: [CodecUsage], _ b: [CodecUsage]) -> [CodecUsage] {
        var byName: [String: CodecUsage] = [:]
        for u in a + b {
            var sum = byName[u.codec] ?? CodecUsage(codec: u.codec, chunks: 0, rawBytes: 0, encodedBytes: 0)
            sum.chunks += u.chunks
            sum.rawBytes += u.rawBytes
            sum.encodedBytes += u.encodedBytes
            byName[u.codec] = sum
        }
        return byName.values.sorted { $0.codec < $1.codec }
    }
}

/// A job's verification (`barge verify`), journaled page by page so that it survives a restart:
/// the next unit to check, what was found so far, and the Merkle state over the chunk ids read.
public struct VerificationRecord: Codable, Hashable, Sendable, FetchableRecord, PersistableRecord {
    public static let databaseTableName = "verifications"
    public static let listed = 1000

    public enum State: String, Codable, Sendable {
        case running, succeeded, failed
    }

    public var jobId: String
    public var state: State
    public var repair: Bool
    /// Units before this id have been checked.
    public var cursor: Int64 = 0
    public var filesChecked: Int64 = 0
    public var chunksChecked: Int64 = 0
    /// The job's chunks, to check in all.
    public var chunksTotal: Int64
    public var bytesChecked: Int64 = 0
    /// Mismatches found by the first pass, and the first `listed` of them.
    public var mismatchCount: Int64 = 0
    public var mismatches: [VerifyOutcome.Mismatch] = []
    /// Chunks (or whole files) sent again.
    public var repaired: Int64 = 0
    /// Mismatches still there after their repair, and the first `listed` of them.
    public var remainingCount: Int64 = 0
    public var remaining: [VerifyOutcome.Mismatch] = []
    /// `MerkleAccumulator.encoded` over the chunk ids so far.
    public var merkle: Data = Data()
    /// The mismatches the page at `cursor` found, when its repair has begun (journal v22): its
    /// first pass is already in the counts above. A restart repairs these, without a first pass
    /// that would find clean what was repaired before it and report the store as never damaged.
    public var pageRepairs: [PageMismatch]?
    public var error: String?
    public var startedAt: Double
    public var finishedAt: Double?

    /// A mismatch of the page under repair, and the agent that found it.
    public struct PageMismatch: Codable, Hashable, Sendable {
        public var agent: String
        public var mismatch: VerifyOutcome.Mismatch
    }

    public init(jobId: String, repair: Bool, chunksTotal: Int64, startedAt: Double) {
        self.jobId = jobId
        self.state = .running
        self.repair = repair
        self.chunksTotal = chunksTotal
        self.startedAt = startedAt
    }
}

/// A unit's row, read and written by hand: the generic `Codable` path was a tenth of the commit
/// thread's time, and the `files` it stored as JSON another tenth. `files` is stored in the form
/// `task assign` carries it (a BLOB); journals written before hold JSON text, which still reads.
extension UnitRecord {
    /// The `units` table's columns in table order (migrations only ever add columns at the end).
    /// `Journal` checks the order when it opens, so a row of `SELECT *` is read by position: by
    /// name, each of its 24 columns was a case-insensitive lookup, a third of reading a row.
    static let columnOrder = ["jobId", "unitId", "path", "offset", "length", "state", "sourceAgent", "destinationAgent", "attempts",
                              "kind", "files", "dependsOn", "finishUnit", "depth", "finishedFiles", "manifest", "rangesTotal",
                              "rangesMade", "rangesDone", "rangeBytes", "assignments", "lastReport", "manifestAt", "manifestLength",
                              "dedupBytes", "leftOut", "bytesCounted"]

    public init(row: Row) throws {
        // By position when the row is the whole table as this build knows it, else by name.
        let whole = row.count == Self.columnOrder.count
        func value<T: DatabaseValueConvertible>(_ i: Int) -> T { whole ? row[i] : row[Self.columnOrder[i]] }
        func optional<T: DatabaseValueConvertible>(_ i: Int) -> T? { whole ? row[i] : row[Self.columnOrder[i]] }
        jobId = value(0)
        unitId = value(1)
        path = value(2)
        offset = value(3)
        length = value(4)
        state = value(5)
        sourceAgent = optional(6)
        destinationAgent = optional(7)
        attempts = value(8)
        kind = value(9)
        files = try Self.files(from: whole ? row[10] : row[Self.columnOrder[10]])
        dependsOn = optional(11)
        finishUnit = optional(12)
        depth = value(13)
        finishedFiles = value(14)
        manifest = optional(15)
        rangesTotal = value(16)
        rangesMade = value(17)
        rangesDone = value(18)
        rangeBytes = value(19)
        assignments = value(20)
        manifestAt = optional(22)
        manifestLength = optional(23) ?? 0
        dedupBytes = optional(24) ?? 0
        leftOut = Self.indices(from: optional(25))
        bytesCounted = optional(26)
    }

    public func encode(to container: inout PersistenceContainer) throws {
        container["jobId"] = jobId
        container["unitId"] = unitId
        container["path"] = path
        container["offset"] = offset
        container["length"] = length
        container["state"] = state
        container["sourceAgent"] = sourceAgent
        container["destinationAgent"] = destinationAgent
        container["attempts"] = attempts
        container["kind"] = kind
        container["files"] = Self.stored(files)
        container["dependsOn"] = dependsOn
        container["finishUnit"] = finishUnit
        container["depth"] = depth
        container["finishedFiles"] = finishedFiles
        container["manifest"] = manifest
        container["manifestAt"] = manifestAt
        container["manifestLength"] = manifestLength
        container["rangesTotal"] = rangesTotal
        container["rangesMade"] = rangesMade
        container["rangesDone"] = rangesDone
        container["rangeBytes"] = rangeBytes
        container["assignments"] = assignments
        container["dedupBytes"] = dedupBytes
        container["leftOut"] = Self.stored(leftOut)
        container["bytesCounted"] = bytesCounted
    }

    /// File indices as the journal stores them: u32s, big-endian, in a BLOB; NULL for none.
    static func stored(_ indices: [UInt32]) -> Data? {
        guard !indices.isEmpty else { return nil }
        var data = Data(capacity: indices.count * 4)
        for i in indices { withUnsafeBytes(of: i.bigEndian) { data.append(contentsOf: $0) } }
        return data
    }

    static func indices(from data: Data?) -> [UInt32] {
        guard let data else { return [] }
        return stride(from: 0, to: data.count - data.count % 4, by: 4).map { k in
            data[data.startIndex + k ..< data.startIndex + k + 4].reduce(0) { $0 << 8 | UInt32($1) }
        }
    }

    /// `files` as the journal stores it.
    static func stored(_ files: [TaskFile]) -> Data { Data(TaskFile.encoded(files)) }

    static func files(from value: DatabaseValue) throws -> [TaskFile] {
        switch value.storage {
        case .blob(let data):
            do { return try TaskFile.decoded(data) } catch { throw JournalError.corrupt("a unit's files: \(error)") }
        case .string(let json):
            return try JSONDecoder().decode([TaskFile].self, from: Data(json.utf8))
        case .null:
            return []
        default:
            throw JournalError.corrupt("a unit's files are neither a BLOB nor JSON text")
        }
    }
}

extension UnitRecord {
    /// The size of its manifest in bytes, wherever it is kept.
    public var manifestBytes: Int64 { manifest.map { Int64($0.count) } ?? manifestLength }
}

extension [UnitRecord] {
    /// These units with the manifests the log keeps for them read in, one open file per job.
    func withManifests(_ log: ManifestLog) throws -> [UnitRecord] {
        var out = self
        let placed = Dictionary(grouping: indices.filter { out[$0].manifest == nil && out[$0].manifestAt != nil }, by: { out[$0].jobId })
        for (job, at) in placed {
            let blobs = try log.read(job: job, at.map { ManifestLog.Place(at: out[$0].manifestAt!, length: out[$0].manifestLength) })
            for (i, blob) in zip(at, blobs) { out[i].manifest = blob }
        }
        return out
    }
}
