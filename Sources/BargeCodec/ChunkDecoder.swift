import BargeDigest

/// Decodes chunks written by `ChunkEncoder`, checking the XXH3-128 of the result. It accepts no
/// chunk whose header claims more than `maxRawLength` raw bytes, and never writes outside the
/// caller's buffer. Owns a zstd context and a scratch buffer: make one per worker thread.
public final class ChunkDecoder {
    public let maxRawLength: Int
    private let zstd = ZstdDecompressor()
    private let scratch = ScratchBuffer()
    private let bitScratch = ScratchBuffer()

    public init(maxRawLength: Int = ChunkFormat.maxRawLength) {
        self.maxRawLength = maxRawLength
    }

    /// Reads and validates the header only: how many bytes `decode` will need.
    public func header(of encoded: UnsafeRawBufferPointer) throws(CodecError) -> ChunkHeader {
        try ChunkHeader.parse(encoded, maxRawLength: maxRawLength)
    }

    /// For a chunk stored raw (no codec, no filter): checks its XXH3-128 and returns its bytes in
    /// place, so the caller needs no copy. Nil for any other chunk: decode it.
    public func storedBytes(of encoded: UnsafeRawBufferPointer) throws(CodecError) -> UnsafeRawBufferPointer? {
        let header = try header(of: encoded)
        guard header.spec == .none else { return nil }
        let payload = UnsafeRawBufferPointer(rebasing: encoded[ChunkHeader.size..<(ChunkHeader.size + header.rawLength)])
        let actual = XXH3.hash128(payload)
        guard actual == header.digest else { throw .digestMismatch(expected: header.digest, actual: actual) }
        return payload
    }

    /// Decodes the whole chunk `encoded` into the start of `out`, which must hold at least the
    /// header's `rawLength`. With `verify` (the default) the XXH3-128 of the result must match.
    @discardableResult
    public func decode(_ encoded: UnsafeRawBufferPointer, into out: UnsafeMutableRawBufferPointer, verify: Bool = true) throws(CodecError) -> ChunkHeader {
        let header = try header(of: encoded)
        guard out.count >= header.rawLength else { throw .outputTooSmall(needed: header.rawLength, have: out.count) }
        let payload = UnsafeRawBufferPointer(rebasing: encoded[ChunkHeader.size...])
        let dst = UnsafeMutableRawBufferPointer(rebasing: out[0..<header.rawLength])

        let stride = header.spec.filter.stride
        let target = stride > 1 ? scratch.take(header.rawLength) : dst
        switch header.spec.compressor {
        case .none:
            if let base = payload.baseAddress, !payload.isEmpty { target.baseAddress!.copyMemory(from: base, byteCount: payload.count) }
        case .lz4:
            try LZ4Decompressor.decompress(payload, into: target)
        case .zstd:
            try zstd.decompress(payload, into: target)
        }
        if stride > 1 {
            switch header.spec.filter {
            case .bitshuffle:
                // Bit planes back to byte planes (into dst), then byte planes back to elements.
                let planes = bitScratch.take(header.rawLength)
                PlaneFilters.bitUnshuffle(UnsafeRawBufferPointer(target), into: planes, stride: stride)
                ByteShuffle.unshuffle(UnsafeRawBufferPointer(planes), into: dst, stride: stride)
            case .bytedelta:
                PlaneFilters.byteUndelta(target, stride: stride)
                ByteShuffle.unshuffle(UnsafeRawBufferPointer(target), into: dst, stride: stride)
            default:
                ByteShuffle.unshuffle(UnsafeRawBufferPointer(target), into: dst, stride: stride)
            }
        }
        if case .delta = header.spec.filter {
            XORDelta.decode(dst, stride: stride)
        }
        if verify {
            let actual = XXH3.hash128(UnsafeRawBufferPointer(dst))
            guard actual == header.digest else { throw .digestMismatch(expected: header.digest, actual: actual) }
        }
        return header
    }

    /// Convenience for tests and tools: decodes into a new array.
    /// Throws only `CodecError` (the standard library's closures erase the type).
    public func decode(_ encoded: [UInt8], verify: Bool = true) throws -> [UInt8] {
        try encoded.withUnsafeBytes { e -> [UInt8] in
            let h = try header(of: e)
            var out = [UInt8](repeating: 0, count: h.rawLength)
            try out.withUnsafeMutableBytes { o in _ = try decode(e, into: o, verify: verify) }
            return out
        }
    }
}
