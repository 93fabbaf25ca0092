import BargeFlow
import BargeWire
import DequeModule
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Synchronization

/// What a reply names, to find its request: a chunk's place (job, path and offset), or a file
/// batch's job and number.
public enum ReplyKey: Hashable, Sendable {
    case place(ChunkPlace)
    case batch(job: String, number: UInt64)
}

/// A stream to another agent's data-plane listener, pipelined: any number of tasks send on it at
/// once, and each message gets its own reply. Replies are matched to requests by what they name
/// (a chunk's job, path and offset; a file batch's job and number), so nothing waits for the reply
/// to the chunk before it: an ack or nack goes to the oldest request outstanding for its place, a
/// file batch reply to its batch, and a reply that names nothing (a have list, a files done reply)
/// to the oldest request that expects none. A reply for a key with nothing outstanding breaks the
/// protocol and ends the stream; so does an error frame, which fails every request still waiting. Today's listener answers a connection's messages in
/// order, but a sender that relied on that would stall behind any peer that does not.
public final class ChunkStream: Sendable {
    /// The protocol version negotiated with the peer: what it understands.
    public let version: UInt8
    /// The socket's `TCP_INFO`.
    let probe: TCPProbe?

    /// A request waiting for its reply: a task suspended in `send`, or a `PendingReply` from `queue`.
    private enum Waiter: Sendable {
        case task(TaskWaiter)
        case pending(PendingReply)

        func resume(returning reply: Message) {
            switch self {
            case .task(let t): t.resume(with: .success(reply))
            case .pending(let p): p.settle(.success(reply))
            }
        }

        func resume(throwing error: Error) {
            switch self {
            case .task(let t): t.resume(with: .failure(error))
            case .pending(let p): p.settle(.failure(error))
            }
        }
    }

    /// A task in `send`, resumed once: by its reply, by the stream's end, or by its own
    /// cancellation, whichever comes first. Cancelled, it stays among the requests outstanding, so
    /// that its reply, if one comes, still goes to it (and is dropped) rather than to a later
    /// request for the same place.
    private final class TaskWaiter: Sendable {
        private enum Slot {
            case empty
            case waiting(CheckedContinuation<Message, Error>)
            case done
        }
        private let slot = Mutex(Slot.empty)

        /// Takes the task's continuation; false (and resumed with `CancellationError`) when the
        /// task was cancelled before it got here.
        func wait(_ c: CheckedContinuation<Message, Error>) -> Bool {
            let cancelled = slot.withLock { s -> Bool in
                if case .done = s { return true }
                s = .waiting(c)
                return false
            }
            if cancelled { c.resume(throwing: CancellationError()) }
            return !cancelled
        }

        func resume(with result: Result<Message, Error>) {
            let c = slot.withLock { s -> CheckedContinuation<Message, Error>? in
                defer { s = .done }
                if case .waiting(let c) = s { return c }
                return nil
            }
            c?.resume(with: result)
        }
    }

    private struct State {
        /// Requests that expect a reply naming their key, oldest first per key.
        var placed: [ReplyKey: Deque<Waiter>] = [:]
        /// Requests whose reply names no place, oldest first.
        var unplaced: Deque<Waiter> = []
        var failure: Error?
        /// Write slots held (`writeSlot`), and the workers waiting for one, each with its unit's
        /// order (served oldest unit first, each unit's in the order they came).
        var slotsHeld = 0
        var slotWaiters: [(id: UInt64, order: UInt64, continuation: CheckedContinuation<Void, Never>)] = []
        var nextSlotWaiter: UInt64 = 0
        /// The pacing cap last set on the socket (`pace`); nil: none.
        var paced: UInt64?
        /// Since when requests have waited with no reply coming (the first request sent while
        /// none was outstanding, or the last reply, whichever is later); nil while none waits.
        var quietSince: ContinuousClock.Instant?

        var outstanding: Bool { !unplaced.isEmpty || !placed.isEmpty }

        mutating func take(_ place: ReplyKey?) -> Waiter? {
            guard let place else { return unplaced.popFirst() }
            guard var waiters = placed.removeValue(forKey: place), let first = waiters.popFirst() else { return nil }
            if !waiters.isEmpty { placed[place] = waiters }
            return first
        }

        mutating func takeAll() -> [Waiter] {
            defer { placed.removeAll(); unplaced.removeAll(); quietSince = nil }
            return Array(unplaced) + placed.values.flatMap { $0 }
        }
    }

