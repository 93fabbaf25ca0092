import BargeCoordinator
import BargeWire
import Foundation
import Testing

/// Reports delivered at least once (protocol version 5): acknowledgements after the journal,
/// repeats that change nothing, and the `holding` check when an agent connects again.
struct ReportDeliveryTests {
    typealias Fixture = SchedulerTests.Fixture

    /// Submits a job of `files` small files and answers its scan; returns the job's id.
    func plan(_ f: Fixture, _ a1: inout AsyncStream<Message>.AsyncIterator, id: String, files: Int) async throws -> String {
        _ = try await f.scheduler.submit(SubmitRequest(source: .init(site: "a", path: "ds"), destination: .init(site: "b", path: "ds")), id: id)
        guard case .scanRequest(let scan) = await a1.next() else { throw Failure("no scan") }
        let entries = [FileEntry(path: "", kind: .directory, mode: 0o755, mtimeSeconds: 1, mtimeNanoseconds: 0)]
            + (0..<files).map { FileEntry(path: "d\($0)/f", kind: .file, size: 100 << 20, mode: 0o644, mtimeSeconds: 1, mtimeNanoseconds: 0) }
        await f.scheduler.received(.scanReply(ScanReply(request: scan.request, final: true, entries: entries)), from: "a1")
        return id
    }

    struct Failure: Error, CustomStringConvertible {
        let description: String
        init(_ d: String) { description = d }
    }

    /// The next `task assign`, `report ack` or `task drop`.
    static func next(_ agent: inout AsyncStream<Message>.AsyncIterator) async -> Message? {
        var m = await agent.next()
        while let x = m, x.type == .jobSettings || x.type == .cancelJob { m = await agent.next() }
        return m
    }

