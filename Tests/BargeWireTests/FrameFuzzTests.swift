import BargeBench
import BargeWire
import NIOCore
import NIOEmbedded
import Testing

/// Seeded fuzzing of the decoder and the message parser: random bytes, and valid frames with bytes
/// flipped, inserted, cut or lengths rewritten. Every case must end in frames, a wait for more
/// bytes, or a typed `WireError`: never a crash, and never a loop that does not finish.
struct FrameFuzzTests {
    static func mutated(_ rng: inout SplitMix64) -> [UInt8] {
        if rng.next() % 4 == 0 {
            return (0..<Int(rng.next() % 64)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        }
        var bytes = Array(Fixtures.bytes(Fixtures.messages[Int(rng.next() % UInt64(Fixtures.messages.count))]).readableBytesView)
        for _ in 0..<(1 + Int(rng.next() % 3)) {
            let at = Int(rng.next() % UInt64(bytes.count))
            switch rng.next() % 5 {
            case 0: bytes[at] ^= UInt8(truncatingIfNeeded: 1 | rng.next())
            case 1: bytes.insert(UInt8(truncatingIfNeeded: rng.next()), at: at)
            case 2: bytes.removeSubrange(at..<min(bytes.count, at + 1 + Int(rng.next() % 8)))
            case 3: if bytes.count >= 12 { bytes.replaceSubrange(8..<12, with: withUnsafeBytes(of: UInt32(truncatingIfNeeded: rng.next()).bigEndian, Array.init)) }
            default: bytes += bytes.prefix(Int(rng.next() % UInt64(bytes.count)))
            }
        }
        return bytes
    }

    @Test func hundredThousandFramesThroughTheDecoder() {
        var rng = SplitMix64(seed: 0xF7A3E)
        var outcomes = (frames: 0, waiting: 0, rejected: 0)
        for _ in 0..<100_000 {
            var buffer = ByteBuffer(bytes: Self.mutated(&rng))
            var steps = 0
            do {
                while let frame = try buffer.readFrame(maxPayloadLength: Frame.handshakeMaxPayload) {
                    outcomes.frames += 1
                    _ = try? Message(frame: frame)
                    steps += 1
                    if steps > 1000 { Issue.record("decoder did not advance"); return }
                }
                outcomes.waiting += 1
            } catch {
                outcomes.rejected += 1
            }
        }
        #expect(outcomes.rejected > 50_000)
        #expect(outcomes.frames > 1_000)
        #expect(outcomes.waiting > 1_000)
    }

    /// The same through a whole server pipeline: each hostile connection ends closed or waiting,
    /// and never takes the handler chain down.
    @Test func twoThousandHostileConnections() throws {
        var rng = SplitMix64(seed: 0x5EED)
        var closed = 0
        for _ in 0..<2_000 {
            let channel = EmbeddedChannel()
            try channel.pipeline.syncOperations.addBargeHandlers(.server(ServerHandshake(token: Fixtures.token, name: "c", nonce: Fixtures.serverNonce)))
            try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
            _ = try? channel.writeInbound(ByteBuffer(bytes: Self.mutated(&rng)))
            if !channel.isActive { closed += 1 }
            _ = try? channel.finish()
        }
        #expect(closed > 1_000)
    }
}
