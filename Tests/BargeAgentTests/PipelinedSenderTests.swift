@testable import BargeAgent
import BargeBench
import BargeCodec
import BargeWire
import Foundation
import NIOCore
import Testing

/// The pipelined sender against a scripted receiver: a real TCP server, with the real handshake,
/// that answers chunks in an order and at a time the test chooses.
struct PipelinedSenderTests {
    static let token = UnitSenderTests.token

    /// What the scripted receiver saw, in order.
    final class Transcript: @unchecked Sendable {
        enum Event: Hashable {
            case chunk(UInt64)
            case ack(UInt64)
            case nack(UInt64)
            case filesDone([String])
        }
        private let lock = NSLock()
        private var list: [Event] = []
        /// For each chunk that arrived: the bytes then outstanding (received, not yet answered),
        /// this one included, and how many chunks that was.
        private var arrivals: [(bytes: Int, chunks: Int, window: Double)] = []
        func add(_ e: Event) { lock.withLock { list.append(e) } }
        func arrived(bytes: Int, chunks: Int, window: Double) { lock.withLock { arrivals.append((bytes, chunks, window)) } }
        var events: [Event] { lock.withLock { list } }
        var outstandingAtArrival: [(bytes: Int, chunks: Int, window: Double)] { lock.withLock { arrivals } }
    }

    func file(_ roots: Roots, bytes: Int) throws -> (TaskFile, [UInt8]) {
        let data = SampleData.random(bytes: bytes, seed: 11)
        let url = URL(fileURLWithPath: roots.source + "/r.bin")
        try Data(data).write(to: url)
        let entry = try UnitSenderTests().entry("r.bin", of: url)
        return (TaskFile(sourcePath: "r.bin", entry: entry, length: UInt64(data.count), finish: true), data)
    }

    func task(_ f: TaskFile, port: Int, chunkSize: Int) -> TaskAssign {
        TaskAssign(job: "j", unit: 1, destination: DataPeer(name: "b1", host: "127.0.0.1", port: UInt16(port)), codec: "none",
                   chunkSize: UInt32(chunkSize), files: [f])
    }

    /// A unit of one stream with `depth` workers, sending `f` to the scripted receiver.
    func sender(_ f: TaskFile, _ server: BargeServer, _ roots: Roots, chunkSize: Int, depth: Int, flow: UnitFlow? = nil) -> UnitSender {
        let port = server.localAddress!.port!
        let client = DataPlaneClient(host: "127.0.0.1", port: port, token: Self.token, name: "a1")
        var settings = UnitSender.Settings(streams: 1, contentDefinedAbove: nil)
        settings.depth = depth
        return UnitSender(task: task(f, port: port, chunkSize: chunkSize), client: client,
                          sources: SourcePool { [root = roots.source] in ChunkSource(root: root) },
                          settings: settings, progress: UnitProgress(), flow: flow)
    }

    /// The scripted receiver's answer to anything but a have query or a chunk: a `files done` is
    /// recorded and accepted; anything else ends the session.
    func finish(_ frame: Frame, _ transcript: Transcript, _ outbound: NIOAsyncChannelOutboundWriter<Frame>) async throws {
        guard case .filesDone(let batch) = try Message(frame: frame) else { throw WireError.malformed(frame.type, "not scripted") }
        transcript.add(.filesDone(batch.files.map(\.path)))
        try await reply(.filesDoneReply(FilesDoneReply(refused: [])), outbound)
    }

    func reply(_ m: Message, _ outbound: NIOAsyncChannelOutboundWriter<Frame>) async throws { try await outbound.write(m.frame()) }

