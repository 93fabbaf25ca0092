/// The message type byte of a frame. A decoder refuses any other value with an error frame and a
/// close. Further families (tasks, scans, chunks) are added with their messages.
public enum MessageType: UInt8, Hashable, Sendable, CaseIterable, CustomStringConvertible {
    case hello = 0x01
    case challenge = 0x02
    case auth = 0x03
    case welcome = 0x04
    case register = 0x10
    case registered = 0x11
    case heartbeat = 0x12
    case chunkData = 0x42
    case chunkAck = 0x43
    case chunkNack = 0x44
    case fileDone = 0x45
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
        case .chunkData: "chunk data"
        case .chunkAck: "chunk ack"
        case .chunkNack: "chunk nack"
        case .fileDone: "file done"
        case .error: "error"
        }
    }
}
