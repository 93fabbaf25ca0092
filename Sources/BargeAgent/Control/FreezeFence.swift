import BargeWire
import NIOConcurrencyHelpers

/// What an agent knows of its own freezes. The coordinator takes an agent for down once it has
/// heard nothing from it for its agent timeout, and gives the agent's units to others. An agent
/// that was stopped that long (SIGSTOP, a paused VM, a disk that held a page fault) must not go on
/// sending those units when it resumes: its file batches land beside the work of the agents that
/// took them over, and after the job has ended (`cluster/chaos.sh` with `SIG=STOP`;
/// `ResilienceProcessTests`: 761 files written again after the job's end).
///
/// Two kinds of evidence count. The heartbeat timer beats every heartbeat interval while the
/// agent is connected (on the connection's event loop, which no work holds up): a gap between two
/// beats of about the agent timeout means the coordinator heard no heartbeat for that long
/// either. And the coordinator's own word: a heartbeat refused as `markedDown` (error 12) fences
/// every unit, whatever this agent's clock saw. Every unit takes a `Ticket` when it starts, and
/// every data-plane request of the unit checks it (`UnitFlow.check`): a unit that was running
/// across a freeze stops with a retryable failure, which the coordinator drops if the unit has
/// gone to another agent and runs again otherwise. Whoever wakes first after the freeze sees the
/// gap (the timer, or a unit's check), so no new request goes once it is seen; frames already
/// queued to a stream before the freeze still go. A unit whose assignment was read only after the
/// freeze, before anyone saw it, holds a ticket from before it, and is fenced too.
///
/// An earlier lease ran from the coordinator's echoes of the heartbeats instead. It also covered
/// a coordinator that stops hearing a live agent, but echoes that came late on a busy coordinator
/// failed units for nothing. What this leaves: a connection that takes writes but delivers
/// nothing (a half-open connection) keeps the beats going until TCP gives it up; the agent's
/// units then stop at the `markedDown` refusal or the `task drop` of its next registration.
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

    /// `clock`: nanoseconds that run while the process is stopped and while the host sleeps
    /// (`ContinuousClock`: CLOCK_BOOTTIME on Linux); tests pass their own.
    public init(clock: (@Sendable () -> UInt64)? = nil) {
        let start = ContinuousClock.now
        self.clock = clock ?? { UInt64((ContinuousClock.now - start).wholeNanoseconds) }
    }

    public func registered(timeout: Duration, interval: Duration) {
        let now = clock(), limit = State.limit(timeout: Self.nanos(timeout), interval: Self.nanos(interval))
        state.withLockedValue { $0.registered(limit: limit, at: now) }
    }

    /// The gap between beats that counts as a freeze (about the coordinator's agent timeout),
    /// once a coordinator has named it.
    public var freezeLimit: Duration? {
        let limit = state.withLockedValue { $0.limit }
        return limit == 0 ? nil : .nanoseconds(Int64(min(limit, UInt64(Int64.max))))
    }

    public func beat() {
        let now = clock()
        state.withLockedValue { $0.beat(at: now) }
    }

    /// The coordinator refused a heartbeat: it took this agent for down and gave its units away.
    public func markedDown() {
        let now = clock()
        state.withLockedValue {
            $0.freezes += 1
            $0.lastBeat = max($0.lastBeat, now)
        }
    }

    /// A ticket for a unit that starts now. It takes the freezes counted so far without looking
    /// at the clock: an assignment read just after a freeze that nobody has seen yet may be one
    /// the coordinator sent before it took this agent for down, so the unit's first check fences
    /// it. (A unit assigned after this agent registered again holds a ticket from after the
    /// freeze: registering looks.)
    public func ticket() -> Ticket {
        Ticket(fence: self, freezes: state.withLockedValue { $0.freezes })
    }

    private static func nanos(_ d: Duration) -> UInt64 { UInt64(max(0, d.wholeNanoseconds)) }
}
