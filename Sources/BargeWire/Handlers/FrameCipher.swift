import BargeDigest
import NIOCore
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Seals every frame this side sends and opens every frame it receives, once a version 8
/// handshake has agreed the keys (`SessionKeys`). AES-256-GCM: each direction has its own key,
/// and the nonce is the frame's number in its direction (4 zero bytes, then a u64), so a frame
/// that is changed, replayed, reordered or dropped does not open, and the connection is closed
/// (error `sealBroken`). The message type and flags are authenticated too (the AAD). A sealed
/// frame's header carries no XXH3-64 (0): the tag covers every byte.
///
/// Sits between the framing and the session's handlers; used on its channel's event loop only.
public final class FrameCipher: ChannelDuplexHandler, RemovableChannelHandler {
    public typealias InboundIn = Frame
    public typealias InboundOut = Frame
    public typealias OutboundIn = Frame
    public typealias OutboundOut = Frame

    private let sealer: AESGCM
    private let opener: AESGCM
    private var sent: UInt64 = 0
    private var received: UInt64 = 0
    private var broken = false
    /// A client's session started with its auth: the server's welcome is still to come, in clear.
    private var welcomeAhead: Bool

    /// `welcomeAhead`: a client whose session started as its auth went out; the first frame it
    /// reads is the server's welcome in clear (dropped: the session already runs), or its error
    /// in clear (passed on, so the session hears why, then nothing more is read).
    public init(keys: SessionKeys, isClient: Bool, welcomeAhead: Bool = false) throws {
        sealer = try AESGCM(key: isClient ? keys.clientToServer : keys.serverToClient, encrypting: true)
        opener = try AESGCM(key: isClient ? keys.serverToClient : keys.clientToServer, encrypting: false)
        self.welcomeAhead = welcomeAhead
    }

    static func nonce(_ n: UInt64) -> [UInt8] {
        [0, 0, 0, 0] + (0..<8).map { UInt8(truncatingIfNeeded: n >> (56 - 8 * $0)) }
    }

    static func aad(_ type: MessageType, _ flags: UInt16) -> [UInt8] {
        [type.rawValue, UInt8(truncatingIfNeeded: flags >> 8), UInt8(truncatingIfNeeded: flags)]
    }

    /// `frame` sealed as frame number `n` of its direction under `sealer` (for the handler and tests).
    static func seal(_ frame: Frame, number n: UInt64, with sealer: AESGCM, allocator: ByteBufferAllocator) throws -> Frame {
        let length = frame.payload.readableBytes
        var out = allocator.buffer(capacity: length + AESGCM.tagLength)
        try out.writeWithUnsafeMutableBytes(minimumWritableBytes: length + AESGCM.tagLength) { dst in
            try frame.payload.withUnsafeReadableBytes { src in
                try sealer.seal(src, aad: aad(frame.type, Frame.sealedFlag), nonce: nonce(n),
                                into: UnsafeMutableRawBufferPointer(rebasing: dst[0..<(length + AESGCM.tagLength)]))
            }
            return length + AESGCM.tagLength
        }
        return Frame(type: frame.type, flags: Frame.sealedFlag, payload: out)
    }

    /// `frame` opened as frame number `n`, or the reason it does not open.
    static func open(_ frame: Frame, number n: UInt64, with opener: AESGCM, allocator: ByteBufferAllocator) throws(WireError) -> Frame {
        guard frame.flags == Frame.sealedFlag else { throw .sealBroken(frame.type, "it came in clear on an encrypted session") }
        let length = frame.payload.readableBytes - AESGCM.tagLength
        guard length >= 0 else { throw .sealBroken(frame.type, "shorter than its tag") }
        if length >= placedMinimum, frame.type == .chunkData || frame.type == .chunkRepair {
            return try openPlaced(frame, length: length, number: n, with: opener, allocator: allocator)
        }
        var out = allocator.buffer(capacity: length)
        var ok = false
        out.writeWithUnsafeMutableBytes(minimumWritableBytes: max(length, 1)) { dst in
            ok = frame.payload.withUnsafeReadableBytes { src in
                opener.open(src, aad: aad(frame.type, frame.flags), nonce: nonce(n), into: UnsafeMutableRawBufferPointer(rebasing: dst[0..<length]))
            }
            return ok ? length : 0
        }
        guard ok else { throw .sealBroken(frame.type, "it does not authenticate (changed, replayed, reordered or missing frames)") }
        return Frame(type: frame.type, flags: 0, payload: out)
    }

