import Hummingbird

/// One agent as `GET /v1/agents` and `barge agents --json` show it.
public struct AgentStatus: Codable, Hashable, Sendable, ResponseEncodable {
    public var name: String
    public var site: String
    public var state: AgentState
    public var address: String

    public init(_ info: AgentInfo) {
        name = info.name
        site = info.site
        state = info.state
        address = info.address
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
    public var error: String?

    enum CodingKeys: String, CodingKey {
        case id, state, error
        case bytesTotal = "bytes_total", bytesDone = "bytes_done", wireBytes = "wire_bytes"
        case filesTotal = "files_total", filesDone = "files_done"
        case chunksTotal = "chunks_total", chunksDone = "chunks_done", chunksRefetched = "chunks_refetched"
        case dedupBytes = "dedup_bytes"
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
        chunksRefetched = r.chunksRefetched
        dedupBytes = r.dedupBytes
        error = r.error
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
        try c.encode(error, forKey: .error)
    }
}

public struct AgentList: Codable, Sendable, ResponseEncodable {
    public var agents: [AgentStatus]
}

public struct JobList: Codable, Sendable, ResponseEncodable {
    public var jobs: [JobStatus]
}
