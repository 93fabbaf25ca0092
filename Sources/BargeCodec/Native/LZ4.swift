import CBargeLZ4

/// LZ4 block compression with a reusable state (`LZ4_compress_fast_extState`), allocated once and
/// freed in `deinit`. Not thread-safe: give each worker its own.
public final class LZ4Compressor {
    private let state: UnsafeMutableRawPointer

    public init() {
        state = UnsafeMutableRawPointer.allocate(byteCount: Int(LZ4_sizeofState()), alignment: 16)
    }

    deinit { state.deallocate() }

    /// Largest input one LZ4 block takes (`LZ4_MAX_INPUT_SIZE`, about 2 GB).
    public static let maxInput = 0x7E00_0000

    /// Compresses `src` into `dst` as one LZ4 block. Returns its length, or nil when it does not fit.
    public func compress(_ src: UnsafeRawBufferPointer, into dst: UnsafeMutableRawBufferPointer) throws(CodecError) -> Int? {
        guard src.count <= Self.maxInput else { throw .inputTooLarge(src.count, limit: Self.maxInput) }
        if src.isEmpty { return nil }
        let r = LZ4_compress_fast_extState(
            state, src.baseAddress!.assumingMemoryBound(to: CChar.self),
            dst.baseAddress?.assumingMemoryBound(to: CChar.self),
            Int32(src.count), Int32(clamping: dst.count), 1)
        return r > 0 ? Int(r) : nil
    }
}

public enum LZ4Decompressor {
    /// Decodes one LZ4 block from `src` into `dst`; it must decode to exactly `dst.count` bytes.
    /// `LZ4_decompress_safe` never reads or writes outside the two buffers, whatever `src` holds.
    public static func decompress(_ src: UnsafeRawBufferPointer, into dst: UnsafeMutableRawBufferPointer) throws(CodecError) {
        guard src.count <= Int(Int32.max), dst.count <= Int(Int32.max), let s = src.baseAddress, let d = dst.baseAddress else {
            throw .corruptPayload(codec: "lz4", reason: "empty or oversized block")
        }
        let r = LZ4_decompress_safe(
            s.assumingMemoryBound(to: CChar.self), d.assumingMemoryBound(to: CChar.self),
            Int32(src.count), Int32(dst.count))
        guard r >= 0 else { throw .corruptPayload(codec: "lz4", reason: "malformed block") }
        guard Int(r) == dst.count else {
            throw .corruptPayload(codec: "lz4", reason: "decoded \(r) bytes, expected \(dst.count)")
        }
    }
}
