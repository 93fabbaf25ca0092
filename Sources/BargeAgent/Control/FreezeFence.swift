import Dispatch
import NIOConcurrencyHelpers

/// What an agent knows of its own freezes. The coordinator takes an agent for down once it has
/// heard nothing from it for its agent timeout, and gives the agent's units to others. An agent
/// that was stopped that long (SIGSTOP, a paused VM, a disk that held a page fault) must not go on
/// sending those units when it resumes: its file batches land beside the work of the agents that
/// took them over, and after the job has ended (`cluster/chaos.sh` with `SIG=STOP`;
/// `ResilienceProcessTests`: 761 files written again after the job's end).
///
/// The evidence is local: the heartbeat loop beats every heartbeat interval while the agent is
/// connected. A gap between two beats of about the agent timeout means the coordinator heard no
/// heartbeat for that long either. Every unit takes a `Ticket` when it starts, and every
/// data-plane request of the unit checks it (`UnitFlow.check`): a unit that was running across a
/// freeze stops with a retryable failure, which the coordinator drops if the unit has gone to
/// another agent and runs again otherwise. Whoever wakes first after the freeze sees the gap (the
/// heartbeat loop, or a unit's check), so no request goes before it is seen.
///
/// An earlier lease ran from the coordinator's echoes of the heartbeats instead. It also covers a
/// coordinator that stops hearing a live agent, but echoes that came late on a busy coordinator
/// failed units for nothing. A connection that stops carrying heartbeats ends the beats too, so
/// an agent cut off from the coordinator for the timeout is fenced all the same once its
/// connection fails.
public final class FreezeFence: Sendable {
    /// The fence's arithmetic, on a monotonic clock in nanoseconds.
    public struct State: Sendable, Equatable {
        /// The gap between beats that counts as a freeze; 0 until a coordinator names its timeout.
        public var limit: UInt64 = 0
        public var lastBeat: UInt64 = 0
        /// Freezes seen so far: a ticket holds the count at its unit's start.
        public var freezes: UInt64 = 0

        public init() {}

        /// A coordinator's agent timeout and heartbeat interval: a gap longer than the timeout
        /// less one interval is a freeze (the coordinator's own look at the gap starts up to an
        /// interval later than ours), and never shorter than half the timeout.
        public static func limit(timeout: UInt64, interval: UInt64) -> UInt64 {
            timeout == 0 ? 0 : max(timeout / 2, timeout &- min(interval, timeout))
        }

        /// Looks at the clock: a freeze if the last beat is longer ago than the limit. A freeze
        /// is counted once: the look that sees it also takes it as a beat.
        public mutating func look(at now: UInt64) {
            guard limit > 0, now > lastBeat, now - lastBeat > limit else { return }
            freezes += 1
            lastBeat = now
        }

        /// The heartbeat loop's beat.
        public mutating func beat(at now: UInt64) {
            look(at: now)
            lastBeat = max(lastBeat, now)
        }

        /// Registered (again) with a coordinator that names this limit: a beat, after a look with
        /// the limit known before (a reconnection that took longer than the timeout is a freeze).
        public mutating func registered(limit: UInt64, at now: UInt64) {
            beat(at: now)
            self.limit = limit
        }
    }

    /// A unit's hold on the fence, taken when it starts.
    public struct Ticket: Sendable {
        let fence: FreezeFence
        let freezes: UInt64

        /// Throws a retryable `UnitFailure` once the agent has been frozen since the unit began.
        public func check() throws(UnitFailure) {
            let now = fence.clock()
            let seen = fence.state.withLockedValue { s in
                s.look(at: now)
                return s.freezes
            }
            if seen == freezes { return }
            throw UnitFailure(retryable: true, description: "this agent was stopped or cut off from the coordinator for about its agent timeout while the unit ran, so the coordinator may have given the unit to another agent: it stops here")
        }
    }

    private let state = NIOLockedValueBox(State())
    private let clock: @Sendable () -> UInt64

    /// `clock`: monotonic nanoseconds that run while the process is stopped (tests pass their own).
    public init(clock: @escaping @Sendable () -> UInt64 = { DispatchTime.now().uptimeNanoseconds }) {
        self.clock = clock
    }

    public func registered(timeout: Duration, interval: Duration) {
        let now = clock(), limit = State.limit(timeout: Self.nanos(timeout), interval: Self.nanos(interval))
        state.withLockedValue { $0.registered(limit: limit, at: now) }
    }

    public func beat() {
        let now = clock()
        state.withLockedValue { $0.beat(at: now) }
    }

    /// A ticket for a unit that starts now.
    public func ticket() -> Ticket {
        let now = clock()
        return Ticket(fence: self, freezes: state.withLockedValue { s in
            s.look(at: now)
            return s.freezes
        })
    }

    private static func nanos(_ d: Duration) -> UInt64 {
        let (seconds, attoseconds) = d.components
        return seconds < 0 ? 0 : UInt64(seconds) * 1_000_000_000 + UInt64(max(0, attoseconds) / 1_000_000_000)
    }
}