    private let state = NIOLockedValueBox(State())
    private let writes: AsyncStream<Outgoing>.Continuation

    /// A frame queued for the writer task, and the write slot it frees once written.
    private struct Outgoing: Sendable {
        let frame: Frame
        let slot: WriteSlot?
    }

    /// How many write slots a stream has: at most this many frames are queued or being prepared
    /// for it at once, beyond what its socket has taken.
    public static let writeSlots = 3

    /// Holds the socket's TCP pacing to `cap` bytes per second (nil: no cap), when it differs
    /// enough from the cap in force (`SocketPacing.needsUpdate`).
    public func pace(_ cap: UInt64?) async {
        guard let probe else { return }
        let update = state.withLockedValue { s -> Bool in
            guard SocketPacing.needsUpdate(current: s.paced, wanted: cap) else { return false }
            s.paced = cap
            return true
        }
        if update { await probe.setMaximumPacingRate(cap) }
    }

    /// The pacing cap in force on the socket (for tests).
    var pacingCap: UInt64? { state.withLockedValue { $0.paced } }

    /// The TCP congestion control the stream's connection runs (`--tcp-congestion`).
    public func congestionControl() async -> String? {
        await probe?.congestionControl()
    }

    private init(version: UInt8, probe: TCPProbe?, writes: AsyncStream<Outgoing>.Continuation) {
        self.version = version
        self.probe = probe
        self.writes = writes
    }

