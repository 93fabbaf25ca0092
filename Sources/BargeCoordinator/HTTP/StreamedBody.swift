import Dispatch
import Hummingbird
import NIOCore
import Synchronization

/// A response body that a blocking producer writes as text on a Dispatch thread (reads of the
/// journal and of files), sent in pieces of about `pieceBytes`, with at most `window` pieces
/// waiting for the client. A client that goes away (or a cancelled response) ends the producer
/// at its next piece; before, it waited for room for ever, holding its thread and its files.
enum StreamedBody {
    /// The client is gone: the producer stops.
    struct Abandoned: Error {}

    /// `ended` (tests): called once the producer has stopped, however it stopped.
    static func make(window: Int = 8, pieceBytes: Int = 256 << 10, ended: (@Sendable () -> Void)? = nil,
                     produce: @escaping @Sendable (_ out: (String) throws -> Void) throws -> Void) -> ResponseBody {
        let (stream, sink) = AsyncStream.makeStream(of: Result<ByteBuffer, any Error>.self)
        // Made at 0 and raised to the window: libdispatch traps when a semaphore is freed below
        // the value it was made with, and the stop signals below may leave it there.
        let room = DispatchSemaphore(value: 0)
        for _ in 0..<window { room.signal() }
        let gone = Gone()
        sink.onTermination = { _ in
            gone.mark()
            room.signal()
        }
        DispatchQueue.global(qos: .utility).async {
            defer { ended?() }
            var pending = ""
            func emit(_ text: String, force: Bool = false) throws {
                pending += text
                guard force || pending.utf8.count >= pieceBytes else { return }
                room.wait()
                if gone.isMarked { throw Abandoned() }
                sink.yield(.success(ByteBuffer(string: pending)))
                pending = ""
            }
            do {
                try produce { try emit($0) }
                try emit("", force: true)
            } catch is Abandoned {
            } catch {
                sink.yield(.failure(error))
            }
            sink.finish()
        }
        return ResponseBody { writer in
            // However the sending ends (the client gone: a write throws), the producer hears it.
            defer {
                gone.mark()
                room.signal()
            }
            for await piece in stream {
                room.signal()
                try await writer.write(try piece.get())
            }
            try await writer.finish(nil)
        }
    }

    private final class Gone: Sendable {
        private let flag = Mutex(false)
        func mark() { flag.withLock { $0 = true } }
        var isMarked: Bool { flag.withLock { $0 } }
    }
}
