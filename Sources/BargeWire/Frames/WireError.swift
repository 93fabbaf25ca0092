/// A protocol violation. Each maps to an `ErrorCode`, which the peer is sent in an error frame
/// before the connection is closed.
public enum WireError: Error, Hashable, Sendable, CustomStringConvertible {
    case badMagic(UInt32)
    case unsupportedFrameVersion(UInt8)
    case unknownType(UInt8)
    case unsupportedFlags(UInt16)
    /// The header declares a payload over the negotiated maximum; the body was not buffered.
    case frameTooLarge(length: UInt32, limit: Int)
    case checksumMismatch(expected: UInt64, actual: UInt64)
    /// A frame whose payload does not parse as its message type.
    case malformed(MessageType, String)
    /// A well-formed message that is not allowed in the connection's current state.
    case unexpected(MessageType, state: String)
    /// A sealed frame that does not open (changed, replayed, reordered or dropped on the way),
    /// or a frame in clear on a sealed session.
    case sealBroken(MessageType, String)

    public var code: ErrorCode {
        switch self {
        case .badMagic: .badMagic
        case .unsupportedFrameVersion: .unsupportedVersion
        case .unknownType: .unknownType
        case .unsupportedFlags: .malformedFrame
        case .frameTooLarge: .frameTooLarge
        case .checksumMismatch: .checksumMismatch
        case .malformed: .malformedMessage
        case .unexpected: .unexpectedMessage
        case .sealBroken: .sealBroken
        }
    }

    public var description: String {
        switch self {
        case .badMagic(let m):
            // "HTTP" (an answer) or a request line: the peer speaks HTTP.
            [0x4854_5450, 0x4745_5420, 0x504F_5354, 0x4845_4144, 0x5055_5420].contains(m)
                ? "bad frame magic 0x\(String(m, radix: 16)): HTTP, not Barge frames, so an HTTP port and a Barge port were mixed up (the coordinator's API is at its --http address; agents connect to its --listen address)"
                : "bad frame magic 0x\(String(m, radix: 16))"
        case .unsupportedFrameVersion(let v): "unsupported frame version \(v)"
        case .unknownType(let t): "unknown message type 0x\(String(t, radix: 16))"
        case .unsupportedFlags(let f): "unsupported frame flags 0x\(String(f, radix: 16))"
        case .frameTooLarge(let length, let limit): "frame payload of \(length) bytes is over the limit of \(limit)"
        case .checksumMismatch(let expected, let actual):
            "frame checksum mismatch: XXH3-64 0x\(String(actual, radix: 16)), header says 0x\(String(expected, radix: 16))"
        case .malformed(let type, let why): "malformed \(type) message: \(why)"
        case .unexpected(let type, let state): "unexpected \(type) message while \(state)"
        case .sealBroken(let type, let why): "sealed \(type) frame rejected: \(why)"
        }
    }
}

/// Error codes carried by error frames (u16 on the wire).
public struct ErrorCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    public static let badMagic = ErrorCode(rawValue: 1)
    public static let unsupportedVersion = ErrorCode(rawValue: 2)
    public static let unknownType = ErrorCode(rawValue: 3)
    public static let frameTooLarge = ErrorCode(rawValue: 4)
    public static let checksumMismatch = ErrorCode(rawValue: 5)
    public static let malformedFrame = ErrorCode(rawValue: 6)
    public static let malformedMessage = ErrorCode(rawValue: 7)
    public static let unexpectedMessage = ErrorCode(rawValue: 8)
    public static let noCommonVersion = ErrorCode(rawValue: 9)
    public static let authenticationFailed = ErrorCode(rawValue: 10)
    public static let sealBroken = ErrorCode(rawValue: 11)
    /// The coordinator took the agent for down (it missed its heartbeats) and gave its units to
    /// others: the agent must register again, and stop what it was running.
    public static let markedDown = ErrorCode(rawValue: 12)
    /// Another live agent is registered under this name: the registration is refused, and the
    /// agent tries again with backoff (the other may be this agent's own previous run, whose
    /// connection's end the coordinator has not seen yet).
    public static let nameInUse = ErrorCode(rawValue: 13)
    /// The listener holds its most connections, or its most still in their handshake (a flood,
    /// or a slow-loris): the connection is closed at once, and the peer tries again shortly
    /// rather than taking the refusal for the other side's failure.
    public static let busy = ErrorCode(rawValue: 14)
    /// The agent is stopping (SIGTERM, SIGINT): sent by an agent to its coordinator as it closes
    /// the connection, so that it is taken for down at once, not after its timeout.
    public static let stopping = ErrorCode(rawValue: 15)
    /// The connection was closed for taking too long: its handshake did not finish in time, or
    /// nothing came on it for its idle timeout. A slow or stalled path's, not a refusal of the
    /// peer or of what it sent: worth another connection. (Before, this was `unexpectedMessage`,
    /// and an agent whose handshake a 20 B/s link slowed past 10 s took it for a refusal of its
    /// registration, and exited for good: h1 of session 49.)
    public static let timedOut = ErrorCode(rawValue: 16)

    /// Codes that say the bytes on the wire were damaged (or cut, or duplicated) on their way:
    /// a frame whose seal, checksum, magic, header or length did not hold. The path's fault, not
    /// the peer's or the request's: worth another connection, and not counted against a unit.
    public var isDamageOnTheWire: Bool {
        [Self.sealBroken, .checksumMismatch, .badMagic, .malformedFrame, .frameTooLarge].contains(self)
    }

    public var description: String {
        switch self {
        case .badMagic: "bad magic"
        case .unsupportedVersion: "unsupported version"
        case .unknownType: "unknown message type"
        case .frameTooLarge: "frame too large"
        case .checksumMismatch: "checksum mismatch"
        case .malformedFrame: "malformed frame"
        case .malformedMessage: "malformed message"
        case .unexpectedMessage: "unexpected message"
        case .noCommonVersion: "no common protocol version"
        case .authenticationFailed: "authentication failed"
        case .sealBroken: "sealed frame rejected"
        case .markedDown: "marked down"
        case .nameInUse: "name in use"
        case .busy: "busy"
        case .stopping: "stopping"
        case .timedOut: "timed out"
        default: "error \(rawValue)"
        }
    }
}
