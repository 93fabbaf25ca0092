@testable import BargeAgent
import BargeBench
import BargeChunk
import BargeStore
import BargeWire
import Foundation
import NIOCore
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

    /// A failure on the data plane says so to a coordinator of version 18, and is a plain
    /// retryable failure, as before, to an older one (which would refuse the flag).
    @Test func aLaneFailureIsToldOnlyToACoordinatorThatKnowsIt() {
        let failed = TaskFailed(job: "j1", unit: 3, retryable: true, reason: "peer closed", assignment: 2, lane: true)
        #expect(CoordinatorClient.downgrade(.taskFailed(failed), to: WireVersion.laneFailures) == .taskFailed(failed))
        #expect(CoordinatorClient.downgrade(.taskFailed(failed), to: WireVersion.wholeFiles)
            == .taskFailed(TaskFailed(job: "j1", unit: 3, retryable: true, reason: "peer closed", assignment: 2)))
        #expect(CoordinatorClient.downgrade(.taskFailed(failed), to: 3)
            == .taskFailed(TaskFailed(job: "j1", unit: 3, retryable: true, reason: "peer closed", assignment: 0)))
    }

    /// Why each file after the first was left out goes only to a coordinator of 23, which
    /// reads it; an older one would refuse the trailing list.
    @Test func theOtherFilesReasonsGoOnlyToACoordinatorThatReadsThem() throws {
        var done = Self.done
        done.laterLeftOut = ["'ds/d' was deleted"]
        #expect(CoordinatorClient.downgrade(.taskDone(done), to: WireVersion.leftOutReasons) == .taskDone(done))
        #expect(CoordinatorClient.downgrade(.taskDone(done), to: WireVersion.verifyAttributes) == .taskDone(Self.done))
        #expect(try Message(frame: Message.taskDone(done).frame()) == .taskDone(done))
        // A version 22 report (no list) still reads; more reasons than files does not.
        #expect(try Message(frame: Message.taskDone(Self.done).frame()) == .taskDone(Self.done))
        var many = done
        many.laterLeftOut = ["a", "b"]
        #expect(many.laterLeftOut.count == 2)
        #expect(throws: WireError.malformed(.taskDone, "2 reasons for the files left out after the first, more than 1")) { try Message(frame: Message.taskDone(many).frame()) }
        // The init keeps one per file after the first, each of at most 1,024 bytes.
        let long = TaskDone(job: "j1", unit: 3, bytes: 0, wireBytes: 0, refetched: 0, codecs: [], chunks: [], leftOut: [0, 1], firstLeftOut: "x",
                            laterLeftOut: [String(repeating: "y", count: 2000), "z"])
        #expect(long.laterLeftOut == [String(repeating: "y", count: ErrorMessage.maxReasonLength)])
        // A list of files left out that is present but empty (with an empty reason) still reads,
        // as it did before 23.
        let plain = TaskDone(job: "j1", unit: 3, bytes: 0, wireBytes: 0, refetched: 0, codecs: [], chunks: [], assignment: 2)
        var payload = Message.taskDone(plain).frame().payload
        payload.writeInteger(UInt32(0))  // no files
        payload.writeInteger(UInt16(0))  // no reason
        #expect(try Message(frame: Frame(type: .taskDone, payload: payload)) == .taskDone(plain))
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

/// Which errors reading a source file leave the file out (the unit goes on) rather than fail the
/// unit, and the words `status` shows for them.
struct LeftOutReasonTests {
    @Test func goneChangedAndUnreadableFilesAreLeftOutWithWhy() {
        #expect(UnitSender.leftOutReason(StoreError.system(operation: "open", path: "ds/f", errno: ENOENT), path: "ds/f")
            == "'ds/f' vanished from the source during the transfer (deleted or renamed after the scan)")
        #expect(UnitSender.leftOutReason(StoreError.system(operation: "open", path: "ds/d/f", errno: ENOTDIR), path: "ds/d/f")?.contains("vanished") == true)
        #expect(UnitSender.leftOutReason(ChunkingError.io(path: "/r/ds/f", operation: "open", errno: ENOENT), path: "ds/f")?.contains("vanished") == true)
        #expect(UnitSender.leftOutReason(SourceChanged(path: "ds/f", what: "its mtime moved"), path: "ds/f")
            == "source file 'ds/f' changed during the transfer (its mtime moved); it was not finished at the destination")
        #expect(UnitSender.leftOutReason(ChunkingError.shortFile(path: "/r/ds/f", expected: 10, actual: 4), path: "ds/f", scanned: 20)?
            .contains("changed during the transfer (it is 4 bytes now, the scan saw 20)") == true)
        #expect(UnitSender.leftOutReason(StoreError.system(operation: "open", path: "ds/f", errno: EACCES), path: "ds/f")
            == "'ds/f' could not be read at the source: open ds/f: EACCES (Permission denied)")
        // Replaced by a directory (its read says EISDIR) or by a symbolic link (its open, never
        // following it, says ELOOP): left out, named. Before, the job failed, and so did every resume.
        for error: Error in [StoreError.system(operation: "read", path: "ds/f", errno: EISDIR),
                             StoreError.system(operation: "open", path: "ds/f", errno: ELOOP),
                             ChunkingError.io(path: "/r/ds/f", operation: "read", errno: EISDIR)] {
            #expect(UnitSender.leftOutReason(error, path: "ds/f") == "'ds/f' is no longer a file at the source: it was replaced by a directory or a symbolic link after the scan", "\(error)")
        }
    }

    @Test func otherFailuresFailTheUnit() {
        // A read that fails mid-file, a disk error, a refusal other than at the open, a path out of the root.
        #expect(UnitSender.leftOutReason(StoreError.system(operation: "read", path: "ds/f", errno: EIO), path: "ds/f") == nil)
        #expect(UnitSender.leftOutReason(StoreError.system(operation: "stat", path: "ds/f", errno: EACCES), path: "ds/f") == nil)
        #expect(UnitSender.leftOutReason(StoreError.system(operation: "open", path: "ds/f", errno: EMFILE), path: "ds/f") == nil)
        #expect(UnitSender.leftOutReason(StoreError.escapesRoot(path: "../x"), path: "../x") == nil)
        #expect(UnitSender.leftOutReason(ChunkingError.io(path: "/r/ds/f", operation: "read", errno: EIO), path: "ds/f") == nil)
        #expect(UnitSender.leftOutReason(StoreError.system(operation: "read", path: "ds/f", errno: ELOOP), path: "ds/f") == nil)
    }
}

