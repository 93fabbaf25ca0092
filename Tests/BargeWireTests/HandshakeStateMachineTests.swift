import BargeWire
import Testing

/// The handshake state machines on their own: no channel, fixed nonces.
struct HandshakeStateMachineTests {
    func pair(clientToken: [UInt8] = Fixtures.token, serverToken: [UInt8] = Fixtures.token,
              clientVersions: ClosedRange<UInt8> = 1...1, serverVersions: ClosedRange<UInt8> = 1...1) -> (ClientHandshake, ServerHandshake) {
        (ClientHandshake(token: clientToken, name: "agent-a1", role: .agent, versions: clientVersions, nonce: Fixtures.clientNonce),
         ServerHandshake(token: serverToken, name: "coordinator", versions: serverVersions, maxPayloadLength: 1 << 20, nonce: Fixtures.serverNonce))
    }

    func sent(_ action: HandshakeAction) throws -> Message {
        guard case .send(let m) = action else { throw Unexpected(action: action) }
        return m
    }

    struct Unexpected: Error { let action: HandshakeAction }

    @Test func matchingTokensEstablishOnBothSides() throws {
        var (client, server) = pair()
        let hello = try sent(client.start())
        let challenge = try sent(server.receive(hello))
        let auth = try sent(client.receive(challenge))
        guard case .sendAndEstablish(let welcome, let serverSession) = server.receive(auth) else {
            Issue.record("server did not establish"); return
        }
        #expect(serverSession == Session(version: 1, peerName: "agent-a1", role: .agent, maxPayloadLength: 1 << 20))
        guard case .establish(let clientSession) = client.receive(welcome) else { Issue.record("client did not establish"); return }
        #expect(clientSession == Session(version: 1, peerName: "coordinator", role: .agent, maxPayloadLength: 1 << 20, isClient: true))
    }

    @Test func theHighestCommonVersionIsChosen() throws {
        var (client, server) = pair(clientVersions: 1...3, serverVersions: 1...2)
        guard case .challenge(let c) = try sent(server.receive(try sent(client.start()))) else { Issue.record("no challenge"); return }
        #expect(c.version == 2)
    }

    /// This build speaks 8 only (every frame sealed), so an older peer is refused, with the way
    /// out in the reason, whichever side it is on; nobody can talk it down to clear text.
    @Test func anEncryptingBuildRefusesOlderPeersAndSaysWhy() throws {
        #expect(WireVersion.supported == 8...23)
        for old: ClosedRange<UInt8> in [1...1, 1...7] {
            for (c, s) in [(old, WireVersion.supported), (WireVersion.supported, old)] {
                var (client, server) = pair(clientVersions: c, serverVersions: s)
                guard case .fail(let e, true) = server.receive(try sent(client.start())) else { Issue.record("\(c) and \(s) agreed"); continue }
                #expect(e.code == .noCommonVersion && e.reason.contains("--insecure-plaintext"))
            }
        }
        // A server that offers 7 to a client that asks for 8 only: the client refuses.
        var (client, server) = pair(clientVersions: 8...8, serverVersions: 1...7)
        let hello = try sent(client.start())
        var downgraded = hello
        if case .hello(var h) = hello { h = Hello(minVersion: 1, maxVersion: 7, role: h.role, name: h.name, nonce: h.nonce); downgraded = .hello(h) }
        guard case .challenge(let ch) = try sent(server.receive(downgraded)) else { Issue.record("no challenge"); return }
        #expect(ch.version == 7)
        guard case .fail(let e, _) = client.receive(.challenge(ch)) else { Issue.record("the client took version 7"); return }
        #expect(e.code == .noCommonVersion)
    }

    /// Builds in clear (1...7, `--insecure-plaintext`) and older ones still agree, as in a
    /// rolling update from 7.
    @Test func clearTextBuildsOneVersionApartAgree() throws {
        for (old, expected): (ClosedRange<UInt8>, UInt8) in [(1...1, 1), (1...6, 6), (2...7, 7)] {
            for (c, s) in [(old, 1...7), (1...7, old)] {
                var (client, server) = pair(clientVersions: c, serverVersions: s)
                guard case .challenge(let ch) = try sent(server.receive(try sent(client.start()))) else { Issue.record("no challenge for \(c) and \(s)"); continue }
                #expect(ch.version == expected)
                #expect(throws: Never.self) { _ = try sent(client.receive(.challenge(ch))) }
            }
        }
    }

