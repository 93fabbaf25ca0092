@testable import BargeAgent
import BargeWire
import Testing

/// A unit's plan as its streams see it: steps handed out in order, more coming while a scan runs,
/// and a file's last ack known only once its last chunk is in.
struct UnitPlanTests {
    static func file(_ path: String, kind: FileEntry.Kind = .file, size: UInt64, offset: UInt64 = 0, length: UInt64? = nil,
                     finish: Bool = true, repair: Bool = false) -> TaskFile {
        TaskFile(sourcePath: path, entry: FileEntry(path: path, kind: kind, size: size, mode: 0o644, mtimeSeconds: 0, mtimeNanoseconds: 0),
                 offset: offset, length: length ?? size, finish: finish, repair: repair)
    }

    static func task(_ files: [TaskFile], chunkSize: UInt32 = 100) -> TaskAssign {
        TaskAssign(job: "j", unit: 1, destination: DataPeer(name: "b1", host: "127.0.0.1", port: 1), codec: "auto", chunkSize: chunkSize, files: files)
    }

    static func drain(_ plan: inout UnitPlan) -> [UnitPlan.Step] {
        var steps: [UnitPlan.Step] = []
        while case .step(let step) = plan.next() { steps.append(step) }
        return steps
    }

    @Test func fixedSizeStepsEntriesAndEmptyFiles() {
        let task = Self.task([Self.file("d", kind: .directory, size: 0), Self.file("a", size: 250), Self.file("e", size: 0),
                              Self.file("r", size: 1000, offset: 300, length: 77, repair: true)])
        var plan = UnitPlan(task, batchFiles: 0)
        for i in task.files.indices { plan.addSteps(file: i) }
        #expect(plan.next() == .step(.entry(file: 0)))
        #expect(Self.drain(&plan) == [.chunk(file: 1, offset: 0, length: 100), .chunk(file: 1, offset: 100, length: 100),
                                      .chunk(file: 1, offset: 200, length: 50), .finish(file: 2), .chunk(file: 3, offset: 300, length: 77)])
        #expect(plan.next() == .wait)  // not ended yet: more could come
        plan.end()
        #expect(plan.next() == .end)
        // The file's `file done` goes with its third ack, whatever order the acks come in.
        #expect(plan.acked(file: 1) == false)
        #expect(plan.acked(file: 1) == false)
        #expect(plan.acked(file: 1) == true)
        #expect(plan.acked(file: 3) == true)
    }

    @Test func chunksFoundByAScanAreHandedOutBeforeItEndsAndOnlyTheLastAckFinishesTheFile() {
        // A unit with the middle 600 bytes of a larger file.
        var plan = UnitPlan(Self.task([Self.file("big", size: 1000, offset: 200, length: 600)]))
        plan.addChunk(file: 0, offset: 200, length: 250)
        #expect(plan.next() == .step(.chunk(file: 0, offset: 200, length: 250)))
        #expect(plan.next() == .wait)
        // Every chunk found so far is acked, but the scan has not reached the end of the range.
        #expect(plan.acked(file: 0) == false)
        plan.addChunk(file: 0, offset: 450, length: 100)
        plan.addChunk(file: 0, offset: 550, length: 250)  // reaches 800, the end of the range
        #expect(Self.drain(&plan).count == 2)
        #expect(plan.acked(file: 0) == false)
        // The last chunk's ack finishes the file even before the scan says it has ended.
        #expect(plan.acked(file: 0) == true)
        plan.endOfScan(file: 0)
        plan.end()
        #expect(plan.next() == .end)
    }

    @Test func smallWholeFilesGoInBatchesWithinTheirLimits() {
        // Files of at most one chunk (100 bytes here), finished in this unit, go whole in
        // batches of at most 3 files and 150 bytes; the rest as before.
        let task = Self.task([Self.file("a", size: 40), Self.file("d", kind: .directory, size: 0), Self.file("e", size: 0),
                              Self.file("b", size: 100), Self.file("big", size: 250), Self.file("c", size: 10), Self.file("f", size: 20),
                              Self.file("g", size: 30), Self.file("part", size: 50, finish: false), Self.file("r", size: 60, repair: true),
                              Self.file("h", size: 5)])
        var plan = UnitPlan(task, batchFiles: 3, batchBytes: 150)
        for i in task.files.indices { plan.addSteps(file: i) }
        plan.end()
        #expect(Self.drain(&plan) == [
            .entry(file: 1),
            .chunk(file: 4, offset: 0, length: 100), .chunk(file: 4, offset: 100, length: 100), .chunk(file: 4, offset: 200, length: 50),
            .batch(files: [0, 2, 3]),  // 40 + 0 + 100 bytes: full once the next small file comes
            .chunk(file: 8, offset: 0, length: 50), .chunk(file: 9, offset: 0, length: 60),
            .batch(files: [5, 6, 7]),  // three files
            .batch(files: [10]),       // what is left at the end
        ])
        // Sent as a chunk to an older peer, a batched file is finished by its one ack.
        #expect(plan.acked(file: 0) == true)
        #expect(plan.acked(file: 4) == false)

        // A file of one chunk but more than a batch's bytes goes as its chunk.
        let mid = Self.task([Self.file("x", size: 80), Self.file("y", size: 20)])
        var small = UnitPlan(mid, batchFiles: 3, batchBytes: 50)
        for i in mid.files.indices { small.addSteps(file: i) }
        small.end()
        #expect(Self.drain(&small) == [.chunk(file: 0, offset: 0, length: 80), .batch(files: [1])])
    }

    @Test func aScannedFileWithNoChunksIsFinishedOnlyIfTheUnitFinishesIt() {
        var plan = UnitPlan(Self.task([Self.file("a", size: 0, finish: true), Self.file("b", size: 0, finish: false)]))
        plan.endOfScan(file: 0)
        plan.endOfScan(file: 1)
        plan.end()
        #expect(Self.drain(&plan) == [.finish(file: 0)])
    }
}

