@testable import BargeAgent
import BargeWire
import Foundation
import Testing

/// The destination's quick check (`compare request`), on a real directory.
struct QuickCheckTests {
    /// A symbolic link is unchanged only when its target and its mtime match: `rsync -a` sets a
    /// link's time again when only that changed. Before, a link whose mtime alone changed at
    /// the source was never updated (a review found it).
    @Test func aLinkWhoseMtimeAloneChangedIsNotUnchanged() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("barge-quick-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: root + "/d", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        #expect(symlink("target", root + "/d/l") == 0)
        var times = [timespec(tv_sec: 1_600_000_000, tv_nsec: 250), timespec(tv_sec: 1_600_000_000, tv_nsec: 250)]
        #expect(utimensat(AT_FDCWD, root + "/d/l", &times, AT_SYMLINK_NOFOLLOW) == 0)
        func link(_ target: String, _ seconds: Int64, _ nanoseconds: Int32) -> FileEntry {
            FileEntry(path: "d/l", kind: .symlink, mode: 0o777, mtimeSeconds: seconds, mtimeNanoseconds: nanoseconds, linkTarget: target)
        }
        let entries = [link("target", 1_600_000_000, 250), link("target", 1_500_000_000, 250), link("target", 1_600_000_000, 0), link("other", 1_600_000_000, 250)]
        let reply = QuickCheck.reply(to: CompareRequest(request: 7, entries: entries), root: root)
        #expect(reply.request == 7)
        #expect(reply.unchanged == [true, false, false, false])
    }
}
