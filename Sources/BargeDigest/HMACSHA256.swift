import CBargeCrypto

/// HMAC-SHA256 through libcrypto's EVP_MAC. The handshake uses it for challenge and response over
/// the cluster token. Owns its `EVP_MAC_CTX`; not thread-safe.
public final class HMACSHA256 {
    private let ctx: OpaquePointer

    public init(key: [UInt8]) throws(DigestError) {
        guard let c = key.withUnsafeBufferPointer({ barge_hmac_sha256_new($0.baseAddress, $0.count) }) else {
            throw DigestError("EVP_MAC_init(HMAC-SHA256)")
        }
        ctx = c
    }

    deinit { barge_hmac_free(ctx) }

    public func update(_ bytes: UnsafeRawBufferPointer) throws(DigestError) {
        guard bytes.count > 0 else { return }
        guard EVP_MAC_update(ctx, bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), bytes.count) == 1 else {
            throw DigestError("EVP_MAC_update")
        }
    }

    public func update(_ bytes: [UInt8]) throws(DigestError) {
        guard !bytes.isEmpty else { return }
        guard EVP_MAC_update(ctx, bytes, bytes.count) == 1 else { throw DigestError("EVP_MAC_update") }
    }

    /// The MAC of everything passed to `update`. A context is finalized once.
    public func finalize() throws(DigestError) -> SHA256Digest {
        var out = [UInt8](repeating: 0, count: SHA256Digest.byteCount)
        var len = 0
        guard EVP_MAC_final(ctx, &out, &len, out.count) == 1, len == SHA256Digest.byteCount else {
            throw DigestError("EVP_MAC_final")
        }
        return SHA256Digest(bytes: out)!
    }

    public static func authenticate(_ message: [UInt8], key: [UInt8]) throws(DigestError) -> SHA256Digest {
        let mac = try HMACSHA256(key: key)
        try mac.update(message)
        return try mac.finalize()
    }
}
