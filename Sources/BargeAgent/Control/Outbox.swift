import BargeWire
import NIOConcurrencyHelpers

/// Messages from the agent's work to the coordinator. While connected they go straight to the
/// connection's writer; while the coordinator is away, reports (`task done`, `task failed`, scan
/// and verify replies) wait here and go out on the next connection. Progress is only news while
/// it is fresh, so it is dropped rather than kept.
public final class Outbox: Sendable {
    private struct State {
        var sink: AsyncStream<Message>.Continuation?
        var waiting: [Message] = []
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

    /// A new connection: what waited goes out first.
    func attach(_ sink: AsyncStream<Message>.Continuation) {
        state.withLockedValue { s in
            for m in s.waiting { sink.yield(m) }
            s.waiting.removeAll()
            s.sink = sink
        }
    }

    func detach() {
        state.withLockedValue { $0.sink = nil }
    }

    /// Reports waiting for a connection (for tests).
    public var waitingCount: Int { state.withLockedValue { $0.waiting.count } }
}
