/// HKDF-SHA256 (RFC 5869): extract with `salt`, then expand to `length` bytes with `info`.
public enum HKDF {
    public static func sha256(ikm: [UInt8], salt: [UInt8], info: [UInt8], length: Int) throws(DigestError) -> [UInt8] {
        precondition(length > 0 && length <= 255 * 32)
        let prk = try HMACSHA256.authenticate(ikm, key: salt).bytes
        var okm: [UInt8] = []
        var previous: [UInt8] = []
        var counter: UInt8 = 1
        while okm.count < length {
            previous = try HMACSHA256.authenticate(previous + info + [counter], key: prk).bytes
            okm += previous
            counter += 1
        }
        return Array(okm.prefix(length))
    }
}
