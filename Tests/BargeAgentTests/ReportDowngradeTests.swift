@testable import BargeAgent
import BargeWire
import Testing

/// Reports as a coordinator of an older protocol version reads them. A unit done without files
/// that vanished from the source can be told only from version 13: an older coordinator gets the
/// failure it got before, with what to do, and never a `task done` that hides the missing files.
struct ReportDowngradeTests {
    static let done = TaskDone(job: "j1", unit: 3, bytes: 10, wireBytes: 10, refetched: 0, codecs: [], chunks: [], dedupBytes: 4,
                               assignment: 2, vanishedFiles: 2, vanished: ["ds/a", "ds/b"])

    @Test func aCoordinatorOfVersion13GetsTheVanishedFiles() {
        #expect(CoordinatorClient.downgrade(.taskDone(Self.done), to: WireVersion.vanished) == .taskDone(Self.done))
    }

    @Test func anOlderCoordinatorGetsTheFailureItKnows() {
        let reason = "source: 'ds/a' is no longer there (deleted or renamed since the scan): submit the transfer again, and its new scan leaves it out (resume would look for it again)"
        #expect(CoordinatorClient.downgrade(.taskDone(Self.done), to: WireVersion.warmLanes)
            == .taskFailed(TaskFailed(job: "j1", unit: 3, retryable: false, reason: reason, assignment: 2)))
        // Before version 4 there are no assignments either.
        #expect(CoordinatorClient.downgrade(.taskDone(Self.done), to: 3)
            == .taskFailed(TaskFailed(job: "j1", unit: 3, retryable: false, reason: reason, assignment: 0)))
    }

    @Test func aUnitWithNothingVanishedIsDoneAtEveryVersion() {
        var done = Self.done
        done.vanishedFiles = 0
        done.vanished = []
        #expect(CoordinatorClient.downgrade(.taskDone(done), to: WireVersion.warmLanes) == .taskDone(done))
    }

    /// The wire keeps the count and at most `maxVanishedPaths` paths, and refuses more paths than
    /// the count.
    @Test func theVanishedPathsAreBoundedOnTheWire() throws {
        let many = TaskDone(job: "j1", unit: 3, bytes: 0, wireBytes: 0, refetched: 0, codecs: [], chunks: [],
                            vanishedFiles: 1000, vanished: (0..<1000).map { "ds/f\($0)" })
        #expect(many.vanished.count == TaskDone.maxVanishedPaths && many.vanishedFiles == 1000)
        #expect(try Message(frame: Message.taskDone(many).frame()) == .taskDone(many))
        var lying = many
        lying.vanishedFiles = 1
        #expect(throws: WireError.malformed(.taskDone, "8 vanished paths of 1 vanished files")) {
            try Message(frame: Message.taskDone(lying).frame())
        }
    }
}
