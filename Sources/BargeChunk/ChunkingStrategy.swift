/// How a byte stream is cut into chunks.
public enum ChunkingStrategy: Hashable, Sendable {
    /// Every chunk is `size` bytes except the last.
    case fixed(size: Int)
    /// Content-defined cut points (FastCDC), so that an insertion moves only nearby boundaries.
    case fastCDC(FastCDC)

    /// The largest chunk this strategy produces.
    public var maxChunkLength: Int {
        switch self {
        case .fixed(let size): size
        case .fastCDC(let cdc): cdc.maxSize
        }
    }

    /// The length of the next chunk at the start of `window`. `atEnd` says that no bytes follow the
    /// window. Unless `atEnd`, the window must hold at least `maxChunkLength` bytes, so that the
    /// answer does not depend on how the stream was read.
    public func cut(_ window: UnsafeRawBufferPointer, atEnd: Bool) -> Int {
        precondition(atEnd || window.count >= maxChunkLength, "window shorter than the longest chunk")
        switch self {
        case .fixed(let size): return min(size, window.count)
        case .fastCDC(let cdc): return cdc.cut(window)
        }
    }

    public func validated() throws(ChunkingError) -> ChunkingStrategy {
        switch self {
        case .fixed(let size):
            guard size >= 1, size <= ChunkingStrategy.maxChunkLength else {
                throw .invalidParameters("fixed chunk size must be 1 B to \(ChunkingStrategy.maxChunkLength) B, not \(size)")
            }
        case .fastCDC(let cdc):
            try cdc.validate()
        }
        return self
    }

    /// No strategy may cut chunks longer than this (the chunk format's own limit is 16 MiB).
    public static let maxChunkLength = 16 << 20

    public static let defaultFixed = ChunkingStrategy.fixed(size: 1 << 20)

    /// Files at least this large are cut by content by default (an agent's `--cdc-above`): in
    /// transit and in the cold store alike, so that both cut a file into the same chunks and a
    /// file demoted shares its chunks with one placed cold as it arrived.
    public static let defaultContentDefinedAbove: UInt64 = 8 << 20

    /// How a whole file of `size` bytes is cut: `FastCDC.standard` from `contentDefinedAbove`
    /// up (never when it is nil), otherwise fixed chunks of `fixedSize`.
    public static func forFile(size: UInt64, contentDefinedAbove: UInt64?, fixedSize: Int = 1 << 20) -> ChunkingStrategy {
        if let above = contentDefinedAbove, size >= above { return .fastCDC(.standard) }
        return .fixed(size: fixedSize)
    }
}

public enum ChunkingError: Error, Equatable, Sendable, CustomStringConvertible {
    case invalidParameters(String)
    /// A system call failed; `errno` is its error number.
    case io(path: String, operation: String, errno: Int32)
    /// The file ended before the range asked for: `expected` is where the range ends, `actual` the
    /// file's size when the read found its end.
    case shortFile(path: String, expected: UInt64, actual: UInt64)

    public var description: String {
        switch self {
        case .invalidParameters(let why): "invalid chunking parameters: \(why)"
        case .io(let path, let op, let e): "\(op) \(path): \(String(cString: strerror(e)))"
        case .shortFile(let path, let expected, let actual): "\(path) ended at byte \(actual), expected \(expected)"
        }
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