/// The plan shared by a unit's streams while the planner fills it in.
struct StepQueueTests {
    static func queue(_ length: UInt64 = 1000) -> StepQueue {
        StepQueue(UnitPlan(UnitPlanTests.task([UnitPlanTests.file("big", size: length)])))
    }

    @Test func aStreamWaitsForTheNextStepAndEndsWithThePlan() async throws {
        let queue = Self.queue()
        let waiting = Task { try await queue.next() }
        try await Task.sleep(for: .milliseconds(50))
        try queue.update { $0.addChunk(file: 0, offset: 0, length: 400) }
        #expect(try await waiting.value == .chunk(file: 0, offset: 0, length: 400))
        let last = Task { try await queue.next() }
        try await Task.sleep(for: .milliseconds(50))
        try queue.update { $0.end() }
        #expect(try await last.value == nil)
    }

    @Test func enoughStepsToStartTheStreamsOrAllThereAre() async throws {
        let queue = Self.queue()
        let known = Task { try await queue.known(atLeast: 3) }
        try queue.update { $0.addChunk(file: 0, offset: 0, length: 100) }
        try queue.update { $0.addChunk(file: 0, offset: 100, length: 100) }
        try await Task.sleep(for: .milliseconds(50))
        try queue.update { $0.addChunk(file: 0, offset: 200, length: 800) }
        #expect(try await known.value == 3)
        let short = Self.queue(100)
        try short.update { $0.addSteps(file: 0) }
        try short.update { $0.end() }
        #expect(try await short.known(atLeast: 4) == 1)
    }

    @Test func aPlannerFailureReachesTheWaitingStreams() async throws {
        let queue = Self.queue()
        let waiting = Task { () -> String? in
            do {
                _ = try await queue.next()
                return nil
            } catch {
                return (error as? UnitFailure)?.description
            }
        }
        try await Task.sleep(for: .milliseconds(50))
        queue.fail(UnitFailure(retryable: false, description: "source: cannot open big"))
        #expect(await waiting.value == "source: cannot open big")
    }

    @Test func aCancelledStreamStopsWaitingAndAnAbandonedPlanStopsThePlanner() async throws {
        let queue = Self.queue()
        let waiting = Task { try await queue.next() }
        try await Task.sleep(for: .milliseconds(50))
        waiting.cancel()
        #expect(try await waiting.value == nil)
        queue.abandon()
        #expect(throws: StepQueue.Abandoned.self) { try queue.update { $0.addChunk(file: 0, offset: 0, length: 1000) } }
        #expect(try await queue.next() == nil)
    }
}