    /// Version 8: both sides derive the same two keys, different per connection (nonce).
    @Test func bothSidesDeriveTheSameFrameKeys() throws {
        var (client, server) = pair(clientVersions: 8...8, serverVersions: 8...8)
        let challenge = try sent(server.receive(try sent(client.start())))
        // The client's session starts with its auth (its welcome is still to come, in clear).
        guard case .sendAndEstablish(let auth, let clientSession) = client.receive(challenge),
              case .sendAndEstablish(.welcome, let serverSession) = server.receive(auth) else { Issue.record("no session"); return }
        let keys = try #require(serverSession.keys)
        #expect(clientSession.keys == keys && clientSession.isClient && !serverSession.isClient)
        #expect(clientSession.welcomeAhead && !serverSession.welcomeAhead && client.state == .established(clientSession))
        #expect(clientSession.version == 8 && clientSession.maxPayloadLength == 1 << 20 && clientSession.role == .agent)
        #expect(keys.clientToServer != keys.serverToClient && keys.clientToServer.count == 32)
        let other = try SessionKeys.derive(token: Fixtures.token, clientNonce: Fixtures.serverNonce, serverNonce: Fixtures.clientNonce, version: 8, clientName: "agent-a1")
        #expect(other != keys)
        #expect(pair(clientVersions: 1...1, serverVersions: 1...1).0.state == .idle)
    }

    @Test func noCommonVersionIsRefusedWithAReason() throws {
        var (client, server) = pair(clientVersions: 2...3, serverVersions: 1...1)
        guard case .fail(let e, true) = server.receive(try sent(client.start())) else { Issue.record("server accepted"); return }
        #expect(e.code == .noCommonVersion)
        #expect(e.reason.contains("2...3"))
    }

    /// The client checks the server's proof first, so it never proves itself to a server that
    /// does not know the token; the server hears why.
    @Test func aServerWithAnotherTokenIsRefusedByTheClient() throws {
        var (client, server) = pair(serverToken: Array("another token entirely 00000000".utf8))
        let challenge = try sent(server.receive(try sent(client.start())))
        guard case .fail(let e, true) = client.receive(challenge) else { Issue.record("client went on"); return }
        #expect(e.code == .authenticationFailed)
        // Either side may hold the wrong token: the words, in both logs, say they differ.
        #expect(e.reason.hasPrefix("the server did not prove the cluster token: most likely 'agent-a1' and the server") && e.reason.contains("same --token-file"), "\(e.reason)")
        guard case .fail(let heard, false) = server.receive(.error(e)) else { Issue.record("server did not stop"); return }
        #expect(heard == e)
    }

    @Test func aForgedAuthIsRefusedByTheServer() throws {
        var (client, server) = pair()
        _ = try sent(server.receive(try sent(client.start())))
        guard case .fail(let e, true) = server.receive(.auth(Auth(proof: [UInt8](repeating: 0, count: 32)))) else {
            Issue.record("server accepted a forged proof"); return
        }
        #expect(e.code == .authenticationFailed)
        #expect(e.reason.contains("agent-a1"))
        #expect(server.state == .failed(e))
    }

    /// A replayed client proof from another connection (another server nonce) is worthless.
    @Test func aReplayedProofIsRefused() throws {
        var (client, server) = pair()
        _ = try sent(server.receive(try sent(client.start())))
        let proofForOtherNonce = try HandshakeProof.client(token: Fixtures.token, clientNonce: Fixtures.clientNonce,
                                                           serverNonce: [UInt8](repeating: 1, count: 32), version: 1, clientName: "agent-a1")
        guard case .fail(let e, true) = server.receive(.auth(Auth(proof: proofForOtherNonce))) else { Issue.record("replay accepted"); return }
        #expect(e.code == .authenticationFailed)
    }

    @Test func messagesOutOfOrderAreRefused() throws {
        var (client, server) = pair()
        guard case .fail(let e, true) = server.receive(.auth(Auth(proof: [UInt8](repeating: 0, count: 32)))) else {
            Issue.record("auth before hello accepted"); return
        }
        #expect(e.code == .unexpectedMessage)
        _ = client.start()
        guard case .fail(let e2, true) = client.receive(.welcome(Welcome(serverName: "x"))) else { Issue.record("welcome before challenge accepted"); return }
        #expect(e2.code == .unexpectedMessage)
    }
}
