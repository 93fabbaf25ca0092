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

    /// A file whose permission bits alone changed at the source gets them in place and counts
    /// as unchanged, as rsync chmods it without sending it: same inode. Not one with other names
    /// (a hard link), nor one reached through a link, nor one whose size or mtime differ too:
    /// those are sent. Before, every such file was read, sent by reference and written again.
    @Test func aModeAloneChangedIsGivenInPlace() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("barge-quick-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: root + "/d", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        var times = [timespec(tv_sec: 1_600_000_000, tv_nsec: 250), timespec(tv_sec: 1_600_000_000, tv_nsec: 250)]
        for name in ["f", "g", "h", "s"] {
            try Data("0123456789".utf8).write(to: URL(fileURLWithPath: root + "/d/" + name))
            #expect(chmod(root + "/d/" + name, 0o644) == 0 && utimensat(AT_FDCWD, root + "/d/" + name, &times, 0) == 0)
        }
        #expect(link(root + "/d/g", root + "/g-too") == 0)
        #expect(symlink("d", root + "/dl") == 0)
        // Bits to grant: given where the directory is the agent's alone (d), not where others may
        // write (open: someone could have renamed another file, 0600, under that name).
        try FileManager.default.createDirectory(atPath: root + "/open", withIntermediateDirectories: true)
        #expect(chmod(root + "/open", 0o777) == 0)
        for path in ["d/wide", "open/wide"] {
            try Data("0123456789".utf8).write(to: URL(fileURLWithPath: root + "/" + path))
            #expect(chmod(root + "/" + path, 0o600) == 0 && utimensat(AT_FDCWD, root + "/" + path, &times, 0) == 0)
        }
        func widened(_ path: String) -> FileEntry {
            FileEntry(path: path, kind: .file, size: 10, mode: 0o644, mtimeSeconds: 1_600_000_000, mtimeNanoseconds: 250)
        }
        func file(_ path: String, size: UInt64 = 10) -> FileEntry {
            FileEntry(path: path, kind: .file, size: size, mode: 0o600, mtimeSeconds: 1_600_000_000, mtimeNanoseconds: 250)
        }
        func look(_ path: String) -> stat {
            var st = stat()
            _ = lstat(root + "/" + path, &st)
            return st
        }
        let before = look("d/f")
        let reply = QuickCheck.reply(to: CompareRequest(request: 8, entries: [file("d/f"), file("d/g"), file("dl/h"), file("d/s", size: 11),
                                                                              widened("d/wide"), widened("open/wide")]), root: root)
        #expect(reply.unchanged == [true, false, false, false, true, false])
        #expect(look("d/wide").st_mode & 0o7777 == 0o644 && look("open/wide").st_mode & 0o7777 == 0o600)
        #expect(look("d/f").st_mode & 0o7777 == 0o600 && look("d/f").st_ino == before.st_ino && look("d/f").st_mtim.tv_sec == 1_600_000_000)
        for path in ["d/g", "g-too", "d/h", "d/s"] { #expect(look(path).st_mode & 0o7777 == 0o644, "\(path)") }
    }
}
