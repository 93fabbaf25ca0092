import BargeDigest

/// The self-describing header in front of every encoded chunk: with it a receiver decodes a chunk
/// with no other information, and checks the result. 40 bytes, big-endian:
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 4 | magic `BGCK` (0x42 0x47 0x43 0x4B) |
/// | 4 | 1 | format version, 1 |
/// | 5 | 1 | compressor: 0 none, 1 lz4, 2 zstd |
/// | 6 | 1 | zstd level (informational; 0 for other compressors) |
/// | 7 | 1 | filter: 0 none; 2, 4, 8 byte shuffle with that stride; 0x12, 0x14, 0x18 XOR delta then shuffle; 0x22, 0x24, 0x28 shuffle then bit shuffle; 0x32, 0x34, 0x38 shuffle then byte delta |
/// | 8 | 8 | raw length, bytes before encoding |
/// | 16 | 8 | payload length, bytes after this header |
/// | 24 | 16 | XXH3-128 of the raw bytes, canonical (high 64 bits first) |
public struct ChunkHeader: Hashable, Sendable {
    public static let size = 40
    public static let magic: UInt32 = 0x4247_434B  // "BGCK"
    public static let version: UInt8 = 1

    public var spec: CodecSpec
    public var rawLength: Int
    public var payloadLength: Int
    public var digest: XXH128Digest

    public init(spec: CodecSpec, rawLength: Int, payloadLength: Int, digest: XXH128Digest) {
        self.spec = spec
        self.rawLength = rawLength
        self.payloadLength = payloadLength
        self.digest = digest
    }

    public var encodedLength: Int { Self.size + payloadLength }

    public func write(to out: UnsafeMutableRawBufferPointer) {
        precondition(out.count >= Self.size)
        out.storeBytes(of: Self.magic.bigEndian, toByteOffset: 0, as: UInt32.self)
        out[4] = Self.version
        switch spec.compressor {
        case .none: out[5] = 0; out[6] = 0
        case .lz4: out[5] = 1; out[6] = 0
        case .zstd(let level): out[5] = 2; out[6] = UInt8(truncatingIfNeeded: Int8(clamping: level))
        }
        switch spec.filter {
        case .none: out[7] = 0
        case .shuffle(let s): out[7] = UInt8(s)
        case .delta(let s): out[7] = 0x10 | UInt8(s)
        case .bitshuffle(let s): out[7] = 0x20 | UInt8(s)
        case .bytedelta(let s): out[7] = 0x30 | UInt8(s)
        }
        out.storeBytes(of: UInt64(rawLength).bigEndian, toByteOffset: 8, as: UInt64.self)
        out.storeBytes(of: UInt64(payloadLength).bigEndian, toByteOffset: 16, as: UInt64.self)
        digest.writeCanonical(to: UnsafeMutableRawBufferPointer(rebasing: out[24..<40]))
    }

    /// Parses and validates the header at the start of `encoded`, which must be the whole encoded
    /// chunk: header plus exactly `payloadLength` bytes. Rejects a raw length over `maxRawLength`
    /// before anyone allocates for it.
    public static func parse(_ encoded: UnsafeRawBufferPointer, maxRawLength: Int) throws(CodecError) -> ChunkHeader {
        guard encoded.count >= size else { throw .truncated(needed: size, have: encoded.count) }
        guard UInt32(bigEndian: encoded.loadUnaligned(fromByteOffset: 0, as: UInt32.self)) == magic else {
            throw .badMagic
        }
        guard encoded[4] == version else { throw .unsupportedVersion(encoded[4]) }
        let compressor: Compressor
        switch encoded[5] {
        case 0: compressor = .none
        case 1: compressor = .lz4
        case 2: compressor = .zstd(level: Int(Int8(bitPattern: encoded[6])))
        default: throw .unknownCodec(encoded[5])
        }
        let filter: ByteFilter
        switch encoded[7] {
        case 0: filter = .none
        case 2, 4, 8: filter = .shuffle(stride: Int(encoded[7]))
        case 0x12, 0x14, 0x18: filter = .delta(stride: Int(encoded[7] & 0x0F))
        case 0x22, 0x24, 0x28: filter = .bitshuffle(stride: Int(encoded[7] & 0x0F))
        case 0x32, 0x34, 0x38: filter = .bytedelta(stride: Int(encoded[7] & 0x0F))
        default: throw .unknownFilter(encoded[7])
        }
        if filter != .none, compressor == .none {
            throw .invalidHeader("filter on an uncompressed chunk")
        }
        let raw = UInt64(bigEndian: encoded.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        guard raw <= UInt64(maxRawLength) else { throw .rawLengthTooLarge(claimed: raw, limit: maxRawLength) }
        let payload = UInt64(bigEndian: encoded.loadUnaligned(fromByteOffset: 16, as: UInt64.self))
        let have = encoded.count - size
        guard payload <= UInt64(have) else {
            // Saturate: a hostile length must not overflow the arithmetic that reports it.
            throw .truncated(needed: payload > UInt64(Int.max - size) ? Int.max : size + Int(payload), have: encoded.count)
        }
        guard payload == UInt64(have) else { throw .trailingBytes(have - Int(payload)) }
        if compressor == .none, payload != raw {
            throw .invalidHeader("uncompressed chunk with payload \(payload) bytes but raw length \(raw)")
        }
        // The levels a header can carry are informational, but a zstd level must still be a real one.
        let spec: CodecSpec
        do {
            spec = try CodecSpec(filter: filter, compressor: compressor)
        } catch {
            throw .invalidHeader(error.description)
        }
        return ChunkHeader(
            spec: spec, rawLength: Int(raw), payloadLength: Int(payload),
            digest: XXH128Digest(canonical: UnsafeRawBufferPointer(rebasing: encoded[24..<40])))
    }
}

/// Limits of the chunk format.
public enum ChunkFormat {
    /// The largest chunk an encoder produces and a decoder accepts by default: 16 MiB.
    /// Chunkers cut well below it (FastCDC's default maximum is 4 MiB).
    public static let maxRawLength = 16 << 20

    /// The most bytes an encoded chunk of `rawLength` bytes can take: the encoder never expands
    /// data past its header, because it stores a chunk raw when compression would not shrink it.
    public static func maxEncodedLength(rawLength: Int) -> Int { ChunkHeader.size + rawLength }
}