    /// Seven chunks go out before any reply (the stream's depth is eight). The receiver answers
    /// them last first, and nacks the one in the middle as corrupt: each ack reaches its own chunk,
    /// the corrupt one alone is sent again, and the file is finished only after its ack.
    @Test func acksOutOfOrderAndANackInTheMiddleOfTheWindow() async throws {
        let roots = try Roots()
        let chunk = 1 << 20
        let (f, data) = try file(roots, bytes: 6 * chunk + 123)
        let transcript = Transcript()
        let server = try await BargeServer.bind(host: "127.0.0.1", port: 0, token: Self.token, name: "scripted")
        let serving = Task {
            try await server.serve(session: { _, inbound, outbound in
                var held: [ChunkPlace] = []
                var resent = false
                for try await frame in inbound {
                    switch try Message(frame: frame) {
                    case .haveQuery:
                        try await reply(.haveList(HaveList(ids: [])), outbound)
                    case .chunkData(let d):
                        transcript.add(.chunk(d.place.offset))
                        if held.count < 7 && !resent {
                            held.append(d.place)
                            guard held.count == 7 else { continue }
                            for place in held.reversed() {
                                if place.offset == UInt64(3 * chunk) {
                                    transcript.add(.nack(place.offset))
                                    try await reply(.chunkNack(ChunkNack(place: place, reason: .corrupt, detail: "scripted")), outbound)
                                } else {
                                    transcript.add(.ack(place.offset))
                                    try await reply(.chunkAck(ChunkAck(place: place)), outbound)
                                }
                            }
                            resent = true
                        } else {
                            // The resend: its bytes are the file's.
                            let raw = try ChunkDecoderHelper.decode(d.encoded)
                            #expect(raw == Array(data[Int(d.place.offset)..<Int(d.place.offset) + raw.count]))
                            transcript.add(.ack(d.place.offset))
                            try await reply(.chunkAck(ChunkAck(place: d.place)), outbound)
                        }
                    default:
                        try await finish(frame, transcript, outbound)
                    }
                }
            }, onError: { _, _ in })
        }
        defer { serving.cancel() }
        let done = try await sender(f, server, roots, chunkSize: chunk, depth: 8).run()
        #expect(done.bytes == UInt64(data.count))
        #expect(done.chunks.map(\.offset).sorted() == (0..<7).map { UInt64($0 * chunk) })
        let events = transcript.events
        let offsets = (0..<7).map { UInt64($0 * chunk) }
        #expect(Set(events.prefix(7)) == Set(offsets.map { .chunk($0) }), "all seven went out before any reply")
        #expect(events.filter { $0 == .chunk(UInt64(3 * chunk)) }.count == 2, "the corrupt chunk alone was sent again")
        #expect(events.filter { if case .chunk = $0 { true } else { false } }.count == 8)
        #expect(events.last == .filesDone(["r.bin"]), "finished once, after every ack: \(events)")
        await server.close()
    }

    /// A destination that answers `need` for a small file its batch carried by value fails the
    /// unit (retryable, as a bad answer), after one batch sent again at most. Before, the source
    /// sent the batch again at once, for ever: a thousand batches a second, the unit never ending.
    @Test(.timeLimit(.minutes(1)))
    func aBatchAskedAgainForBytesItCarriedFailsTheUnit() async throws {
        let roots = try Roots()
        let (f, _) = try file(roots, bytes: 1000)
        let batches = Transcript()
        let server = try await BargeServer.bind(host: "127.0.0.1", port: 0, token: Self.token, name: "scripted")
        let serving = Task {
            try await server.serve(session: { _, inbound, outbound in
                for try await frame in inbound {
                    switch try Message(frame: frame) {
                    case .haveQuery: try await reply(.haveList(HaveList(ids: [])), outbound)
                    case .fileBatch(let b):
                        batches.add(.chunk(0))
                        try await reply(.fileBatchReply(FileBatchReply(job: b.job, batch: b.batch, refused: [.init(index: 0, reason: .need, detail: "need")])), outbound)
                    default: try await finish(frame, batches, outbound)
                    }
                }
            }, onError: { _, _ in })
        }
        defer { serving.cancel() }
        do {
            _ = try await sender(f, server, roots, chunkSize: 1 << 20, depth: 8).run()
            Issue.record("the unit succeeded")
        } catch {
            #expect(error.retryable && error.description.contains("asked again for the bytes of r.bin"), "\(error)")
        }
        #expect((1...2).contains(batches.events.count), "\(batches.events.count) batches")
        await server.close()
    }

