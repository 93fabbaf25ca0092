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
        (.register(Register(name: "a1", site: "a", root: "/data/brg", dataHost: "127.0.0.1", dataPort: 7501, maxInFlight: 8)),
         "4241524701100000" + "00000023" + "46d8d1a02d384efe" + "0002" + "6131" + "0001" + "61" + "0009" + "2f646174612f627267"
            + "0009" + "3132372e302e302e31" + "1d4d" + "00000008"),
        (.registered(Registered(heartbeatIntervalMillis: 1000, agentTimeoutMillis: 15000)),
         "4241524701110000" + "00000008" + "468676611262ca04" + "000003e8" + "00003a98"),
        (.heartbeat(Heartbeat(sequence: 7, inFlight: 2)),
         "4241524701120000" + "0000000c" + "e7612a834547671e" + "0000000000000007" + "00000002"),
        (.chunkAck(ChunkAck(place: ChunkPlace(job: "j1", path: "d/f", offset: 1 << 20))),
         "4241524701430000" + "00000011" + "20a27e573f5d62bf" + "0002" + "6a31" + "0003" + "642f66" + "0000000000100000"),
        (.chunkNack(ChunkNack(place: ChunkPlace(job: "j1", path: "d/f", offset: 1 << 20), reason: .corrupt, detail: "bad.")),
         "4241524701440000" + "00000018" + "aff5e47696eb3bac" + "0002" + "6a31" + "0003" + "642f66" + "0000000000100000"
            + "01" + "0004" + "6261642e"),
        (.fileDone(FileDone(place: ChunkPlace(job: "j1", path: "d/f", offset: 0), mode: 0o644, mtimeSeconds: 1_600_000_000, mtimeNanoseconds: 7)),
         "4241524701450000" + "00000021" + "fba153ed2a85acb3" + "0002" + "6a31" + "0003" + "642f66" + "0000000000000000"
            + "000001a4" + "000000005f5e1000" + "00000007"),
        (.error(ErrorMessage(code: .authenticationFailed, reason: "bad token")),
         "42415247017f0000" + "0000000d" + "ad0e2d850b253b28" + "000a" + "0009" + "62616420746f6b656e"),
    ]

    /// The checksums (bytes 12–19) were computed with `xxhsum -H3` on each payload.
    @Test(arguments: 0..<11)
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