    /// Runs `body` with a stream over the connection: a writer task sends the queued frames, a
    /// reader task hands each reply to its request. Both end with `body`.
    /// `stall`: requests that wait this long with no reply, and with none of this side's bytes
    /// acknowledged by the peer's TCP meanwhile, close the connection (`watch`).
    static func serve<Result: Sendable>(inbound: NIOAsyncChannelInboundStream<Frame>, outbound: NIOAsyncChannelOutboundWriter<Frame>,
                                        version: UInt8, probe: TCPProbe?, stall: Duration? = nil,
                                        _ body: (ChunkStream) async throws -> Result) async throws -> Result {
        let (frames, writes) = AsyncStream<Outgoing>.makeStream()
        let stream = ChunkStream(version: version, probe: probe, writes: writes)
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                do {
                    for await out in frames {
                        // Returns once the channel has taken the frame. NIO may take several
                        // while the socket is full (64 of 1 MiB in `WriteSlotTests` without the
                        // slots), so the slots, not NIO, bound what waits for the socket.
                        try await outbound.write(out.frame)
                        out.slot?.release()
                    }
                } catch {
                    stream.fail(error)
                }
            }
            group.addTask {
                do {
                    for try await frame in inbound { try stream.deliver(frame) }
                    // This side's own close, when it was (a reply that did not open, nothing
                    // received for the stall timeout), says so: it was all told as the peer's.
                    stream.fail(probe?.closedHere.map(ClosedHere.init) ?? PeerClosed())
                } catch {
                    stream.fail(error)
                }
            }
            if let stall { group.addTask { await stream.watch(stall: stall) } }
            defer {
                writes.finish()
                group.cancelAll()
                stream.fail(CancellationError())
            }
            return try await body(stream)
        }
    }

    /// Fails the stream with `Unanswered` before its connection is closed, so that its requests
    /// say why (the first failure is the one kept).
    func failUnanswered(_ quiet: Duration, stalled: Bool = false) { fail(Unanswered(quiet: quiet, stalled: stalled)) }

    /// Closes the connection once requests have waited `stall` with no reply and with none of
    /// this side's bytes acknowledged by the peer's TCP meanwhile: a peer that stopped (SIGSTOP,
    /// a hung host) or a path gone without a reset. Bytes still being acknowledged are a peer
    /// that reads what a paced socket sends: not a stall. Before, the connection's read timer
    /// closed it after `stall` with nothing received, and a job capped at 1 MiB/s with a 5 s
    /// stall timeout failed, each stream waiting on the cap taken for a silent peer (h1 of
    /// session 49). Ends when the stream does.
    func watch(stall: Duration) async {
        let period = min(.seconds(1), stall / 4)
        var acked: UInt64?
        while !isFailed {
            do { try await Task.sleep(for: period) } catch { return }
            let now = await probe?.sample()?.bytesAcked
            if let now, let before = acked, now != before {
                state.withLockedValue { s in if s.outstanding { s.quietSince = .now } }
            }
            acked = now ?? acked
            if unanswered(for: stall) {
                failUnanswered(stall, stalled: true)
                probe?.close()
                return
            }
        }
    }

    /// The stream has failed (its connection closed or broke): nothing more can be sent on it.
    public var isFailed: Bool { state.withLockedValue { $0.failure != nil } }

    /// Whether requests have waited at least `quiet` with no reply coming meanwhile: a peer that
    /// stopped reading (SIGSTOP, a hung host) or a connection cut without a reset. A live peer
    /// answers a chunk within a round trip and a write.
    public func unanswered(for quiet: Duration) -> Bool {
        state.withLockedValue { s in s.quietSince.map { ContinuousClock.now - $0 >= quiet } ?? false }
    }

    /// What a request's reply must name, if anything.
    static func key(of message: Message) -> ReplyKey? {
        switch message {
        case .chunkData(let d), .chunkRepair(let d): .place(d.place)
        case .chunkRef(let r): .place(r.place)
        case .fileDone(let f), .repairDone(let f): .place(f.place)
        case .fileLeftOut(let place): .place(place)
        case .makeEntry(let m): .place(ChunkPlace(job: m.job, path: m.entry.path, offset: 0))
        case .fileBatch(let b): .batch(job: b.job, number: b.batch)
        default: nil
        }
    }

    /// What a reply names, if anything.
    static func key(ofReply message: Message) -> ReplyKey? {
        switch message {
        case .chunkAck(let a): .place(a.place)
        case .chunkNack(let n): .place(n.place)
        case .fileBatchReply(let r): .batch(job: r.job, number: r.batch)
        default: nil
        }
    }

    /// Sends `message` and returns the peer's reply (ack, nack, have list, files done reply, file
    /// batch reply).
    public func send(_ message: Message, slot: WriteSlot? = nil) async throws -> Message {
        try await send(message.frame(), expecting: Self.key(of: message), slot: slot)
    }

    /// Sends a frame built by the caller (a prepared chunk for a place, a file batch) and returns
    /// the peer's reply naming `place`. `slot`, if given, is freed once the frame is written.
    ///
    /// A task cancelled while it waits returns at once with `CancellationError` (the frame may
    /// still go out; its reply is dropped): a unit the coordinator took back from this agent ends
    /// there, and gives back the room it held in the lane's window and the agent's budget. Left
    /// waiting on a connection cut off without a reset, it held them for the stall timeout, and
    /// the lane's next units, the same unit given back to it included, waited that long (28-31 s
    /// after a 30 s partition ended, through the delay test bed).
    public func send(_ frame: Frame, expecting place: ReplyKey? = nil, slot: WriteSlot? = nil) async throws -> Message {
        let waiter = TaskWaiter()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (c: CheckedContinuation<Message, Error>) in
                guard waiter.wait(c) else {
                    slot?.release()
                    return
                }
                enqueue(frame, expecting: place, slot: slot, .task(waiter))
            }
        } onCancel: {
            waiter.resume(with: .failure(CancellationError()))
        }
    }

    /// Queues `message` at once, behind every request queued before it, and returns its reply to
    /// await later: so that a request whose answer is not needed before the next one (a finish
    /// unit's `have query`, which only places its file, then its `files done`) costs no round
    /// trip of its own. The listener answers a connection's `have query` and `files done` in
    /// order, on one queue.
    public func queue(_ message: Message) -> PendingReply {
        let pending = PendingReply()
        enqueue(message.frame(), expecting: Self.key(of: message), slot: nil, .pending(pending))
        return pending
    }

    private func enqueue(_ frame: Frame, expecting place: ReplyKey?, slot: WriteSlot?, _ waiter: Waiter) {
        let failed = state.withLockedValue { s -> Error? in
            if let failure = s.failure { return failure }
            if !s.outstanding { s.quietSince = .now }
            if let place { s.placed[place, default: []].append(waiter) } else { s.unplaced.append(waiter) }
            writes.yield(Outgoing(frame: frame, slot: slot?.attach()))
            return nil
        }
        if let failed { waiter.resume(throwing: failed) }
    }

    /// One of the stream's `writeSlots`, taken before a worker takes a step to send on it and
    /// freed once that step's frame is written to the channel (or when the step ends without
    /// one). So a stream whose socket drains slowly (its congestion window collapsed after a
    /// loss) has few frames waiting for it: the others take the unit's next steps, rather than
    /// every worker of every unit on the connection queueing a chunk behind it, holding the lane's
    /// window. Waits for a slot; on a failed stream returns one at once (the send then fails).
    /// `order`: the unit's place in its lane (`Lanes.nextOrder`). Slots go to the oldest unit's
    /// workers first, as the lane's window does: handed out in arrival order,
    /// the units sharing a connection each got an equal share, ran out of chunks together, and
    /// left the link idle while the next ones started.
    /// A task cancelled while it waits gets its slot at once (its caller then stops, and frees
    /// it): a unit taken back from this agent waited, on a connection cut off without a reset,
    /// for a slot that frames stuck in the socket never gave back.
    public func writeSlot(order: UInt64 = 0) async -> WriteSlot {
        let id = state.withLockedValue { s -> UInt64 in
            defer { s.nextSlotWaiter += 1 }
            return s.nextSlotWaiter
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                let now = state.withLockedValue { s -> Bool in
                    guard s.failure == nil, s.slotsHeld >= Self.writeSlots, !Task.isCancelled else {
                        s.slotsHeld += 1
                        return true
                    }
                    s.slotWaiters.append((id, order, c))
                    return false
                }
                if now { c.resume() }
            }
        } onCancel: {
            let waiting = state.withLockedValue { s -> CheckedContinuation<Void, Never>? in
                guard let i = s.slotWaiters.firstIndex(where: { $0.id == id }) else { return nil }
                s.slotsHeld += 1
                return s.slotWaiters.remove(at: i).continuation
            }
            waiting?.resume()
        }
        return WriteSlot(self)
    }

    /// A slot came back: the oldest waiter takes it over.
    fileprivate func slotFreed() {
        let next = state.withLockedValue { s -> CheckedContinuation<Void, Never>? in
            if let i = s.slotWaiters.indices.min(by: { s.slotWaiters[$0].order < s.slotWaiters[$1].order }) {
                return s.slotWaiters.remove(at: i).continuation
            }
            s.slotsHeld -= 1
            return nil
        }
        next?.resume()
    }

    /// Write slots held now (for tests).
    var slotsHeld: Int { state.withLockedValue { $0.slotsHeld } }

    private func deliver(_ frame: Frame) throws {
        let reply = try Message(frame: frame)
        if case .error(let e) = reply { throw PeerRefused(error: e) }
        let named = Self.key(ofReply: reply)
        guard let waiter = state.withLockedValue({ s -> Waiter? in
            let waiter = s.take(named)
            s.quietSince = s.outstanding ? .now : nil
            return waiter
        }) else {
            let what = switch named {
            case .place(let p): "\(p.path) at \(p.offset)"
            case .batch(_, let number): "file batch \(number)"
            case nil: "a request with no place"
            }
            throw WireError.malformed(frame.type, "a reply for \(what), which has no request outstanding")
        }
        waiter.resume(returning: reply)
    }

    /// Ends the stream: every request still waiting fails with `error`, and later ones at once.
    private func fail(_ error: Error) {
        let (waiting, slotWaiters) = state.withLockedValue { s -> ([Waiter], [CheckedContinuation<Void, Never>]) in
            if s.failure == nil { s.failure = error }
            let slotWaiters = s.slotWaiters.map(\.continuation)
            s.slotWaiters.removeAll()
            s.slotsHeld += slotWaiters.count
            return (s.takeAll(), slotWaiters)
        }
        writes.finish()
        for w in waiting { w.resume(throwing: error) }
        for w in slotWaiters { w.resume() }
    }
}

