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

/// Writes outbound frames without copying their payloads: the 20-byte header goes out as its own
/// small buffer and the payload buffer follows as is (the socket gathers both in one `writev`).
/// For 1 MiB chunks this saves a copy per frame over `FrameEncoder`.
public final class FrameWriter: ChannelOutboundHandler, Sendable {
    public typealias OutboundIn = Frame
    public typealias OutboundOut = ByteBuffer

    public init() {}

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let frame = unwrapOutboundIn(data)
        var header = context.channel.allocator.buffer(capacity: Frame.headerSize)
        header.writeFrameHeader(frame)
        if frame.payload.readableBytes == 0 {
            context.write(wrapOutboundOut(header), promise: promise)
        } else {
            context.write(wrapOutboundOut(header), promise: nil)
            context.write(wrapOutboundOut(frame.payload), promise: promise)
        }
    }
}

/// Writes outbound frames into one buffer (tests and tools).
public struct FrameEncoder: MessageToByteEncoder, Sendable {
    public typealias OutboundIn = Frame

    public init() {}

    public func encode(data: Frame, out: inout ByteBuffer) throws {
        out.writeFrame(data)
    }
}
