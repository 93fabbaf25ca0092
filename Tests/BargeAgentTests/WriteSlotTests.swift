@testable import BargeAgent
import BargeWire
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import Testing

/// A stream's write slots (`ChunkStream.writeSlot`), over real loopback TCP against a scripted
/// receiver that stops reading, so that the stream's socket and then its channel fill up.
struct WriteSlotTests {
    static let token = DataPlaneSocketTests.token

    /// A scripted receiver that reads nothing until `go` is set (then acks every chunk), or closes
    /// the connection when `close` is set instead.
    final class Script: @unchecked Sendable {
        let go = NIOLockedValueBox<Bool?>(nil)
        let received = NIOLockedValueBox(0)
        func waitForDecision() async -> Bool {
            while true {
                if let d = go.withLockedValue({ $0 }) { return d }
                try? await Task.sleep(for: .milliseconds(10))
            }
        }
    }

    func server(_ script: Script) async throws -> (BargeServer, Task<Void, Error>) {
        let server = try await BargeServer.bind(host: "127.0.0.1", port: 0, token: Self.token, name: "scripted")
        let serving = Task {
            try await server.serve(session: { _, inbound, outbound in
                guard await script.waitForDecision() else { return }  // closes the connection
                for try await frame in inbound {
                    guard case .chunkData(let d) = try Message(frame: frame) else { continue }
                    script.received.withLockedValue { $0 += 1 }
                    try await outbound.write(Message.chunkAck(ChunkAck(place: d.place)).frame())
                }
            }, onError: { _, _ in })
        }
        return (server, serving)
    }

    func client(of server: BargeServer) -> DataPlaneClient {
        DataPlaneClient(host: "127.0.0.1", port: server.localAddress!.port!, token: Self.token, name: "a1")
    }

    /// A 1 MiB `chunk data` frame for chunk `i`.
    func frame(_ i: Int) -> (Frame, ChunkPlace) {
        let place = ChunkPlace(job: "j", path: "f", offset: UInt64(i) << 20)
        var encoded = ByteBuffer()
        encoded.writeRepeatingByte(UInt8(truncatingIfNeeded: i), count: 1 << 20)
        let message = Message.chunkData(ChunkData(place: place, fileSize: 1 << 40, id: [UInt8](repeating: 7, count: 32), encoded: encoded))
        return (message.frame(), place)
    }

    /// Chunk `i` sent on `stream` with a write slot, counted in `slotted` once it has one.
    func send(_ i: Int, on stream: ChunkStream, counting slotted: NIOLockedValueBox<Int>) async throws -> Message {
        let slot = await stream.writeSlot()
        slotted.withLockedValue { $0 += 1 }
        defer { slot.release() }
        let (f, place) = frame(i)
        return try await stream.send(f, expecting: .place(place), slot: slot)
    }

