import BargeDigest
@testable import BargeWire
import NIOCore
import NIOEmbedded
import Testing

/// Version 8 sessions: every frame after the handshake is sealed both ways, and one that was
/// changed, replayed, reordered or sent in clear ends the connection.
struct FrameCipherTests {
    let keys = try! SessionKeys.derive(token: Fixtures.token, clientNonce: Fixtures.clientNonce, serverNonce: Fixtures.serverNonce,
                                       version: 8, clientName: "agent-a1")
    let allocator = ByteBufferAllocator()

    func frame(_ text: String, _ type: MessageType = .chunkData) -> Frame {
        Frame(type: type, payload: ByteBuffer(string: text))
    }

    /// A large chunk frame opens laid out like its file: the stored chunk's raw bytes at an
    /// address congruent to their file offset modulo 4,096 (so the destination writes them
    /// with O_DIRECT from the frame), whatever the path's length; the payload is the one sent,
    /// and a changed bit still keeps it shut, in the prefix the placement was read from too.
    @Test(arguments: [(UInt64(0), 1), (1, 17), (4095, 300), (123_457, 4000), (8 << 20, 2)])
    func aChunkFrameOpensLaidOutLikeItsFile(offset: UInt64, pathLength: Int) throws {
        let sealer = try AESGCM(key: keys.clientToServer, encrypting: true)
        let opener = try AESGCM(key: keys.clientToServer, encrypting: false)
        let place = ChunkPlace(job: "j-0123456789", path: String(repeating: "p", count: pathLength), offset: offset)
        var payload = ByteBuffer()
        payload.writeRepeatingByte(0, count: ChunkData.prefixLength(place))
        let body = (0..<(300 * 1024)).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }
        payload.writeBytes(body)
        ChunkData.setPrefix(in: &payload, place: place, fileSize: offset + UInt64(body.count), id: [UInt8](repeating: 9, count: 32))
        for (n, type) in [MessageType.chunkData, .chunkRepair].enumerated() {
            let sealed = try FrameCipher.seal(Frame(type: type, payload: payload), number: UInt64(n), with: sealer, allocator: allocator)
            let opened = try FrameCipher.open(sealed, number: UInt64(n), with: opener, allocator: allocator)
            #expect(opened.payload == payload && opened.type == type)
            let index = ChunkData.prefixLength(place) + ChunkData.encodedHeaderLength
            opened.payload.withUnsafeReadableBytes { bytes in
                #expect(Int(bitPattern: bytes.baseAddress! + index) % FrameCipher.placement == Int(offset % UInt64(FrameCipher.placement)))
            }
            for at in [1, ChunkData.prefixLength(place) - 40, payload.readableBytes / 2] {
                var flipped = sealed
                flipped.payload.setInteger(flipped.payload.getInteger(at: at, as: UInt8.self)! ^ 0x01, at: at)
                #expect(throws: WireError.self) { try FrameCipher.open(flipped, number: UInt64(n), with: opener, allocator: allocator) }
            }
        }
    }

    @Test func framesOpenInOrderAndOnlyAsSent() throws {
        let sealer = try AESGCM(key: keys.clientToServer, encrypting: true)
        let opener = try AESGCM(key: keys.clientToServer, encrypting: false)
        let a = try FrameCipher.seal(frame("first chunk"), number: 0, with: sealer, allocator: allocator)
        let b = try FrameCipher.seal(frame("second chunk"), number: 1, with: sealer, allocator: allocator)
        #expect(a.flags == Frame.sealedFlag && a.payload.readableBytes == "first chunk".utf8.count + 16)
        #expect(!String(buffer: a.payload).contains("first"))
        #expect(String(buffer: try FrameCipher.open(a, number: 0, with: opener, allocator: allocator).payload) == "first chunk")
        #expect(String(buffer: try FrameCipher.open(b, number: 1, with: opener, allocator: allocator).payload) == "second chunk")
        // Replayed, reordered, another type, one bit changed, or in clear: none opens.
        #expect(throws: WireError.self) { try FrameCipher.open(a, number: 2, with: opener, allocator: allocator) }
        #expect(throws: WireError.self) { try FrameCipher.open(b, number: 0, with: opener, allocator: allocator) }
        var retyped = a
        retyped.type = .chunkAck
        #expect(throws: WireError.self) { try FrameCipher.open(retyped, number: 0, with: opener, allocator: allocator) }
        var flipped = a
        flipped.payload.setInteger(flipped.payload.getInteger(at: 3, as: UInt8.self)! ^ 0x10, at: 3)
        #expect(throws: WireError.self) { try FrameCipher.open(flipped, number: 0, with: opener, allocator: allocator) }
        #expect(throws: WireError.self) { try FrameCipher.open(frame("clear"), number: 0, with: opener, allocator: allocator) }
        // The other direction's key does not open it.
        let wrong = try AESGCM(key: keys.serverToClient, encrypting: false)
        #expect(throws: WireError.self) { try FrameCipher.open(a, number: 0, with: wrong, allocator: allocator) }
    }

    /// Two real pipelines over embedded channels: after a version 8 handshake the bytes between
    /// them never hold what the frames carry, and a changed byte closes the connection with an
    /// error the other side hears.
    @Test func onTheWireNothingIsInClearAndADamagedFrameEndsTheConnection() throws {
        let (c, cr) = try sealedPeer(.client(ClientHandshake(token: Fixtures.token, name: "agent-a1", role: .agent, versions: 8...8, nonce: Fixtures.clientNonce)))
        let (s, sr) = try sealedServer()
        var wire = ByteBuffer()
        func shuttle(_ from: EmbeddedChannel, _ to: EmbeddedChannel, damage: Int? = nil) throws {
            var bytes = ByteBuffer()
            while var piece = try from.readOutbound(as: ByteBuffer.self) { bytes.writeBuffer(&piece) }
            guard bytes.readableBytes > 0 else { return }
            if let damage {
                // As an attacker on the path would: change a byte and mend the frame's XXH3-64.
                let at = bytes.readerIndex
                bytes.setInteger(bytes.getInteger(at: at + damage, as: UInt8.self)! ^ 0x01, at: at + damage)
                let length = Int(bytes.getInteger(at: at + 8, as: UInt32.self)!)
                let sum = bytes.getSlice(at: at + Frame.headerSize, length: length)!.withUnsafeReadableBytes { XXH3.hash64($0) }
                bytes.setInteger(sum, at: at + 12)
            }
            var copy = bytes
            wire.writeBuffer(&copy)
            if to.isActive { _ = try? to.writeInbound(bytes) }
        }
        for _ in 0..<4 { try shuttle(c, s); try shuttle(s, c) }
        guard case .established(let session)? = sr.events.first else { Issue.record("\(sr.events)"); return }
        #expect(session.version == 8 && session.keys != nil)
        wire.clear()
        let marker = "MARKER-\(UInt64.random(in: 0...UInt64.max))-MARKER"
        for i in 0..<3 {
            try c.writeOutbound(Frame(type: .chunkData, payload: ByteBuffer(string: "\(marker) \(i)")))
            try shuttle(c, s)
        }
        try s.writeOutbound(Frame(type: .chunkAck, payload: ByteBuffer(string: marker)))
        try shuttle(s, c)
        #expect(sr.frames.map { String(buffer: $0.payload) } == (0..<3).map { "\(marker) \($0)" })
        #expect(cr.frames.map { String(buffer: $0.payload) } == [marker])
        #expect(!String(decoding: wire.readableBytesView, as: UTF8.self).contains("MARKER"))
        // One bit of the next frame's ciphertext changed on the way (its checksum mended): the
        // server refuses it and closes.
        try c.writeOutbound(Frame(type: .chunkData, payload: ByteBuffer(string: marker)))
        try shuttle(c, s, damage: Frame.headerSize + 4)
        #expect(sr.frames.count == 3)
        #expect(!s.isActive)
        try shuttle(s, c)
        guard case .protocolError(let e)? = sr.events.last else { Issue.record("\(sr.events)"); return }
        #expect(e.code == .sealBroken, "\(e)")
    }

    /// A full pipeline on an embedded channel, for one side of a version 8 handshake.
    func sealedPeer(_ side: HandshakeHandler.Side) throws -> (EmbeddedChannel, Recorder) {
        let channel = EmbeddedChannel()
        let recorder = Recorder()
        try channel.pipeline.syncOperations.addBargeHandlers(side)
        try channel.pipeline.syncOperations.addHandler(recorder)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 7481)).wait()
        return (channel, recorder)
    }

    /// Moves what `from` wrote to `to`, in one read.
    func shuttle(_ from: EmbeddedChannel, _ to: EmbeddedChannel) throws {
        var bytes = ByteBuffer()
        while var piece = try from.readOutbound(as: ByteBuffer.self) { bytes.writeBuffer(&piece) }
        if bytes.readableBytes > 0, to.isActive { _ = try? to.writeInbound(bytes) }
    }

    func sealedClient() throws -> (EmbeddedChannel, Recorder) {
        try sealedPeer(.client(ClientHandshake(token: Fixtures.token, name: "agent-a1", role: .peer, versions: 8...8, nonce: Fixtures.clientNonce)))
    }

    func sealedServer() throws -> (EmbeddedChannel, Recorder) {
        try sealedPeer(.server(ServerHandshake(token: Fixtures.token, name: "b1", versions: 8...8, nonce: Fixtures.serverNonce)))
    }

    /// The client's session starts as its auth goes out: its first request travels in the same
    /// read as the auth (no round trip for the welcome), and the server, which installs its
    /// cipher as it takes the auth, opens it. The welcome that follows in clear is read by the
    /// client's cipher and dropped; sealed replies flow after it.
    @Test func aClientsFirstRequestRidesRightBehindItsAuth() throws {
        let (c, cr) = try sealedClient()
        let (s, sr) = try sealedServer()
        try shuttle(c, s)  // hello
        try shuttle(s, c)  // challenge: the client answers with its auth and starts its session
        guard case .established(let session)? = cr.events.first else { Issue.record("client: \(cr.events)"); return }
        #expect(session.welcomeAhead && session.keys == keys && session.version == 8)
        try c.writeOutbound(frame("have query right behind the auth", .haveQuery))
        try shuttle(c, s)  // auth and the sealed request, in one read
        guard case .established? = sr.events.first else { Issue.record("server: \(sr.events)"); return }
        #expect(sr.frames.map { String(buffer: $0.payload) } == ["have query right behind the auth"])
        try s.writeOutbound(frame("have list", .haveList))
        try shuttle(s, c)  // the welcome in clear, then the sealed reply
        #expect(cr.frames.map(\.type) == [.haveList] && String(buffer: cr.frames[0].payload) == "have list")
        #expect(c.isActive && s.isActive)
    }

    /// Before its welcome, a client's session hears a server's error in clear (it refused the
    /// proof), and reads nothing after it; anything else in place of the welcome (a sealed frame,
    /// another message in clear) ends the connection as a broken seal.
    @Test func whatComesInPlaceOfTheWelcomeIsAnErrorOrTheEnd() throws {
        let (c, cr) = try sealedClient()
        let (s, _) = try sealedServer()
        try shuttle(c, s)
        try shuttle(s, c)
        var refusal = ByteBuffer()
        _ = refusal.writeFrame(Message.error(ErrorMessage(code: .authenticationFailed, reason: "agent-a1 did not prove the cluster token")).frame())
        _ = refusal.writeFrame(frame("in clear after the error", .haveList))
        try c.writeInbound(refusal)
        #expect(cr.frames.count == 1)
        guard case .error(let e) = try Message(frame: cr.frames[0]) else { Issue.record("\(cr.frames)"); return }
        #expect(e.code == .authenticationFailed && e.reason.contains("cluster token"))

        for intruder in [frame("a reply in clear", .haveList),
                         try FrameCipher.seal(frame("sealed too soon", .haveList), number: 0,
                                              with: try AESGCM(key: keys.serverToClient, encrypting: true), allocator: allocator)] {
            let (c, cr) = try sealedClient()
            let (s, _) = try sealedServer()
            try shuttle(c, s)
            try shuttle(s, c)
            var bytes = ByteBuffer()
            _ = bytes.writeFrame(intruder)
            _ = try? c.writeInbound(bytes)
            #expect(cr.frames.isEmpty)
            #expect(!c.isActive)
            guard case .protocolError(let e)? = cr.events.last else { Issue.record("\(cr.events)"); continue }
            #expect(e.code == .sealBroken, "\(e)")
        }
    }
}
