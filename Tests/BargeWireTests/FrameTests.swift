import BargeDigest
import BargeWire
import NIOCore
import NIOEmbedded
import Testing

struct FrameTests {
    @Test(arguments: Fixtures.messages)
    func messagesRoundTrip(_ message: Message) throws {
        var buffer = Fixtures.bytes(message)
        let frame = try #require(try buffer.readFrame(maxPayloadLength: Frame.handshakeMaxPayload))
        #expect(try Message(frame: frame) == message)
        #expect(buffer.readableBytes == 0)
    }

    /// The handler on every connection (`FrameReader`) yields the same frames however the bytes
    /// are cut into reads: byte by byte, all at once, and at random cuts, with a large frame (200 KB)
    /// among small ones, so that frames span reads and reads hold several frames.
    @Test(arguments: [1, 7, 19, 20, 21, 4096, 65_536, Int.max])
    func theReaderYieldsTheSameFramesWhateverTheReads(_ piece: Int) throws {
        var frames = Fixtures.messages.map { $0.frame() }
        frames.insert(Frame(type: .chunkData, payload: ByteBuffer(bytes: (0..<200_013).map { UInt8(truncatingIfNeeded: $0 &* 31) })), at: 3)
        frames.append(Frame(type: .heartbeat, payload: ByteBuffer(bytes: [0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0])))
        var stream = ByteBuffer()
        for f in frames { stream.writeFrame(f) }
        let channel = EmbeddedChannel(handler: FrameReader(limit: FrameLimit(Frame.defaultMaxPayload)))
        var generator = SystemRandomNumberGenerator()
        while stream.readableBytes > 0 {
            let n = piece == Int.max ? Int.random(in: 1...200_000, using: &generator) : piece
            try channel.writeInbound(stream.readSlice(length: min(n, stream.readableBytes))!)
        }
        var got: [Frame] = []
        while let f = try channel.readInbound(as: Frame.self) { got.append(f) }
        #expect(got.count == frames.count)
        #expect(got == frames)
        _ = try channel.finish()
    }

    /// A small frame that arrives in one large read beside a large one goes on in a buffer of its
    /// own, so that it does not hold the read's memory while it waits; the large one is a slice.
    @Test func aSmallFrameOutOfALargeReadHoldsOnlyItsOwnBytes() throws {
        var read = ByteBuffer()
        read.reserveCapacity(2 << 20)
        read.writeFrame(Frame(type: .heartbeat, payload: ByteBuffer(bytes: [0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0])))
        read.writeFrame(Frame(type: .chunkData, payload: ByteBuffer(bytes: [UInt8](repeating: 7, count: 1 << 20))))
        let channel = EmbeddedChannel(handler: FrameReader(limit: FrameLimit(Frame.defaultMaxPayload)))
        try channel.writeInbound(read)
        let small = try #require(try channel.readInbound(as: Frame.self))
        let large = try #require(try channel.readInbound(as: Frame.self))
        #expect(small.type == .heartbeat && small.payload.capacity < 1024)
        #expect(large.type == .chunkData && large.payload.readableBytes == 1 << 20)
    }

    /// A bad header is refused as soon as its field is in, even when it arrives across reads,
    /// and nothing after it is read; a frame over the limit is refused from its header alone.
    @Test func theReaderRefusesABadHeaderAcrossReadsAndReadsNoMore() throws {
        var good = Fixtures.bytes(.welcome(Welcome(serverName: "x")))
        var bad = Fixtures.bytes(.welcome(Welcome(serverName: "y")))
        bad.setInteger(UInt32(1 << 30), at: bad.readerIndex + 8)
        let channel = EmbeddedChannel(handler: FrameReader(limit: FrameLimit(4096)))
        try channel.writeInbound(good)
        try channel.writeInbound(bad.readSlice(length: 10)!)
        #expect(throws: WireError.frameTooLarge(length: 1 << 30, limit: 4096)) { try channel.writeInbound(bad.readSlice(length: 10)!) }
        try channel.writeInbound(Fixtures.bytes(.welcome(Welcome(serverName: "z"))))
        #expect(try channel.readInbound(as: Frame.self) == good.readFrame(maxPayloadLength: 4096))
        #expect(try channel.readInbound(as: Frame.self) == nil)
        var magic = ByteBuffer(bytes: [0x47, 0x45])
        let second = EmbeddedChannel(handler: FrameReader(limit: FrameLimit(4096)))
        try second.writeInbound(magic.readSlice(length: 2)!)
        #expect(throws: WireError.badMagic(0x4745_5420)) { try second.writeInbound(ByteBuffer(bytes: [0x54, 0x20])) }
    }

