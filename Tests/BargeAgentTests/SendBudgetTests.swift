@testable import BargeAgent
import BargeFlow
import BargeWire
import Foundation
import NIOCore
import Testing

/// The agent's `--send-memory`: what its units hold read and not yet answered, all together.
struct SendBudgetTests {
    /// Resumes when `body` returns; false while it is still waiting.
    final class Flag: @unchecked Sendable {
        private let lock = NSLock()
        private var value = false
        func set() { lock.withLock { value = true } }
        var isSet: Bool { lock.withLock { value } }
    }

    @Test func takesWaitInOrderUntilRoomIsGivenBack() async throws {
        let budget = SendBudget(limit: 3 << 20)
        await budget.take(2 << 20)
        await budget.take(1 << 20)
        #expect(budget.held == 3 << 20)
        let first = Flag(), second = Flag()
        let a = Task { await budget.take(2 << 20); first.set() }
        while budget.waiters < 1 { try await Task.sleep(for: .milliseconds(1)) }
        let b = Task { await budget.take(1 << 20); second.set() }
        while budget.waiters < 2 { try await Task.sleep(for: .milliseconds(1)) }
        // 1 MiB back: the second waiter would fit, but it does not pass the first.
        budget.give(1 << 20)
        try await Task.sleep(for: .milliseconds(20))
        #expect(!first.isSet && !second.isSet)
        // A reservation resized down frees room too: now both fit.
        budget.resize(from: 2 << 20, to: 0)
        await a.value
        await b.value
        #expect(first.isSet && second.isSet)
        #expect(budget.held == 3 << 20)
        #expect(budget.peak == 3 << 20, "never more than the limit")
    }

    @Test func aChunkLargerThanTheBudgetGoesAlone() async throws {
        let budget = SendBudget(limit: 1 << 20)
        await budget.take(4 << 20)  // nothing else held: it goes
        let waited = Flag()
        let t = Task { await budget.take(1); waited.set() }
        try await Task.sleep(for: .milliseconds(20))
        #expect(!waited.isSet, "nothing more while it is held")
        budget.give(4 << 20)
        await t.value
        #expect(budget.held == 1)
    }

    /// With a budget of three chunks, a stream of depth eight reads no more than three chunks
    /// ahead of their answers: the receiver holds every ack until chunks stop coming, and by then
    /// the sender has read three chunks, not one per worker; no more than three chunk sources
    /// were ever in use at once.
    @Test func workersReadOnlyWhatTheBudgetHolds() async throws {
        let roots = try Roots()
        let chunk = 1 << 20
        let p = PipelinedSenderTests()
        let (f, data) = try p.file(roots, bytes: 12 * chunk)
        let transcript = PipelinedSenderTests.Transcript()
        // Three chunks and their frames' headers.
        let budget = SendBudget(limit: 3 * chunk + 3 * 4096)
        let server = try await BargeServer.bind(host: "127.0.0.1", port: 0, token: PipelinedSenderTests.token, name: "scripted")
        let unit = p.sender(f, server, roots, chunkSize: chunk, depth: 8, flow: UnitFlow(budget: budget))
        let pool = unit.sources
        // The chunks read when the first three stood unanswered for 100 ms.
        let readsWhenQuiet = NIOLockedBox(-1, 0)
        let serving = Task {
            try await server.serve(session: { _, inbound, outbound in
                let outstanding = NIOLockedBox(0, 0)
                // Chunks held unanswered, and when the last arrived.
                let held = HeldChunks()
                // Answers every chunk held once none has arrived for 100 ms.
                let replying = Task {
                    while !Task.isCancelled {
                        try await Task.sleep(for: .milliseconds(10))
                        let answering = held.takeIfQuiet(for: .milliseconds(100))
                        if !answering.isEmpty { readsWhenQuiet.update { $0.0 == -1 ? $0.0 = pool.timesTaken : () } }
                        outstanding.update { $0.1 -= answering.count }
                        for place in answering {
                            try await p.reply(.chunkAck(ChunkAck(place: place)), outbound)
                        }
                    }
                }
                defer { replying.cancel() }
                for try await frame in inbound {
                    switch try Message(frame: frame) {
                    case .haveQuery:
                        try await p.reply(.haveList(HaveList(ids: [])), outbound)
                    case .chunkData(let d):
                        let n = outstanding.update { $0.1 += 1; return $0.1 }
                        transcript.arrived(bytes: 0, chunks: n, window: 0)
                        held.add(d.place)
                    default:
                        try await p.finish(frame, transcript, outbound)
                    }
                }
            }, onError: { _, _ in })
        }
        defer { serving.cancel() }
        let done = try await unit.run()
        #expect(done.bytes == UInt64(data.count))
        let most = transcript.outstandingAtArrival.map(\.chunks).max() ?? 0
        #expect(most == 3, "three chunks outstanding at most, and the budget filled: \(most)")
        let reads = readsWhenQuiet.update { $0.0 }
        #expect(reads == 3, "eight workers, but only the three chunks the budget held were read: \(reads)")
        #expect(unit.sources.mostTakenAtOnce <= 3, "sources in use at once: \(unit.sources.mostTakenAtOnce)")
        #expect(budget.peak <= budget.limit, "held at most: \(budget.peak)")
        #expect(budget.held == 0, "everything given back")
        await server.close()
    }
}

/// Chunks a scripted receiver holds unanswered.
final class HeldChunks: @unchecked Sendable {
    private let lock = NSLock()
    private var places: [ChunkPlace] = []
    private var last = ContinuousClock.now

    func add(_ place: ChunkPlace) {
        lock.withLock {
            places.append(place)
            last = .now
        }
    }

    /// Those held, once none has arrived for `quiet`.
    func takeIfQuiet(for quiet: Duration) -> [ChunkPlace] {
        lock.withLock {
            guard !places.isEmpty, ContinuousClock.now - last >= quiet else { return [] }
            defer { places.removeAll() }
            return places
        }
    }
}
