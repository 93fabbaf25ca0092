import BargeDigest

/// Why a chunk could not be encoded or decoded. Every malformed, truncated or hostile input maps to
/// one of these; none of them crashes the process or allocates past the declared maximum.
public enum CodecError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Fewer bytes than the header or its declared payload needs.
    case truncated(needed: Int, have: Int)
    case badMagic
    case unsupportedVersion(UInt8)
    case unknownCodec(UInt8)
    case unknownFilter(UInt8)
    /// A header whose fields contradict each other (for example a filter with no compressor).
    case invalidHeader(String)
    /// The header claims more raw bytes than this decoder accepts; nothing was allocated.
    case rawLengthTooLarge(claimed: UInt64, limit: Int)
    /// Bytes after the declared payload.
    case trailingBytes(Int)
    /// The compressed payload does not decode to exactly the declared raw length.
    case corruptPayload(codec: String, reason: String)
    /// The decoded bytes do not hash to the XXH3-128 the header carries.
    case digestMismatch(expected: XXH128Digest, actual: XXH128Digest)
    /// The caller asked to encode more than the format's maximum chunk size.
    case inputTooLarge(Int, limit: Int)
    /// The output buffer the caller passed is smaller than the decoded chunk.
    case outputTooSmall(needed: Int, have: Int)
    /// A compression library failed on input it should accept (out of memory, say).
    case libraryFailure(String)

    public var description: String {
        switch self {
        case .truncated(let needed, let have): "encoded chunk truncated: needs \(needed) bytes, has \(have)"
        case .badMagic: "not a Barge chunk (bad magic)"
        case .unsupportedVersion(let v): "unsupported chunk format version \(v)"
        case .unknownCodec(let c): "unknown codec id \(c)"
        case .unknownFilter(let f): "unknown filter id \(f)"
        case .invalidHeader(let why): "invalid chunk header: \(why)"
        case .rawLengthTooLarge(let claimed, let limit): "chunk claims \(claimed) raw bytes, over the limit of \(limit)"
        case .trailingBytes(let n): "\(n) unexpected bytes after the chunk payload"
        case .corruptPayload(let codec, let reason): "corrupt \(codec) payload: \(reason)"
        case .digestMismatch(let expected, let actual): "chunk checksum mismatch: XXH3-128 \(actual), expected \(expected)"
        case .inputTooLarge(let n, let limit): "chunk of \(n) bytes is over the limit of \(limit)"
        case .outputTooSmall(let needed, let have): "output buffer of \(have) bytes is too small for \(needed)"
        case .libraryFailure(let what): "compression library failure: \(what)"
        }
    }
}
