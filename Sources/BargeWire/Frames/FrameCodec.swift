import NIOCore

/// The payload limit a connection's decoder enforces. It starts at the handshake limit and the
/// handshake handler raises it to the agreed one. Used on the channel's event loop only.
public final class FrameLimit: @unchecked Sendable {
    public var maxPayloadLength: Int
    public init(_ maxPayloadLength: Int = Frame.handshakeMaxPayload) { self.maxPayloadLength = maxPayloadLength }
}

/// Splits the inbound byte stream into frames (`readFrame`), refusing any over `limit`, with each
/// byte copied at most once. Whole frames within one read go on as slices of it; a
/// frame that spans reads is gathered into a buffer allocated at its size once its header is in.
/// NIO's `ByteToMessageHandler` appended every read to one growing buffer and moved the partial
/// frame left in it to the front after each frame (`discardReadBytes`): a loopback transfer
/// spent 13% of the destination agent's CPU on those two copies (perf, plaintext, 1 MiB chunks).
/// Used on the channel's event loop only.
public final class FrameReader: ChannelInboundHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = Frame

    public let limit: FrameLimit
    /// The frame that began in an earlier read: its header (once in) says its size.
    private var pending: ByteBuffer?
    /// Reads that arrived while one was being split (a handler after this one read again).
    private var queued: [ByteBuffer] = []
    private var reading = false
    /// A malformed frame was refused: nothing more is read (the connection is closing).
    private var failed = false

    public init(limit: FrameLimit = FrameLimit()) {
        self.limit = limit
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !failed else { return }
        queued.append(unwrapInboundIn(data))
        guard !reading else { return }
        reading = true
        defer { reading = false }
        while !queued.isEmpty, !failed {
            var input = queued.removeFirst()
            do {
                try split(&input, context: context)
            } catch {
                failed = true
                pending = nil
                queued = []
                context.fireErrorCaught(error)
            }
        }
    }

    private func split(_ input: inout ByteBuffer, context: ChannelHandlerContext) throws {
        while input.readableBytes > 0 {
            guard var frame = pending else {
                // Whole frames in this read: slices of it, no copy. But a small one out of a large
                // read (an ack beside a chunk) is copied out, so that it does not hold the whole
                // read's memory (up to 2 MiB) while it waits to be handled.
                if var frame = try input.readFrame(maxPayloadLength: limit.maxPayloadLength) {
                    if input.capacity > Self.smallRead, frame.payload.readableBytes < input.capacity / 8 {
                        var copy = context.channel.allocator.buffer(capacity: frame.payload.readableBytes)
                        copy.writeImmutableBuffer(frame.payload)
                        frame.payload = copy
                    }
                    context.fireChannelRead(wrapInboundOut(frame))
                    continue
                }
                // The start of one that goes on in the next read (its header, when in, is valid:
                // `readFrame` checks each field as soon as it is readable).
                var started = context.channel.allocator.buffer(capacity: Self.size(of: input) ?? Frame.headerSize)
                started.writeBuffer(&input)
                pending = started
                return
            }
            pending = nil
            // The rest of its header, or once the header is in, of its payload; `readFrame` checks
            // each header field as soon as it is in, and yields the frame once all of it is.
            var more = input.readSlice(length: min((Self.size(of: frame) ?? Frame.headerSize) - frame.readableBytes, input.readableBytes))!
            frame.writeBuffer(&more)
            if let whole = try frame.readFrame(maxPayloadLength: limit.maxPayloadLength) {
                context.fireChannelRead(wrapInboundOut(whole))
                continue
            }
            if let size = Self.size(of: frame) { frame.reserveCapacity(size) }
            pending = frame
        }
    }

    /// Reads up to this size are NIO's default; a frame slice of a larger one may hold memory.
    static let smallRead = 64 << 10

    /// The whole size of the frame `buffer` starts with, once its header is in.
    private static func size(of buffer: ByteBuffer) -> Int? {
        guard buffer.readableBytes >= Frame.headerSize, let length = buffer.getInteger(at: buffer.readerIndex + 8, as: UInt32.self) else { return nil }
        return Frame.headerSize + Int(length)
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
