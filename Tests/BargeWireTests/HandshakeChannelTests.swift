import BargeWire
import NIOCore
import NIOEmbedded
import Testing

/// Records the protocol events and the frames that reach the end of the pipeline.
final class Recorder: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = Frame
    var events: [ProtocolEvent] = []
    var frames: [Frame] = []

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let e = event as? ProtocolEvent { events.append(e) }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        frames.append(unwrapInboundIn(data))
    }
}

/// Full pipelines (framing, handshake, error handling) on embedded channels, bytes shuttled by hand.
struct HandshakeChannelTests {
    struct Peer {
        let channel: EmbeddedChannel
        let recorder: Recorder
    }

    func peer(_ side: HandshakeHandler.Side, timeout: TimeAmount = .seconds(10)) throws -> Peer {
        let channel = EmbeddedChannel()
        let recorder = Recorder()
        try channel.pipeline.syncOperations.addBargeHandlers(side, handshakeTimeout: timeout)
        try channel.pipeline.syncOperations.addHandler(recorder)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 7481)).wait()
        return Peer(channel: channel, recorder: recorder)
    }

    func client(token: [UInt8] = Fixtures.token) throws -> Peer {
        try peer(.client(ClientHandshake(token: token, name: "agent-a1", role: .agent, nonce: Fixtures.clientNonce)))
    }

    func server(token: [UInt8] = Fixtures.token, timeout: TimeAmount = .seconds(10)) throws -> Peer {
        try peer(.server(ServerHandshake(token: token, name: "coordinator", nonce: Fixtures.serverNonce)), timeout: timeout)
    }

    /// Moves every outbound byte of `from` into `to`; returns whether anything moved.
    @discardableResult
    func shuttle(_ from: Peer, _ to: Peer) throws -> Bool {
        var moved = false
        while let bytes = try from.channel.readOutbound(as: ByteBuffer.self) {
            moved = true
            if to.channel.isActive { _ = try? to.channel.writeInbound(bytes) }
        }
        return moved
    }

    func converse(_ a: Peer, _ b: Peer) throws {
        for _ in 0..<10 {
            let ab = try shuttle(a, b)
            let ba = try shuttle(b, a)
            if !ab && !ba { return }
        }
    }

    /// Every frame `peer` wrote, decoded.
    func sentMessages(_ peer: Peer) throws -> [Message] {
        // A frame goes out as two writes (header, then payload): gather them before parsing.
        var out: [Message] = []
        var bytes = ByteBuffer()
        while var piece = try peer.channel.readOutbound(as: ByteBuffer.self) { bytes.writeBuffer(&piece) }
        while let frame = try bytes.readFrame(maxPayloadLength: Frame.defaultMaxPayload) { out.append(try Message(frame: frame)) }
        return out
    }

    @Test func sameTokenEstablishesAndLaterFramesFlowThrough() throws {
        let c = try client(), s = try server()
        try converse(c, s)
        guard case .established(let session)? = s.recorder.events.first else { Issue.record("server: \(s.recorder.events)"); return }
        #expect(session.peerName == "agent-a1" && session.role == .agent)
        guard case .established(let clientSession)? = c.recorder.events.first else { Issue.record("client: \(c.recorder.events)"); return }
        // Sealed: the client's session starts with its auth; the server names itself in the welcome that follows.
        #expect(clientSession.welcomeAhead && clientSession.peerName.isEmpty && clientSession.version >= 8)
        // The handshake handler has left; a frame now reaches the session's handlers.
        try c.channel.writeOutbound(Message.welcome(Welcome(serverName: "after")).frame())
        try shuttle(c, s)
        #expect(s.recorder.frames.map(\.type) == [.welcome])
        #expect(s.channel.isActive && c.channel.isActive)
    }

    @Test func aWrongTokenGetsAReasonAndIsDropped() throws {
        let c = try client(token: Array("not the cluster token at all!!!".utf8)), s = try server()
        try converse(c, s)
        #expect(!c.channel.isActive)
        #expect(!s.channel.isActive)
        guard case .handshakeFailed(let e)? = s.recorder.events.first else { Issue.record("server: \(s.recorder.events)"); return }
        #expect(e.code == .authenticationFailed)
        #expect(e.reason.contains("--token-file"))
    }

    /// A hostile client that skips the proof check and sends a forged proof gets an error frame
    /// naming it, and the server closes.
    @Test func aForgedProofIsRefusedWithAnErrorFrame() throws {
        let s = try server()
        try s.channel.writeInbound(Fixtures.bytes(.hello(Hello(minVersion: WireVersion.supported.lowerBound, maxVersion: WireVersion.supported.upperBound,
                                                               role: .agent, name: "mallory", nonce: Fixtures.clientNonce))))
        guard case .challenge? = try sentMessages(s).first else { Issue.record("no challenge"); return }
        try s.channel.writeInbound(Fixtures.bytes(.auth(Auth(proof: [UInt8](repeating: 0, count: 32)))))
        guard case .error(let e)? = try sentMessages(s).first else { Issue.record("no error frame"); return }
        #expect(e.code == .authenticationFailed)
        #expect(e.reason.contains("mallory"))
        #expect(!s.channel.isActive)
    }

    @Test func garbageGetsAnErrorFrameAndAClose() throws {
        let s = try server()
        _ = try? s.channel.writeInbound(ByteBuffer(string: "GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
        guard case .error(let e)? = try sentMessages(s).first else { Issue.record("no error frame"); return }
        #expect(e.code == .badMagic)
        #expect(!s.channel.isActive)
        #expect(s.recorder.events.contains(.protocolError(e)))
    }

    @Test func aFrameOverTheHandshakeLimitIsRefusedBeforeItsBody() throws {
        let s = try server()
        var header = ByteBuffer()
        header.writeInteger(Frame.magic)
        header.writeInteger(Frame.version)
        header.writeInteger(MessageType.hello.rawValue)
        header.writeInteger(UInt16(0))
        header.writeInteger(UInt32(64 << 20))
        header.writeInteger(UInt64(0))
        _ = try? s.channel.writeInbound(header)
        guard case .error(let e)? = try sentMessages(s).first else { Issue.record("no error frame"); return }
        #expect(e.code == .frameTooLarge)
        #expect(!s.channel.isActive)
    }

    @Test func aSilentPeerIsDroppedAfterTheTimeout() throws {
        let s = try server(timeout: .seconds(5))
        (s.channel.eventLoop as! EmbeddedEventLoop).advanceTime(by: .seconds(4))
        #expect(s.channel.isActive)
        (s.channel.eventLoop as! EmbeddedEventLoop).advanceTime(by: .seconds(2))
        #expect(!s.channel.isActive)
        guard case .error(let e)? = try sentMessages(s).first else { Issue.record("no error frame"); return }
        #expect(e.reason.contains("handshake not finished") && e.code == .timedOut)
    }
}
