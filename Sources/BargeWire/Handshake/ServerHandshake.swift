/// The server's side of the handshake: (hello) → challenge → (auth) → welcome. Pure: it is fed
/// messages and returns actions; the channel handler carries them out.
public struct ServerHandshake: Sendable {
    public enum State: Hashable, Sendable {
        case awaitingHello
        case awaitingAuth(Hello, version: UInt8)
        case established(Session)
        case failed(ErrorMessage)

        /// The state in words, for errors sent to the peer (never its fields: a hello's nonce).
        public var name: String {
            switch self {
            case .awaitingHello: "waiting for hello"
            case .awaitingAuth: "waiting for auth"
            case .established: "established"
            case .failed: "failed"
            }
        }
    }

    public private(set) var state = State.awaitingHello
    private let token: [UInt8]
    private let name: String
    private let versions: ClosedRange<UInt8>
    private let nonce: [UInt8]
    private let maxPayloadLength: Int

    /// `nonce` must be 32 fresh random bytes, one set per connection.
    public init(token: [UInt8], name: String, versions: ClosedRange<UInt8> = WireVersion.supported,
                maxPayloadLength: Int = Frame.defaultMaxPayload, nonce: [UInt8]) {
        precondition(nonce.count == Hello.nonceLength, "a handshake nonce is 32 bytes")
        self.token = token
        self.name = name
        self.versions = versions
        self.maxPayloadLength = maxPayloadLength
        self.nonce = nonce
    }

    public mutating func receive(_ message: Message) -> HandshakeAction {
        switch (state, message) {
        case (_, .error(let e)):
            state = .failed(e)
            return .fail(e, notifyPeer: false)

        case (.awaitingHello, .hello(let h)):
            // The highest version both sides speak.
            let version = min(h.maxVersion, versions.upperBound)
            guard version >= max(h.minVersion, versions.lowerBound) else {
                return fail(ErrorMessage(code: .noCommonVersion,
                                         reason: "client speaks versions \(h.minVersion)...\(h.maxVersion), this server \(versions.lowerBound)...\(versions.upperBound)"
                                            + (versions.lowerBound >= WireVersion.sealed || h.minVersion >= WireVersion.sealed
                                               ? " (version 8 and up encrypt every connection: upgrade the older side, or run every node with --insecure-plaintext)" : "")))
            }
            do {
                let proof = try HandshakeProof.server(token: token, clientNonce: h.nonce, serverNonce: nonce, version: version, clientName: h.name)
                state = .awaitingAuth(h, version: version)
                return .send(.challenge(Challenge(version: version, nonce: nonce, proof: proof, maxPayloadLength: UInt32(maxPayloadLength))))
            } catch {
                return fail(ErrorMessage(code: .authenticationFailed, reason: "\(error)"))
            }

        case (.awaitingAuth(let h, let version), .auth(let a)):
            let expected = try? HandshakeProof.client(token: token, clientNonce: h.nonce, serverNonce: nonce, version: version, clientName: h.name)
            guard let expected, HandshakeProof.matches(a.proof, expected) else {
                return fail(ErrorMessage(code: .authenticationFailed,
                                         reason: "\(h.role) '\(h.name)' did not prove the cluster token: a replayed or forged handshake, or a client that does not check the server's proof (a Barge client with another --token-file stops at that proof, and says so)"))
            }
            var keys: SessionKeys?
            if version >= WireVersion.sealed {
                guard let k = try? SessionKeys.derive(token: token, clientNonce: h.nonce, serverNonce: nonce, version: version, clientName: h.name) else {
                    return fail(ErrorMessage(code: .authenticationFailed, reason: "cannot derive the session keys"))
                }
                keys = k
            }
            let session = Session(version: version, peerName: h.name, role: h.role, maxPayloadLength: maxPayloadLength, keys: keys, isClient: false)
            state = .established(session)
            return .sendAndEstablish(.welcome(Welcome(serverName: name)), session)

        default:
            return fail(ErrorMessage(.unexpected(message.type, state: "in the handshake, \(state.name)")))
        }
    }

    private mutating func fail(_ error: ErrorMessage) -> HandshakeAction {
        state = .failed(error)
        return .fail(error, notifyPeer: true)
    }
}
