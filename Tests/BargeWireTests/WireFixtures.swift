import BargeWire
import NIOCore

enum Fixtures {
    static let token = Array("correct horse battery staple 42".utf8)
    static let clientNonce = [UInt8](repeating: 0xC1, count: 32)
    static let serverNonce = [UInt8](repeating: 0x5E, count: 32)

    static let messages: [Message] = [
        .hello(Hello(minVersion: 1, maxVersion: 3, role: .agent, name: "dtn01.site-a ✓", nonce: clientNonce)),
        .challenge(Challenge(version: 1, nonce: serverNonce, proof: [UInt8](repeating: 7, count: 32), maxPayloadLength: 1 << 24)),
        .auth(Auth(proof: [UInt8](repeating: 9, count: 32))),
        .welcome(Welcome(serverName: "coordinator")),
        .register(Register(name: "dtn01", site: "site-a", root: "/data/archive", dataHost: "dtn01.example", dataPort: 7500, maxInFlight: 16)),
        .registered(Registered(heartbeatIntervalMillis: 1000, agentTimeoutMillis: 15000)),
        .heartbeat(Heartbeat(sequence: 42, inFlight: 3)),
        .chunkData(ChunkData(place: ChunkPlace(job: "j-1", path: "ds/field.f32", offset: 1 << 20), fileSize: 3 << 20,
                             id: [UInt8](repeating: 0xAB, count: 32), encoded: ByteBuffer(bytes: [1, 2, 3, 4, 5]))),
        .chunkAck(ChunkAck(place: ChunkPlace(job: "j-1", path: "ds/field.f32", offset: 0))),
        .chunkNack(ChunkNack(place: ChunkPlace(job: "j-1", path: "ds/x", offset: 7), reason: .corrupt, detail: "checksum mismatch")),
        .fileDone(FileDone(place: ChunkPlace(job: "j-1", path: "ds/x", offset: 0), size: 77, mode: 0o644, mtimeSeconds: 1_700_000_000, mtimeNanoseconds: 999)),
        .repairDone(FileDone(place: ChunkPlace(job: "j-1", path: "ds/x", offset: 0), size: 77, mode: 0o600, mtimeSeconds: -5, mtimeNanoseconds: 0)),
        .fileLeftOut(ChunkPlace(job: "j-1", path: "ds/gone", offset: 0)),
        .error(ErrorMessage(code: .authenticationFailed, reason: "wrong token")),
    ]

    static func bytes(_ message: Message) -> ByteBuffer {
        var b = ByteBuffer()
        b.writeFrame(message.frame())
        return b
    }
}