    @Test func headerFieldsAreBigEndianAndChecksummed() {
        let bytes = Array(Fixtures.bytes(.auth(Auth(proof: [UInt8](repeating: 9, count: 32)))).readableBytesView)
        #expect(Array(bytes[0..<4]) == [0x42, 0x41, 0x52, 0x47])
        #expect(bytes[4] == 1 && bytes[5] == 0x03 && bytes[6] == 0 && bytes[7] == 0)
        #expect(Array(bytes[8..<12]) == [0, 0, 0, 32])
        let checksum = bytes[12..<20].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        #expect(checksum == XXH3.hash64(Array(bytes[20...])))
    }

    @Test func badMagicIsRefusedAfterFourBytes() {
        var b = ByteBuffer(bytes: [0x47, 0x45, 0x54, 0x20])  // "GET "
        #expect(throws: WireError.badMagic(0x4745_5420)) { try b.readFrame(maxPayloadLength: 100) }
    }

    @Test func oversizedFrameIsRefusedFromItsHeaderAlone() {
        var b = Fixtures.bytes(.welcome(Welcome(serverName: "x")))
        b.setInteger(UInt32(1 << 30), at: 8)
        var header = b.getSlice(at: 0, length: Frame.headerSize)!
        #expect(throws: WireError.frameTooLarge(length: 1 << 30, limit: 4096)) { try header.readFrame(maxPayloadLength: 4096) }
    }

    @Test func incompleteFramesWait() throws {
        var b = Fixtures.bytes(.welcome(Welcome(serverName: "coordinator")))
        var partial = b.readSlice(length: b.readableBytes - 1)!
        #expect(try partial.readFrame(maxPayloadLength: 4096) == nil)
        #expect(partial.readerIndex == 0)
    }

    @Test(arguments: [
        (4, UInt8(9), WireError.unsupportedFrameVersion(9)),
        (5, UInt8(0x55), WireError.unknownType(0x55)),
        (7, UInt8(2), WireError.unsupportedFlags(2)),
    ])
    func badHeaderFields(_ offset: Int, _ value: UInt8, _ error: WireError) {
        var b = Fixtures.bytes(.welcome(Welcome(serverName: "x")))
        b.setInteger(value, at: offset)
        #expect(throws: error) { try b.readFrame(maxPayloadLength: 4096) }
    }

    @Test func corruptPayloadFailsTheChecksum() {
        var b = Fixtures.bytes(.welcome(Welcome(serverName: "coordinator")))
        b.setInteger(UInt8(ascii: "K"), at: Frame.headerSize + 2)
        #expect(throws: WireError.self) { try b.readFrame(maxPayloadLength: 4096) }
    }

    static func frame(_ type: MessageType, _ payload: [UInt8]) -> Frame {
        Frame(type: type, payload: ByteBuffer(bytes: payload))
    }

