import CBargeXXHash

#if arch(x86_64) || arch(i386)
// On x86, libxxhash's dispatching entry points use AVX2 or AVX-512 where the CPU has them.
@inline(__always) private func xxh3_64(_ p: UnsafeRawPointer?, _ n: Int) -> UInt64 {
    defer { barge_vzeroupper() }
    return XXH3_64bits_dispatch(p, n)
}
@inline(__always) private func xxh3_128(_ p: UnsafeRawPointer?, _ n: Int) -> XXH128_hash_t {
    defer { barge_vzeroupper() }
    return XXH3_128bits_dispatch(p, n)
}
@inline(__always) private func xxh3_128_update(_ s: OpaquePointer, _ p: UnsafeRawPointer?, _ n: Int) -> XXH_errorcode {
    defer { barge_vzeroupper() }
    return XXH3_128bits_update_dispatch(s, p, n)
}
#else
private let xxh3_64 = XXH3_64bits
private let xxh3_128 = XXH3_128bits
private let xxh3_128_update = XXH3_128bits_update
#endif

/// One-shot XXH3 hashes (xxHash 0.8, seed 0). XXH3-64 checksums frames; XXH3-128 checks chunks.
public enum XXH3 {
    public static func hash64(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        xxh3_64(bytes.baseAddress, bytes.count)
    }

    public static func hash128(_ bytes: UnsafeRawBufferPointer) -> XXH128Digest {
        let h = xxh3_128(bytes.baseAddress, bytes.count)
        return XXH128Digest(high: h.high64, low: h.low64)
    }

    public static func hash64(_ bytes: [UInt8]) -> UInt64 {
        bytes.withUnsafeBytes { hash64($0) }
    }

    public static func hash128(_ bytes: [UInt8]) -> XXH128Digest {
        bytes.withUnsafeBytes { hash128($0) }
    }
}

/// Streaming XXH3 over data that arrives in pieces. One state serves both widths: the digests
/// equal the one-shot `XXH3.hash64` and `XXH3.hash128` of everything passed to `update`.
/// Owns its `XXH3_state_t`; not thread-safe, reuse it with `reset()`.
public final class XXH3Hasher {
    private let state: OpaquePointer

    public init() {
        // XXH3_state_t is opaque to Swift and wants 64-byte alignment, which XXH3_createState provides.
        guard let s = XXH3_createState() else { fatalError("XXH3_createState: out of memory") }
        state = s
        reset()
    }

    deinit { XXH3_freeState(state) }

    public func reset() {
        _ = XXH3_128bits_reset(state)
    }

    public func update(_ bytes: UnsafeRawBufferPointer) {
        // Only a NULL pointer with a non-zero length can fail, which a buffer pointer never is.
        _ = xxh3_128_update(state, bytes.baseAddress, bytes.count)
    }

    public func update(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { update($0) }
    }

    public func digest64() -> UInt64 { XXH3_64bits_digest(state) }

    public func digest128() -> XXH128Digest {
        let h = XXH3_128bits_digest(state)
        return XXH128Digest(high: h.high64, low: h.low64)
    }
}
