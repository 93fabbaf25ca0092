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
        // Protocol version 19: files' identities beside their entries, and the request for them.
        .scanRequest(ScanRequest(request: 9, path: "ds/", identities: true)),
        .scanRequest(ScanRequest(request: 9, path: "ds")),
        .scanReply(ScanReply(request: 9, final: false, entries: [
            FileEntry(path: "", kind: .directory, mode: 0o755, mtimeSeconds: 1, mtimeNanoseconds: 0),
            Self.identified(FileEntry(path: "big", kind: .file, size: 1 << 30, mode: 0o644, mtimeSeconds: 2, mtimeNanoseconds: 3)),
            FileEntry(path: "old", kind: .file, size: 5, mode: 0o600, mtimeSeconds: 4, mtimeNanoseconds: 5),
        ], skipped: ["'sock' is a socket"])),
        .taskAssign(TaskAssign(job: "j-1", unit: 3, destination: DataPeer(name: "b1", host: "10.0.0.2", port: 7500), codec: "auto", chunkSize: 1 << 20,
                               files: [TaskFile(sourcePath: "ds/big", entry: Self.identified(FileEntry(path: "copy/big", kind: .file, size: 1 << 30, mode: 0o644,
                                                                                                         mtimeSeconds: 2, mtimeNanoseconds: 3)),
                                                offset: 1 << 28, length: 1 << 28, finish: false)])),
        .taskAssign(TaskAssign(job: "j-1", unit: 4, destination: DataPeer(name: "b1", host: "10.0.0.2", port: 7500), codec: "auto", chunkSize: 1 << 20,
                               files: [TaskFile(sourcePath: "ds/old", entry: FileEntry(path: "copy/old", kind: .file, size: 5, mode: 0o600, mtimeSeconds: 4, mtimeNanoseconds: 5),
                                                length: 5, finish: true)], assignment: 7)),
    ]

    static func identified(_ e: FileEntry) -> FileEntry {
        var e = e
        e.identity = FileIdentity(inode: 1_234_567, ctimeSeconds: 1_700_000_001, ctimeNanoseconds: 999_999_999)
        return e
    }

    static func bytes(_ message: Message) -> ByteBuffer {
        var b = ByteBuffer()
        b.writeFrame(message.frame())
        return b
    }
}
