import BargeDigest
import BargeWire
import NIOCore
import Testing

/// The test vectors of docs/protocol.md: each message's full frame, and the handshake proofs.
/// If this fails, the document and the code disagree about a byte.
struct ProtocolVectorTests {
    static let id = [UInt8](repeating: 0xAB, count: 32)
    static let file = FileEntry(path: "d/f", kind: .file, size: 4096, mode: 0o644, mtimeSeconds: 1_600_000_000, mtimeNanoseconds: 7)
    static let link = FileEntry(path: "d/l", kind: .symlink, mode: 0o777, mtimeSeconds: 1_600_000_000, mtimeNanoseconds: 0, linkTarget: "f")

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
        // Version 11: the agent's build version at the end.
        (.register(Register(name: "a1", site: "a", root: "/data/brg", dataHost: "127.0.0.1", dataPort: 7501, maxInFlight: 8, build: "0.11.0")),
         "4241524701100000" + "0000002b" + "489166de682bc4b2" + "0002" + "6131" + "0001" + "61" + "0009" + "2f646174612f627267"
            + "0009" + "3132372e302e302e31" + "1d4d" + "00000008" + "0006" + "302e31312e30"),
        // Version 14: then the id of the agent's root.
        (.register(Register(name: "a1", site: "a", root: "/data/brg", dataHost: "127.0.0.1", dataPort: 7501, maxInFlight: 8, build: "0.11.0",
                            rootID: "0123456789abcdef0123456789abcdef")),
         "4241524701100000" + "0000004d" + "bd1796d3c371b5bc" + "0002" + "6131" + "0001" + "61" + "0009" + "2f646174612f627267"
            + "0009" + "3132372e302e302e31" + "1d4d" + "00000008" + "0006" + "302e31312e30"
            + "0020" + "3031323334353637383961626364656630313233343536373839616263646566"),
        // Version 21: then the draining flag, from an agent that was told to drain.
        (.register(Register(name: "a1", site: "a", root: "/data/brg", dataHost: "127.0.0.1", dataPort: 7501, maxInFlight: 8, build: "0.11.0",
                            rootID: "0123456789abcdef0123456789abcdef", draining: true)),
         "4241524701100000" + "0000004e" + "3d3def0f5453c158" + "0002" + "6131" + "0001" + "61" + "0009" + "2f646174612f627267"
            + "0009" + "3132372e302e302e31" + "1d4d" + "00000008" + "0006" + "302e31312e30"
            + "0020" + "3031323334353637383961626364656630313233343536373839616263646566" + "01"),
        // The flag alone: the build and the root's id written empty.
        (.register(Register(name: "a1", site: "a", root: "/data/brg", dataHost: "127.0.0.1", dataPort: 7501, maxInFlight: 8, draining: true)),
         "4241524701100000" + "00000028" + "e9dfdbc0f3132abc" + "0002" + "6131" + "0001" + "61" + "0009" + "2f646174612f627267"
            + "0009" + "3132372e302e302e31" + "1d4d" + "00000008" + "0000" + "0000" + "01"),
        (.registered(Registered(heartbeatIntervalMillis: 1000, agentTimeoutMillis: 15000)),
         "4241524701110000" + "00000008" + "468676611262ca04" + "000003e8" + "00003a98"),
        (.heartbeat(Heartbeat(sequence: 7, inFlight: 2)),
         "4241524701120000" + "0000000c" + "e7612a834547671e" + "0000000000000007" + "00000002"),
        (.chunkAck(ChunkAck(place: ChunkPlace(job: "j1", path: "d/f", offset: 1 << 20))),
         "4241524701430000" + "00000011" + "20a27e573f5d62bf" + "0002" + "6a31" + "0003" + "642f66" + "0000000000100000"),
        (.chunkNack(ChunkNack(place: ChunkPlace(job: "j1", path: "d/f", offset: 1 << 20), reason: .corrupt, detail: "bad.")),
         "4241524701440000" + "00000018" + "aff5e47696eb3bac" + "0002" + "6a31" + "0003" + "642f66" + "0000000000100000"
            + "01" + "0004" + "6261642e"),
        (.fileDone(FileDone(place: ChunkPlace(job: "j1", path: "d/f", offset: 0), size: 1024, mode: 0o644, mtimeSeconds: 1_600_000_000, mtimeNanoseconds: 7)),
         "4241524701450000" + "00000029" + "7e70845d2015179d" + "00026a310003642f6600000000000000000000000000000400000001a4000000005f5e100000000007"),
        // Version 15.
        (.repairDone(FileDone(place: ChunkPlace(job: "j1", path: "d/f", offset: 0), size: 1024, mode: 0o644, mtimeSeconds: 1_600_000_000, mtimeNanoseconds: 7)),
         "42415247014f0000" + "00000029" + "7e70845d2015179d" + "00026a310003642f6600000000000000000000000000000400000001a4000000005f5e100000000007"),
        // Version 16.
        (.fileLeftOut(ChunkPlace(job: "j1", path: "d/f", offset: 0)),
         "4241524701500000" + "00000011" + "9417b8f259054ecd" + "00026a310003642f660000000000000000"),
        (.error(ErrorMessage(code: .authenticationFailed, reason: "bad token")),
         "42415247017f0000" + "0000000d" + "ad0e2d850b253b28" + "000a" + "0009" + "62616420746f6b656e"),
        (.chunkData(ChunkData(place: ChunkPlace(job: "j1", path: "d/f", offset: 0), fileSize: 4096, id: id, encoded: ByteBuffer(bytes: [1, 2, 3]))),
         "4241524701420000" + "0000003c" + "c2ec8fc94790b05d" + "00026a310003642f6600000000000000000000000000001000abababababababababababababababababababababababababababababababab010203"),
        (.chunkRepair(ChunkData(place: ChunkPlace(job: "j1", path: "d/f", offset: 0), fileSize: 4096, id: id, encoded: ByteBuffer(bytes: [1, 2, 3]))),
         "4241524701470000" + "0000003c" + "c2ec8fc94790b05d" + "00026a310003642f6600000000000000000000000000001000abababababababababababababababababababababababababababababababab010203"),
        (.scanRequest(ScanRequest(request: 9, path: "ds")),
         "4241524701200000" + "0000000c" + "90dd98a2af4890bb" + "000000000000000900026473"),
        (.scanReply(ScanReply(request: 9, final: true, entries: [file, link], skipped: ["fifo skipped"])),
         "4241524701210000" + "00000062" + "8dae01f2d1fd4afa" + "000000000000000901000000000002010003642f660000000000001000000001a4000000005f5e1000000000070000030003642f6c0000000000000000000001ff000000005f5e10000000000000016600000001000c6669666f20736b6970706564"),
        (.taskAssign(TaskAssign(job: "j1", unit: 3, destination: DataPeer(name: "b1", host: "127.0.0.1", port: 7501), codec: "auto", chunkSize: 1 << 20, files: [TaskFile(sourcePath: "ds/f", entry: file, length: 4096, finish: true)])),
         "4241524701300000" + "00000062" + "776799a9ed48f5f8" + "00026a3100000000000000030002623100093132372e302e302e311d4d00046175746f0010000000000001000464732f66010003642f660000000000001000000001a4000000005f5e10000000000700000000000000000000000000000000100001"),
        (.taskProgress(TaskProgress(job: "j1", unit: 3, bytesDone: 2048, wireBytes: 1024)),
         "4241524701310000" + "0000001c" + "09b5a0b983f3822d" + "00026a31000000000000000300000000000008000000000000000400"),
        (.taskDone(TaskDone(job: "j1", unit: 3, bytes: 4096, wireBytes: 2100, refetched: 1, codecs: [CodecUsage(codec: "zstd-1", chunks: 1, rawBytes: 4096, encodedBytes: 2100)], chunks: [ChunkReport(file: 0, offset: 0, length: 4096, id: id)])),
         "4241524701320000" + "00000074" + "771b9b7295cf43d1" + "00026a31000000000000000300000000000010000000000000000834000000010000000100067a7374642d3100000001000000000000100000000000000008340000000100000000000000000000000000001000abababababababababababababababababababababababababababababababab"),
        (.taskFailed(TaskFailed(job: "j1", unit: 3, retryable: false, reason: "changed")),
         "4241524701330000" + "00000016" + "a4df5c46baf5ef78" + "00026a3100000000000000030000076368616e676564"),
        (.cancelJob(CancelJob(job: "j1")),
         "4241524701340000" + "00000004" + "04e0416db3920671" + "00026a31"),
        (.verifyRequest(VerifyRequest(request: 5, files: [.init(path: "d/f", size: 4096)], chunks: [ChunkReport(file: 0, offset: 0, length: 4096, id: id)])),
         "4241524701380000" + "0000004d" + "401ccac564600016" + "0000000000000005000000010003642f6600000000000010000000000100000000000000000000000000001000abababababababababababababababababababababababababababababababab"),
        // Version 22: then the repair flag (written 0), and the finished file's mode and mtime.
        (.verifyRequest(VerifyRequest(request: 5, files: [.init(path: "d/f", size: 4096)], chunks: [ChunkReport(file: 0, offset: 0, length: 4096, id: id)],
                                      attributes: [.init(file: 0, mode: 0o644, mtimeSeconds: 1_600_000_000, mtimeNanoseconds: 7)])),
         "4241524701380000" + "00000066" + "606977d593f9b987" + "0000000000000005000000010003642f6600000000000010000000000100000000000000000000000000001000abababababababababababababababababababababababababababababababab"
            + "00" + "00000001" + "00000000" + "000001a4" + "000000005f5e1000" + "00000007"),
        (.verifyReply(VerifyReply(request: 5, bytesChecked: 4096, mismatches: [.init(file: 0, offset: 0, length: 4096, reason: VerifyReply.chunkDiffers)])),
         "4241524701390000" + "0000003b" + "85a985ea8b452118" + "000000000000000500000000000000001000000000010000000000000000000000000000000000001000000f5348412d3235362064696666657273"),
        (.makeEntry(MakeEntry(job: "j1", entry: link)),
         "4241524701460000" + "00000025" + "a0c3aef00cf9c2ed" + "00026a31030003642f6c0000000000000000000001ff000000005f5e100000000000000166"),
        // Version 2.
        (.haveQuery(HaveQuery(job: "j1", paths: ["d/f", "d/g"])),
         "4241524701480000" + "00000012" + "b37fc265e5322c68" + "00026a31000000020003642f660003642f67"),
        (.haveList(HaveList(ids: [id])),
         "4241524701490000" + "00000024" + "0827d9429ba6761a" + "00000001abababababababababababababababababababababababababababababababab"),
        (.chunkRef(ChunkRef(place: ChunkPlace(job: "j1", path: "d/f", offset: 1 << 20), fileSize: 4 << 20, length: 1 << 20, id: id, xxh: [UInt8](repeating: 0xCD, count: 16))),
         "42415247014a0000" + "0000004d" + "b8c0aed96f6c5868" + "00026a310003642f660000000000100000000000000040000000100000ababababababababababababababababababababababababababababababababcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd"),
        (.drain(Drain(reason: "upgrade")),
         "4241524701350000" + "00000009" + "74a039c326628f80" + "000775706772616465"),
        (.taskDone(TaskDone(job: "j1", unit: 3, bytes: 4096, wireBytes: 2100, refetched: 1, codecs: [CodecUsage(codec: "zstd-1", chunks: 1, rawBytes: 4096, encodedBytes: 2100)], chunks: [ChunkReport(file: 0, offset: 0, length: 4096, id: id)], dedupBytes: 4096)),
         "4241524701320000" + "0000007c" + "93f1176eb0554034" + "00026a31000000000000000300000000000010000000000000000834000000010000000100067a7374642d3100000001000000000000100000000000000008340000000100000000000000000000000000001000abababababababababababababababababababababababababababababababab0000000000001000"),
        (.chunkNack(ChunkNack(place: ChunkPlace(job: "j1", path: "d/f", offset: 1 << 20), reason: .need, detail: "gone")),
         "4241524701440000" + "00000018" + "083e50fd843d511d" + "00026a310003642f660000000000100000060004676f6e65"),
        // Version 3.
        (.jobSettings(JobSettings(job: "j1", bwlimit: "100MiB/s", share: 500_000, congestion: 2)),
         "4241524701360000" + "00000013" + "df348104ac07d2f3" + "00026a3100083130304d69422f730007a12002"),
        (.taskProgress(TaskProgress(job: "j1", unit: 3, bytesDone: 2048, wireBytes: 1024,
                                    lane: LaneFigures(rttMicros: 1500, queueMicros: 500, window: 1 << 20, rate: 50_000_000))),
         "4241524701310000" + "00000034" + "1a34e17d087ea75e" + "00026a31000000000000000300000000000008000000000000000400000005dc000001f400000000001000000000000002faf080"),
        // Version 4: the assignment number, trailing.
        (.taskAssign(TaskAssign(job: "j1", unit: 3, destination: DataPeer(name: "b1", host: "127.0.0.1", port: 7501), codec: "auto", chunkSize: 1 << 20, files: [TaskFile(sourcePath: "ds/f", entry: file, length: 4096, finish: true)], assignment: 2)),
         "4241524701300000" + "00000066" + "84a6b88aea820580" + "00026a3100000000000000030002623100093132372e302e302e311d4d00046175746f0010000000000001000464732f66010003642f660000000000001000000001a4000000005f5e1000000000070000000000000000000000000000000010000100000002"),
        (.taskDone(TaskDone(job: "j1", unit: 3, bytes: 4096, wireBytes: 2100, refetched: 1, codecs: [CodecUsage(codec: "zstd-1", chunks: 1, rawBytes: 4096, encodedBytes: 2100)], chunks: [ChunkReport(file: 0, offset: 0, length: 4096, id: id)], assignment: 2)),
         "4241524701320000" + "00000080" + "c4e0466290ad4270" + "00026a31000000000000000300000000000010000000000000000834000000010000000100067a7374642d3100000001000000000000100000000000000008340000000100000000000000000000000000001000abababababababababababababababababababababababababababababababab000000000000000000000002"),
        (.taskFailed(TaskFailed(job: "j1", unit: 3, retryable: false, reason: "changed", assignment: 2)),
         "4241524701330000" + "0000001a" + "aea4a0d665c27414" + "00026a3100000000000000030000076368616e67656400000002"),
        // Version 5: acknowledged reports, what an agent holds, and dropping an assignment.
        (.reportAck(AssignmentKey(job: "j1", unit: 3, assignment: 2)),
         "4241524701370000" + "00000010" + "d8a070194b52739e" + "00026a31000000000000000300000002"),
        (.taskDrop(AssignmentKey(job: "j1", unit: 3, assignment: 2)),
         "42415247013a0000" + "00000010" + "d8a070194b52739e" + "00026a31000000000000000300000002"),
        // Version 13: a unit done without its file 0, gone from the source ("ds/f").
        (.taskDone(TaskDone(job: "j1", unit: 3, bytes: 4096, wireBytes: 2100, refetched: 1, codecs: [CodecUsage(codec: "zstd-1", chunks: 1, rawBytes: 4096, encodedBytes: 2100)], chunks: [ChunkReport(file: 0, offset: 0, length: 4096, id: id)], leftOut: [0], firstLeftOut: "ds/f")),
         "4241524701320000" + "0000008e" + "bf24d98e5dc4678a" + "00026a31000000000000000300000000000010000000000000000834000000010000000100067a7374642d3100000001000000000000100000000000000008340000000100000000000000000000000000001000abababababababababababababababababababababababababababababababab" + "0000000000000000" + "00000000" + "00000001" + "00000000" + "000464732f66"),
        // Version 12: open connections to b1 now.
        (.warmLanes(WarmLanes(destinations: [DataPeer(name: "b1", host: "127.0.0.1", port: 7501)])),
         "42415247013b0000" + "00000015" + "6c07aedba7b7fb55" + "00000001" + "0002" + "6231" + "0009" + "3132372e302e302e31" + "1d4d"),
        (.holding(Holding(units: [AssignmentKey(job: "j1", unit: 3, assignment: 2)])),
         "4241524701130000" + "00000014" + "766ee74c0aa445b4" + "0000000100026a31000000000000000300000002"),
        // Version 6: a batch of files finished together.
        (.filesDone(FilesDone(job: "j1", files: [FilesDone.File(path: "d/f", size: 4096, mode: 0o644, mtimeSeconds: 1_600_000_000, mtimeNanoseconds: 7)])),
         "42415247014b0000" + "00000025" + "89a318ab031a49be" + "00026a31000000010003642f660000000000001000000001a4000000005f5e100000000007"),
        (.filesDoneReply(FilesDoneReply(refused: [FilesDoneReply.Refusal(index: 0, reason: .incomplete, detail: "short")])),
         "42415247014c0000" + "00000010" + "5c15f0e4ea4a2a69" + "000000010000000005000573686f7274"),
        // Version 7: small files whole in one message (one by value, one by reference), and the answer.
        (.fileBatch(FileBatch(job: "j1", batch: 9, files: [
            FileBatch.File(path: "d/f", size: 2, mode: 0o644, mtimeSeconds: 1_600_000_000, mtimeNanoseconds: 7, id: id,
                           xxh: [UInt8](repeating: 0xCD, count: 16), form: .bytes, encoded: ByteBuffer(bytes: [1, 2])),
            FileBatch.File(path: "r", size: 9, mode: 0o600, mtimeSeconds: 1_600_000_000, mtimeNanoseconds: 0, id: id,
                           xxh: [UInt8](repeating: 0xCD, count: 16), form: .reference, encoded: ByteBuffer()),
         ])),
         "42415247014d0000" + "000000b4" + "faa98e445ec20a6e" + "00026a310000000000000009000000020003642f660000000000000002000001a4000000005f5e100000000007"
            + String(repeating: "ab", count: 32) + String(repeating: "cd", count: 16) + "00000000020102" + "0001720000000000000009000001800000"
            + "00005f5e100000000000" + String(repeating: "ab", count: 32) + String(repeating: "cd", count: 16) + "0100000000"),
        (.fileBatchReply(FileBatchReply(job: "j1", batch: 9, refused: [FilesDoneReply.Refusal(index: 1, reason: .need, detail: "gone")])),
         "42415247014e0000" + "0000001b" + "725adf92880310c3" + "00026a3100000000000000090000000100000001060004676f6e65"),
        // Version 10: placement at transfer time. A file the job's policy placed cold (flags 0x09:
        // finish, cold), and a have query placing its files (cold by the job; the site decides).
        (.taskAssign(TaskAssign(job: "j1", unit: 3, destination: DataPeer(name: "b1", host: "127.0.0.1", port: 7501), codec: "auto", chunkSize: 1 << 20,
                                files: [TaskFile(sourcePath: "ds/f", entry: file, length: 4096, finish: true, tier: .cold)])),
         "4241524701300000" + "00000062" + "717ce0c7acdc21c5" + "00026a3100000000000000030002623100093132372e302e302e311d4d00046175746f0010000000000001000464732f66010003642f660000000000001000000001a4000000005f5e10000000000700000000000000000000000000000000100009"),
        (.haveQuery(HaveQuery(job: "j1", paths: ["d/f", "d/g"], facts: [.init(tier: .cold, size: 4096, mtimeSeconds: 1_600_000_000),
                                                                         .init(tier: nil, size: 10, mtimeSeconds: 1_600_000_001)])),
         "4241524701480000" + "00000038" + "01ca96e6f3dc7865" + "00026a31000000020003642f660003642f67" + "00000002"
            + "02" + "0000000000001000" + "000000005f5e1000" + "00" + "000000000000000a" + "000000005f5e1001"),
        // Version 17: the file placed cold by the job, which the destination may keep in place
        // (flags 0x19: finish, cold, in place).
        (.taskAssign(TaskAssign(job: "j1", unit: 3, destination: DataPeer(name: "b1", host: "127.0.0.1", port: 7501), codec: "auto", chunkSize: 1 << 20,
                                files: [TaskFile(sourcePath: "ds/f", entry: file, length: 4096, finish: true, tier: .cold, inPlace: true)])),
         "4241524701300000" + "00000062" + "4125109094641788" + "00026a3100000000000000030002623100093132372e302e302e311d4d00046175746f0010000000000001000464732f66010003642f660000000000001000000001a4000000005f5e10000000000700000000000000000000000000000000100019"),
        // Version 17: the same paths brought whole by the unit (the tier byte's top bit), "d/f"
        // placed hot by the job, "d/g" by the site.
        (.haveQuery(HaveQuery(job: "j1", paths: ["d/f", "d/g"], facts: [.init(tier: .hot, size: 3 << 20, mtimeSeconds: 1_600_000_000, whole: true),
                                                                         .init(tier: nil, size: 10, mtimeSeconds: 1_600_000_001, whole: true)])),
         "4241524701480000" + "00000038" + "c183f9fe6697769c" + "00026a31000000020003642f660003642f67" + "00000002"
            + "81" + "0000000000300000" + "000000005f5e1000" + "80" + "000000000000000a" + "000000005f5e1001"),
    ]

    /// The checksums (bytes 12–19) were computed with `xxhsum -H3` on each payload.
    @Test(arguments: 0..<vectors.count)
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
