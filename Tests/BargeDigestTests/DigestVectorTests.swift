import BargeDigest
import Testing

/// Expected values come from independent tools: `xxhsum -H3` / `-H2` (xxHash 0.8.1), `sha256sum`
/// and `openssl dgst -sha256 -mac HMAC`.
struct DigestVectorTests {
    struct Vector: Sendable, CustomTestStringConvertible {
        let input: String
        let xxh64: UInt64
        let xxh128: String
        let sha256: String
        var testDescription: String { "\"\(input.prefix(12))\"" }
    }

    static let vectors = [
        Vector(input: "", xxh64: 0x2d06_8005_38d3_94c2, xxh128: "99aa06d3014798d86001c324468d497f",
               sha256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
        Vector(input: "a", xxh64: 0xe6c6_32b6_1e96_4e1f, xxh128: "a96faf705af16834e6c632b61e964e1f",
               sha256: "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb"),
        Vector(input: "abc", xxh64: 0x78af_5f94_892f_3950, xxh128: "06b05ab6733a618578af5f94892f3950",
               sha256: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
        Vector(input: "The quick brown fox jumps over the lazy dog", xxh64: 0xce7d_19a5_418f_b365,
               xxh128: "ddd650205ca3e7fa24a1cc2e3a8a7651",
               sha256: "d7a8fbb307d7809469ca9abcb0082e4f8d5651e46d3cdb762d02d0bf37c9e592"),
    ]

    @Test(arguments: vectors)
    func oneShot(_ v: Vector) {
        let bytes = Array(v.input.utf8)
        #expect(XXH3.hash64(bytes) == v.xxh64)
        #expect(XXH3.hash128(bytes).description == v.xxh128)
        #expect(SHA256.hash(bytes).description == v.sha256)
    }

    /// 300,000 bytes of (i*31+7) mod 256: long enough to cross XXH3's stripes and blocks and
    /// SHA-256's blocks many times.
    static let long = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }

    @Test func longInputOneShot() {
        #expect(XXH3.hash64(Self.long) == 0xe60b_7efa_e23d_661d)
        #expect(XXH3.hash128(Self.long).description == "c740d6a845310125e60b7efae23d661d")
        #expect(SHA256.hash(Self.long).description == "1bb182f649a789fda17412a4839e9d5dd50b4068089bc334655f78e6db797370")
    }

    @Test(arguments: [1, 7, 64, 1000, 65_537])
    func streamingMatchesOneShot(pieceSize: Int) {
        let xxh = XXH3Hasher()
        let sha = SHA256Hasher()
        var i = 0
        while i < Self.long.count {
            let piece = Array(Self.long[i..<min(i + pieceSize, Self.long.count)])
            xxh.update(piece)
            sha.update(piece)
            i += pieceSize
        }
        #expect(xxh.digest64() == 0xe60b_7efa_e23d_661d)
        #expect(xxh.digest128().description == "c740d6a845310125e60b7efae23d661d")
        #expect(sha.finalize().description == "1bb182f649a789fda17412a4839e9d5dd50b4068089bc334655f78e6db797370")
    }

    @Test func hashersResetForTheNextMessage() {
        let xxh = XXH3Hasher()
        xxh.update(Array("junk".utf8))
        xxh.reset()
        xxh.update(Array("abc".utf8))
        #expect(xxh.digest128().description == "06b05ab6733a618578af5f94892f3950")

        let sha = SHA256Hasher()
        sha.update(Array("junk".utf8))
        _ = sha.finalize()
        sha.update(Array("abc".utf8))
        #expect(sha.finalize().description == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }

    /// RFC 4231 test case 2, cross-checked with `openssl dgst -sha256 -mac HMAC -macopt key:Jefe`.
    @Test func hmacRFC4231Case2() throws {
        let mac = try HMACSHA256.authenticate(Array("what do ya want for nothing?".utf8), key: Array("Jefe".utf8))
        #expect(mac.description == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    }

    /// RFC 4231 test case 6: a key longer than the block size is hashed first.
    @Test func hmacLongKey() throws {
        let key = [UInt8](repeating: 0xaa, count: 131)
        let mac = try HMACSHA256.authenticate(
            Array("Test Using Larger Than Block-Size Key - Hash Key First".utf8), key: key)
        #expect(mac.description == "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54")
    }

    @Test func hmacEmptyKeyAndStreaming() throws {
        let whole = try HMACSHA256.authenticate(Array("hello world".utf8), key: [])
        let streaming = try HMACSHA256(key: [])
        try streaming.update(Array("hello ".utf8))
        try streaming.update(Array("world".utf8))
        #expect(try streaming.finalize() == whole)
        #expect(whole != (try HMACSHA256.authenticate(Array("hello world".utf8), key: [1])))
    }

    @Test func digestsCompareAndRoundTrip() throws {
        let a = SHA256.hash(Array("a".utf8))
        let b = SHA256.hash(Array("b".utf8))
        #expect(a.constantTimeEquals(a))
        #expect(!a.constantTimeEquals(b))
        #expect(SHA256Digest(hex: a.description) == a)
        #expect(SHA256Digest(hex: "zz") == nil)
        #expect(SHA256Digest(bytes: [1, 2, 3]) == nil)
        #expect((a < b) == (a.description < b.description))
        let x = XXH3.hash128(Array("abc".utf8))
        let back = x.canonicalBytes.withUnsafeBytes { XXH128Digest(canonical: $0) }
        #expect(back == x)
    }
}
