import BargeCoordinator
import BargeWire
import Foundation
import Testing

/// Group commit against a real coordinator process killed with SIGKILL: every report it had
/// acknowledged (`report ack`, sent only once the batch holding the report is durable) is in the
/// journal afterwards. The agents are this test, speaking the protocol, so that it sees each ack.
@Suite(.serialized)
struct DurabilityProcessTests {
    let cluster: TestCluster

    init() throws {
        cluster = try TestCluster(roots: ["root-a", "root-b"])
    }

    /// Runs a fake agent: registers, answers the scan with `files` files, reports every unit done
    /// at once, and records each acknowledgement.
    final class Acks: @unchecked Sendable {
        private let lock = NSLock()
        private var keys: [AssignmentKey] = []
        func add(_ k: AssignmentKey) { lock.withLock { keys.append(k) } }
        var all: [AssignmentKey] { lock.withLock { keys } }
    }

    func fakeAgent(_ name: String, site: String, address: String, files: Int, acks: Acks) -> Task<Void, Error> {
        let token = try! ClusterToken(contentsOf: cluster.environment["BARGE_TOKEN_FILE"]!)
        let parts = address.split(separator: ":")
        return Task {
            try await BargeConnection.withConnection(host: String(parts[0]), port: Int(parts[1])!, token: token, name: name, role: .agent) { session, inbound, outbound in
                #expect(session.version >= WireVersion.acks)
                try await outbound.write(Message.register(Register(name: name, site: site, root: "/r", dataHost: "127.0.0.1", dataPort: 9, maxInFlight: 64)).frame())
                // Heartbeats as a real agent sends them: under load the scan alone outlasted the
                // test coordinator's agent timeout, and agents without them were declared down.
                var beating: Task<Void, Error>?
                defer { beating?.cancel() }
                func beat() -> Task<Void, Error> { Task {
                    var sequence: UInt64 = 0
                    while !Task.isCancelled {
                        sequence += 1
                        try await outbound.write(Message.heartbeat(Heartbeat(sequence: sequence, inFlight: 0)).frame())
                        try await Task.sleep(for: .milliseconds(300))
                    }
                } }
                for try await frame in inbound {
                    switch try Message(frame: frame) {
                    case .registered:
                        try await outbound.write(Message.holding(Holding(units: [])).frame())
                        if beating == nil { beating = beat() }
                    case .scanRequest(let scan):
                        let entries = [FileEntry(path: "", kind: .directory, mode: 0o755, mtimeSeconds: 1, mtimeNanoseconds: 0)]
                            + (0..<files).map { FileEntry(path: String(format: "f%05d", $0), kind: .file, size: 40 << 20, mode: 0o644, mtimeSeconds: 1, mtimeNanoseconds: 0) }
                        try await outbound.write(Message.scanReply(ScanReply(request: scan.request, final: true, entries: entries)).frame())
                    case .taskAssign(let t):
                        let id = [UInt8](repeating: UInt8(truncatingIfNeeded: t.unit), count: 32)
                        let done = TaskDone(job: t.job, unit: t.unit, bytes: t.files.reduce(0) { $0 + $1.length }, wireBytes: 1, refetched: 0, codecs: [],
                                            chunks: t.files[0].entry.kind == .file ? [ChunkReport(file: 0, offset: 0, length: 1 << 20, id: id)] : [],
                                            assignment: t.assignment)
                        try await outbound.write(Message.taskDone(done).frame())
                    case .reportAck(let k): acks.add(k)
                    case .compareRequest(let r):
                        try await outbound.write(Message.compareReply(CompareReply(request: r.request, unchanged: r.entries.map { _ in false })).frame())
                    default: break
                    }
                }
            }
        }
    }

    @Test func aCoordinatorKilledRightAfterAcknowledgingLosesNoAcknowledgedReport() async throws {
        // A long agent timeout: under load this process's tasks, the fake agents' heartbeats
        // among them, waited seconds for a thread, and the 2 s of the other tests declared them down.
        let (coordinator, agents, http) = try await cluster.startCoordinator(extra: ["--agent-timeout", "60"])
        let acks = Acks()
        let a1 = fakeAgent("a1", site: "a", address: agents, files: 3000, acks: acks)
        let b1 = fakeAgent("b1", site: "b", address: agents, files: 0, acks: Acks())
        defer { a1.cancel(); b1.cancel() }
        #expect(try await cluster.agentsRegister(2, http))
        let job = try cluster.cli(["submit", "a:ds", "b:ds"], http: http).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(try await cluster.eventually(60) { acks.all.count >= 500 }, "\(coordinator.output)")
        coordinator.kill(SIGKILL)
        coordinator.process.waitUntilExit()
        let acknowledged = acks.all
        let journal = try Journal(path: cluster.dir.path + "/state/" + Journal.fileName)
        let done = Set(try journal.units(job: job, state: .done).map { UInt64($0.unitId) })
        let lost = acknowledged.filter { !done.contains($0.unit) }
        print("group commit: coordinator killed after \(acknowledged.count) acknowledged reports; \(done.count) units done in the journal, \(lost.count) acknowledged and lost")
        #expect(acknowledged.allSatisfy { $0.job == job })
        #expect(lost.isEmpty, "acknowledged but not journaled: \(lost.prefix(5))")
        #expect(try journal.job(job)?.state != .succeeded, "the kill came after the end; the test proves little")
    }
}
