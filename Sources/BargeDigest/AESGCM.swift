import CBargeCrypto

/// An AEAD with a 256-bit key, a 12-byte nonce and a 16-byte tag.
public enum AEADAlgorithm: Hashable, Sendable, CustomStringConvertible {
    case aes256GCM
    case chacha20Poly1305

    public var description: String {
        switch self {
        case .aes256GCM: "AES-256-GCM"
        case .chacha20Poly1305: "ChaCha20-Poly1305"
        }
    }
}

/// AES-256-GCM (by default) or ChaCha20-Poly1305, through libcrypto's EVP (AES-NI, or the vector
/// units, where the CPU has them): one key, one direction. Each call takes its own 12-byte nonce;
/// a nonce must never repeat under a key (the wire uses a frame counter). Owns its
/// `EVP_CIPHER_CTX`; not thread-safe.
public final class AESGCM {
    public static let keyLength = 32
    public static let nonceLength = 12
    public static let tagLength = 16

    private let ctx: OpaquePointer
    private let encrypting: Bool

    public init(key: [UInt8], encrypting: Bool, algorithm: AEADAlgorithm = .aes256GCM) throws(DigestError) {
        guard key.count == Self.keyLength else { throw DigestError("\(algorithm) needs a 32-byte key") }
        guard let c = EVP_CIPHER_CTX_new() else { throw DigestError("EVP_CIPHER_CTX_new") }
        ctx = c
        self.encrypting = encrypting
        let cipher = switch algorithm {
        case .aes256GCM: EVP_aes_256_gcm()
        case .chacha20Poly1305: EVP_chacha20_poly1305()
        }
        guard EVP_CipherInit_ex(ctx, cipher, nil, key, nil, encrypting ? 1 : 0) == 1 else {
            EVP_CIPHER_CTX_free(ctx)
            throw DigestError("EVP_CipherInit_ex(\(algorithm))")
        }
    }

    deinit { EVP_CIPHER_CTX_free(ctx) }

    /// Encrypts `input` into `output` (`input.count + 16` bytes: the ciphertext, then the tag),
    /// authenticating `aad` too.
    public func seal(_ input: UnsafeRawBufferPointer, aad: [UInt8], nonce: [UInt8], into output: UnsafeMutableRawBufferPointer) throws(DigestError) {
        precondition(encrypting && output.count == input.count + Self.tagLength && nonce.count == Self.nonceLength)
        let out = output.baseAddress!.assumingMemoryBound(to: UInt8.self)
        var n: Int32 = 0
        guard EVP_CipherInit_ex(ctx, nil, nil, nil, nonce, -1) == 1,
              aad.isEmpty || EVP_CipherUpdate(ctx, nil, &n, aad, Int32(aad.count)) == 1 else { throw DigestError("AEAD nonce or AAD") }
        var written = 0
        if input.count > 0 {
            guard EVP_CipherUpdate(ctx, out, &n, input.baseAddress!.assumingMemoryBound(to: UInt8.self), Int32(input.count)) == 1 else {
                throw DigestError("EVP_CipherUpdate")
            }
            written = Int(n)
        }
        guard EVP_CipherFinal_ex(ctx, out + written, &n) == 1,
              EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, Int32(Self.tagLength), out + input.count) == 1 else {
            throw DigestError("AEAD final")
        }
    }

    /// Decrypts `input` (ciphertext, then the 16-byte tag) into `output` (`input.count - 16`
    /// bytes); false if the tag does not match (the bytes, the AAD or the nonce differ), in
    /// which case `output` must not be used.
    public func open(_ input: UnsafeRawBufferPointer, aad: [UInt8], nonce: [UInt8], into output: UnsafeMutableRawBufferPointer) -> Bool {
        precondition(!encrypting && input.count >= Self.tagLength && output.count == input.count - Self.tagLength && nonce.count == Self.nonceLength)
        let length = input.count - Self.tagLength
        let bytes = input.baseAddress!.assumingMemoryBound(to: UInt8.self)
        var n: Int32 = 0
        guard EVP_CipherInit_ex(ctx, nil, nil, nil, nonce, -1) == 1,
              aad.isEmpty || EVP_CipherUpdate(ctx, nil, &n, aad, Int32(aad.count)) == 1 else { return false }
        if length > 0 {
            guard EVP_CipherUpdate(ctx, output.baseAddress!.assumingMemoryBound(to: UInt8.self), &n, bytes, Int32(length)) == 1 else { return false }
        }
        return checkTag(bytes + length)
    }

    /// As `open`, in one pass, with the output placed by what it says: the first `head` bytes
    /// (or all, when fewer) are decrypted into scratch and shown to `place`, which returns where
    /// all `input.count - 16` decrypted bytes go; the head is copied there and the rest decrypted
    /// into it. What `place` sees is not yet authenticated: it may only choose where the bytes
    /// go. False if the tag does not match, as for `open`.
    public func open(_ input: UnsafeRawBufferPointer, aad: [UInt8], nonce: [UInt8], head: Int,
                     place: (UnsafeRawBufferPointer) -> UnsafeMutableRawBufferPointer) -> Bool {
        precondition(!encrypting && input.count >= Self.tagLength && nonce.count == Self.nonceLength)
        let length = input.count - Self.tagLength
        let bytes = input.baseAddress!.assumingMemoryBound(to: UInt8.self)
        var n: Int32 = 0
        guard EVP_CipherInit_ex(ctx, nil, nil, nil, nonce, -1) == 1,
              aad.isEmpty || EVP_CipherUpdate(ctx, nil, &n, aad, Int32(aad.count)) == 1 else { return false }
        let h = max(0, min(head, length))
        var first = [UInt8](repeating: 0, count: h)
        if h > 0 {
            guard EVP_CipherUpdate(ctx, &first, &n, bytes, Int32(h)) == 1 else { return false }
        }
        let output = first.withUnsafeBytes { place($0) }
        precondition(output.count == length)
        if h > 0 { output.baseAddress!.copyMemory(from: first, byteCount: h) }
        if length > h {
            guard EVP_CipherUpdate(ctx, output.baseAddress!.assumingMemoryBound(to: UInt8.self) + h, &n, bytes + h, Int32(length - h)) == 1 else { return false }
        }
        return checkTag(bytes + length)
    }

    /// Sets the expected tag (the 16 bytes at `tag`) and finishes the decryption: true if it matches.
    private func checkTag(_ tag: UnsafePointer<UInt8>) -> Bool {
        var expected = [UInt8](UnsafeBufferPointer(start: tag, count: Self.tagLength))
        var n: Int32 = 0
        guard EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, Int32(Self.tagLength), &expected) == 1 else { return false }
        var scratch = [UInt8](repeating: 0, count: 16)
        return EVP_CipherFinal_ex(ctx, &scratch, &n) == 1
    }
}
