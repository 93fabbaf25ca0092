import BargeWire
import NIOConcurrencyHelpers

/// Messages from the agent's work to the coordinator. While connected they go straight to the
/// connection's writer; while the coordinator is away, reports (`task done`, `task failed`, scan
/// and verify replies) wait here and go out on the next connection. Progress is only news while
/// it is fresh, so it is dropped rather than kept.
///
/// Scan pages are paced (`sendPaced`): at most `pacedLimit` wait for the writer at once, and
/// none while no connection is up, so a scan runs as fast as the coordinator takes its pages.
public final class Outbox: Sendable {
    public static let pacedLimit = 4

    private struct State {
        var sink: AsyncStream<Message>.Continuation?
        var waiting: [Message] = []
        /// Paced messages handed to the writer and not yet written.
        var pacedQueued = 0
        var pacedWaiting: [(message: Message, resume: CheckedContinuation<Void, Never>)] = []
    }
    private let state = NIOLockedValueBox(State())

    public init() {}

    public func send(_ message: Message) {
        state.withLockedValue { s in
            if let sink = s.sink {
                sink.yield(message)
            } else if message.type != .taskProgress && message.type != .heartbeat {
                s.waiting.append(message)
            }
        }
    }

    /// Sends a scan page once fewer than `pacedLimit` wait for a connected writer.
    public func sendPaced(_ message: Message) async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let now = state.withLockedValue { s -> Bool in
                if let sink = s.sink, s.pacedQueued < Self.pacedLimit, s.pacedWaiting.isEmpty {
                    s.pacedQueued += 1
                    sink.yield(message)
                    return true
                }
                s.pacedWaiting.append((message, c))
                return false
            }
            if now { c.resume() }
        }
    }

    /// The writer wrote `message` to the socket.
    func written(_ message: Message) {
        guard message.type == .scanReply else { return }
        let ready = state.withLockedValue { s in
            s.pacedQueued = max(0, s.pacedQueued - 1)
            return Self.release(&s)
        }
        ready.forEach { $0.resume() }
    }

    private static func release(_ s: inout State) -> [CheckedContinuation<Void, Never>] {
        guard let sink = s.sink else { return [] }
        var ready: [CheckedContinuation<Void, Never>] = []
        while s.pacedQueued < pacedLimit, !s.pacedWaiting.isEmpty {
            let next = s.pacedWaiting.removeFirst()
            s.pacedQueued += 1
            sink.yield(next.message)
            ready.append(next.resume)
        }
        return ready
    }

    /// A new connection: what waited goes out first.
    func attach(_ sink: AsyncStream<Message>.Continuation) {
        let ready = state.withLockedValue { s in
            for m in s.waiting { sink.yield(m) }
            s.waiting.removeAll()
            s.sink = sink
            s.pacedQueued = 0
            return Self.release(&s)
        }
        ready.forEach { $0.resume() }
    }

    func detach() {
        state.withLockedValue { $0.sink = nil }
    }

    /// Reports waiting for a connection (for tests).
    public var waitingCount: Int { state.withLockedValue { $0.waiting.count } }
}
