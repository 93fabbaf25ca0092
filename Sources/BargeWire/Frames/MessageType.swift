/// The message type byte of a frame. A decoder refuses any other value with an error frame and a
/// close. docs/protocol.md lists them by family.
public enum MessageType: UInt8, Hashable, Sendable, CaseIterable, CustomStringConvertible {
    case hello = 0x01
    case challenge = 0x02
    case auth = 0x03
    case welcome = 0x04
    case register = 0x10
    case registered = 0x11
    case heartbeat = 0x12
    case holding = 0x13
    case scanRequest = 0x20
    case scanReply = 0x21
    case compareRequest = 0x22
    case compareReply = 0x23
    case taskAssign = 0x30
    case taskProgress = 0x31
    case taskDone = 0x32
    case taskFailed = 0x33
    case cancelJob = 0x34
    case drain = 0x35
    case jobSettings = 0x36
    case reportAck = 0x37
    case verifyRequest = 0x38
    case verifyReply = 0x39
    case taskDrop = 0x3A
    case warmLanes = 0x3B
    case tierRequest = 0x3C
    case tierReply = 0x3D
    case chunkData = 0x42
    case chunkAck = 0x43
    case chunkNack = 0x44
    case fileDone = 0x45
    case makeEntry = 0x46
    case chunkRepair = 0x47
    case haveQuery = 0x48
    case haveList = 0x49
    case chunkRef = 0x4A
    case filesDone = 0x4B
    case filesDoneReply = 0x4C
    case fileBatch = 0x4D
    case fileBatchReply = 0x4E
    case repairDone = 0x4F
    case fileLeftOut = 0x50
    case error = 0x7F

    public var description: String {
        switch self {
        case .hello: "hello"
        case .challenge: "challenge"
        case .auth: "auth"
        case .welcome: "welcome"
        case .register: "register"
        case .registered: "registered"
        case .heartbeat: "heartbeat"
        case .holding: "holding"
        case .scanRequest: "scan request"
        case .scanReply: "scan reply"
        case .compareRequest: "compare request"
        case .compareReply: "compare reply"
        case .taskAssign: "task assign"
        case .taskProgress: "task progress"
        case .taskDone: "task done"
        case .taskFailed: "task failed"
        case .cancelJob: "cancel job"
        case .drain: "drain"
        case .jobSettings: "job settings"
        case .reportAck: "report ack"
        case .taskDrop: "task drop"
        case .warmLanes: "warm lanes"
        case .tierRequest: "tier request"
        case .tierReply: "tier reply"
        case .verifyRequest: "verify request"
        case .verifyReply: "verify reply"
        case .chunkData: "chunk data"
        case .chunkAck: "chunk ack"
        case .chunkNack: "chunk nack"
        case .fileDone: "file done"
        case .repairDone: "repair done"
        case .fileLeftOut: "file left out"
        case .makeEntry: "make entry"
        case .chunkRepair: "chunk repair"
        case .haveQuery: "have query"
        case .haveList: "have list"
        case .chunkRef: "chunk ref"
        case .filesDone: "files done"
        case .filesDoneReply: "files done reply"
        case .fileBatch: "file batch"
        case .fileBatchReply: "file batch reply"
        case .error: "error"
        }
    }
}
