/// What an established connection agreed.
public struct Session: Hashable, Sendable {
    public var version: UInt8
    /// The other side's name: the agent's or client's on the server, the server's on the client.
    public var peerName: String
    /// The client's role (on both sides).
    public var role: PeerRole
    /// The largest frame payload the server accepts from now on.
    public var maxPayloadLength: Int

    public init(version: UInt8, peerName: String, role: PeerRole, maxPayloadLength: Int) {
        self.version = version
        self.peerName = peerName
        self.role = role
        self.maxPayloadLength = maxPayloadLength
    }
}

/// What a handshake state machine asks its channel handler to do.
public enum HandshakeAction: Hashable, Sendable {
    case send(Message)
    /// Server: send the welcome, then treat the connection as established.
    case sendAndEstablish(Message, Session)
    /// Client: the welcome arrived.
    case establish(Session)
    /// Give up. With `notifyPeer`, send `error` before closing; the reason is also what to log.
    case fail(ErrorMessage, notifyPeer: Bool)
}
