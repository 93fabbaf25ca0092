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
    /// Client, sealed version: the session started as its auth went out, so the server's welcome
    /// (or its error, should it refuse the proof) is still to come, in clear, as the first frame
    /// the cipher reads; `peerName` is then empty (the server names itself in that welcome).
    public var welcomeAhead: Bool

    public init(version: UInt8, peerName: String, role: PeerRole, maxPayloadLength: Int, keys: SessionKeys? = nil, isClient: Bool = false,
                welcomeAhead: Bool = false) {
        self.version = version
        self.peerName = peerName
        self.role = role
        self.maxPayloadLength = maxPayloadLength
        self.keys = keys
        self.isClient = isClient
        self.welcomeAhead = welcomeAhead
    }
}

/// What a handshake state machine asks its channel handler to do.
public enum HandshakeAction: Hashable, Sendable {
    case send(Message)
    /// Send the message, then treat the connection as established: the server's welcome, or on a
    /// sealed version the client's auth.
    case sendAndEstablish(Message, Session)
    /// Client, in clear (versions 1 to 7): the welcome arrived.
    case establish(Session)
    /// Give up. With `notifyPeer`, send `error` before closing; the reason is also what to log.
    case fail(ErrorMessage, notifyPeer: Bool)
}
