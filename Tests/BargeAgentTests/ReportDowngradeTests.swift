@testable import BargeAgent
import BargeWire
import Testing

/// Reports as a coordinator of an older protocol version reads them. A unit done without files it
/// left out (gone from the source or changed) can be told only from version 13: an older
/// coordinator gets a failure, as before, with what to do, and never a `task done` that hides the
/// missing files.
struct ReportDowngradeTests {
    static let done = TaskDone(job: "j1", unit: 3, bytes: 10, wireBytes: 10, refetched: 0, codecs: [], chunks: [], dedupBytes: 4,
                               assignment: 2, leftOut: [1, 4], firstLeftOut: "'ds/a' vanished from the source during the transfer (deleted or renamed after the scan)")

    @Test func aCoordinatorOfVersion13GetsTheFilesLeftOut() {
        #expect(CoordinatorClient.downgrade(.taskDone(Self.done), to: WireVersion.leftOut) == .taskDone(Self.done))
    }

    @Test func anOlderCoordinatorGetsTheFailureItKnows() {
        let reason = "source: 'ds/a' vanished from the source during the transfer (deleted or renamed after the scan): submit the transfer again, and its new scan takes the source as it is now (resume would look for the same files)"
        #expect(CoordinatorClient.downgrade(.taskDone(Self.done), to: WireVersion.warmLanes)
            == .taskFailed(TaskFailed(job: "j1", unit: 3, retryable: false, reason: reason, assignment: 2)))
        // Before version 4 there are no assignments either.
        #expect(CoordinatorClient.downgrade(.taskDone(Self.done), to: 3)
            == .taskFailed(TaskFailed(job: "j1", unit: 3, retryable: false, reason: reason, assignment: 0)))
    }

    @Test func aUnitThatLeftNothingOutIsDoneAtEveryVersion() {
        var done = Self.done
        done.leftOut = []
        done.firstLeftOut = ""
        #expect(CoordinatorClient.downgrade(.taskDone(done), to: WireVersion.warmLanes) == .taskDone(done))
    }

    /// Every file a large unit left out goes on the wire (4 bytes each), with why the first was;
    /// a list without its reason, or a reason without a list, is refused.
    @Test func theFilesLeftOutRoundTripAndGoTogetherWithWhy() throws {
        let many = TaskDone(job: "j1", unit: 3, bytes: 0, wireBytes: 0, refetched: 0, codecs: [], chunks: [],
                            leftOut: (0..<10_000).map { UInt32($0) }, firstLeftOut: "'ds/f0' vanished")
        #expect(try Message(frame: Message.taskDone(many).frame()) == .taskDone(many))
        var pathless = many
        pathless.firstLeftOut = ""
        #expect(throws: WireError.malformed(.taskDone, "files left out without why, or why without files")) {
            try Message(frame: Message.taskDone(pathless).frame())
        }
    }
}
