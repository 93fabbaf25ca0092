@testable import BargeAgent
import BargeWire
import Foundation
import NIOCore
import NIOConcurrencyHelpers
import Testing

/// The agent's lease on its units: it holds for the coordinator's agent timeout from the last
/// heartbeat the coordinator echoed, counted from when that heartbeat went out, and a unit sends
/// nothing once it has run out.
struct LeaseTests {
    final class FakeClock: Sendable {
        private let t = NIOLockedValueBox<UInt64>(1_000_000_000)
        var now: UInt64 { t.withLockedValue { $0 } }
        func advance(_ seconds: Double) { t.withLockedValue { $0 += UInt64(seconds * 1e9) } }
    }

    @Test func theLeaseRunsFromWhenTheEchoedHeartbeatWent() throws {
        let clock = FakeClock()
        let lease = Lease(clock: { clock.now })
        clock.advance(100)
        #expect(lease.overdue() == nil, "no coordinator has counted on the agent yet")
        lease.registered(timeout: .seconds(15))
        clock.advance(14.9)
        #expect(lease.overdue() == nil)
        lease.sent(heartbeat: 1)
        clock.advance(0.2)
        #expect(lease.overdue() != nil, "15 s since the registration, and no echo yet")
        #expect(throws: UnitFailure.self) { try lease.check() }
        clock.advance(2)
        lease.echoed(heartbeat: 1)
        // From when heartbeat 1 went (14.9 s after the registration), not from its echo.
        clock.advance(12.8)
        #expect(lease.overdue() == nil)
        clock.advance(0.2)
        let late = try #require(lease.overdue())
        #expect(abs(late - 0.2) < 1e-6, "\(late)")
        lease.echoed(heartbeat: 7)  // never sent: changes nothing
        #expect(lease.overdue() != nil)
        do { try lease.check() } catch { #expect(error.retryable && error.description.contains("not heard from the coordinator"), "\(error)") }
        lease.registered(timeout: .seconds(15))
        #expect(lease.overdue() == nil, "registered again")
        lease.registered(timeout: .zero)
        clock.advance(1000)
        #expect(lease.overdue() == nil, "a coordinator that names no timeout gives no lease")
    }

    /// An agent stopped past its lease (SIGSTOP, a paused VM) goes on: the chunk it had in flight
    /// is answered, and its unit stops with a retryable failure rather than sending the next.
    @Test(.timeLimit(.minutes(1)))
    func aUnitWhoseLeaseRunsOutSendsNothingMore() async throws {
        let roots = try Roots()
        let chunk = 256 << 10
        let helper = PipelinedSenderTests()
        let (f, _) = try helper.file(roots, bytes: 4 * chunk)
        let clock = FakeClock()
        let lease = Lease(clock: { clock.now })
        lease.registered(timeout: .seconds(15))
        let chunks = NIOLockedValueBox<[UInt64]>([])
        let server = try await BargeServer.bind(host: "127.0.0.1", port: 0, token: PipelinedSenderTests.token, name: "scripted")
        let serving = Task {
            try await server.serve(session: { _, inbound, outbound in
                for try await frame in inbound {
                    switch try Message(frame: frame) {
                    case .haveQuery:
                        try await outbound.write(Message.haveList(HaveList(ids: [])).frame())
                    case .chunkData(let d):
                        chunks.withLockedValue { $0.append(d.place.offset) }
                        // The agent is stopped past its lease while this chunk is in flight.
                        clock.advance(16)
                        try await outbound.write(Message.chunkAck(ChunkAck(place: d.place)).frame())
                    default:
                        try await outbound.write(Message.filesDoneReply(FilesDoneReply(refused: [])).frame())
                    }
                }
            }, onError: { _, _ in })
        }
        defer { serving.cancel() }
        let unit = helper.sender(f, server, roots, chunkSize: chunk, depth: 1, flow: UnitFlow(lease: lease))
        do {
            _ = try await unit.run()
            Issue.record("the unit went on past its lease")
        } catch {
            #expect(error.retryable && error.description.contains("not heard from the coordinator"), "\(error)")
        }
        #expect(chunks.withLockedValue { $0 } == [0], "only the chunk in flight when the lease ran out")
        await server.close()
    }
}
