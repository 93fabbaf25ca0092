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
    case scanRequest(ScanRequest)
    case scanReply(ScanReply)
    /// Version 5: the quick check of a scan page at the destination.
    case compareRequest(CompareRequest)
    case compareReply(CompareReply)
    case taskAssign(TaskAssign)
    case taskProgress(TaskProgress)
    case taskDone(TaskDone)
    case taskFailed(TaskFailed)
    case cancelJob(CancelJob)
    case verifyRequest(VerifyRequest)
    case verifyReply(VerifyReply)
    case chunkData(ChunkData)
    case chunkAck(ChunkAck)
    case chunkNack(ChunkNack)
    case fileDone(FileDone)
    /// Version 15: the file's repair is written; it gets this mode and mtime (a finished file in
    /// place, not a partial copy).
    case repairDone(FileDone)
    /// Version 16: the source left this file out of the job (gone, changed or unreadable when it
    /// came to read it); its partial copy goes.
    case fileLeftOut(ChunkPlace)
    case makeEntry(MakeEntry)
    /// A verified chunk written in place into a finished file (`verify --repair`); same payload as `chunk data`.
    case chunkRepair(ChunkData)
    case haveQuery(HaveQuery)
    case haveList(HaveList)
    case chunkRef(ChunkRef)
    case drain(Drain)
    case jobSettings(JobSettings)
    /// Version 5: what the agent runs, sent first on each connection.
    case holding(Holding)
    /// Version 6: finish a batch of files together, and the answer.
    case filesDone(FilesDone)
    case filesDoneReply(FilesDoneReply)
    /// Version 7: small files whole in one message, and the answer.
    case fileBatch(FileBatch)
    case fileBatchReply(FileBatchReply)
    /// Version 5: the coordinator journaled the `task done` or `task failed` of this assignment.
    case reportAck(AssignmentKey)
    /// Version 5: stop this assignment and report nothing; the unit is no longer the agent's.
    case taskDrop(AssignmentKey)
    /// Version 12: open connections to these destination agents now (a job is starting).
    case warmLanes(WarmLanes)
    case tierRequest(TierRequest)
    case tierReply(TierReply)
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
        case .scanRequest: .scanRequest
        case .scanReply: .scanReply
        case .compareRequest: .compareRequest
        case .compareReply: .compareReply
        case .taskAssign: .taskAssign
        case .taskProgress: .taskProgress
        case .taskDone: .taskDone
        case .taskFailed: .taskFailed
        case .cancelJob: .cancelJob
        case .verifyRequest: .verifyRequest
        case .verifyReply: .verifyReply
        case .chunkData: .chunkData
        case .chunkAck: .chunkAck
        case .chunkNack: .chunkNack
        case .fileDone: .fileDone
        case .repairDone: .repairDone
        case .fileLeftOut: .fileLeftOut
        case .makeEntry: .makeEntry
        case .chunkRepair: .chunkRepair
        case .haveQuery: .haveQuery
        case .haveList: .haveList
        case .filesDone: .filesDone
        case .filesDoneReply: .filesDoneReply
        case .fileBatch: .fileBatch
        case .fileBatchReply: .fileBatchReply
        case .chunkRef: .chunkRef
        case .drain: .drain
        case .jobSettings: .jobSettings
        case .holding: .holding
        case .reportAck: .reportAck
        case .taskDrop: .taskDrop
        case .warmLanes: .warmLanes
        case .tierRequest: .tierRequest
        case .tierReply: .tierReply
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
            // Logged before the peer has proved anything: a newline or an escape sequence there
            // forged whole log lines for anyone who could reach the port.
            guard ControlCharacters.escaped(name) == name else { throw .malformed(.hello, "the name holds control characters") }
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
            let build = r.buffer.readableBytes == 0 ? nil : try r.string("build version", maxLength: Register.maxBuildLength)
            let givenRootID = r.buffer.readableBytes == 0 ? nil : try r.string("root id", maxLength: Register.maxRootIDLength)
            let flag = r.buffer.readableBytes == 0 ? 0 : try r.integer(UInt8.self, "draining")
            guard flag <= 1 else { throw .malformed(.register, "draining flag \(flag) (0 or 1)") }
            // Written empty when only the flag follows.
            let rootID = givenRootID?.isEmpty == true && flag == 1 ? nil : givenRootID
            guard !name.isEmpty, !site.isEmpty else { throw .malformed(.register, "empty name or site") }
            // Where other agents connect, and how many units it takes: a registration that can
            // never be reached, or takes none (or four billion), was listed as up.
            guard !host.isEmpty, port != 0 else { throw .malformed(.register, "no data-plane address (host '\(ControlCharacters.escaped(host))', port \(port))") }
            guard (1...Register.maxUnits).contains(maxInFlight) else { throw .malformed(.register, "\(maxInFlight) units at once (1 to \(Register.maxUnits))") }
            self = .register(Register(name: name, site: site, root: root, dataHost: host, dataPort: port, maxInFlight: maxInFlight,
                                      build: build?.isEmpty == true && givenRootID != nil ? nil : build, rootID: rootID, draining: flag == 1))
        case .registered:
            let interval = try r.integer(UInt32.self, "heartbeat interval")
            let timeout = try r.integer(UInt32.self, "agent timeout")
            self = .registered(Registered(heartbeatIntervalMillis: interval, agentTimeoutMillis: timeout))
        case .heartbeat:
            let sequence = try r.identifier("sequence")
            self = .heartbeat(Heartbeat(sequence: sequence, inFlight: try r.integer(UInt32.self, "in flight")))
        case .chunkData:
            self = .chunkData(try r.chunkData())
        case .chunkRepair:
            self = .chunkRepair(try r.chunkData())
        case .scanRequest:
            self = .scanRequest(try ScanRequest(from: &r))
        case .scanReply:
            self = .scanReply(try ScanReply(from: &r))
        case .compareRequest:
            self = .compareRequest(try CompareRequest(from: &r))
        case .compareReply:
            self = .compareReply(try CompareReply(from: &r))
        case .taskAssign:
            self = .taskAssign(try TaskAssign(from: &r))
        case .taskProgress:
            self = .taskProgress(try TaskProgress(from: &r))
        case .taskDone:
            self = .taskDone(try TaskDone(from: &r))
        case .taskFailed:
            self = .taskFailed(try TaskFailed(from: &r))
        case .cancelJob:
            self = .cancelJob(try CancelJob(from: &r))
        case .verifyRequest:
            self = .verifyRequest(try VerifyRequest(from: &r))
        case .verifyReply:
            self = .verifyReply(try VerifyReply(from: &r))
        case .makeEntry:
            self = .makeEntry(try MakeEntry(from: &r))
        case .haveQuery:
            self = .haveQuery(try HaveQuery(from: &r))
        case .haveList:
            self = .haveList(try HaveList(from: &r))
        case .filesDone:
            self = .filesDone(try FilesDone(from: &r))
        case .filesDoneReply:
            self = .filesDoneReply(try FilesDoneReply(from: &r))
        case .fileBatch:
            self = .fileBatch(try FileBatch(from: &r))
        case .fileBatchReply:
            self = .fileBatchReply(try FileBatchReply(from: &r))
        case .chunkRef:
            self = .chunkRef(try ChunkRef(from: &r))
        case .drain:
            self = .drain(try Drain(from: &r))
        case .jobSettings:
            self = .jobSettings(try JobSettings(from: &r))
        case .holding:
            self = .holding(try Holding(from: &r))
        case .reportAck:
            self = .reportAck(try AssignmentKey(from: &r))
        case .taskDrop:
            self = .taskDrop(try AssignmentKey(from: &r))
        case .warmLanes:
            self = .warmLanes(try WarmLanes(from: &r))
        case .tierRequest:
            self = .tierRequest(try TierRequest(from: &r))
        case .tierReply:
            self = .tierReply(try TierReply(from: &r))
        case .chunkAck:
            self = .chunkAck(ChunkAck(place: try r.place()))
        case .fileLeftOut:
            self = .fileLeftOut(try r.place())
        case .chunkNack:
            let place = try r.place()
            let raw = try r.integer(UInt8.self, "reason")
            guard let reason = ChunkNack.Reason(rawValue: raw) else { throw .malformed(.chunkNack, "unknown reason \(raw)") }
            self = .chunkNack(ChunkNack(place: place, reason: reason, detail: try r.reason("detail")))
        case .fileDone, .repairDone:
            let place = try r.place()
            let size = try r.quantity("file size")
            let mode = try r.integer(UInt32.self, "mode")
            let seconds = try r.integer(Int64.self, "mtime seconds")
            let nanos = try r.integer(Int32.self, "mtime nanoseconds")
            guard mode <= 0o7777, (0..<1_000_000_000).contains(nanos) else { throw .malformed(frame.type, "mode or mtime out of range") }
            let done = FileDone(place: place, size: size, mode: mode, mtimeSeconds: seconds, mtimeNanoseconds: nanos)
            self = frame.type == .repairDone ? .repairDone(done) : .fileDone(done)
        case .error:
            let code = ErrorCode(rawValue: try r.integer(UInt16.self, "code"))
            self = .error(ErrorMessage(code: code, reason: try r.reason("reason")))
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
            if m.build != nil || m.rootID != nil || m.draining {
                let build = m.build ?? ""
                precondition(build.utf8.count <= Register.maxBuildLength)
                b.writeWireString(build)
            }
            if m.rootID != nil || m.draining {
                let rootID = m.rootID ?? ""
                precondition(rootID.utf8.count <= Register.maxRootIDLength)
                b.writeWireString(rootID)
            }
            if m.draining { b.writeInteger(UInt8(1)) }
        case .registered(let m):
            b.writeInteger(m.heartbeatIntervalMillis)
            b.writeInteger(m.agentTimeoutMillis)
        case .heartbeat(let m):
            b.writeInteger(m.sequence)
            b.writeInteger(m.inFlight)
        case .chunkData(let m), .chunkRepair(let m):
            precondition(m.id.count == 32)
            b.writePlace(m.place)
            b.writeInteger(m.fileSize)
            b.writeBytes(m.id)
            var encoded = m.encoded
            b.writeBuffer(&encoded)
        case .scanRequest(let m):
            m.write(to: &b)
        case .scanReply(let m):
            m.write(to: &b)
        case .compareRequest(let m):
            m.write(to: &b)
        case .compareReply(let m):
            m.write(to: &b)
        case .taskAssign(let m):
            m.write(to: &b)
        case .taskProgress(let m):
            m.write(to: &b)
        case .taskDone(let m):
            m.write(to: &b)
        case .taskFailed(let m):
            m.write(to: &b)
        case .cancelJob(let m):
            m.write(to: &b)
        case .verifyRequest(let m):
            m.write(to: &b)
        case .verifyReply(let m):
            m.write(to: &b)
        case .makeEntry(let m):
            m.write(to: &b)
        case .haveQuery(let m):
            m.write(to: &b)
        case .haveList(let m):
            m.write(to: &b)
        case .filesDone(let m):
            m.write(to: &b)
        case .filesDoneReply(let m):
            m.write(to: &b)
        case .fileBatch(let m):
            m.write(to: &b)
        case .fileBatchReply(let m):
            m.write(to: &b)
        case .chunkRef(let m):
            m.write(to: &b)
        case .drain(let m):
            m.write(to: &b)
        case .jobSettings(let m):
            m.write(to: &b)
        case .holding(let m):
            m.write(to: &b)
        case .reportAck(let m), .taskDrop(let m):
            m.write(to: &b)
        case .warmLanes(let m):
            m.write(to: &b)
        case .tierRequest(let m):
            m.write(to: &b)
        case .tierReply(let m):
            m.write(to: &b)
        case .chunkAck(let m):
            b.writePlace(m.place)
        case .fileLeftOut(let place):
            b.writePlace(place)
        case .chunkNack(let m):
            b.writePlace(m.place)
            b.writeInteger(m.reason.rawValue)
            b.writeWireString(m.detail)
        case .fileDone(let m), .repairDone(let m):
            b.writePlace(m.place)
            b.writeInteger(m.size)
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
