@testable import BargeCoordinator
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Synchronization
import Testing

/// The streamed response body (the evidence bundle's): the producer runs ahead of the client by
/// at most its window, and stops when the client goes away instead of waiting for room for ever.
struct StreamedBodyTests {
    /// A client whose connection breaks after `accepted` writes.
    struct BreakingWriter: ResponseBodyWriter {
        struct Broken: Error {}
        let written: Counter
        let accepted: Int
        mutating func write(_ buffer: ByteBuffer) async throws {
            guard written.add() <= accepted else { throw Broken() }
        }
        mutating func write(contentsOf buffers: some Sequence<ByteBuffer>) async throws {
            for b in buffers { try await write(b) }
        }
        consuming func finish(_ trailingHeaders: HTTPFields?) async throws {}
    }

    final class Counter: Sendable {
        private let value = Mutex(0)
        @discardableResult func add() -> Int { value.withLock { $0 += 1; return $0 } }
        var count: Int { value.withLock { $0 } }
    }

    @Test(.timeLimit(.minutes(1))) func aProducerStopsWhenTheClientGoesAway() async throws {
        let pieces = Counter(), ended = Counter()
        let body = StreamedBody.make(window: 2, pieceBytes: 1024, ended: { ended.add() }) { out in
            for _ in 0..<1000 {
                try out(String(repeating: "x", count: 1024))
                pieces.add()
            }
        }
        let writes = Counter()
        await #expect(throws: BreakingWriter.Broken.self) { try await body.write(BreakingWriter(written: writes, accepted: 3)) }
        for _ in 0..<250 where ended.count == 0 { try await Task.sleep(for: .milliseconds(20)) }
        #expect(ended.count == 1, "the producer still waits for room")
        // It stopped a window or so after the last piece the client took, not at the end.
        #expect(pieces.count < 10, "\(pieces.count) pieces produced")
    }

    /// A client that stalls until the producer has filled its window, then goes away: the
    /// producer stops, and the body is freed without a trap (a semaphore freed below its initial
    /// value traps in libdispatch).
    @Test(.timeLimit(.minutes(1))) func aClientThatStallsAndLeavesStopsTheProducer() async throws {
        let pieces = Counter(), ended = Counter()
        var body: ResponseBody? = StreamedBody.make(window: 4, pieceBytes: 1024, ended: { ended.add() }) { out in
            for _ in 0..<1000 {
                try out(String(repeating: "y", count: 1024))
                pieces.add()
            }
        }
        struct Stalling: ResponseBodyWriter {
            let full: @Sendable () -> Bool
            mutating func write(_ buffer: ByteBuffer) async throws {
                // Takes one piece, then waits until the producer is blocked on a full window.
                for _ in 0..<250 where !full() { try await Task.sleep(for: .milliseconds(20)) }
                throw BreakingWriter.Broken()
            }
            mutating func write(contentsOf buffers: some Sequence<ByteBuffer>) async throws { for b in buffers { try await write(b) } }
            consuming func finish(_ trailingHeaders: HTTPFields?) async throws {}
        }
        await #expect(throws: BreakingWriter.Broken.self) { try await body!.write(Stalling(full: { pieces.count >= 5 })) }
        for _ in 0..<250 where ended.count == 0 { try await Task.sleep(for: .milliseconds(20)) }
        #expect(ended.count == 1 && pieces.count < 10, "ended \(ended.count), \(pieces.count) pieces")
        body = nil
        try await Task.sleep(for: .milliseconds(100))
    }

    @Test func everyPieceArrivesInOrderWhenTheClientReadsItAll() async throws {
        let body = StreamedBody.make(window: 2, pieceBytes: 8) { out in
            for i in 0..<100 { try out("\(i),") }
        }
        final class Box: Sendable { let text = Mutex("") }
        struct Collecting: ResponseBodyWriter {
            let box: Box
            mutating func write(_ buffer: ByteBuffer) async throws { box.text.withLock { $0 += String(buffer: buffer) } }
            mutating func write(contentsOf buffers: some Sequence<ByteBuffer>) async throws { for b in buffers { try await write(b) } }
            consuming func finish(_ trailingHeaders: HTTPFields?) async throws {}
        }
        let box = Box()
        try await body.write(Collecting(box: box))
        #expect(box.text.withLock { $0 } == (0..<100).map { "\($0)," }.joined())
    }
}
