/// The result of `barge bench compress`, in the JSON shape DESIGN.md fixes:
/// `{"files":[{"path","bytes","results":[{"codec","ratio","compress_mbps","decompress_mbps"}]}],
///   "total":{"bytes","results":[...]}}`. `auto` results add `mix`; the report adds the settings
/// it ran with and the selector's own overhead.
public struct CompressBenchReport: Codable, Sendable {
    public var files: [FileResult]
    public var total: TotalResult
    public var chunkSize: Int
    /// The link rate `auto` was modelled for, in bytes per second; nil for an unlimited link.
    public var linkRateBytesPerSecond: Double?
}

public struct FileResult: Codable, Sendable {
    public var path: String
    /// Bytes benchmarked: the whole file, or its first `maxBytesPerFile` bytes.
    public var bytes: Int
    public var results: [CodecResult]
    /// True when only the start of the file was benchmarked.
    public var truncated: Bool?
}

public struct TotalResult: Codable, Sendable {
    public var bytes: Int
    public var results: [CodecResult]
    public var selector: SelectorOverhead?
}

public struct CodecResult: Codable, Sendable {
    public var codec: String
    /// Raw bytes over encoded bytes, chunk headers included.
    public var ratio: Double
    /// Encoded bytes, chunk headers included: the exact figure behind `ratio`.
    public var encodedBytes: Int
    /// Millions of raw (uncompressed) bytes per second, best pass.
    public var compressMbps: Double
    public var decompressMbps: Double
    /// For `auto`: which codecs it wrote, by chunks and raw bytes.
    public var mix: [MixEntry]?

    public struct MixEntry: Codable, Sendable {
        public var codec: String
        public var chunks: Int
        public var bytes: Int
    }
}

/// What choosing costs: sampling plus the cost model, per chunk, against zstd-1 on the same chunks.
public struct SelectorOverhead: Codable, Sendable {
    public var microsPerChunk: Double
    public var percentOfZstd1: Double
}
