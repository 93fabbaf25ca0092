import GRDB

/// A job as the journal stores it. The counters are those of `status --json`.
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

extension JobState: DatabaseValueConvertible {}

/// The state of a work unit: a chunk range of one file, or a batch of small files.
public enum UnitState: String, Codable, Hashable, Sendable, DatabaseValueConvertible {
    case pending, assigned, done, failed
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

    public init(jobId: String, unitId: Int64, path: String, offset: Int64, length: Int64) {
        self.jobId = jobId
        self.unitId = unitId
        self.path = path
        self.offset = offset
        self.length = length
    }
}
