import CBargeZstd

/// The entropy coder of an encoded chunk.
public enum Compressor: Hashable, Sendable {
    case none
    case lz4
    /// zstd at `level`, from 1 to `Compressor.maxZstdLevel`.
    case zstd(level: Int)

    public static let maxZstdLevel = Int(ZSTD_maxCLevel())
}

/// A reversible transform applied before compression.
public enum ByteFilter: Hashable, Sendable {
    case none
    /// Byte shuffle (Blosc's "shuffle"): with stride N, byte k of every N-byte element goes to plane k.
    /// Typed arrays (float32 with N=4, float64 with N=8, int16 with N=2) compress far better shuffled.
    case shuffle(stride: Int)
    /// XOR delta between neighbouring N-byte elements, then a byte shuffle with stride N. Better
    /// than `shuffle` on smooth fields, whose neighbours share their high bytes.
    case delta(stride: Int)
    /// Byte shuffle, then a bit shuffle within each byte plane (Blosc's BITSHUFFLE).
    case bitshuffle(stride: Int)
    /// Byte shuffle, then a byte delta within each byte plane (Blosc2's BYTEDELTA).
    case bytedelta(stride: Int)

    public static let strides = [2, 4, 8]

    public var stride: Int {
        switch self {
        case .none: 1
        case .shuffle(let s), .delta(let s), .bitshuffle(let s), .bytedelta(let s): s
        }
    }

    public var name: String? {
        switch self {
        case .none: nil
        case .shuffle(let s): "shuffle\(s)"
        case .delta(let s): "delta\(s)"
        case .bitshuffle(let s): "bitshuffle\(s)"
        case .bytedelta(let s): "bytedelta\(s)"
        }
    }
}

/// A concrete way to encode a chunk: an optional filter in front of a compressor.
/// Its name is `none`, `lz4`, `zstd-<level>`, with a filter as prefix: `shuffle4+zstd-1`,
/// `delta8+lz4`.
public struct CodecSpec: Hashable, Sendable, CustomStringConvertible {
    public let filter: ByteFilter
    public let compressor: Compressor

    public static let none = CodecSpec(unchecked: .none, .none)
    public static let lz4 = CodecSpec(unchecked: .none, .lz4)
    public static func zstd(_ level: Int) -> CodecSpec { CodecSpec(unchecked: .none, .zstd(level: level)) }

    private init(unchecked filter: ByteFilter, _ compressor: Compressor) {
        self.filter = filter
        self.compressor = compressor
    }

    /// Fails for combinations that make no sense: a filter with no compressor, a stride other than
    /// 2, 4 or 8, or a zstd level out of range.
    public init(filter: ByteFilter = .none, compressor: Compressor) throws(CodecNameError) {
        if filter != .none, !ByteFilter.strides.contains(filter.stride) {
            throw CodecNameError("filter stride must be 2, 4 or 8, not \(filter.stride)")
        }
        if filter != .none, compressor == .none {
            throw CodecNameError("a filter needs a compressor after it (for example shuffle4+zstd-1)")
        }
        if case .zstd(let level) = compressor, !(1...Compressor.maxZstdLevel).contains(level) {
            throw CodecNameError("zstd level must be 1 to \(Compressor.maxZstdLevel), not \(level)")
        }
        self.init(unchecked: filter, compressor)
    }

    /// Parses a codec name such as `zstd-3` or `shuffle8+lz4`.
    public init(name: String) throws(CodecNameError) {
        let parts = name.lowercased().split(separator: "+", omittingEmptySubsequences: false)
        var filter = ByteFilter.none
        let compressorName: Substring
        switch parts.count {
        case 1:
            compressorName = parts[0]
        case 2:
            if parts[0].hasPrefix("bitshuffle"), let s = Int(parts[0].dropFirst("bitshuffle".count)) {
                filter = .bitshuffle(stride: s)
            } else if parts[0].hasPrefix("bytedelta"), let s = Int(parts[0].dropFirst("bytedelta".count)) {
                filter = .bytedelta(stride: s)
            } else if parts[0].hasPrefix("shuffle"), let s = Int(parts[0].dropFirst("shuffle".count)) {
                filter = .shuffle(stride: s)
            } else if parts[0].hasPrefix("delta"), let s = Int(parts[0].dropFirst("delta".count)) {
                filter = .delta(stride: s)
            } else {
                throw CodecNameError("unknown filter '\(parts[0])' in '\(name)' (filters: shuffleN, deltaN, bitshuffleN, bytedeltaN for N = 2, 4, 8)")
            }
            compressorName = parts[1]
        default:
            throw CodecNameError("'\(name)' has more than one filter")
        }
        let compressor: Compressor
        switch compressorName {
        case "none": compressor = .none
        case "lz4": compressor = .lz4
        case "zstd": compressor = .zstd(level: 3)
        default:
            guard compressorName.hasPrefix("zstd-"), let level = Int(compressorName.dropFirst("zstd-".count)) else {
                throw CodecNameError("unknown codec '\(name)' (codecs: none, lz4, zstd-<level>, with an optional shuffleN+, deltaN+, bitshuffleN+ or bytedeltaN+ prefix for N = 2, 4, 8; or auto)")
            }
            compressor = .zstd(level: level)
        }
        try self.init(filter: filter, compressor: compressor)
    }

    public var description: String {
        let c: String
        switch compressor {
        case .none: c = "none"
        case .lz4: c = "lz4"
        case .zstd(let level): c = "zstd-\(level)"
        }
        return filter.name.map { "\($0)+\(c)" } ?? c
    }
}

/// What the user asked for: one fixed codec, or `auto`, the adaptive selector.
public enum CodecChoice: Hashable, Sendable, CustomStringConvertible {
    case auto
    case fixed(CodecSpec)

    public init(name: String) throws(CodecNameError) {
        self = name.lowercased() == "auto" ? .auto : .fixed(try CodecSpec(name: name))
    }

    public var description: String {
        switch self {
        case .auto: "auto"
        case .fixed(let spec): spec.description
        }
    }
}

public struct CodecNameError: Error, Equatable, Sendable, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
