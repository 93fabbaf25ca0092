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

    func seal(_ key: [UInt8], _ nonce: [UInt8], _ plain: [UInt8], aad: [UInt8]) throws -> [UInt8] {
        let gcm = try AESGCM(key: key, encrypting: true)
        var out = [UInt8](repeating: 0, count: plain.count + 16)
        try plain.withUnsafeBytes { p in try out.withUnsafeMutableBytes { try gcm.seal(p, aad: aad, nonce: nonce, into: $0) } }
        return out
    }

    func open(_ key: [UInt8], _ nonce: [UInt8], _ sealed: [UInt8], aad: [UInt8]) throws -> [UInt8]? {
        let gcm = try AESGCM(key: key, encrypting: false)
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
