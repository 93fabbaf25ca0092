@testable import BargeAgent
import BargeWire
import Testing

/// Reports as a coordinator of an older protocol version reads them. A unit done without files
/// that vanished from the source can be told only from version 13: an older coordinator gets the
/// failure it got before, with what to do, and never a `task done` that hides the missing files.
struct ReportDowngradeTests {
    static let done = TaskDone(job: "j1", unit: 3, bytes: 10, wireBytes: 10, refetched: 0, codecs: [], chunks: [], dedupBytes: 4,
                               assignment: 2, vanished: [1, 4], firstVanished: "ds/a")

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
        done.vanished = []
        done.firstVanished = ""
        #expect(CoordinatorClient.downgrade(.taskDone(done), to: WireVersion.warmLanes) == .taskDone(done))
    }

    /// Every vanished file of a large unit goes on the wire (4 bytes each), with the first's path;
    /// a list without its path, or a path without a list, is refused.
    @Test func theVanishedFilesRoundTripAndGoTogetherWithThePath() throws {
        let many = TaskDone(job: "j1", unit: 3, bytes: 0, wireBytes: 0, refetched: 0, codecs: [], chunks: [],
                            vanished: (0..<10_000).map { UInt32($0) }, firstVanished: "ds/f0")
        #expect(try Message(frame: Message.taskDone(many).frame()) == .taskDone(many))
        var pathless = many
        pathless.firstVanished = ""
        #expect(throws: WireError.malformed(.taskDone, "vanished files without the first one's path, or a path without files")) {
            try Message(frame: Message.taskDone(pathless).frame())
        }
    }
}