    /// Returns once `count()` has not changed for half a second (or after ten seconds).
    func settled(_ count: () -> Int) async throws -> Int {
        var last = -1, still = 0
        for _ in 0..<200 {
            let now = count()
            if now == last { still += 1 } else { (last, still) = (now, 0) }
            if still >= 10 { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        return last
    }

    /// A freed slot goes to the oldest unit's waiter, whenever it came; a unit's own waiters keep
    /// their order. (In arrival order, the units sharing a connection each got an equal share and
    /// ran out of chunks together, which left a long link idle between units.)
    @Test func aFreedSlotGoesToTheOldestUnitFirst() async throws {
        let script = Script()
        let (server, serving) = try await server(script)
        defer { serving.cancel() }
        script.go.withLockedValue { $0 = true }
        try await client(of: server).withStream { stream in
            var held: [WriteSlot] = []
            for _ in 0..<ChunkStream.writeSlots { held.append(await stream.writeSlot(order: 1)) }
            let served = NIOLockedValueBox<[String]>([])
            var waiters: [Task<WriteSlot, Never>] = []
            for (name, order) in [("young", UInt64(9)), ("old-1", 2), ("old-2", 2)] {
                waiters.append(Task {
                    let slot = await stream.writeSlot(order: order)
                    served.withLockedValue { $0.append(name) }
                    return slot
                })
                try await Task.sleep(for: .milliseconds(30))  // each waits before the next comes
            }
            #expect(served.withLockedValue { $0 }.isEmpty)
            for slot in held {
                slot.release()
                try await Task.sleep(for: .milliseconds(30))
            }
            for w in waiters { await w.value.release() }
            #expect(served.withLockedValue { $0 } == ["old-1", "old-2", "young"])
            #expect(stream.slotsHeld == 0)
        }
    }

    /// 64 senders of 1 MiB each on one stream whose peer reads nothing: once the socket is full,
    /// the stream holds exactly its `writeSlots` and the other senders wait for one, without
    /// having queued a frame. When the peer reads again, every chunk goes and is acked, and the
    /// slots all come back. Without the slots, all 64 frames would be queued for the stream.
    @Test func aStreamWhosePeerStopsReadingHoldsOnlyItsWriteSlots() async throws {
        let script = Script()
        let (server, serving) = try await server(script)
        defer { serving.cancel() }
        let slotted = NIOLockedValueBox(0)
        try await client(of: server).withStream { stream in
            try await withThrowingTaskGroup(of: Message.self) { group in
                for i in 0..<64 {
                    group.addTask { try await send(i, on: stream, counting: slotted) }
                }
                let stalled = try await settled { slotted.withLockedValue { $0 } }
                #expect(stream.slotsHeld == ChunkStream.writeSlots, "slots held while the peer reads nothing")
                #expect(stalled < 64, "the senders behind a full socket wait for a slot")
                #expect(script.received.withLockedValue { $0 } == 0)
                script.go.withLockedValue { $0 = true }
                var acks = 0
                for try await reply in group {
                    if case .chunkAck = reply { acks += 1 }
                }
                #expect(acks == 64)
                #expect(slotted.withLockedValue { $0 } == 64)
                #expect(stream.slotsHeld == 0)
            }
        }
        #expect(script.received.withLockedValue { $0 } == 64)
        await server.close()
    }

    /// Senders cancelled on a stream whose peer reads nothing (cut off without a reset) end at
    /// once, those waiting for a reply and those waiting for a slot alike, and give their slots
    /// back; the stream stays open, and once the peer reads again a new send on it is answered (the
    /// cancelled ones' replies are dropped, not taken for its). Before, a unit the coordinator took
    /// back waited for the stall timeout, holding the lane's window, and the lane's next units
    /// waited with it (28-31 s after a 30 s partition through the delay test bed).
    @Test(.timeLimit(.minutes(1)))
    func sendersCancelledOnAStreamThatDoesNotAnswerEndAtOnce() async throws {
        let script = Script()
        let (server, serving) = try await server(script)
        defer { serving.cancel() }
        let slotted = NIOLockedValueBox(0)
        try await client(of: server).withStream { stream in
            let senders = Task {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for i in 0..<64 {
                        group.addTask { _ = try await send(i, on: stream, counting: slotted) }
                    }
                    try await group.waitForAll()
                }
            }
            let stalled = try await settled { slotted.withLockedValue { $0 } }
            #expect(stalled < 64 && stream.slotsHeld == ChunkStream.writeSlots)
            let began = ContinuousClock.now
            senders.cancel()
            await #expect(throws: CancellationError.self) { try await senders.value }
            #expect(ContinuousClock.now - began < .seconds(2))
            #expect(stream.slotsHeld == 0 && !stream.isFailed)
            script.go.withLockedValue { $0 = true }
            let (f, place) = frame(99)
            guard case .chunkAck(let ack) = try await stream.send(f, expecting: .place(place)) else { Issue.record("no ack"); return }
            #expect(ack.place == place)
        }
        await server.close()
    }

    /// The peer closes a stream that senders are waiting for slots on: none of them hangs, each
    /// gets the connection's failure.
    @Test func sendersWaitingForASlotOnAStreamThatFailsAreReleased() async throws {
        let script = Script()
        let (server, serving) = try await server(script)
        defer { serving.cancel() }
        let failed = NIOLockedValueBox(0)
        let slotted = NIOLockedValueBox(0)
        try await client(of: server).withStream { stream in
            await withTaskGroup(of: Void.self) { group in
                for i in 0..<64 {
                    group.addTask {
                        do {
                            _ = try await send(i, on: stream, counting: slotted)
                        } catch {
                            failed.withLockedValue { $0 += 1 }
                        }
                    }
                }
                _ = try? await settled { slotted.withLockedValue { $0 } }
                #expect(slotted.withLockedValue { $0 } < 64)
                script.go.withLockedValue { $0 = false }
                await group.waitForAll()
            }
            #expect(stream.isFailed)
        }
        #expect(failed.withLockedValue { $0 } == 64)
        await server.close()
    }
}