    /// A `file batch` of one file "f" with these fields.
    static func fileBatch(size: UInt64, form: UInt8, encoded: [UInt8], declared: UInt32? = nil) -> Frame {
        var b = ByteBuffer()
        b.writeInteger(UInt16(2)); b.writeBytes(Array("j1".utf8))
        b.writeInteger(UInt64(1)); b.writeInteger(UInt32(1))
        b.writeInteger(UInt16(1)); b.writeBytes(Array("f".utf8))
        b.writeInteger(size); b.writeInteger(UInt32(0o644)); b.writeInteger(Int64(0)); b.writeInteger(Int32(0))
        b.writeBytes([UInt8](repeating: 0xAB, count: 48))
        b.writeInteger(form)
        b.writeInteger(declared ?? UInt32(encoded.count)); b.writeBytes(encoded)
        return Frame(type: .fileBatch, payload: b)
    }

    @Test(arguments: [
        frame(.auth, [UInt8](repeating: 1, count: 31)),                     // truncated proof
        frame(.auth, [UInt8](repeating: 1, count: 33)),                     // trailing byte
        frame(.hello, [2, 1, 1] + [UInt8](repeating: 0, count: 32) + [0, 0]),  // empty version range
        frame(.hello, [1, 1, 9] + [UInt8](repeating: 0, count: 32) + [0, 0]),  // unknown role
        frame(.hello, [1, 1, 1] + [UInt8](repeating: 0, count: 32) + [1, 0]),  // name of 256 bytes
        frame(.hello, [1, 1, 1] + [UInt8](repeating: 0, count: 32) + [0, 2, 0x61, 0x0a]),  // a newline in the name (forged log lines)
        frame(.hello, [1, 1, 1] + [UInt8](repeating: 0, count: 32) + [0, 3, 0x61, 0xc2, 0x85]),  // a C1 control (U+0085) in it
        frame(.welcome, [0, 2, 0xC3, 0x28]),                                 // invalid UTF-8
        frame(.error, [0, 1, 0, 5, 0x61]),                                   // reason truncated
        frame(.challenge, []),
        frame(.register, [0, 0, 0, 1, 0x61, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1]),  // empty name
        frame(.heartbeat, [0, 0, 0, 0, 0, 0, 0, 1]),                          // no in-flight count
        frame(.jobSettings, [0, 2, 0x6a, 0x31, 0, 0, 0, 0, 0, 0, 1]),          // a share of 0
        frame(.jobSettings, [0, 2, 0x6a, 0x31, 0, 0, 0, 0x0f, 0x42, 0x41, 1]), // a share over 1,000,000
        frame(.taskProgress, [0, 2, 0x6a, 0x31] + [UInt8](repeating: 0, count: 24) + [0, 0, 5]),  // lane figures cut short
        frame(.fileBatch, [0, 2, 0x6a, 0x31] + [UInt8](repeating: 0, count: 8) + [0, 0, 0, 0]),        // no files
        frame(.fileBatch, [0, 2, 0x6a, 0x31] + [UInt8](repeating: 0, count: 8) + [0xff, 0xff, 0xff, 0xff]),  // a count past the payload
        fileBatch(size: 3, form: 2, encoded: [1, 2, 3]),   // unknown form
        fileBatch(size: 3, form: 1, encoded: [1, 2, 3]),   // a reference that carries bytes
        fileBatch(size: 0, form: 0, encoded: [1]),         // an empty file with bytes
        fileBatch(size: 3, form: 0, encoded: []),          // a file with no bytes
        fileBatch(size: 3, form: 0, encoded: [1, 2, 3], declared: 9),  // encoded length past the payload
    ])
    func malformedPayloadsAreTypedErrors(_ frame: Frame) {
        #expect(throws: WireError.self) { try Message(frame: frame) }
    }

