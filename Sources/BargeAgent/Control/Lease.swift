import Dispatch
import NIOConcurrencyHelpers

/// The agent's lease on the units it runs. The coordinator marks an agent down once it has heard
/// nothing from it for its agent timeout, and gives its units to other agents. An agent that was
/// stopped that long (SIGSTOP, a paused VM, a stalled disk) or cut off from the coordinator must
/// not go on sending them when it resumes: its chunks and file batches would land beside the work
/// of the agents that took them over, and after the job has ended (`cluster/chaos.sh` with
/// `SIG=STOP`). So every data-plane send asks the lease first (`UnitFlow`, `UnitSender`).
///
/// The lease runs for the agent timeout the coordinator named at registration, from the moment
/// the agent sent the last heartbeat the coordinator echoed. The coordinator heard that heartbeat
/// no earlier, so the lease ends no later than the coordinator's patience. The clock is monotonic
/// and runs while the process is stopped.
public final class Lease: Sendable {
    private struct State {
        var timeout: UInt64 = 0
        /// Nil until the first registration: no coordinator has counted on this agent yet.
        var until: UInt64?
        /// Heartbeats sent and not yet echoed, by sequence number: when each went.
        var sent: [UInt64: UInt64] = [:]
    }
    private let state = NIOLockedValueBox(State())
    private let clock: @Sendable () -> UInt64

    /// `clock`: monotonic nanoseconds (tests pass their own).
    public init(clock: @escaping @Sendable () -> UInt64 = { DispatchTime.now().uptimeNanoseconds }) {
        self.clock = clock
    }

    /// Registered (again): the coordinator counts this agent alive from now.
    public func registered(timeout: Duration) {
        let now = clock()
        let nanos = UInt64(max(0, timeout.components.seconds)) * 1_000_000_000 + UInt64(max(0, timeout.components.attoseconds / 1_000_000_000))
        state.withLockedValue {
            $0.timeout = nanos
            $0.until = nanos > 0 ? now + nanos : nil  // a coordinator that names no timeout: no lease
            $0.sent = [:]
        }
    }

    /// Heartbeat `sequence` goes out now.
    public func sent(heartbeat sequence: UInt64) {
        let now = clock()
        state.withLockedValue {
            $0.sent[sequence] = now
            // Echoes come in order; a heartbeat whose echo was lost with its connection is
            // forgotten with the next registration, or here once far behind.
            if $0.sent.count > 64, let oldest = $0.sent.keys.min() { $0.sent.removeValue(forKey: oldest) }
        }
    }

    /// The coordinator echoed heartbeat `sequence`: the lease runs from when it went.
    public func echoed(heartbeat sequence: UInt64) {
        state.withLockedValue { s in
            guard let at = s.sent.removeValue(forKey: sequence) else { return }
            s.sent = s.sent.filter { $0.key > sequence }
            s.until = max(s.until ?? 0, at + s.timeout)
        }
    }

    /// Seconds since the lease ran out, or nil while it holds.
    public func overdue() -> Double? {
        let now = clock()
        guard let until = state.withLockedValue({ $0.until }), now > until else { return nil }
        return Double(now - until) / 1e9
    }

    /// Throws `UnitFailure` (retryable) once the lease has run out.
    public func check() throws(UnitFailure) {
        guard let late = overdue() else { return }
        throw UnitFailure(retryable: true, description: String(format: "this agent has not heard from the coordinator for longer than its agent timeout (%.1f s over), so the coordinator may have given the unit to another agent: it stops here", late))
    }
}