/// The reply to a request queued with `ChunkStream.queue`, awaited when it is needed.
public final class PendingReply: Sendable {
    private struct State {
        var result: Result<Message, Error>?
        var waiting: [CheckedContinuation<Message, Error>] = []
    }
    private let state = NIOLockedValueBox(State())

    fileprivate func settle(_ result: Result<Message, Error>) {
        let waiting = state.withLockedValue { s -> [CheckedContinuation<Message, Error>] in
            guard s.result == nil else { return [] }
            s.result = result
            defer { s.waiting = [] }
            return s.waiting
        }
        for w in waiting { w.resume(with: result) }
    }

    /// The reply, once it has arrived (any number of tasks may wait for it); throws what ended
    /// the stream before it did.
    public var value: Message {
        get async throws {
            try await withCheckedThrowingContinuation { (c: CheckedContinuation<Message, Error>) in
                let now = state.withLockedValue { s -> Result<Message, Error>? in
                    if let r = s.result { return r }
                    s.waiting.append(c)
                    return nil
                }
                if let now { c.resume(with: now) }
            }
        }
    }
}

/// A write slot of a `ChunkStream` (`writeSlot()`): freed once, by the writer after the frame it
/// went with, or by its holder when the step sent none.
public final class WriteSlot: Sendable {
    private let stream: ChunkStream
    private let held = Atomic<Bool>(true)
    private let attached = Atomic<Bool>(false)