    /// Sizes, offsets and byte counts over 2^56, and ids over 2^63 - 1, are refused when the
    /// message is read, naming the field: a peer holding the token once crashed a destination
    /// agent with a file of 2^63 bytes (an `off_t`), and the coordinator with a scanned entry of
    /// 2^64 - 1 bytes (a sum that overflowed) and a progress report of 2^63.
    @Test func quantitiesPastWhatBargeHandlesAreMalformed() throws {
        let place = ChunkPlace(job: "j", path: "f", offset: 0)
        let entry = { (size: UInt64) in FileEntry(path: "f", kind: .file, size: size, mode: 0o644, mtimeSeconds: 1, mtimeNanoseconds: 0) }
        let cases: [(Message, String)] = [
            (.chunkRef(ChunkRef(place: place, fileSize: 1 << 63, length: 1, id: [UInt8](repeating: 1, count: 32), xxh: [UInt8](repeating: 2, count: 16))), "file size"),
            (.chunkRef(ChunkRef(place: ChunkPlace(job: "j", path: "f", offset: UInt64.max), fileSize: 1, length: 1, id: [UInt8](repeating: 1, count: 32), xxh: [UInt8](repeating: 2, count: 16))), "offset"),
            (.scanReply(ScanReply(request: 1, final: true, entries: [entry(UInt64.max)])), "entry size"),
            (.taskProgress(TaskProgress(job: "j", unit: 1, bytesDone: 1 << 63, wireBytes: 0)), "bytes done"),
            (.taskProgress(TaskProgress(job: "j", unit: UInt64.max, bytesDone: 0, wireBytes: 0)), "unit"),
            (.taskDone(TaskDone(job: "j", unit: 1, bytes: 1, wireBytes: UInt64.max, refetched: 0, codecs: [], chunks: [])), "wire bytes"),
        ]
        for (message, field) in cases {
            #expect(throws: WireError.self) { try Message(frame: message.frame()) }
            do { _ = try Message(frame: message.frame()) } catch {
                #expect("\(error)".contains(field), "\(error)")
            }
        }
        // The largest that passes: 2^56 bytes.
        let largest = Message.chunkRef(ChunkRef(place: place, fileSize: 1 << 56, length: 1, id: [UInt8](repeating: 1, count: 32), xxh: [UInt8](repeating: 2, count: 16)))
        #expect(try Message(frame: largest.frame()) == largest)
    }

    /// Lengths that size a buffer at the receiver are at most a chunk (16 MiB): a `chunk ref`'s
    /// (the destination staged that many bytes before it looked), a `task done`'s chunk (a
    /// buffer at the agent that verifies it), a `task assign`'s chunk size and a repair's range
    /// (the source read it whole, and trapped past 4 GiB). 16 MiB itself passes.
    @Test func lengthsThatSizeABufferAreAtMostAChunk() throws {
        let id = [UInt8](repeating: 1, count: 32), xxh = [UInt8](repeating: 2, count: 16)
        let place = ChunkPlace(job: "j", path: "f", offset: 0)
        let entry = FileEntry(path: "f", kind: .file, size: 8 << 30, mode: 0o644, mtimeSeconds: 1, mtimeNanoseconds: 0)
        let peer = DataPeer(name: "b1", host: "127.0.0.1", port: 7501)
        func assign(chunkSize: UInt32 = 1 << 20, repair: UInt64 = 1 << 20) -> Message {
            .taskAssign(TaskAssign(job: "j", unit: 1, destination: peer, codec: "auto", chunkSize: chunkSize,
                                   files: [TaskFile(sourcePath: "f", entry: entry, offset: 0, length: repair, finish: false, repair: true)]))
        }
        func done(_ length: UInt32) -> Message {
            .taskDone(TaskDone(job: "j", unit: 1, bytes: 1, wireBytes: 1, refetched: 0, codecs: [], chunks: [ChunkReport(file: 0, offset: 0, length: length, id: id)]))
        }
        let cases: [(Message, String)] = [
            (.chunkRef(ChunkRef(place: place, fileSize: 8 << 30, length: UInt32.max, id: id, xxh: xxh)), "a chunk of 4294967295 bytes"),
            (done((16 << 20) + 1), "a chunk of 16777217 bytes"),
            (assign(chunkSize: (16 << 20) + 1), "chunk size 16777217"),
            (assign(repair: 5 << 30), "a repair of 5368709120 bytes"),
        ]
        for (message, words) in cases {
            do {
                _ = try Message(frame: message.frame())
                Issue.record("accepted: \(words)")
            } catch {
                #expect("\(error)".contains(words), "\(error)")
            }
        }
        for largest in [Message.chunkRef(ChunkRef(place: place, fileSize: 8 << 30, length: 16 << 20, id: id, xxh: xxh)), done(16 << 20),
                        assign(chunkSize: 16 << 20, repair: 16 << 20)] {
            #expect(try Message(frame: largest.frame()) == largest)
        }
    }

