import CBargeZstd

/// zstd compression with one reusable `ZSTD_CCtx`, created once and freed in `deinit`.
/// Not thread-safe: give each worker its own.
public final class ZstdCompressor {
    private let cctx: OpaquePointer

    public init() {
        guard let c = ZSTD_createCCtx() else { fatalError("ZSTD_createCCtx: out of memory") }
        cctx = c
    }

    deinit { ZSTD_freeCCtx(cctx) }

    /// Compresses `src` into `dst` as one zstd frame. Returns the frame's length, or nil when it
    /// does not fit in `dst` (the caller then stores the chunk raw).
    public func compress(_ src: UnsafeRawBufferPointer, into dst: UnsafeMutableRawBufferPointer, level: Int) throws(CodecError) -> Int? {
        let r = ZSTD_compressCCtx(cctx, dst.baseAddress, dst.count, src.baseAddress, src.count, Int32(level))
        if ZSTD_isError(r) != 0 {
            if ZSTD_getErrorCode(r) == ZSTD_error_dstSize_tooSmall { return nil }
            throw .libraryFailure("zstd compress: \(String(cString: ZSTD_getErrorName(r)))")
        }
        return r
    }
}

/// zstd decompression with one reusable `ZSTD_DCtx`. Decodes straight into the caller's buffer,
/// so a frame can never write past it, whatever it claims.
public final class ZstdDecompressor {
    private let dctx: OpaquePointer

    public init() {
        guard let d = ZSTD_createDCtx() else { fatalError("ZSTD_createDCtx: out of memory") }
        dctx = d
    }

    deinit { ZSTD_freeDCtx(dctx) }

    /// Decodes `src` into `dst`; the frame must decode to exactly `dst.count` bytes.
    public func decompress(_ src: UnsafeRawBufferPointer, into dst: UnsafeMutableRawBufferPointer) throws(CodecError) {
        let r = ZSTD_decompressDCtx(dctx, dst.baseAddress, dst.count, src.baseAddress, src.count)
        if ZSTD_isError(r) != 0 {
            throw .corruptPayload(codec: "zstd", reason: String(cString: ZSTD_getErrorName(r)))
        }
        guard r == dst.count else {
            throw .corruptPayload(codec: "zstd", reason: "decoded \(r) bytes, expected \(dst.count)")
        }
    }
}