    fileprivate init(_ stream: ChunkStream) { self.stream = stream }

    /// Frees the slot (once; later calls do nothing).
    public func release() {
        if held.exchange(false, ordering: .acquiringAndReleasing) { stream.slotFreed() }
    }

    /// The slot for the first frame sent with it; nil for later ones (a chunk sent again after a
    /// nack goes without one).
    fileprivate func attach() -> WriteSlot? {
        attached.exchange(true, ordering: .acquiringAndReleasing) ? nil : self
    }
}

/// The other agent answered with an error frame and closed the stream.
public struct PeerRefused: Error, CustomStringConvertible {
    public let error: ErrorMessage
    public var description: String { "the peer closed the stream: \(error.reason)" }
}

/// The peer agent's end of a data-plane connection closed without a word (it stopped, or died).
public struct PeerClosed: Error, CustomStringConvertible {
    public init() {}
    public var description: String { "the peer agent closed the connection" }
}

/// This agent closed a data-plane connection, and why: a frame from the peer that did not open
/// (damaged on the network), or nothing from it for the stall timeout. Before, each was told as
/// "the peer agent closed the connection", which sent an operator to look at the wrong agent.
public struct ClosedHere: Error, CustomStringConvertible {
    public let error: ErrorMessage
    public init(_ error: ErrorMessage) { self.error = error }
    public var description: String {
        if error.code == .timedOut || (error.code == .unexpectedMessage && error.reason.hasPrefix("nothing received")) {
            return "nothing came from the peer agent for the stall timeout (--stall-timeout): this agent closed the connection"
        }
        return "this agent closed the connection: \(error.reason)\(error.code.isDamageOnTheWire ? " (damaged on the network between the agents)" : "")"
    }
}

/// A stream closed by this agent because its requests went unanswered while the coordinator took
/// its destination for down (`StreamPool.closeUnanswered`).
public struct Unanswered: Error, CustomStringConvertible {
    public let quiet: Duration
    /// Closed by the stream's own watch (`ChunkStream.watch`), not for the coordinator.
    public var stalled = false
    public var description: String {
        stalled
            ? "nothing came from the peer agent for \(quiet.components.seconds) s while requests waited, and its TCP took none of this agent's bytes meanwhile (the stall timeout, --stall-timeout): this agent closed the connection"
            : "no answer from the peer agent for \(quiet.components.seconds) s while the coordinator took it for down: this agent closed the connection"
    }
}

/// Opens data-plane streams to another agent.
public struct DataPlaneClient: Sendable {
    public var host: String
    public var port: Int
    public var token: ClusterToken
    /// This agent's name, for the peer's logs.
    public var name: String
    /// A stream with no answer for this long is closed, and its unit fails so that it is retried.
    public var stallTimeout: Duration
    /// The TCP congestion control of its connections; nil keeps the host's default.
    public var congestionControl: TCPCongestionControl?

    public init(host: String, port: Int, token: ClusterToken, name: String, stallTimeout: Duration = .seconds(60),
                congestionControl: TCPCongestionControl? = nil) {
        self.host = host
        self.port = port
        self.token = token
        self.name = name
        self.stallTimeout = stallTimeout
        self.congestionControl = congestionControl
    }

    /// At most this many bytes wait unsent in a stream's socket (`TCP_NOTSENT_LOWAT`), so that
    /// the lane's window, not the socket buffer, holds what is not yet on the network.
    public static let notSentLowat = 128 * 1024

    public func withStream<Result: Sendable>(_ body: (ChunkStream) async throws -> Result) async throws -> Result {
        // Its stalls are found by `ChunkStream.watch`; the read timer only closes a connection
        // on which nothing at all has come for long (a unit held by a tiny cap; the pool closes
        // idle ones at 45 s).
        try await BargeConnection.withProbedConnection(host: host, port: port, token: token, name: name, role: .peer,
                                                       idleTimeout: max(stallTimeout * 2, .seconds(120)).timeAmount,
                                                       notSentLowat: Self.notSentLowat, congestionControl: congestionControl) { session, probe, inbound, outbound in
            try await ChunkStream.serve(inbound: inbound, outbound: outbound, version: session.version, probe: probe, stall: stallTimeout, body)
        }
    }
}
