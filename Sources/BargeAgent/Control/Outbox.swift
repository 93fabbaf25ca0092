import BargeWire
import NIOConcurrencyHelpers

/// Messages from the agent's work to the coordinator, through whichever connection is up.
///
/// **Reports are delivered at least once.** A `task done` or `task failed` stays here until the
/// coordinator acknowledges it (`report ack`, protocol version 5), and every new connection
/// sends the unacknowledged ones again, oldest first, before anything else. The coordinator
/// takes a repeat as a no-op. With an older coordinator, which acknowledges nothing, a report
/// is kept only while no connection is up, as before.
///
/// Scan and verify replies wait for a connection too. Progress is only news while it is fresh,
/// so it is dropped rather than kept. Scan pages are paced (`sendPaced`): at most `pacedLimit`
/// wait for the writer at once, and none while no connection is up, so a scan runs as fast as
/// the coordinator takes its pages. A scan belongs to the connection it was asked on: once that
/// one ends, its pages are dropped and it stops (the coordinator asks again, from its mark, on
/// the next connection; after a restart it may be a coordinator that never asked for it).
public final class Outbox: Sendable {
    public static let pacedLimit = 4

    private struct State {
        var sink: AsyncStream<Message>.Continuation?
        /// Whether the connection acknowledges reports.
        var acknowledged = false
        var waiting: [Message] = []
        /// Reports not acknowledged yet, in the order they were made.
        var unacked: [AssignmentKey: (order: UInt64, message: Message)] = [:]
        var nextOrder: UInt64 = 0
        /// Paced messages handed to the writer and not yet written.
        var pacedQueued = 0
        var pacedWaiting: [(message: Message, connection: UInt64, resume: CheckedContinuation<Bool, Never>)] = []
        /// Connections attached so far: the current one's number.
        var connection: UInt64 = 0
    }
    private let state = NIOLockedValueBox(State())

    public init() {}

    /// The key of a report the coordinator acknowledges (one with an assignment).
    static func reportKey(_ message: Message) -> AssignmentKey? {
        switch message {
        case .taskDone(let d) where d.assignment != 0: d.key
        case .taskFailed(let f) where f.assignment != 0: f.key
        default: nil
        }
    }

    public func send(_ message: Message) {
        state.withLockedValue { s in
            if let key = Self.reportKey(message), s.sink == nil || s.acknowledged {
                s.unacked[key] = (s.nextOrder, message)
                s.nextOrder += 1
            }
            if let sink = s.sink {
                sink.yield(message)
            } else if Self.reportKey(message) == nil && message.type != .taskProgress {
                s.waiting.append(message)
            }
        }
    }

    /// The coordinator journaled the report of this assignment: it is not sent again.
    public func acknowledge(_ key: AssignmentKey) {
        _ = state.withLockedValue { $0.unacked.removeValue(forKey: key) }
    }

    /// The current connection's number (0 before the first): what a request answered with paced
    /// pages belongs to.
    public var connection: UInt64 { state.withLockedValue { $0.connection } }

    /// Sends a scan page once fewer than `pacedLimit` wait for a connected writer. False, and
    /// nothing sent, once the connection `connection` has ended: the page's scan should stop.
    public func sendPaced(_ message: Message, on connection: UInt64) async -> Bool {
        await withCheckedContinuation { (c: CheckedContinuation<Bool, Never>) in
            let now = state.withLockedValue { s -> Bool? in
                guard s.connection == connection else { return false }
                if let sink = s.sink, s.pacedQueued < Self.pacedLimit, s.pacedWaiting.isEmpty {
                    s.pacedQueued += 1
                    sink.yield(message)
                    return true
                }
                s.pacedWaiting.append((message, connection, c))
                return nil
            }
            if let now { c.resume(returning: now) }
        }
    }

    /// The writer wrote `message` to the socket.
    func written(_ message: Message) {
        guard message.type == .scanReply else { return }
        let ready = state.withLockedValue { s in
            s.pacedQueued = max(0, s.pacedQueued - 1)
            return Self.release(&s)
        }
        ready.forEach { $0.resume.resume(returning: $0.sent) }
    }

    /// Hands waiting paced messages of the current connection to the writer, and drops those of
    /// connections that ended.
    private static func release(_ s: inout State) -> [(resume: CheckedContinuation<Bool, Never>, sent: Bool)] {
        var ready: [(resume: CheckedContinuation<Bool, Never>, sent: Bool)] = []
        s.pacedWaiting.removeAll { waiting in
            guard waiting.connection != s.connection else { return false }
            ready.append((waiting.resume, false))
            return true
        }
        guard let sink = s.sink else { return ready }
        while s.pacedQueued < pacedLimit, !s.pacedWaiting.isEmpty {
            let next = s.pacedWaiting.removeFirst()
            s.pacedQueued += 1
            sink.yield(next.message)
            ready.append((next.resume, true))
        }
        return ready
    }

    /// A new connection. Unacknowledged reports go out first, then `holding` (what the agent
    /// runs, made under the lock so that no report slips between the two), then what waited.
    /// `acknowledged`: the coordinator acknowledges reports (protocol version 5).
    func attach(_ sink: AsyncStream<Message>.Continuation, acknowledged: Bool, holding: (() -> Message)? = nil) {
        let ready = state.withLockedValue { s in
            for (_, report) in s.unacked.sorted(by: { $0.value.order < $1.value.order }) { sink.yield(report.message) }
            if !acknowledged { s.unacked.removeAll() }
            if let holding { sink.yield(holding()) }
            for m in s.waiting { sink.yield(m) }
            s.waiting.removeAll()
            s.sink = sink
            s.acknowledged = acknowledged
            s.pacedQueued = 0
            s.connection += 1
            return Self.release(&s)
        }
        ready.forEach { $0.resume.resume(returning: $0.sent) }
    }

    func detach() {
        state.withLockedValue { $0.sink = nil }
    }

    /// Reports and replies waiting for a connection or an acknowledgement (for tests).
    public var waitingCount: Int { state.withLockedValue { $0.waiting.count + $0.unacked.count } }
}
