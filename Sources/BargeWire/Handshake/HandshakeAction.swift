/// What an established connection agreed.
public struct Session: Hashable, Sendable {
    public var version: UInt8
    /// The other side's name: the agent's or client's on the server, the server's on the client.
    public var peerName: String
    /// The client's role (on both sides).
    public var role: PeerRole
    /// The largest frame payload the server accepts from now on.
    public var maxPayloadLength: Int
    /// Version 8 and up: the frame keys, and which side this is (it seals with its own
    /// direction's key). Nil: frames go in clear (versions 1 to 7).
    public var keys: SessionKeys?
    public var isClient: Bool

    public init(version: UInt8, peerName: String, role: PeerRole, maxPayloadLength: Int, keys: SessionKeys? = nil, isClient: Bool = false) {
        self.version = version
        self.peerName = peerName
        self.role = role
        self.maxPayloadLength = maxPayloadLength
        self.keys = keys
        self.isClient = isClient
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