    @Test func aReportIsAcknowledgedOnceJournaledAndARepeatCountsNothing() async throws {
        let f = try Fixture()
        var a1 = await f.agent("a1", site: "a", version: WireVersion.acks)
        _ = await f.agent("b1", site: "b", version: WireVersion.acks)
        let job = try await plan(f, &a1, id: "j-ack", files: 1)
        // 100 MiB at 64 MiB units: two ranges, then the finish.
        guard case .taskAssign(let t) = await Self.next(&a1) else { Issue.record("no task"); return }
        let done = TaskDone(job: job, unit: t.unit, bytes: t.files[0].length, wireBytes: 1000, refetched: 0, codecs: [], chunks: [], assignment: t.assignment)
        await f.scheduler.received(.taskDone(done), from: "a1")
        var acked: AssignmentKey?
        while acked == nil, let m = await Self.next(&a1) {
            if case .reportAck(let k) = m { acked = k }
        }
        #expect(acked == done.key)
        // By the time the ack is out, the report is in the journal.
        let afterFirst = try #require(try await f.scheduler.journal.job(job))
        #expect(afterFirst.wireBytes == 1000 && afterFirst.unitsDone == 1)
        // The same report again (its ack was lost): acknowledged again, counted once.
        await f.scheduler.received(.taskDone(done), from: "a1")
        await f.scheduler.flush()
        var ackedAgain = false
        while !ackedAgain, let m = await Self.next(&a1) {
            if case .reportAck(let k) = m, k == done.key { ackedAgain = true }
        }
        #expect(ackedAgain)
        let afterRepeat = try #require(try await f.scheduler.journal.job(job))
        #expect(afterRepeat.wireBytes == 1000 && afterRepeat.unitsDone == 1 && afterRepeat.bytesDone == afterFirst.bytesDone)
        // Another assignment's report of the unit (it was given out again, and both sent it):
        // its wire bytes and the chunks it sent again count, its bytes do not.
        var late = done
        late.assignment = done.assignment + 1
        late.wireBytes = 500
        late.refetched = 2
        await f.scheduler.received(.taskDone(late), from: "a1")
        await f.scheduler.flush()
        let afterLate = try #require(try await f.scheduler.journal.job(job))
        #expect(afterLate.wireBytes == 1500 && afterLate.chunksRefetched == 2 && afterLate.unitsDone == 1 && afterLate.bytesDone == afterFirst.bytesDone,
                "\(afterLate)")
    }

    @Test func anAgentBackWithoutAUnitGetsItAgainAndDropsOneNoLongerItsOwn() async throws {
        let f = try Fixture()
        var a1 = await f.agent("a1", site: "a", version: WireVersion.acks)
        _ = await f.agent("b1", site: "b", version: WireVersion.acks)
        let job = try await plan(f, &a1, id: "j-hold", files: 2)
        // maxInFlight 2: two ranges go to a1.
        var assigned: [TaskAssign] = []
        while assigned.count < 2, let m = await Self.next(&a1) {
            if case .taskAssign(let t) = m { assigned.append(t) }
        }
        #expect(await f.scheduler.unitsHeld == 2)
        // a1 reconnects; it kept the first unit, never got the second, and runs one it no longer owns.
        let (stream, sink) = AsyncStream.makeStream(of: Message.self)
        _ = await f.scheduler.attach(Register(name: "a1", site: "a", root: "/r", dataHost: "127.0.0.1", dataPort: 9, maxInFlight: 2), sink: sink, version: WireVersion.acks)
        var again = stream.makeAsyncIterator()
        let kept = AssignmentKey(job: job, unit: assigned[0].unit, assignment: assigned[0].assignment)
        let foreign = AssignmentKey(job: job, unit: 999, assignment: 1)
        await f.scheduler.received(.holding(Holding(units: [kept, foreign])), from: "a1")
        await f.scheduler.flush()
        var dropped: [AssignmentKey] = []
        var reassigned: TaskAssign?
        while reassigned == nil || dropped.isEmpty, let m = await Self.next(&again) {
            switch m {
            case .taskDrop(let k): dropped.append(k)
            case .taskAssign(let t): reassigned = t
            default: break
            }
        }
        #expect(dropped == [foreign])
        // The lost unit is handed out again at once, under a new assignment; the kept one stays.
        #expect(reassigned?.unit == assigned[1].unit && reassigned?.assignment == assigned[1].assignment + 1)
        #expect(await f.scheduler.unitsHeld == 2)
        let status = try #require(try await f.scheduler.journal.job(job))
        #expect(status.unitRetries == 1)
        // The lost assignment does not count against the unit's attempts: a failure now journals
        // its attempts as 1. (Assignments themselves live in memory only.)
        await f.scheduler.received(.taskFailed(TaskFailed(job: job, unit: assigned[1].unit, retryable: true, reason: "disk hiccup",
                                                          assignment: reassigned?.assignment ?? 0)), from: "a1")
        await f.scheduler.flush()
        let unit = try #require(try await f.scheduler.journal.units(job: job).first { UInt64($0.unitId) == assigned[1].unit })
        #expect(unit.attempts == 1 && unit.state == .pending, "\(unit)")
    }

    /// A job under a cap holds only the units its cap needs (two at 1 MiB/s) on agents that take
    /// eight, and takes more once `barge set --bwlimit off` lifts it.
    @Test func aCappedJobHoldsTwoUnitsUntilItsCapIsLifted() async throws {
        let f = try Fixture()
        var a1 = await f.agent("a1", site: "a", version: WireVersion.acks, maxInFlight: 8)
        _ = await f.agent("b1", site: "b", version: WireVersion.acks, maxInFlight: 8)
        var request = SubmitRequest(source: .init(site: "a", path: "ds"), destination: .init(site: "b", path: "ds"))
        request.bwlimit = "1MiB/s"
        _ = try await f.scheduler.submit(request, id: "j-capped")
        guard case .scanRequest(let scan) = await a1.next() else { Issue.record("no scan"); return }
        // Ten files of 100 MiB: twenty ranges at 64 MiB units.
        let entries = [FileEntry(path: "", kind: .directory, mode: 0o755, mtimeSeconds: 1, mtimeNanoseconds: 0)]
            + (0..<10).map { FileEntry(path: "d\($0)/f", kind: .file, size: 100 << 20, mode: 0o644, mtimeSeconds: 1, mtimeNanoseconds: 0) }
        await f.scheduler.received(.scanReply(ScanReply(request: scan.request, final: true, entries: entries)), from: "a1")
        // Planned, read into the window and assigned over a few commits.
        func held(settlingAt count: Int) async -> Int {
            for _ in 0..<50 {
                await f.scheduler.flush()
                if await f.scheduler.unitsHeld >= count { break }
                try? await Task.sleep(for: .milliseconds(20))
            }
            for _ in 0..<5 { await f.scheduler.flush() }  // and nothing more comes
            return await f.scheduler.unitsHeld
        }
        guard case .taskAssign = await Self.next(&a1) else { Issue.record("no task"); return }
        let capped = await held(settlingAt: 2)
        #expect(capped == 2)
        _ = try await f.scheduler.setLimit("j-capped", bwlimit: "off")
        let lifted = await held(settlingAt: 8)
        #expect(lifted == 8)
    }
}
