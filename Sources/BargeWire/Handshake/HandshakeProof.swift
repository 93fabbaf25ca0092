import BargeDigest

/// The HMAC-SHA256 proofs of the handshake, keyed with the cluster token. Each side signs a
/// transcript that starts with its own label, so a proof cannot be reflected back:
///
/// - server proof = HMAC(token, "barge/1 server" ‖ client nonce ‖ server nonce ‖ version ‖ name)
/// - client proof = HMAC(token, "barge/1 client" ‖ server nonce ‖ client nonce ‖ version ‖ name)
///
/// where name is the client's name as on the wire (u16 length, UTF-8).
public enum HandshakeProof {
    public static func server(token: [UInt8], clientNonce: [UInt8], serverNonce: [UInt8], version: UInt8, clientName: String) throws(DigestError) -> [UInt8] {
        try mac(token, "barge/1 server", clientNonce, serverNonce, version, clientName)
    }

    public static func client(token: [UInt8], clientNonce: [UInt8], serverNonce: [UInt8], version: UInt8, clientName: String) throws(DigestError) -> [UInt8] {
        try mac(token, "barge/1 client", serverNonce, clientNonce, version, clientName)
    }

    /// Compares a received proof with the expected one in constant time.
    static func matches(_ received: [UInt8], _ expected: [UInt8]) -> Bool {
        guard let a = SHA256Digest(bytes: received), let b = SHA256Digest(bytes: expected) else { return false }
        return a.constantTimeEquals(b)
    }

    private static func mac(_ token: [UInt8], _ label: String, _ first: [UInt8], _ second: [UInt8], _ version: UInt8, _ name: String) throws(DigestError) -> [UInt8] {
        let h = try HMACSHA256(key: token)
        let nameBytes = Array(name.utf8)
        try h.update(Array(label.utf8))
        try h.update(first)
        try h.update(second)
        try h.update([version, UInt8(truncatingIfNeeded: nameBytes.count >> 8), UInt8(truncatingIfNeeded: nameBytes.count)])
        try h.update(nameBytes)
        return try h.finalize().bytes
    }
}

/// The keys that seal every frame after the handshake (version 8 and up), one per direction,
/// derived by both sides from what the handshake proved they share:
///
///     okm = HKDF-SHA256(ikm: token, salt: client nonce ‖ server nonce,
///                       info: "barge/8 frame keys" ‖ version ‖ client name, 64 bytes)
///     client → server key = okm[0..<32], server → client key = okm[32..<64]
///
/// The nonces are fresh per connection, so every connection has keys of its own.
public struct SessionKeys: Hashable, Sendable {
    public let clientToServer: [UInt8]
    public let serverToClient: [UInt8]

    public static func derive(token: [UInt8], clientNonce: [UInt8], serverNonce: [UInt8], version: UInt8, clientName: String) throws(DigestError) -> SessionKeys {
        let name = Array(clientName.utf8)
        let info = Array("barge/8 frame keys".utf8) + [version, UInt8(truncatingIfNeeded: name.count >> 8), UInt8(truncatingIfNeeded: name.count)] + name
        let okm = try HKDF.sha256(ikm: token, salt: clientNonce + serverNonce, info: info, length: 64)
        return SessionKeys(clientToServer: Array(okm[0..<32]), serverToClient: Array(okm[32..<64]))
    }
}
