/// Who is connecting.
public enum PeerRole: UInt8, Hashable, Sendable {
    /// An agent registering with the coordinator.
    case agent = 1
    /// A command-line client of the coordinator.
    case client = 2
    /// An agent opening a data-plane stream to another agent.
    case peer = 3
}

/// Opens a connection: the versions the client speaks, who it is, and its challenge to the server.
public struct Hello: Hashable, Sendable {
    public static let nonceLength = 32
    public static let maxNameLength = 255

    public var minVersion: UInt8
    public var maxVersion: UInt8
    public var role: PeerRole
    public var name: String
    public var nonce: [UInt8]

    public init(minVersion: UInt8, maxVersion: UInt8, role: PeerRole, name: String, nonce: [UInt8]) {
        self.minVersion = minVersion
        self.maxVersion = maxVersion
        self.role = role
        self.name = name
        self.nonce = nonce
    }
}

/// The server's answer to `Hello`: the version chosen, its own nonce, and its proof that it knows
/// the cluster token (so a client never authenticates to an impostor).
public struct Challenge: Hashable, Sendable {
    public var version: UInt8
    public var nonce: [UInt8]
    public var proof: [UInt8]
    /// The largest frame payload the server accepts once the handshake is done.
    public var maxPayloadLength: UInt32

    public init(version: UInt8, nonce: [UInt8], proof: [UInt8], maxPayloadLength: UInt32) {
        self.version = version
        self.nonce = nonce
        self.proof = proof
        self.maxPayloadLength = maxPayloadLength
    }
}

/// The client's proof that it knows the cluster token.
public struct Auth: Hashable, Sendable {
    public var proof: [UInt8]
    public init(proof: [UInt8]) { self.proof = proof }
}

/// The server accepts the client; the session starts.
public struct Welcome: Hashable, Sendable {
    public var serverName: String
    public init(serverName: String) { self.serverName = serverName }
}

/// Why the sender is about to close the connection (or refuse a request).
public struct ErrorMessage: Hashable, Sendable, CustomStringConvertible {
    public static let maxReasonLength = 1024

    public var code: ErrorCode
    public var reason: String

    public init(code: ErrorCode, reason: String) {
        self.code = code
        // Cut on a character boundary so the reason always fits its field.
        var r = reason
        while r.utf8.count > Self.maxReasonLength { r.removeLast() }
        self.reason = r
    }

    public init(_ error: WireError) {
        self.init(code: error.code, reason: error.description)
    }

    public var description: String { "\(code): \(reason)" }
}
