import NIOCore

/// Every message the protocol defines, with its payload encoding. One enum, so that a state
/// machine can switch over what it receives.
public enum Message: Hashable, Sendable {
    case hello(Hello)
    case challenge(Challenge)
    case auth(Auth)
    case welcome(Welcome)
    case register(Register)
    case registered(Registered)
    case heartbeat(Heartbeat)
    case chunkData(ChunkData)
    case chunkAck(ChunkAck)
    case chunkNack(ChunkNack)
    case fileDone(FileDone)
    case error(ErrorMessage)

    public var type: MessageType {
        switch self {
        case .hello: .hello
        case .challenge: .challenge
        case .auth: .auth
        case .welcome: .welcome
        case .register: .register
        case .registered: .registered
        case .heartbeat: .heartbeat
        case .chunkData: .chunkData
        case .chunkAck: .chunkAck
        case .chunkNack: .chunkNack
        case .fileDone: .fileDone
        case .error: .error
        }
    }

    /// Parses a frame's payload as the message its type names.
    public init(frame: Frame) throws(WireError) {
        var r = PayloadReader(frame)
        switch frame.type {
        case .hello:
            let minVersion = try r.integer(UInt8.self, "min version")
            let maxVersion = try r.integer(UInt8.self, "max version")
            guard minVersion <= maxVersion else { throw .malformed(.hello, "version range \(minVersion)...\(maxVersion) is empty") }
            let rawRole = try r.integer(UInt8.self, "role")
            guard let role = PeerRole(rawValue: rawRole) else { throw .malformed(.hello, "unknown role \(rawRole)") }
            let nonce = try r.bytes(Hello.nonceLength, "nonce")
            let name = try r.string("name", maxLength: Hello.maxNameLength)
            self = .hello(Hello(minVersion: minVersion, maxVersion: maxVersion, role: role, name: name, nonce: nonce))
        case .challenge:
            let version = try r.integer(UInt8.self, "version")
            let nonce = try r.bytes(Hello.nonceLength, "nonce")
            let proof = try r.bytes(32, "proof")
            let max = try r.integer(UInt32.self, "max payload length")
            self = .challenge(Challenge(version: version, nonce: nonce, proof: proof, maxPayloadLength: max))
        case .auth:
            self = .auth(Auth(proof: try r.bytes(32, "proof")))
        case .welcome:
            self = .welcome(Welcome(serverName: try r.string("server name", maxLength: Hello.maxNameLength)))
        case .register:
            let name = try r.string("name", maxLength: Register.maxNameLength)
            let site = try r.string("site", maxLength: Register.maxNameLength)
            let root = try r.string("root", maxLength: Register.maxRootLength)
            let host = try r.string("data host", maxLength: Register.maxNameLength)
            let port = try r.integer(UInt16.self, "data port")
            let maxInFlight = try r.integer(UInt32.self, "max in flight")
            guard !name.isEmpty, !site.isEmpty else { throw .malformed(.register, "empty name or site") }
            self = .register(Register(name: name, site: site, root: root, dataHost: host, dataPort: port, maxInFlight: maxInFlight))
        case .registered:
            let interval = try r.integer(UInt32.self, "heartbeat interval")
            let timeout = try r.integer(UInt32.self, "agent timeout")
            self = .registered(Registered(heartbeatIntervalMillis: interval, agentTimeoutMillis: timeout))
        case .heartbeat:
            let sequence = try r.integer(UInt64.self, "sequence")
            self = .heartbeat(Heartbeat(sequence: sequence, inFlight: try r.integer(UInt32.self, "in flight")))
        case .chunkData:
            let place = try r.place()
            let size = try r.integer(UInt64.self, "file size")
            let id = try r.bytes(32, "chunk id")
            let encoded = r.buffer.readSlice(length: r.buffer.readableBytes)!
            self = .chunkData(ChunkData(place: place, fileSize: size, id: id, encoded: encoded))
        case .chunkAck:
            self = .chunkAck(ChunkAck(place: try r.place()))
        case .chunkNack:
            let place = try r.place()
            let raw = try r.integer(UInt8.self, "reason")
            guard let reason = ChunkNack.Reason(rawValue: raw) else { throw .malformed(.chunkNack, "unknown reason \(raw)") }
            self = .chunkNack(ChunkNack(place: place, reason: reason, detail: try r.string("detail", maxLength: ErrorMessage.maxReasonLength)))
        case .fileDone:
            let place = try r.place()
            let mode = try r.integer(UInt32.self, "mode")
            let seconds = try r.integer(Int64.self, "mtime seconds")
            let nanos = try r.integer(Int32.self, "mtime nanoseconds")
            guard mode <= 0o7777, (0..<1_000_000_000).contains(nanos) else { throw .malformed(.fileDone, "mode or mtime out of range") }
            self = .fileDone(FileDone(place: place, mode: mode, mtimeSeconds: seconds, mtimeNanoseconds: nanos))
        case .error:
            let code = ErrorCode(rawValue: try r.integer(UInt16.self, "code"))
            self = .error(ErrorMessage(code: code, reason: try r.string("reason", maxLength: ErrorMessage.maxReasonLength)))
        }
        try r.finish()
    }

