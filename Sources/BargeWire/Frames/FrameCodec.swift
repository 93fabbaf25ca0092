import NIOCore

/// The payload limit a connection's decoder enforces. It starts at the handshake limit and the
/// handshake handler raises it to the agreed one. Used on the channel's event loop only.
public final class FrameLimit: @unchecked Sendable {
    public var maxPayloadLength: Int
    public init(_ maxPayloadLength: Int = Frame.handshakeMaxPayload) { self.maxPayloadLength = maxPayloadLength }
}

/// Splits the inbound byte stream into frames, refusing any over `limit`.
public struct FrameDecoder: NIOSingleStepByteToMessageDecoder, Sendable {
    public typealias InboundOut = Frame

    public let limit: FrameLimit

    public init(limit: FrameLimit = FrameLimit()) {
        self.limit = limit
    }

    public mutating func decode(buffer: inout ByteBuffer) throws -> Frame? {
        try buffer.readFrame(maxPayloadLength: limit.maxPayloadLength)
    }

    public mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws -> Frame? {
        try decode(buffer: &buffer)
    }
}

/// Writes outbound frames.
public struct FrameEncoder: MessageToByteEncoder, Sendable {
    public typealias OutboundIn = Frame

    public init() {}

    public func encode(data: Frame, out: inout ByteBuffer) throws {
        out.writeFrame(data)
    }
}