    /// Chunk frames at least this long are opened laid out like their file (`openPlaced`).
    static let placedMinimum = 64 * 1024
    /// Alignment a chunk's raw bytes get in memory relative to their file offset: the block
    /// size of the destination's O_DIRECT writes (`PartialFileWriter.directAlignment`).
    public static let placement = 4096
    /// How much of a chunk frame is read first to find its file offset: room for a 4,096-byte
    /// path; a multiple of the cipher's block.
    static let placementHead = 4224

    /// `open` for a `chunk data` or `chunk repair` frame: the payload is decrypted to where a
    /// stored chunk's raw bytes sit at an address congruent to their file offset modulo
    /// `placement`, so the destination writes them with O_DIRECT straight from the frame rather
    /// than through an aligned copy (`ChunkReceiver`). The offset is read from the first bytes as
    /// they are decrypted, before the tag is checked: it only chooses where the bytes go (at
    /// most `placement` bytes of padding before them); the tag still covers every byte.
    static func openPlaced(_ frame: Frame, length: Int, number n: UInt64, with opener: AESGCM, allocator: ByteBufferAllocator) throws(WireError) -> Frame {
        let a = placement
        var out = allocator.buffer(capacity: length + a)
        var ok = false
        var pad = 0
        out.writeWithUnsafeMutableBytes(minimumWritableBytes: length + a) { dst in
            ok = frame.payload.withUnsafeReadableBytes { src in
                opener.open(src, aad: aad(frame.type, frame.flags), nonce: nonce(n), head: placementHead) { head in
                    if let (index, offset) = ChunkData.rawBytesPlacement(peek: head), index < length {
                        let at = Int(bitPattern: dst.baseAddress!) + index
                        pad = ((Int(offset % UInt64(a)) - at % a) % a + a) % a
                    }
                    return UnsafeMutableRawBufferPointer(rebasing: dst[pad..<(pad + length)])
                }
            }
            return ok ? pad + length : 0
        }
        guard ok else { throw .sealBroken(frame.type, "it does not authenticate (changed, replayed, reordered or missing frames)") }
        out.moveReaderIndex(forwardBy: pad)
        return Frame(type: frame.type, flags: 0, payload: out)
    }

    /// `BARGE_FAULT_FLIP_SEALED=N` (tests): the first N sealed `chunk data` frames this process
    /// sends get one ciphertext bit flipped on the way out, as an attacker on the path would.
    static let flipsLeft = Atomic<Int>({
        guard let raw = getenv("BARGE_FAULT_FLIP_SEALED"), let n = Int(String(cString: raw)), n > 0 else { return 0 }
        return n
    }())

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        do {
            var sealed = try Self.seal(unwrapOutboundIn(data), number: sent, with: sealer, allocator: context.channel.allocator)
            if sealed.type == .chunkData, Self.flipsLeft.load(ordering: .relaxed) > 0,
               Self.flipsLeft.wrappingSubtract(1, ordering: .relaxed).oldValue > 0 {
                let at = sealed.payload.readerIndex + sealed.payload.readableBytes / 2
                sealed.payload.setInteger(sealed.payload.getInteger(at: at, as: UInt8.self)! ^ 0x04, at: at)
            }
            sent += 1
            context.write(wrapOutboundOut(sealed), promise: promise)
        } catch {
            promise?.fail(error)
            context.fireErrorCaught(error)
        }
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !broken else { return }
        if welcomeAhead {
            welcomeAhead = false
            let frame = unwrapInboundIn(data)
            switch frame.flags == Frame.sealedFlag ? nil : try? Message(frame: frame) {
            case .welcome?:
                return
            case .error?:
                broken = true
                context.fireChannelRead(data)
            default:
                broken = true
                context.fireErrorCaught(WireError.sealBroken(frame.type, "the server's welcome was expected first, in clear"))
            }
            return
        }
        do {
            let frame = try Self.open(unwrapInboundIn(data), number: received, with: opener, allocator: context.channel.allocator)
            received += 1
            context.fireChannelRead(wrapInboundOut(frame))
        } catch {
            // Nothing after a frame that does not open can be trusted: the connection ends.
            broken = true
            context.fireErrorCaught(error)
        }
    }
}
