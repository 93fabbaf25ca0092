import NIOCore

/// One protocol frame: a 20-byte header, then the payload.
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 4 | magic `BARG` (0x42 0x41 0x52 0x47) |
/// | 4 | 1 | frame version, 1 |
/// | 5 | 1 | message type |
/// | 6 | 2 | flags: 0, or `sealedFlag` on every frame after a version 8 handshake |
/// | 8 | 4 | payload length |
/// | 12 | 8 | XXH3-64 of the payload |
public struct Frame: Hashable, Sendable {
    public static let headerSize = 20
    public static let magic: UInt32 = 0x4241_5247  // "BARG"
    public static let version: UInt8 = 1
    /// The payload limit before the handshake has agreed one: enough for every handshake message.
    public static let handshakeMaxPayload = 4096
    /// The default limit after it: a 16 MiB chunk plus its header and framing.
    public static let defaultMaxPayload = (16 << 20) + (64 << 10)
    /// The payload is sealed (AES-256-GCM ciphertext, then the 16-byte tag): `FrameCipher`.
    public static let sealedFlag: UInt16 = 0x0001

    public var type: MessageType
    public var flags: UInt16
    public var payload: ByteBuffer

    public init(type: MessageType, flags: UInt16 = 0, payload: ByteBuffer) {
        self.type = type
        self.flags = flags
        self.payload = payload
    }
}
