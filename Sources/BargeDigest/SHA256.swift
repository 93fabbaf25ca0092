import CBargeCrypto

/// SHA-256 through libcrypto's EVP interface, which picks SHA-NI or AVX2 code where the CPU has them.
public enum SHA256 {
    /// The algorithm, fetched once: an explicit fetch saves a lookup on every `EVP_DigestInit_ex`.
    nonisolated(unsafe) static let algorithm: OpaquePointer? = EVP_MD_fetch(nil, "SHA256", nil)

    public static func hash(_ bytes: UnsafeRawBufferPointer) -> SHA256Digest {
        let hasher = SHA256Hasher()
        hasher.update(bytes)
        return hasher.finalize()
    }

    public static func hash(_ bytes: [UInt8]) -> SHA256Digest {
        bytes.withUnsafeBytes { hash($0) }
    }
}

/// Streaming SHA-256. Owns its `EVP_MD_CTX`; `finalize()` resets it for the next message.
/// Not thread-safe.
public final class SHA256Hasher {
    private let ctx: OpaquePointer

    public init() {
        guard let algorithm = SHA256.algorithm, let c = EVP_MD_CTX_new() else {
            fatalError("libcrypto has no SHA-256: \(DigestError("EVP_MD_fetch"))")
        }
        ctx = c
        reset(algorithm)
    }

    deinit { EVP_MD_CTX_free(ctx) }

    private func reset(_ algorithm: OpaquePointer) {
        // Init only fails on allocation failure or a missing provider, checked above.
        guard EVP_DigestInit_ex(ctx, algorithm, nil) == 1 else {
            fatalError("\(DigestError("EVP_DigestInit_ex"))")
        }
    }

    public func update(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count > 0 else { return }
        guard EVP_DigestUpdate(ctx, bytes.baseAddress, bytes.count) == 1 else {
            fatalError("\(DigestError("EVP_DigestUpdate"))")
        }
    }

    public func update(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { update($0) }
    }

    /// The digest of everything since the last finalize; the hasher is then ready for a new message.
    public func finalize() -> SHA256Digest {
        var out = (UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        let digest = withUnsafeMutableBytes(of: &out) { raw -> SHA256Digest in
            var len: UInt32 = 0
            guard EVP_DigestFinal_ex(ctx, raw.baseAddress!.assumingMemoryBound(to: UInt8.self), &len) == 1,
                len == 32
            else { fatalError("\(DigestError("EVP_DigestFinal_ex"))") }
            return SHA256Digest(bytes: UnsafeRawBufferPointer(raw))
        }
        reset(SHA256.algorithm!)
        return digest
    }
}