    /// The frame that carries this message.
    public func frame(allocator: ByteBufferAllocator = ByteBufferAllocator()) -> Frame {
        var b = allocator.buffer(capacity: 64)
        switch self {
        case .hello(let m):
            precondition(m.nonce.count == Hello.nonceLength && m.name.utf8.count <= Hello.maxNameLength)
            b.writeInteger(m.minVersion)
            b.writeInteger(m.maxVersion)
            b.writeInteger(m.role.rawValue)
            b.writeBytes(m.nonce)
            b.writeWireString(m.name)
        case .challenge(let m):
            precondition(m.nonce.count == Hello.nonceLength && m.proof.count == 32)
            b.writeInteger(m.version)
            b.writeBytes(m.nonce)
            b.writeBytes(m.proof)
            b.writeInteger(m.maxPayloadLength)
        case .auth(let m):
            precondition(m.proof.count == 32)
            b.writeBytes(m.proof)
        case .welcome(let m):
            precondition(m.serverName.utf8.count <= Hello.maxNameLength)
            b.writeWireString(m.serverName)
        case .register(let m):
            precondition(m.name.utf8.count <= Register.maxNameLength && m.site.utf8.count <= Register.maxNameLength
                && m.root.utf8.count <= Register.maxRootLength && m.dataHost.utf8.count <= Register.maxNameLength)
            b.writeWireString(m.name)
            b.writeWireString(m.site)
            b.writeWireString(m.root)
            b.writeWireString(m.dataHost)
            b.writeInteger(m.dataPort)
            b.writeInteger(m.maxInFlight)
        case .registered(let m):
            b.writeInteger(m.heartbeatIntervalMillis)
            b.writeInteger(m.agentTimeoutMillis)
        case .heartbeat(let m):
            b.writeInteger(m.sequence)
            b.writeInteger(m.inFlight)
        case .chunkData(let m):
            precondition(m.id.count == 32)
            b.writePlace(m.place)
            b.writeInteger(m.fileSize)
            b.writeBytes(m.id)
            var encoded = m.encoded
            b.writeBuffer(&encoded)
        case .chunkAck(let m):
            b.writePlace(m.place)
        case .chunkNack(let m):
            b.writePlace(m.place)
            b.writeInteger(m.reason.rawValue)
            b.writeWireString(m.detail)
        case .fileDone(let m):
            b.writePlace(m.place)
            b.writeInteger(m.mode)
            b.writeInteger(m.mtimeSeconds)
            b.writeInteger(m.mtimeNanoseconds)
        case .error(let m):
            b.writeInteger(m.code.rawValue)
            b.writeWireString(m.reason)
        }
        return Frame(type: type, payload: b)
    }
}
