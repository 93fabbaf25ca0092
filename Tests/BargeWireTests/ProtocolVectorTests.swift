import BargeDigest
import BargeWire
import NIOCore
import Testing

/// The test vectors of docs/protocol.md: each message's full frame, and the handshake proofs.
/// If this fails, the document and the code disagree about a byte.
struct ProtocolVectorTests {
    static let vectors: [(Message, String)] = [
        (.hello(Hello(minVersion: 1, maxVersion: 1, role: .agent, name: "a1", nonce: [UInt8](repeating: 0x11, count: 32))),
         "4241524701010000" + "00000027" + "bcc87ae0d501bb7a" + "010101" + String(repeating: "11", count: 32) + "0002" + "6131"),
        (.challenge(Challenge(version: 1, nonce: [UInt8](repeating: 0x22, count: 32), proof: [UInt8](repeating: 0x33, count: 32), maxPayloadLength: 0x0101_0000)),
         "4241524701020000" + "00000045" + "aae5dd5a7e18e552" + "01" + String(repeating: "22", count: 32) + String(repeating: "33", count: 32) + "01010000"),
        (.auth(Auth(proof: [UInt8](repeating: 0x44, count: 32))),
         "4241524701030000" + "00000020" + "fe35fde7697827c5" + String(repeating: "44", count: 32)),
        (.welcome(Welcome(serverName: "coord")),
         "4241524701040000" + "00000007" + "1023ed5dfb1ab722" + "0005" + "636f6f7264"),
        (.error(ErrorMessage(code: .authenticationFailed, reason: "bad token")),
         "42415247017f0000" + "0000000d" + "ad0e2d850b253b28" + "000a" + "0009" + "62616420746f6b656e"),
    ]

    /// The checksums (bytes 12–19) were computed with `xxhsum -H3` on each payload.
    @Test(arguments: 0..<5)
    func frameBytes(_ i: Int) throws {
        let (message, hex) = Self.vectors[i]
        let expected = try #require(Hex.decode(hex))
        var buffer = ByteBuffer()
        buffer.writeFrame(message.frame())
        #expect(Array(buffer.readableBytesView) == expected)
        let frame = try #require(try buffer.readFrame(maxPayloadLength: 4096))
        #expect(try Message(frame: frame) == message)
    }

    /// Proofs for token "barge-test-token", client nonce 0x11…, server nonce 0x22…, version 1,
    /// client name "a1"; the expected values were computed independently with Python's hmac module.
    @Test func handshakeProofs() throws {
        let token = Array("barge-test-token".utf8)
        let a = [UInt8](repeating: 0x11, count: 32), b = [UInt8](repeating: 0x22, count: 32)
        let server = try HandshakeProof.server(token: token, clientNonce: a, serverNonce: b, version: 1, clientName: "a1")
        let client = try HandshakeProof.client(token: token, clientNonce: a, serverNonce: b, version: 1, clientName: "a1")
        #expect(Hex.encode(server) == ServerProofHex.value)
        #expect(Hex.encode(client) == ClientProofHex.value)
    }
}