    /// A large file's `finish` unit has no chunk to send: its `have query` (which only places
    /// the file again) and its `files done` go out back to back, one round trip for both. The
    /// scripted receiver answers neither until both have arrived, which would stall a sender that
    /// waited for the have list first. A placement the receiver refuses still fails the unit, with
    /// the receiver's reason, not retried.
    @Test func aFinishUnitsHaveQueryAndFilesDoneGoBackToBack() async throws {
        for refuse in [false, true] {
            let roots = try Roots()
            let (whole, _) = try file(roots, bytes: 3 << 20)
            let f = TaskFile(sourcePath: whole.sourcePath, entry: whole.entry, offset: 0, length: 0, finish: true)
            #expect(UnitSender.finishesOnly(task(f, port: 1, chunkSize: 1 << 20)))
            #expect(!UnitSender.finishesOnly(task(whole, port: 1, chunkSize: 1 << 20)))
            let arrived = Transcript()
            let server = try await BargeServer.bind(host: "127.0.0.1", port: 0, token: Self.token, name: "scripted")
            let serving = Task {
                try await server.serve(session: { _, inbound, outbound in
                    var waiting: [Message] = []
                    for try await frame in inbound {
                        let message = try Message(frame: frame)
                        switch message {
                        case .haveQuery(let q):
                            #expect(q.paths == ["r.bin"] && q.facts.count == 1)
                            arrived.add(.chunk(0))
                        case .filesDone(let batch):
                            arrived.add(.filesDone(batch.files.map(\.path)))
                        default:
                            throw WireError.malformed(frame.type, "not scripted")
                        }
                        waiting.append(message)
                        guard waiting.count == 2 else { continue }
                        // Both are in: the answers, in order.
                        try await reply(refuse ? .filesDoneReply(FilesDoneReply(refused: [.init(index: 0, reason: .refusedPath, detail: "placed cold, and no cold tier here")]))
                                               : .haveList(HaveList(ids: [])), outbound)
                        try await reply(.filesDoneReply(FilesDoneReply(refused: [])), outbound)
                    }
                }, onError: { _, _ in })
            }
            defer { serving.cancel() }
            let unit = sender(f, server, roots, chunkSize: 1 << 20, depth: 8)
            let outcome = try await withThrowingTaskGroup(of: Result<TaskDone, UnitFailure>?.self) { group in
                group.addTask {
                    do throws(UnitFailure) { return .success(try await unit.run()) } catch { return .failure(error) }
                }
                group.addTask {
                    try await Task.sleep(for: .seconds(20))
                    return nil
                }
                defer { group.cancelAll() }
                return try await group.next()!
            }
            #expect(arrived.events == [.chunk(0), .filesDone(["r.bin"])], "the have query, then the files done")
            switch outcome {
            case .success(let done)?:
                #expect(!refuse, "a refused placement was taken")
                #expect(done.bytes == 0 && done.chunks.isEmpty)
            case .failure(let failure)?:
                #expect(refuse && !failure.retryable && failure.description.contains("no cold tier"), "\(failure)")
            case nil:
                Issue.record("the finish unit stalled: the sender waited for the have list before its files done")
            }
            await server.close()
        }
    }

