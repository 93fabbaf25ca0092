import BargeDigest
import Testing

/// AES-256-GCM and HKDF-SHA256 against published vectors (and Python's `cryptography`).
struct CipherVectorTests {
    func hex(_ s: String) -> [UInt8] {
        var out: [UInt8] = []
        var i = s.startIndex
        while i < s.endIndex {
            let j = s.index(i, offsetBy: 2)
            out.append(UInt8(s[i..<j], radix: 16)!)
            i = j
        }
        return out
    }

    func seal(_ key: [UInt8], _ nonce: [UInt8], _ plain: [UInt8], aad: [UInt8], _ algorithm: AEADAlgorithm = .aes256GCM) throws -> [UInt8] {
        let gcm = try AESGCM(key: key, encrypting: true, algorithm: algorithm)
        var out = [UInt8](repeating: 0, count: plain.count + 16)
        try plain.withUnsafeBytes { p in try out.withUnsafeMutableBytes { try gcm.seal(p, aad: aad, nonce: nonce, into: $0) } }
        return out
    }

    func open(_ key: [UInt8], _ nonce: [UInt8], _ sealed: [UInt8], aad: [UInt8], _ algorithm: AEADAlgorithm = .aes256GCM) throws -> [UInt8]? {
        let gcm = try AESGCM(key: key, encrypting: false, algorithm: algorithm)
        var out = [UInt8](repeating: 0, count: sealed.count - 16)
        let ok = sealed.withUnsafeBytes { s in out.withUnsafeMutableBytes { gcm.open(s, aad: aad, nonce: nonce, into: $0) } }
        return ok ? out : nil
    }

    /// The GCM specification's test cases 13 and 14 (256-bit key of zeros, nonce of zeros).
    @Test func gcmSpecificationVectors() throws {
        let zero = [UInt8](repeating: 0, count: 32), iv = [UInt8](repeating: 0, count: 12)
        #expect(try seal(zero, iv, [], aad: []) == hex("530f8afbc74536b9a963b4f1c4cb738b"))
        #expect(try seal(zero, iv, [UInt8](repeating: 0, count: 16), aad: []) == hex("cea7403d4d606b6e074ec5d3baf39d18d0d1c8a799996bf0265b98b5d48ab919"))
    }

    /// RFC 8439 section 2.8.2's AEAD example (Python's `cryptography` gives the same bytes), and
    /// the same damage refused as under AES-256-GCM.
    @Test func chachaPolyRFC8439Vector() throws {
        let key = Array(0x80...0x9F).map(UInt8.init), nonce = hex("070000004041424344454647"), aad = hex("50515253c0c1c2c3c4c5c6c7")
        let plain = Array("Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.".utf8)
        let sealed = try seal(key, nonce, plain, aad: aad, .chacha20Poly1305)
        #expect(sealed == hex("d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d63dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b3692ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc3ff4def08e4b7a9de576d26586cec64b6116"
                                  + "1ae10b594f09e26a7e902ecbd0600691"))
        #expect(try open(key, nonce, sealed, aad: aad, .chacha20Poly1305) == plain)
        var flipped = sealed
        flipped[3] ^= 1
        #expect(try open(key, nonce, flipped, aad: aad, .chacha20Poly1305) == nil)
        #expect(try open(key, nonce, sealed, aad: aad + [0], .chacha20Poly1305) == nil)
        // The other AEAD under the same key does not open it.
        #expect(try open(key, nonce, sealed, aad: aad, .aes256GCM) == nil)
    }

    /// A frame's shape: AAD of type and flags, nonce of a counter; and every kind of damage fails.
    @Test func aSealedFrameOpensOnlyUnchanged() throws {
        let key = Array(0..<32).map(UInt8.init), nonce = [0, 0, 0, 0] + [UInt8](repeating: 0, count: 7) + [5]
        let plain = Array("barge chunk".utf8), aad: [UInt8] = [0x42, 0, 1]
        let sealed = try seal(key, nonce, plain, aad: aad)
        #expect(sealed == hex("fac0b005a69ef6251d3c2299575e90b9cb565f567a26889df915c7"))
        #expect(try open(key, nonce, sealed, aad: aad) == plain)
        for i in [0, 5, sealed.count - 1] {
            var flipped = sealed
            flipped[i] ^= 0x01
            #expect(try open(key, nonce, flipped, aad: aad) == nil, "byte \(i)")
        }
        #expect(try open(key, [0, 0, 0, 0] + [UInt8](repeating: 0, count: 7) + [6], sealed, aad: aad) == nil)
        #expect(try open(key, nonce, sealed, aad: [0x43, 0, 1]) == nil)
    }

    /// RFC 5869, test case 1.
    @Test func hkdfRFC5869() throws {
        let okm = try HKDF.sha256(ikm: [UInt8](repeating: 0x0b, count: 22), salt: hex("000102030405060708090a0b0c"),
                                  info: hex("f0f1f2f3f4f5f6f7f8f9"), length: 42)
        #expect(okm == hex("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"))
    }
}
