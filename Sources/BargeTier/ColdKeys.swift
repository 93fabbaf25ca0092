import BargeDigest

/// The keys of an encrypted cold store, derived from the key file (`--cold-key-file`) and the
/// store's random id by HKDF-SHA256:
/// - the blob key, for AES-256-GCM over every blob and every pack index (random 96-bit nonces:
///   at 2³⁰ chunks, a petabyte of 1 MiB chunks, a repeat has odds below 2⁻³⁶);
/// - the id key, for HMAC-SHA256 over each chunk's SHA-256, so that the ids a pack index and the
///   catalog hold do not reveal which known content the store holds;
/// - a check value kept in `config.json`, so a wrong key file is refused by name rather than
///   discovered as damage.
public struct ColdKeys: Sendable {
    public let blobKey: [UInt8]
    public let idKey: [UInt8]
    public let check: String

    public init(keyMaterial: [UInt8], storeID: [UInt8]) throws {
        guard keyMaterial.count >= 16 else { throw ColdStoreError("the cold-store key file holds \(keyMaterial.count) bytes; use at least 16 (head -c 32 /dev/urandom > cold.key)") }
        do {
            blobKey = try HKDF.sha256(ikm: keyMaterial, salt: storeID, info: Array("barge cold store 1 blob key".utf8), length: 32)
            idKey = try HKDF.sha256(ikm: keyMaterial, salt: storeID, info: Array("barge cold store 1 id key".utf8), length: 32)
            let checkKey = try HKDF.sha256(ikm: keyMaterial, salt: storeID, info: Array("barge cold store 1 key check".utf8), length: 32)
            check = Hex.encode(checkKey)
        } catch {
            throw ColdStoreError("cannot derive the cold-store keys: \(error)")
        }
    }

    /// The id a chunk is stored under: HMAC-SHA256(id key, SHA-256 of the raw chunk).
    public func storedID(_ sha256: SHA256Digest) -> [UInt8] {
        (try? HMACSHA256.authenticate(sha256.bytes, key: idKey).bytes) ?? sha256.bytes
    }
}
