import BargeDigest

/// Encodes raw chunks into the self-describing format of `ChunkHeader`. It owns one zstd context,
/// one LZ4 state and a scratch buffer, all reused across chunks: make one per worker thread.
///
/// A chunk that a codec would not shrink is stored raw (`none`), so an encoded chunk is never longer
/// than its raw bytes plus the header.
public final class ChunkEncoder {
    public let maxRawLength: Int
    private let zstd = ZstdCompressor()
    private let lz4 = LZ4Compressor()
    private let scratch = ScratchBuffer()
    private let deltaScratch = ScratchBuffer()

    public init(maxRawLength: Int = ChunkFormat.maxRawLength) {
        self.maxRawLength = maxRawLength
    }

    /// Encodes `raw` with `spec` into `out`, which must hold
    /// `ChunkFormat.maxEncodedLength(rawLength: raw.count)` bytes. Pass `digest` when the caller has
    /// already computed the XXH3-128 of `raw` (the send pipeline has); otherwise it is computed here.
    /// Returns the header written; its `spec` is `none` when the chunk was stored raw.
    public func encode(
        _ raw: UnsafeRawBufferPointer, as spec: CodecSpec, digest: XXH128Digest? = nil,
        into out: UnsafeMutableRawBufferPointer
    ) throws(CodecError) -> ChunkHeader {
        guard raw.count <= maxRawLength else { throw .inputTooLarge(raw.count, limit: maxRawLength) }
        let needed = ChunkFormat.maxEncodedLength(rawLength: raw.count)
        guard out.count >= needed else { throw .outputTooSmall(needed: needed, have: out.count) }
        let digest = digest ?? XXH3.hash128(raw)
        let payload = UnsafeMutableRawBufferPointer(rebasing: out[ChunkHeader.size..<needed])

        var used = spec
        var length = try compress(raw, spec, into: payload)
        if length == nil {
            used = .none
            if let base = raw.baseAddress { payload.baseAddress!.copyMemory(from: base, byteCount: raw.count) }
            length = raw.count
        }
        let header = ChunkHeader(spec: used, rawLength: raw.count, payloadLength: length!, digest: digest)
        header.write(to: out)
        return header
    }

    /// Convenience for tests and tools: encodes into a new array.
    /// Throws only `CodecError` (the standard library's closures erase the type).
    public func encode(_ raw: [UInt8], as spec: CodecSpec, digest: XXH128Digest? = nil) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: ChunkFormat.maxEncodedLength(rawLength: raw.count))
        let header = try raw.withUnsafeBytes { r in
            try out.withUnsafeMutableBytes { o in try encode(r, as: spec, digest: digest, into: o) }
        }
        out.removeLast(out.count - header.encodedLength)
        return out
    }

    /// The compressed payload's length, or nil when it would not be shorter than `raw`.
    private func compress(_ raw: UnsafeRawBufferPointer, _ spec: CodecSpec, into payload: UnsafeMutableRawBufferPointer) throws(CodecError) -> Int? {
        guard raw.count > 0 else { return nil }
        var input = raw
        if case .delta(let stride) = spec.filter {
            let delta = deltaScratch.take(raw.count)
            XORDelta.encode(raw, into: delta, stride: stride)
            input = UnsafeRawBufferPointer(delta)
        }
        if spec.filter != .none {
            let shuffled = scratch.take(raw.count)
            ByteShuffle.shuffle(input, into: shuffled, stride: spec.filter.stride)
            input = UnsafeRawBufferPointer(shuffled)
            switch spec.filter {
            case .bitshuffle(let stride):
                let bits = deltaScratch.take(raw.count)
                PlaneFilters.bitShuffle(input, into: bits, stride: stride)
                input = UnsafeRawBufferPointer(bits)
            case .bytedelta(let stride):
                PlaneFilters.byteDelta(shuffled, stride: stride)
            default: break
            }
        }
        // One byte less than raw: a result that is not strictly smaller is not worth decoding.
        let room = UnsafeMutableRawBufferPointer(rebasing: payload[0..<(raw.count - 1)])
        switch spec.compressor {
        case .none: return nil
        case .lz4: return try lz4.compress(input, into: room)
        case .zstd(let level): return try zstd.compress(input, into: room, level: level)
        }
    }
}