/// `file left out` (protocol version 16): the partial copy of a file the source left out goes,
/// as rsync removes its temporary file, whichever agent sharing the root made it; the file's final
/// name, a link under the partial copy's name and a missing directory are left alone.
struct LeftOutPartialCopyTests {
    @Test func aFileLeftOutLosesItsPartialCopyAndNothingElse() throws {
        let roots = try Roots()
        let index = try ChunkIndex(path: roots.url.appendingPathComponent("index.sqlite").path, root: roots.destination)
        let receiver = ChunkReceiver(root: roots.destination, files: DestinationFiles(index: index))
        let source = ChunkSource(root: roots.source, codec: .fixed(.none))
        let fm = FileManager.default
        try fm.createDirectory(atPath: roots.source + "/d", withIntermediateDirectories: true)
        try Data(SampleData.random(bytes: 2000, seed: 1)).write(to: URL(fileURLWithPath: roots.source + "/d/f"))
        let dst = roots.destination + "/in/d/"
        try fm.createDirectory(atPath: dst, withIntermediateDirectories: true)
        // f: an older copy under its final name, and half of the new one in its partial copy.
        try Data("old\n".utf8).write(to: URL(fileURLWithPath: dst + "f"))
        let place = ChunkPlace(job: "j", path: "in/d/f", offset: 0)
        #expect(receiver.handle(.chunkData(try source.chunk(sourcePath: "d/f", offset: 0, length: 1000, fileSize: 2000, destination: place)))
            == .chunkAck(ChunkAck(place: place)))
        receiver.files.flush()
        let rows = try index.partialChunks(path: "in/d/f", fileSize: 2000)
        #expect(fm.fileExists(atPath: dst + "f.barge-partial") && !rows.isEmpty)
        // g: a partial copy another agent sharing the root made. h: a link under the partial
        // copy's name, to a file outside the root.
        try Data("half".utf8).write(to: URL(fileURLWithPath: dst + "g.barge-partial"))
        let outside = roots.url.appendingPathComponent("outside").path
        try Data("keep me\n".utf8).write(to: URL(fileURLWithPath: outside))
        try fm.createSymbolicLink(atPath: dst + "h.barge-partial", withDestinationPath: outside)

        for path in ["in/d/f", "in/d/g", "in/d/h", "in/nowhere/x"] {
            let p = ChunkPlace(job: "j", path: path, offset: 0)
            #expect(receiver.handle(.fileLeftOut(p)) == .chunkAck(ChunkAck(place: p)), "\(path)")
        }
        #expect(!fm.fileExists(atPath: dst + "f.barge-partial") && !fm.fileExists(atPath: dst + "g.barge-partial"))
        #expect(try String(contentsOfFile: dst + "f", encoding: .utf8) == "old\n", "the final name is left as it was")
        #expect(try fm.destinationOfSymbolicLink(atPath: dst + "h.barge-partial") == outside)
        #expect(try String(contentsOfFile: outside, encoding: .utf8) == "keep me\n")
        #expect(try index.partialChunks(path: "in/d/f", fileSize: 2000).isEmpty, "its rows go too")
        #expect(!fm.fileExists(atPath: roots.destination + "/in/nowhere"))
        // Over the wire's own bytes, as a listener gets it.
        #expect(try Message(frame: Message.fileLeftOut(place).frame()) == .fileLeftOut(place))
    }
}