    /// The lane's window halves (a loss on another of its sockets) while chunks are in flight: no
    /// further chunk goes until those in flight fit the smaller window, and the unit still ends.
    @Test func aWindowThatShrinksWhileChunksAreInFlight() async throws {
        let roots = try Roots()
        let chunk = 128 << 10
        let (f, data) = try file(roots, bytes: 24 * chunk)
        let transcript = Transcript()
        // A scavenger lane: a `fair` one never goes below the kernel's own window, which on loopback
        // would undo the cut at the next ack.
        let lane = LaneFlow(mode: .scavenger)
        let window = lane.controller.window
        let filled = AsyncStream.makeStream(of: Void.self)
        let shrunk = AsyncStream.makeStream(of: Void.self)
        let server = try await BargeServer.bind(host: "127.0.0.1", port: 0, token: Self.token, name: "scripted")
        let serving = Task {
            try await server.serve(session: { _, inbound, outbound in
                // Replies go out from their own task, 5 ms apart, while frames keep arriving.
                let (answers, answer) = AsyncStream.makeStream(of: (ChunkPlace, Int).self)
                let outstanding = NIOLockedBox(0, 0)
                let replying = Task {
                    var first = true
                    for await (place, bytes) in answers {
                        if first {
                            // The first window is in flight: the test shrinks it before any ack.
                            filled.continuation.yield()
                            for await _ in shrunk.stream { break }
                            first = false
                        }
                        try await Task.sleep(for: .milliseconds(5))
                        outstanding.update { $0.0 -= bytes; $0.1 -= 1 }
                        transcript.add(.ack(place.offset))
                        try await reply(.chunkAck(ChunkAck(place: place)), outbound)
                    }
                }
                defer { replying.cancel() }
                for try await frame in inbound {
                    switch try Message(frame: frame) {
                    case .haveQuery:
                        try await reply(.haveList(HaveList(ids: [])), outbound)
                    case .chunkData(let d):
                        let bytes = frame.payload.readableBytes
                        let (b, n) = outstanding.update { $0.0 += bytes; $0.1 += 1; return $0 }
                        transcript.arrived(bytes: b, chunks: n, window: lane.controller.window)
                        transcript.add(.chunk(d.place.offset))
                        answer.yield((d.place, bytes))
                    default:
                        try await finish(frame, transcript, outbound)
                    }
                }
            }, onError: { _, _ in })
        }
        defer { serving.cancel() }
        let unit = sender(f, server, roots, chunkSize: chunk, depth: 16, flow: UnitFlow(lane: lane))
        let sending = Task { try await unit.run() }
        for await _ in filled.stream { break }
        // Everything the window admits is out once one more chunk would not fit. Waiting a fixed
        // 50 ms for that failed once on a loaded machine (132 tests at once): chunks sent before
        // the cut then arrived after it, and counted against the smaller window.
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            if let last = transcript.outstandingAtArrival.last, Double(last.bytes + chunk) > window { break }
            try await Task.sleep(for: .milliseconds(5))
        }
        let before = transcript.outstandingAtArrival
        #expect(before.count >= 2 && before.count < 24, "the first window holds some chunks, not all: \(before.count)")
        #expect(before.allSatisfy { $0.chunks == 1 || Double($0.bytes) <= window }, "the window held: \(before)")
        // A loss on another socket of the lane: the window shrinks with every chunk above still in flight.
        let other = ObjectIdentifier(NSObject())
        lane.release(0, sentAt: 0, sample: TCPSample(rtt: 1_000_000, minRTT: 1_000_000, window: 0, retransmits: 0), stream: other)
        lane.release(0, sentAt: 0, sample: TCPSample(rtt: 1_000_000, minRTT: 1_000_000, window: 0, retransmits: 9), stream: other)
        let smaller = lane.controller.window
        #expect(smaller < window)
        shrunk.continuation.yield()
        let done = try await sending.value
        #expect(done.bytes == UInt64(data.count))
        let after = transcript.outstandingAtArrival.dropFirst(before.count)
        #expect(!after.isEmpty)
        #expect(after.allSatisfy { $0.chunks == 1 || Double($0.bytes) <= $0.window },
                "no chunk went while those in flight overfilled the shrunken window: \(Array(after))")
        // The window was full when it shrank: the next chunk waited until fewer were in flight.
        // (It may find the window a little larger than just after the cut: each ack grows it.)
        #expect(after.first.map { $0.bytes < before.last!.bytes } ?? false,
                "the first chunk after the loss went with less in flight than before it: \(before.last!) then \(after.first!)")
        #expect(transcript.events.last == .filesDone(["r.bin"]))
        await server.close()
    }
}

/// Decodes a chunk frame's payload back to its raw bytes, as the receiver does.
enum ChunkDecoderHelper {
    static func decode(_ encoded: ByteBuffer) throws -> [UInt8] {
        try ChunkDecoder().decode(Array(buffer: encoded))
    }
}

/// A pair of counters under a lock.
final class NIOLockedBox: @unchecked Sendable {
    private let lock = NSLock()
    private var value: (Int, Int)
    init(_ a: Int, _ b: Int) { value = (a, b) }
    @discardableResult
    func update<T>(_ body: (inout (Int, Int)) -> T) -> T { lock.withLock { body(&value) } }
}