    /// A NUL byte in a scanned or sent entry's path or link target is malformed: no name on disk
    /// holds one, and a link made from `a\0b` pointed at `a`.
    @Test func aNulInAnEntryIsMalformed() throws {
        for entry in [FileEntry(path: "l", kind: .symlink, mode: 0o777, mtimeSeconds: 1, mtimeNanoseconds: 0, linkTarget: "a\0b"),
                      FileEntry(path: "a\0b", kind: .file, size: 1, mode: 0o644, mtimeSeconds: 1, mtimeNanoseconds: 0)] {
            do {
                _ = try Message(frame: Message.scanReply(ScanReply(request: 1, final: true, entries: [entry])).frame())
                Issue.record("accepted")
            } catch {
                #expect("\(error)".contains("NUL"), "\(error)")
            }
        }
    }

    /// `task failed`'s lane flag (version 18) trails the assignment, which is then written even
    /// when 0; without it the message is as before, and an older coordinator is sent none.
    /// Files' identities (version 19) travel only when there are some: without, `scan request`,
    /// `scan reply` and `task assign` are byte for byte what a peer before 19 reads, and the
    /// journal's stored files keep them (an older journal's blob, without them, still reads).
    @Test func identitiesAreAddedOnlyWhenThereAreSome() throws {
        func payload(_ m: Message) -> Int { m.frame().payload.readableBytes }
        #expect(payload(.scanRequest(ScanRequest(request: 1, path: "ds"))) == 8 + 2 + 2)
        #expect(payload(.scanRequest(ScanRequest(request: 1, path: "ds", identities: true))) == 8 + 2 + 2 + 1)
        let plain = FileEntry(path: "f", kind: .file, size: 9, mode: 0o644, mtimeSeconds: 1, mtimeNanoseconds: 2)
        let known = Fixtures.identified(plain)
        let without = payload(.scanReply(ScanReply(request: 1, final: true, entries: [plain])))
        #expect(payload(.scanReply(ScanReply(request: 1, final: true, entries: [known]))) == without + 4 + 24)
        let files = [TaskFile(sourcePath: "ds/f", entry: known, length: 9, finish: true), TaskFile(sourcePath: "ds/g", entry: plain, length: 9, finish: true)]
        #expect(try TaskFile.decoded(TaskFile.encoded(files)) == files)
        let old = TaskFile.encoded(files.map { var f = $0; f.entry.identity = nil; return f })
        #expect(try TaskFile.decoded(old).allSatisfy { $0.entry.identity == nil })
        #expect(TaskAssign(job: "j", unit: 1, destination: DataPeer(name: "b", host: "h", port: 1), codec: "auto", chunkSize: 1024, files: files)
            .withoutIdentities().files.allSatisfy { $0.entry.identity == nil })
    }

    @Test func aTaskFailedOnItsDataPlaneSaysSo() throws {
        let lane = Message.taskFailed(TaskFailed(job: "j", unit: 1, retryable: true, reason: "peer closed", lane: true))
        #expect(try Message(frame: lane.frame()) == lane)
        let plain = Message.taskFailed(TaskFailed(job: "j", unit: 1, retryable: true, reason: "x", assignment: 3))
        #expect(try Message(frame: plain.frame()) == plain && plain.frame().payload.readableBytes == 2 + 1 + 8 + 1 + 2 + 1 + 4)
    }

    /// A registration with no data-plane host or port, or that takes no units (or four
    /// billion), is malformed: such an agent was listed as up, and could never be reached.
    @Test func aRegistrationThatCannotBeServedIsMalformed() throws {
        func register(host: String = "127.0.0.1", port: UInt16 = 7471, units: UInt32 = 8) -> Frame {
            Message.register(Register(name: "b1", site: "b", root: "/r", dataHost: host, dataPort: port, maxInFlight: units)).frame()
        }
        #expect(try Message(frame: register()) == .register(Register(name: "b1", site: "b", root: "/r", dataHost: "127.0.0.1", dataPort: 7471, maxInFlight: 8)))
        for frame in [register(host: ""), register(port: 0), register(units: 0), register(units: UInt32.max)] {
            #expect(throws: WireError.self) { try Message(frame: frame) }
        }
    }

    /// A reason from a peer comes out of the frame with its control characters escaped: an error
    /// frame sent before the handshake with a newline and a forged line went into the log as a
    /// line of its own.
    @Test func reasonsFromPeersHaveTheirControlCharactersEscaped() throws {
        let forged = "x\n2026-12-06T00:00:00+0000 notice barge.coordinator: agent 'FORGED' registered\u{1b}[2J\u{85}"
        let read = try Message(frame: Message.error(ErrorMessage(code: .malformedMessage, reason: forged)).frame())
        #expect(read == .error(ErrorMessage(code: .malformedMessage, reason: "x\\x0a2026-12-06T00:00:00+0000 notice barge.coordinator: agent 'FORGED' registered\\x1b[2J\\u{85}")))
        let failed = try Message(frame: Message.taskFailed(TaskFailed(job: "j", unit: 1, retryable: true, reason: "a\rb\tc")).frame())
        #expect(failed == .taskFailed(TaskFailed(job: "j", unit: 1, retryable: true, reason: "a\\x0db\\x09c")))
        #expect(ControlCharacters.escaped("é\té\n", keepingLines: true) == "é\té\n")
    }

    /// `warm lanes` names at most 16 destinations: more is refused on the count, before the
    /// destinations are read, with the count in the reason.
    @Test func warmLanesBeyondSixteenDestinationsIsRefusedOnItsCount() throws {
        let peer = DataPeer(name: "b1", host: "127.0.0.1", port: 7501)
        let sixteen = Message.warmLanes(WarmLanes(destinations: Array(repeating: peer, count: 16))).frame()
        #expect(try Message(frame: sixteen) == .warmLanes(WarmLanes(destinations: Array(repeating: peer, count: 16))))
        var seventeen = sixteen.payload
        seventeen.setInteger(UInt32(17), at: seventeen.readerIndex)
        var one = sixteen.payload.getSlice(at: sixteen.payload.readerIndex + 4, length: (sixteen.payload.readableBytes - 4) / 16)!
        seventeen.writeBuffer(&one)
        #expect(throws: WireError.malformed(.warmLanes, "17 destinations, more than 16")) {
            try Message(frame: Frame(type: .warmLanes, payload: seventeen))
        }
        // A count of four billion with no destinations behind it: the same reason, nothing read.
        var huge = ByteBuffer()
        huge.writeInteger(UInt32.max)
        #expect(throws: WireError.malformed(.warmLanes, "\(UInt32.max) destinations, more than 16")) {
            try Message(frame: Frame(type: .warmLanes, payload: huge))
        }
    }

    /// A placement's tier byte holds a tier (0 to 2) and, from version 17, the top bit for a
    /// file the unit brings whole; any other bit is malformed, naming the byte.
    @Test func aHaveQueryTierByteWithUnknownBitsIsMalformed() throws {
        let query = HaveQuery(job: "j", paths: ["f"], facts: [.init(tier: .cold, size: 10, mtimeSeconds: 1, whole: true)])
        #expect(try Message(frame: Message.haveQuery(query).frame()) == .haveQuery(query))
        let frame = Message.haveQuery(query).frame()
        var payload = frame.payload
        // The tier byte: after the job (2 + 1), the path list (4 + 2 + 1) and the placement count (4).
        let at = payload.readerIndex + 3 + 7 + 4
        #expect(payload.getInteger(at: at, as: UInt8.self) == 0x82)
        for bad: UInt8 in [0x83, 0x42, 0x06] {
            payload.setInteger(bad, at: at)
            #expect(throws: WireError.malformed(.haveQuery, "unknown tier \(bad)")) { try Message(frame: Frame(type: .haveQuery, payload: payload)) }
        }
    }

    /// A task file's flags: bits 0 to 4 (4, version 17: the destination may keep it in place);
    /// any other is malformed, as are hot and cold at once.
    @Test func taskFileFlagsPastBit4AreMalformed() throws {
        let entry = FileEntry(path: "d/f", kind: .file, size: 4096, mode: 0o644, mtimeSeconds: 1, mtimeNanoseconds: 0)
        let task = TaskAssign(job: "j", unit: 1, destination: DataPeer(name: "b1", host: "127.0.0.1", port: 7501), codec: "auto", chunkSize: 1 << 20,
                              files: [TaskFile(sourcePath: "ds/f", entry: entry, length: 4096, finish: true, inPlace: true)])
        #expect(try Message(frame: Message.taskAssign(task).frame()) == .taskAssign(task))
        let frame = Message.taskAssign(task).frame()
        var payload = frame.payload
        let at = payload.writerIndex - 1
        #expect(payload.getInteger(at: at, as: UInt8.self) == 0x11)
        for bad: UInt8 in [0x21, 0x91, 0x0D] {
            payload.setInteger(bad, at: at)
            #expect(throws: WireError.self) { try Message(frame: Frame(type: .taskAssign, payload: payload)) }
        }
    }

    /// A verification's attributes (version 22) round-trip with and without the repair flag; one
    /// naming a file the request does not list, or nanoseconds past a second, is malformed.
    @Test func verifyAttributesNameOnlyListedFilesAndWholeTimes() throws {
        let id = [UInt8](repeating: 0xAB, count: 32)
        func request(_ a: VerifyRequest.Attributes, repair: Bool = false) -> VerifyRequest {
            VerifyRequest(request: 1, files: [.init(path: "d/f", size: 10)], chunks: [ChunkReport(file: 0, offset: 0, length: 10, id: id)], repair: repair, attributes: [a])
        }
        let good = VerifyRequest.Attributes(file: 0, mode: 0o100644, mtimeSeconds: -5, mtimeNanoseconds: 999_999_999)
        for repair in [false, true] {
            #expect(try Message(frame: Message.verifyRequest(request(good, repair: repair)).frame()) == .verifyRequest(request(good, repair: repair)))
        }
        let plain = VerifyRequest(request: 1, files: [.init(path: "d/f", size: 10)], chunks: [])
        #expect(Message.verifyRequest(plain).frame().payload.readableBytes == 8 + 4 + 2 + 3 + 8 + 4)
        var far = good
        far.file = 1
        #expect(throws: WireError.malformed(.verifyRequest, "attributes name file 1 of 1")) { try Message(frame: Message.verifyRequest(request(far)).frame()) }
        var long = good
        long.mtimeNanoseconds = 1_000_000_000
        #expect(throws: WireError.malformed(.verifyRequest, "mtime nanoseconds 1000000000")) { try Message(frame: Message.verifyRequest(request(long)).frame()) }
    }

    @Test func errorReasonsAreCutToTheirLimit() throws {
        let long = ErrorMessage(code: .malformedMessage, reason: String(repeating: "é", count: 2000))
        #expect(long.reason.utf8.count <= ErrorMessage.maxReasonLength)
        #expect(try Message(frame: Message.error(long).frame()) == .error(long))
    }
}
