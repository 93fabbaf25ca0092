@testable import BargeStore
import Foundation
import Testing

struct PartialFileWriterTests {
    /// A directory given the mode and mtime it already has is not touched (its ctime stays), as
    /// rsync leaves an unchanged directory; one that differs gets them.
    @Test func aDirectoryAlreadyAsItShouldBeIsNotTouched() throws {
        let s = try Sandbox()
        let entry = try RootedPath.resolve("out/d", under: s.root)
        try DestinationEntries.makeDirectory(entry, mode: 0o750, mtimeSeconds: 1_600_000_000, mtimeNanoseconds: 7)
        var before = stat(), after = stat()
        #expect(stat(entry.absolute, &before) == 0 && before.st_mode & 0o7777 == 0o750 && before.st_mtim.tv_nsec == 7)
        usleep(20_000)
        try DestinationEntries.makeDirectory(entry, mode: 0o750, mtimeSeconds: 1_600_000_000, mtimeNanoseconds: 7)
        #expect(stat(entry.absolute, &after) == 0 && after.st_ctim.tv_sec == before.st_ctim.tv_sec && after.st_ctim.tv_nsec == before.st_ctim.tv_nsec)
        try DestinationEntries.makeDirectory(entry, mode: 0o755, mtimeSeconds: 1_600_000_000, mtimeNanoseconds: 8)
        #expect(stat(entry.absolute, &after) == 0 && after.st_mode & 0o7777 == 0o755 && after.st_mtim.tv_nsec == 8)
    }

    @Test func chunksInAnyOrderThenAnAtomicFinish() throws {
        let s = try Sandbox()
        let target = try RootedPath.resolve("out/dir/file.bin", under: s.root)
        let writer = try PartialFileWriter(target, size: 12)
        try Array("world!".utf8).withUnsafeBytes { try writer.write($0, at: 6) }
        try Array("hello ".utf8).withUnsafeBytes { try writer.write($0, at: 0) }
        #expect(!FileManager.default.fileExists(atPath: target.absolute), "never under its final name before finish")
        #expect(FileManager.default.fileExists(atPath: target.absolute + ".barge-partial"))
        try writer.finish(mode: 0o640, mtimeSeconds: 1_600_000_000, mtimeNanoseconds: 123_456_789)
        #expect(try String(contentsOfFile: target.absolute, encoding: .utf8) == "hello world!")
        #expect(!FileManager.default.fileExists(atPath: target.absolute + ".barge-partial"))
        var st = stat()
        #expect(stat(target.absolute, &st) == 0)
        #expect(st.st_mode & 0o7777 == 0o640)
        #expect(st.st_mtim.tv_sec == 1_600_000_000 && st.st_mtim.tv_nsec == 123_456_789)
    }

    /// A parked copy (its descriptor given back while it waits for its batch's finish) is opened
    /// again for a later write and for its seal, and finishes whole; one replaced under its name
    /// meanwhile is refused at its seal, and the other file is left as it is.
    @Test func aParkedCopyIsOpenedAgainOnlyIfItIsStillTheSameFile() throws {
        let s = try Sandbox()
        let target = try RootedPath.resolve("out/a.txt", under: s.root)
        let writer = try PartialFileWriter(target, size: 12)
        try Array("hello ".utf8).withUnsafeBytes { try writer.write($0, at: 0) }
        writer.park()
        #expect(writer.isParked && writer.descriptor == -1)
        let device = writer.fileSystemDescriptor()
        #expect(device >= 0)
        close(device)
        writer.prepare(forWriteOf: 6)
        #expect(!writer.isParked)
        try Array("world!".utf8).withUnsafeBytes { try writer.write($0, at: 6) }
        writer.park()
        try writer.finish(mode: 0o644, mtimeSeconds: 1_600_000_000, mtimeNanoseconds: 5)
        #expect(try String(contentsOfFile: target.absolute, encoding: .utf8) == "hello world!")

        let other = try RootedPath.resolve("out/b.txt", under: s.root)
        let replaced = try PartialFileWriter(other, size: 3)
        try Array("abc".utf8).withUnsafeBytes { try replaced.write($0, at: 0) }
        replaced.park()
        let partial = other.absolute + ".barge-partial"
        try FileManager.default.removeItem(atPath: partial)
        try Data("xyz".utf8).write(to: URL(fileURLWithPath: partial))
        // Retryable (a system error, ESTALE), not a refusal of the path: the file is sent again.
        #expect { try replaced.seal(mode: 0o644, mtimeSeconds: 1, mtimeNanoseconds: 0, sync: true) } throws: { error in
            guard case StoreError.system(_, _, ESTALE) = error else { return false }
            return true
        }
        #expect(try String(contentsOfFile: partial, encoding: .utf8) == "xyz")
        #expect(!FileManager.default.fileExists(atPath: other.absolute))
    }

    /// The files of a batch, created through its held directory, land each in its own directory
    /// when the batch moves from one to another and back (by bytes: "é" and "e\u{301}" are two),
    /// and a link where a directory should be is still refused on the way.
    @Test func aBatchsHeldDirectoryFollowsItsFiles() throws {
        let s = try Sandbox()
        try FileManager.default.createDirectory(atPath: s.root + "/out/elsewhere", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: s.root + "/out/link", withDestinationPath: "elsewhere")
        let parents = BatchParent()
        let paths = ["out/a/1", "out/a/2", "out/b/3", "out/a/4", "out/\u{e9}/5", "out/e\u{301}/6", "out/\u{e9}/7", "8"]
        for (i, path) in paths.enumerated() {
            let writer = try PartialFileWriter(try RootedPath.resolve(path, under: s.root), size: 1, parents: parents)
            try [UInt8(i)].withUnsafeBytes { try writer.write($0, at: 0) }
            try writer.finish(mode: 0o644, mtimeSeconds: 1_600_000_000, mtimeNanoseconds: 0)
        }
        for (i, path) in paths.enumerated() {
            #expect(try Data(contentsOf: URL(fileURLWithPath: s.root + "/" + path)) == Data([UInt8(i)]), "\(path)")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: s.root + "/out/\u{e9}").sorted() == ["5", "7"])
        #expect(throws: StoreError.self) { try PartialFileWriter(try RootedPath.lexical("out/link/9", under: s.root), size: 1, parents: parents) }
        #expect(try FileManager.default.contentsOfDirectory(atPath: s.root + "/out/elsewhere").isEmpty)

        // The held directory moved away between two files (here outside the root), and another
        // made under its name: the next file goes into the one at the path, not the moved one.
        let outside = try Sandbox()
        _ = try PartialFileWriter(try RootedPath.resolve("out/c/1", under: s.root), size: 1, parents: parents)
        #expect(rename(s.root + "/out/c", outside.root + "/moved") == 0)
        try FileManager.default.createDirectory(atPath: s.root + "/out/c", withIntermediateDirectories: true)
        _ = try PartialFileWriter(try RootedPath.resolve("out/c/2", under: s.root), size: 1, parents: parents)
        #expect(FileManager.default.fileExists(atPath: s.root + "/out/c/2" + PartialFileWriter.suffix))
        #expect(!FileManager.default.fileExists(atPath: outside.root + "/moved/2" + PartialFileWriter.suffix))
        // Swapped for a link to the moved one: refused, nothing lands outside.
        try FileManager.default.removeItem(atPath: s.root + "/out/c")
        try FileManager.default.createSymbolicLink(atPath: s.root + "/out/c", withDestinationPath: outside.root + "/moved")
        #expect(throws: StoreError.self) { try PartialFileWriter(try RootedPath.lexical("out/c/3", under: s.root), size: 1, parents: parents) }
        #expect(try FileManager.default.contentsOfDirectory(atPath: outside.root + "/moved") == ["1" + PartialFileWriter.suffix])
    }

    /// `removeFile` removes a file beneath the root by its directory, opened without following
    /// links: a path through a link is refused and what it points at stays; a missing file is
    /// ENOENT. `abandon` removes the partial copy the same way.
    @Test func aFileIsRemovedBeneathTheRootNeverThroughALink() throws {
        let s = try Sandbox()
        let outside = try Sandbox()
        try s.file("out/a/old", "old")
        try outside.file("kept", "not Barge's")
        try FileManager.default.createSymbolicLink(atPath: s.root + "/out/link", withDestinationPath: outside.root)
        #expect(DestinationEntries.removeFile(try RootedPath.lexical("out/a/old", under: s.root)) == 0)
        #expect(!FileManager.default.fileExists(atPath: s.root + "/out/a/old"))
        #expect(DestinationEntries.removeFile(try RootedPath.lexical("out/a/old", under: s.root)) == -1 && errno == ENOENT)
        #expect(DestinationEntries.removeFile(try RootedPath.lexical("out/link/kept", under: s.root)) == -1)
        #expect(FileManager.default.fileExists(atPath: outside.root + "/kept"))
        let writer = try PartialFileWriter(try RootedPath.resolve("out/a/new", under: s.root), size: 1)
        #expect(FileManager.default.fileExists(atPath: s.root + "/out/a/new" + PartialFileWriter.suffix))
        writer.abandon()
        #expect(try FileManager.default.contentsOfDirectory(atPath: s.root + "/out/a").isEmpty)
    }

    /// A symbolic link where the source has a directory is not followed, even one that stays
    /// inside the root: the file, the directory entry and a link inside it are refused, naming the
    /// link, and nothing lands where it points. Before, `sub -> .` put `sub/f` over `f`, and
    /// `sub -> ../other` wrote into another dataset and set its mode and mtime, while the job
    /// succeeded.
    @Test func aLinkWhereTheSourceHasADirectoryIsNotFollowed() throws {
        let s = try Sandbox()
        let fm = FileManager.default
        try fm.createDirectory(atPath: s.root + "/ds", withIntermediateDirectories: true)
        try fm.createDirectory(atPath: s.root + "/other", withIntermediateDirectories: true)
        try Data("top".utf8).write(to: URL(fileURLWithPath: s.root + "/ds/f"))
        try Data("theirs".utf8).write(to: URL(fileURLWithPath: s.root + "/other/g"))
        #expect(symlink(".", s.root + "/ds/sub") == 0)
        #expect(symlink("../other", s.root + "/ds/away") == 0)
        for (path, link) in [("ds/sub/f", "ds/sub"), ("ds/sub/sub/f", "ds/sub"), ("ds/away/g", "ds/away")] {
            let target = try RootedPath.lexical(path, under: s.root)
            #expect {
                _ = try PartialFileWriter(target, size: 3)
            } throws: { error in
                "\(error)".contains("'\(link)'") && "\(error)".contains("is a symbolic link at the destination")
            }
        }
        for path in ["ds/sub", "ds/away", "ds/away/deeper"] {
            let entry = try RootedPath.lexical(path, under: s.root)
            #expect(throws: StoreError.self, "\(path)") {
                try DestinationEntries.makeDirectory(entry, mode: 0o700, mtimeSeconds: 1, mtimeNanoseconds: 0)
            }
        }
        let parent = try RootedPath.lexical("ds/away", under: s.root)
        #expect(throws: StoreError.self) {
            try DestinationEntries.makeSymlink(in: parent, name: "l", target: "x", mtimeSeconds: 1, mtimeNanoseconds: 0)
        }
        #expect(try String(contentsOfFile: s.root + "/ds/f", encoding: .utf8) == "top")
        #expect(try String(contentsOfFile: s.root + "/other/g", encoding: .utf8) == "theirs")
        #expect(try fm.contentsOfDirectory(atPath: s.root + "/other") == ["g"])
        var st = stat()
        #expect(stat(s.root + "/other", &st) == 0 && st.st_mode & 0o777 != 0o700, "the link's target kept its mode")
        #expect(try fm.destinationOfSymbolicLink(atPath: s.root + "/ds/sub") == ".", "the link is kept")
    }

    /// A FIFO under a partial copy's name (or a socket, or a device) is refused at once, named,
    /// and left as it is. Before, opening it for writing held the receiving thread until a reader
    /// came: the job hung, every retry blocked another thread, and the agent outlived SIGTERM.
    @Test func aFIFOUnderThePartialNameIsRefusedNotWaitedOn() throws {
        let s = try Sandbox()
        try FileManager.default.createDirectory(atPath: s.root + "/ff", withIntermediateDirectories: true)
        let fifo = s.root + "/ff/x.barge-partial"
        #expect(mkfifo(fifo, 0o644) == 0)
        let target = try RootedPath.lexical("ff/x", under: s.root)
        let outcome = NIOLockedOutcome()
        let done = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            do {
                _ = try PartialFileWriter(target, size: 5)
                outcome.set("opened")
            } catch {
                outcome.set("\(error)")
            }
            done.signal()
        }
        if done.wait(timeout: .now() + 10) == .timedOut {
            // Release the blocked open, so the test ends rather than hangs.
            let reader = open(fifo, O_RDONLY | O_NONBLOCK)
            done.wait()
            close(reader)
            Issue.record("opening the partial copy waited on the FIFO")
        }
        let said = outcome.value
        #expect(said.contains("'ff/x.barge-partial'") && said.contains("is not a regular file at the destination"), "\(said)")
        var st = stat()
        #expect(lstat(fifo, &st) == 0 && st.st_mode & S_IFMT == S_IFIFO, "the FIFO is left where it was")
        #expect(!FileManager.default.fileExists(atPath: s.root + "/ff/x"))
    }

    /// A directory under the partial copy's name is named as a directory (a review read "a FIFO,
    /// socket or device has the name" for one), and kept.
    @Test func aDirectoryUnderThePartialNameIsNamedForWhatItIs() throws {
        let s = try Sandbox()
        try FileManager.default.createDirectory(atPath: s.root + "/dd/x.barge-partial", withIntermediateDirectories: true)
        let target = try RootedPath.lexical("dd/x", under: s.root)
        #expect { _ = try PartialFileWriter(target, size: 5) } throws: { error in
            "\(error)".contains("'dd/x.barge-partial'") && "\(error)".contains("is a directory at the destination under the name of the file's partial copy")
        }
        var isDirectory: ObjCBool = false
        #expect(FileManager.default.fileExists(atPath: s.root + "/dd/x.barge-partial", isDirectory: &isDirectory) && isDirectory.boolValue)
    }

    /// What the destination holds in the way of the source's shape is never replaced, and the
    /// error names it: a file where the source has a directory (a file's parent, or a directory
    /// entry), and a directory where the source has a file. Before, these read "open directory
    /// …: ENOTDIR" and "rename …: EISDIR".
    @Test func whatIsInTheWayIsNamedAndKept() throws {
        let s = try Sandbox()
        try FileManager.default.createDirectory(atPath: s.root + "/ds", withIntermediateDirectories: true)
        try Data("keep me".utf8).write(to: URL(fileURLWithPath: s.root + "/ds/wasfile"))
        let under = try RootedPath.lexical("ds/wasfile/x", under: s.root)
        #expect {
            _ = try PartialFileWriter(under, size: 3)
        } throws: { error in
            "\(error)".contains("'ds/wasfile': is not a directory at the destination, where the transfer needs one")
        }
        let entry = try RootedPath.lexical("ds/wasfile", under: s.root)
        #expect {
            try DestinationEntries.makeDirectory(entry, mode: 0o755, mtimeSeconds: 1, mtimeNanoseconds: 0)
        } throws: { error in
            "\(error)".contains("'ds/wasfile': is not a directory at the destination")
        }
        #expect(try String(contentsOfFile: s.root + "/ds/wasfile", encoding: .utf8) == "keep me")

        // Said before a byte is written, and no partial copy is left beside it.
        try FileManager.default.createDirectory(atPath: s.root + "/ds/wasdir/inner", withIntermediateDirectories: true)
        let file = try RootedPath.resolve("ds/wasdir", under: s.root)
        #expect {
            _ = try PartialFileWriter(file, size: 2)
        } throws: { error in
            "\(error)".contains("'ds/wasdir': is a directory at the destination, where the source has a file")
        }
        #expect(!FileManager.default.fileExists(atPath: s.root + "/ds/wasdir.barge-partial"))
        // A directory made there while the file is written: its rename is refused.
        try FileManager.default.removeItem(atPath: s.root + "/ds/wasdir")
        let writer = try PartialFileWriter(file, size: 2)
        try Array("hi".utf8).withUnsafeBytes { try writer.write($0, at: 0) }
        try FileManager.default.createDirectory(atPath: s.root + "/ds/wasdir/inner", withIntermediateDirectories: true)
        #expect {
            try writer.finish(mode: 0o644, mtimeSeconds: 1, mtimeNanoseconds: 0)
        } throws: { error in
            "\(error)".contains("'ds/wasdir': is a directory at the destination, where the source has a file")
        }
        var st = stat()
        #expect(stat(s.root + "/ds/wasdir/inner", &st) == 0 && st.st_mode & S_IFMT == S_IFDIR)
    }

    /// Two writers of one partial copy (two agents sharing a root, or a run of an agent that was
    /// paused, SIGSTOP, past its assignment): once one finishes the file, the other writes nothing
    /// more into it, through either descriptor. Before, such a write landed in the finished file
    /// and moved its mtime to now. While partial, the copy bears the sticky bit; finished, it has
    /// exactly its source's mode.
    @Test func aWriterFindsTheFileFinishedByAnotherAndWritesNothing() throws {
        let s = try Sandbox()
        let target = try RootedPath.resolve("shared/big.bin", under: s.root)
        let size = 2 * PartialFileWriter.directMinimum
        let late = try PartialFileWriter(target, size: UInt64(size))
        let finisher = try PartialFileWriter(target, size: UInt64(size))
        #expect(finisher.existed)
        var st = stat()
        #expect(stat(target.absolute + ".barge-partial", &st) == 0 && st.st_mode & 0o7777 == 0o1600, "\(String(st.st_mode & 0o7777, radix: 8))")
        let aligned = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: PartialFileWriter.directAlignment)
        defer { aligned.deallocate() }
        aligned.initializeMemory(as: UInt8.self, repeating: 7)
        let half = PartialFileWriter.directMinimum
        late.prepare(forWriteOf: half)
        try late.write(UnsafeRawBufferPointer(rebasing: aligned[0..<half]), at: 0)
        try finisher.write(UnsafeRawBufferPointer(rebasing: aligned[half...]), at: UInt64(half))
        try finisher.finish(mode: 0o644, mtimeSeconds: 1_600_000_000, mtimeNanoseconds: 5)
        aligned.initializeMemory(as: UInt8.self, repeating: 9)
        for (bytes, offset) in [(UnsafeRawBufferPointer(rebasing: aligned[0..<half]), 0), (UnsafeRawBufferPointer(rebasing: aligned[0..<100]), 1)] {
            #expect(throws: StoreError.finishedElsewhere(path: "shared/big.bin")) { try late.write(bytes, at: UInt64(offset)) }
        }
        #expect(stat(target.absolute, &st) == 0)
        #expect(st.st_mode & 0o7777 == 0o644)
        #expect(st.st_mtim.tv_sec == 1_600_000_000 && st.st_mtim.tv_nsec == 5, "the mtime moved to \(st.st_mtim.tv_sec)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: target.absolute)) == Data(repeating: 7, count: size))
    }

    /// A writer that opened the copy (created it, or reopened one already there) and was stopped
    /// (SIGSTOP) before its first look at it, while another writer of the same copy wrote,
    /// sealed and renamed it, writes nothing into the finished file, nor resizes it: its mtime
    /// stays. Before, a creator found no mark and took itself for a writer of an unmarked copy,
    /// and one of 64 KiB or more (and every reopener) resized the finished file, which moves its
    /// mtime (h3 of session 50; the review of session 51).
    @Test(arguments: [100, 200_000], [false, true])
    func aWriterStoppedBeforeItsFirstLookFindsTheFileFinished(size: Int, reopening: Bool) throws {
        let s = try Sandbox()
        let target = try RootedPath.resolve("shared/f.bin", under: s.root)
        let bytes = [UInt8](repeating: 7, count: size)
        // A copy already there, begun by an earlier writer, for the reopener.
        let earlier = reopening ? try PartialFileWriter(target, size: UInt64(size)) : nil
        let late = try PartialFileWriter(target, size: UInt64(size), parents: nil, afterOpen: {
            do {
                let finisher = try PartialFileWriter(target, size: UInt64(size))
                try bytes.withUnsafeBytes { try finisher.write($0, at: 0) }
                try finisher.finish(mode: 0o644, mtimeSeconds: 1_600_000_000, mtimeNanoseconds: 5)
            } catch { Issue.record("the other writer: \(error)") }
        })
        #expect(late.existed == reopening)
        _ = earlier
        #expect(throws: StoreError.finishedElsewhere(path: "shared/f.bin")) { try [UInt8](repeating: 9, count: 100).withUnsafeBytes { try late.write($0, at: 0) } }
        var st = stat()
        #expect(stat(target.absolute, &st) == 0 && st.st_mtim.tv_sec == 1_600_000_000 && st.st_mtim.tv_nsec == 5, "the mtime moved to \(st.st_mtim.tv_sec)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: target.absolute)) == Data(bytes))
    }

    /// A seal waits for a write under way into the same copy through another open file (a writer
    /// of another agent sharing the root, stopped between its check and its `pwrite`): the write
    /// lands first, and the seal's mtime is the one the file keeps. Before, the write landed in
    /// the finished file after the seal and moved its mtime to now.
    @Test func aSealWaitsForAWriteUnderWayElsewhere() throws {
        let s = try Sandbox()
        let target = try RootedPath.resolve("shared/f.bin", under: s.root)
        let bytes = [UInt8](repeating: 7, count: 4096)
        let writer = try PartialFileWriter(target, size: 4096)
        try bytes.withUnsafeBytes { try writer.write($0, at: 0) }
        let stale = open(writer.partialPath, O_RDWR | O_CLOEXEC)
        #expect(stale >= 0)
        defer { close(stale) }
        #expect(PartialFileWriter.lock(stale, .shared, 0, 4096), "errno \(errno)")
        let done = DispatchSemaphore(value: 0)
        let began = ContinuousClock.now
        nonisolated(unsafe) var failure: (any Error)?
        DispatchQueue.global().async {
            do { try writer.finish(mode: 0o644, mtimeSeconds: 1_600_000_000, mtimeNanoseconds: 5) } catch { failure = error }
            done.signal()
        }
        usleep(300_000)
        #expect(!FileManager.default.fileExists(atPath: target.absolute), "the seal did not wait for the write under way")
        #expect(bytes.withUnsafeBytes { pwrite(stale, $0.baseAddress!, 4096, 0) } == 4096)
        PartialFileWriter.lock(stale, .none, 0, 4096)
        done.wait()
        #expect(failure == nil, "\(failure.map { "\($0)" } ?? "")")
        #expect(ContinuousClock.now - began >= .milliseconds(300))
        #expect(!writer.leftBehind)
        var st = stat()
        #expect(stat(target.absolute, &st) == 0 && st.st_mtim.tv_sec == 1_600_000_000 && st.st_mtim.tv_nsec == 5, "the mtime moved to \(st.st_mtim.tv_sec)")
    }

    /// A write held past the seal's wait (a writer stopped for good in the middle of it) is left
    /// behind: the file is sealed as a fresh copy, and the write, when it lands, lands in the old
    /// file, which no name holds and which bears no mark (its writer's next check refuses).
    @Test func aSealLeavesBehindAWriteHeldPastItsWait() throws {
        let s = try Sandbox()
        let target = try RootedPath.resolve("shared/f.bin", under: s.root)
        var bytes = [UInt8](repeating: 0, count: 300_000)
        for i in bytes.indices { bytes[i] = UInt8(truncatingIfNeeded: i &* 2654435761 >> 9) }
        let writer = try PartialFileWriter(target, size: UInt64(bytes.count))
        try bytes.withUnsafeBytes { try writer.write($0, at: 0) }
        let stale = open(writer.partialPath, O_RDWR | O_CLOEXEC)
        #expect(stale >= 0)
        defer { close(stale) }
        #expect(PartialFileWriter.lock(stale, .shared, 0, 100))
        try writer.finish(mode: 0o640, mtimeSeconds: 1_600_000_000, mtimeNanoseconds: 5, lockWait: .milliseconds(200))
        #expect(writer.leftBehind)
        #expect([UInt8](repeating: 9, count: 100).withUnsafeBytes { pwrite(stale, $0.baseAddress!, 100, 0) } == 100)
        var st = stat()
        #expect(fstat(stale, &st) == 0 && st.st_nlink == 0 && st.st_mode & S_ISVTX == 0)
        #expect(stat(target.absolute, &st) == 0 && st.st_mode & 0o7777 == 0o640)
        #expect(st.st_mtim.tv_sec == 1_600_000_000 && st.st_mtim.tv_nsec == 5, "the mtime moved to \(st.st_mtim.tv_sec)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: target.absolute)) == Data(bytes))
        let left = try FileManager.default.contentsOfDirectory(atPath: s.root + "/shared")
        #expect(left == ["f.bin"], "\(left)")
    }

    /// Writers of one copy do not wait for each other, even on the same bytes: a live agent that
    /// took over a stopped one's unit writes the chunk the stopped one was writing (h1 of session
    /// 51: before, it waited out the stopped writer's lock and failed, and the job with it). And a
    /// write held up by a seal stopped in the middle (its lock of the whole file held past
    /// `lockWait`) goes on once the wait is over, rather than fail.
    @Test func writersDoNotWaitForEachOtherAndAStoppedSealDelaysOnly() throws {
        let s = try Sandbox()
        let target = try RootedPath.resolve("shared/f.bin", under: s.root)
        let bytes = [UInt8](repeating: 7, count: 4096)
        let writer = try PartialFileWriter(target, size: 8192)
        let other = open(writer.partialPath, O_RDWR | O_CLOEXEC)
        #expect(other >= 0)
        defer { close(other) }
        #expect(PartialFileWriter.lock(other, .shared, 0, 4096), "errno \(errno)")
        var began = ContinuousClock.now
        try bytes.withUnsafeBytes { try writer.write($0, at: 0) }
        #expect(ContinuousClock.now - began < .milliseconds(500), "the write waited for another writer's lock")
        PartialFileWriter.lock(other, .none, 0, 4096)
        // A seal elsewhere, stopped while it holds the whole file.
        #expect(PartialFileWriter.lock(other, .exclusive))
        began = ContinuousClock.now
        try bytes.withUnsafeBytes { try writer.write($0, at: 4096) }
        #expect(ContinuousClock.now - began >= PartialFileWriter.lockWait)
        #expect(try Data(contentsOf: URL(fileURLWithPath: writer.partialPath)) == Data(bytes + bytes))
    }

    /// Block-aligned chunks from aligned memory take the O_DIRECT path (where the file system has
    /// it), the odd tail the buffered one; the file must read back exactly either way.
    @Test func alignedAndUnalignedWritesMixInOneFile() throws {
        let box = try Sandbox()
        let block = PartialFileWriter.directMinimum
        let size = 3 * block + 123
        var expected = [UInt8](repeating: 0, count: size)
        for i in expected.indices { expected[i] = UInt8(truncatingIfNeeded: i &* 2654435761 >> 7) }
        let writer = try PartialFileWriter(try RootedPath.resolve("mixed.bin", under: box.root), size: UInt64(size))
        writer.prepare(forWriteOf: block)
        let aligned = UnsafeMutableRawBufferPointer.allocate(byteCount: block, alignment: PartialFileWriter.directAlignment)
        defer { aligned.deallocate() }
        for n in [2, 0, 1] {  // out of order
            expected.withUnsafeBytes { aligned.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[(n * block)..<((n + 1) * block)])) }
            try writer.write(UnsafeRawBufferPointer(aligned), at: UInt64(n * block))
        }
        try expected.withUnsafeBytes { try writer.write(UnsafeRawBufferPointer(rebasing: $0[(3 * block)...]), at: UInt64(3 * block)) }
        try writer.finish(mode: 0o600, mtimeSeconds: 1_700_000_000, mtimeNanoseconds: 0)
        #expect(try [UInt8](Data(contentsOf: URL(fileURLWithPath: box.root + "/mixed.bin"))) == expected)
    }

    /// Content-defined chunks start and end anywhere: laid out in memory like the file, their
    /// whole blocks go direct and the partial blocks at each end buffered, sharing blocks with
    /// their neighbours.
    @Test func chunksAtUnalignedOffsetsSplitAroundWholeBlocks() throws {
        let box = try Sandbox()
        let size = 200_003
        var expected = [UInt8](repeating: 0, count: size)
        for i in expected.indices { expected[i] = UInt8(truncatingIfNeeded: i &* 2654435761 >> 9) }
        let writer = try PartialFileWriter(try RootedPath.resolve("cdc.bin", under: box.root), size: UInt64(size))
        let staging = UnsafeMutableRawBufferPointer.allocate(byteCount: size + 4096, alignment: PartialFileWriter.directAlignment)
        defer { staging.deallocate() }
        let cuts = [0, 5_000, 70_001, 70_100, 140_000, 196_608, size]  // tiny, large, block-aligned start, odd tail
        for (start, end) in zip(cuts, cuts.dropFirst()).reversed() {
            let skew = start % PartialFileWriter.directAlignment
            let region = UnsafeMutableRawBufferPointer(rebasing: staging[skew..<(skew + end - start)])
            expected.withUnsafeBytes { region.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[start..<end])) }
            try writer.write(UnsafeRawBufferPointer(region), at: UInt64(start))
        }
        try writer.finish(mode: 0o600, mtimeSeconds: 1_700_000_000, mtimeNanoseconds: 0)
        #expect(try [UInt8](Data(contentsOf: URL(fileURLWithPath: box.root + "/cdc.bin"))) == expected)
    }

    @Test func aLinkPlantedUnderThePartialNameIsNotFollowed() throws {
        let s = try Sandbox()
        let victim = s.url.appendingPathComponent("victim").path
        try Data("keep".utf8).write(to: URL(fileURLWithPath: victim))
        try s.link("f.bin.barge-partial", to: victim)
        let target = try RootedPath.resolve("f.bin", under: s.root)
        #expect {
            try PartialFileWriter(target, size: 4)
        } throws: { error in
            "\(error)".contains("'f.bin.barge-partial': is a symbolic link at the destination under the name of the file's partial copy")
        }
        #expect(try String(contentsOfFile: victim, encoding: .utf8) == "keep")
    }

    /// A hard link under the partial name (a snapshot made with `cp -al`, a dedup tool) is not
    /// written through: its other name keeps its bytes, and the file arrives in a copy of its own.
    /// Before, the transfer wrote into the shared inode and the other file took the new bytes.
    @Test func aHardLinkUnderThePartialNameIsNotWrittenThrough() throws {
        let s = try Sandbox()
        try FileManager.default.createDirectory(atPath: s.root + "/keep", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: s.root + "/d", withIntermediateDirectories: true)
        try Data("PRECIOUS DATA\n".utf8).write(to: URL(fileURLWithPath: s.root + "/keep/precious"))
        #expect(link(s.root + "/keep/precious", s.root + "/d/g.barge-partial") == 0)
        let target = try RootedPath.resolve("d/g", under: s.root)
        let writer = try PartialFileWriter(target, size: 12)
        #expect(!writer.existed, "a hard-linked partial copy is not one to resume")
        try Array("hello world!".utf8).withUnsafeBytes { try writer.write($0, at: 0) }
        try writer.finish(mode: 0o644, mtimeSeconds: 1_600_000_000, mtimeNanoseconds: 0)
        #expect(try String(contentsOfFile: s.root + "/keep/precious", encoding: .utf8) == "PRECIOUS DATA\n")
        #expect(try String(contentsOfFile: target.absolute, encoding: .utf8) == "hello world!")
        var st = stat()
        #expect(stat(s.root + "/keep/precious", &st) == 0 && st.st_nlink == 1)
    }

    @Test func abandonLeavesNothing() throws {
        let s = try Sandbox()
        let target = try RootedPath.resolve("gone.bin", under: s.root)
        let writer = try PartialFileWriter(target, size: 100)
        writer.abandon()
        #expect(try FileManager.default.contentsOfDirectory(atPath: s.root).isEmpty)
    }

    /// A full disk: a 1 MiB tmpfs as the root. The error names ENOSPC and no final file appears.
    @Test(.enabled(if: Tmpfs.available, "needs root with CAP_SYS_ADMIN to mount a 1 MiB tmpfs"))
    func aFullDiskIsNamedAndLeavesNoFinalFile() throws {
        let (s, target) = try Sandbox.onTmpfs("1m", file: "big.bin")
        defer { s.unmount() }
        let writer = try PartialFileWriter(target, size: 4 << 20)
        let chunk = [UInt8](repeating: 0xAB, count: 1 << 20)
        var failure: StoreError?
        do {
            for i in 0..<4 { try chunk.withUnsafeBytes { try writer.write($0, at: UInt64(i) << 20) } }
            try writer.finish(mode: 0o644, mtimeSeconds: 0, mtimeNanoseconds: 0)
        } catch {
            failure = error as? StoreError
        }
        let error = try #require(failure)
        #expect(error.errno == ENOSPC)
        #expect(error.description.contains("ENOSPC"))
        #expect(!FileManager.default.fileExists(atPath: target.absolute))
        writer.abandon()
    }

    /// A file system out of inodes with room to spare: ENOSPC, and the error says which kind of
    /// full it is (a review saw "No space left on device" while `df` showed 50 MB free).
    @Test(.enabled(if: Tmpfs.available, "needs root with CAP_SYS_ADMIN to mount a tmpfs"))
    func aFileSystemOutOfInodesIsNamedSo() throws {
        let (s, _) = try Sandbox.onTmpfs("1m", file: "x", inodes: 8)
        defer { s.unmount() }
        var failure: StoreError?
        for i in 0..<16 {
            do {
                let writer = try PartialFileWriter(try RootedPath.lexical("d\(i)/f", under: s.root), size: 1)
                try [UInt8(1)].withUnsafeBytes { try writer.write($0, at: 0) }
                try writer.finish(mode: 0o644, mtimeSeconds: 0, mtimeNanoseconds: 0)
            } catch {
                failure = error as? StoreError
                break
            }
        }
        let error = try #require(failure)
        #expect(error.errno == ENOSPC)
        #expect(error.description.contains("no free inodes") && error.description.contains("ENOSPC"), "\(error)")
    }

    @Test(.enabled(if: geteuid() != 0, "root ignores directory permissions, so EACCES cannot be provoked"))
    func anUnwritableDirectoryIsNamed() throws {
        let s = try Sandbox()
        try FileManager.default.createDirectory(atPath: s.root + "/ro", withIntermediateDirectories: true)
        chmod(s.root + "/ro", 0o555)
        defer { chmod(s.root + "/ro", 0o755) }
        #expect(throws: StoreError.system(operation: "create", path: "ro/f.barge-partial", errno: EACCES)) {
            try PartialFileWriter(try RootedPath.resolve("ro/f", under: s.root), size: 1)
        }
    }

    /// Runs of zeros become holes: the file reads back exactly (zeros at the unaligned edges of a
    /// run and at its end, which still counts in its size) and holds blocks only for its data.
    @Test func runsOfZerosAreLeftAsHoles() throws {
        let s = try Sandbox()
        let target = try RootedPath.resolve("sparse.bin", under: s.root)
        let mib = 1 << 20
        let size = 4 * mib + 123
        let writer = try PartialFileWriter(target, size: UInt64(size))
        var expected = [UInt8](repeating: 0, count: size)
        for i in (mib + 7)..<(2 * mib) { expected[i] = UInt8(truncatingIfNeeded: i % 251 + 1) }
        // Zeros ending inside a block, the data after them, then zeros to the file's end, in
        // that order backwards (the last write is the first one made).
        for range in [(2 * mib)..<size, (mib + 7)..<(2 * mib), 0..<(mib + 7)] {
            try expected[range].withUnsafeBytes { try writer.write($0, at: UInt64(range.lowerBound)) }
        }
        try writer.finish(mode: 0o644, mtimeSeconds: 1_600_000_000, mtimeNanoseconds: 0)
        #expect(try [UInt8](Data(contentsOf: URL(fileURLWithPath: target.absolute))) == expected)
        var st = stat()
        #expect(stat(target.absolute, &st) == 0)
        #expect(st.st_size == size)
        #expect(Int(st.st_blocks) * 512 <= mib + 64 * 1024, "\(st.st_blocks * 512) bytes allocated for 1 MiB of data")
    }

    /// A partial copy left by an earlier run holds other bytes where zeros now arrive: the hole
    /// clears them.
    @Test func zerosOverAnEarlierRunsBytesReadAsZeros() throws {
        let s = try Sandbox()
        let target = try RootedPath.resolve("again.bin", under: s.root)
        let size = 1 << 20
        let first = try PartialFileWriter(target, size: UInt64(size))
        try [UInt8](repeating: 0x5A, count: size).withUnsafeBytes { try first.write($0, at: 0) }
        let second = try PartialFileWriter(target, size: UInt64(size))
        #expect(second.existed)
        try [UInt8](repeating: 0, count: size - 10).withUnsafeBytes { try second.write($0, at: 5) }
        try second.finish(mode: 0o600, mtimeSeconds: 0, mtimeNanoseconds: 0)
        let back = [UInt8](try Data(contentsOf: URL(fileURLWithPath: target.absolute)))
        #expect(back == [UInt8](repeating: 0x5A, count: 5) + [UInt8](repeating: 0, count: size - 10) + [UInt8](repeating: 0x5A, count: 5))
    }

    /// A sparse file far larger than the disk arrives: 64 MiB that are all zeros but 1 MiB, in a
    /// 4 MiB tmpfs. Written out in full it fails with ENOSPC.
    @Test(.enabled(if: Tmpfs.available, "needs root with CAP_SYS_ADMIN to mount a 4 MiB tmpfs"))
    func aSparseFileLargerThanTheDiskArrives() throws {
        let (s, target) = try Sandbox.onTmpfs("4m", file: "disk.img")
        defer { s.unmount() }
        let mib = 1 << 20
        let writer = try PartialFileWriter(target, size: UInt64(64 * mib))
        let zeros = [UInt8](repeating: 0, count: mib), data = [UInt8](repeating: 0xC3, count: mib)
        for i in 0..<64 { try (i == 10 ? data : zeros).withUnsafeBytes { try writer.write($0, at: UInt64(i * mib)) } }
        try writer.finish(mode: 0o644, mtimeSeconds: 0, mtimeNanoseconds: 0)
        let fd = open(target.absolute, O_RDONLY)
        defer { close(fd) }
        var st = stat()
        #expect(fstat(fd, &st) == 0 && st.st_size == 64 * mib)
        var back = [UInt8](repeating: 1, count: mib)
        for i in [0, 10, 63] {
            #expect(back.withUnsafeMutableBytes { pread(fd, $0.baseAddress, mib, off_t(i * mib)) } == mib)
            #expect(back == (i == 10 ? data : zeros))
        }
    }
}

/// A string set by one thread and read by another, for the tests that run a call on its own thread.
final class NIOLockedOutcome: @unchecked Sendable {
    private let lock = NSLock()
    private var text = ""
    func set(_ value: String) { lock.lock(); text = value; lock.unlock() }
    var value: String { lock.lock(); defer { lock.unlock() }; return text }

    /// A repair of a chunk of zeros leaves a hole, as the transfer did: it was written out, and
    /// the repaired file stopped being sparse there (h2 of session 53, F6). Other bytes are
    /// written, and the bytes read back are the repair's.
    @Test func aRepairedStretchOfZerosIsAHoleAgain() throws {
        let s = try Sandbox()
        let target = try RootedPath.resolve("f", under: s.root)
        let size = 1 << 20
        var data = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 1) }
        try Data(data).write(to: URL(fileURLWithPath: target.absolute))
        var before = stat()
        #expect(stat(target.absolute, &before) == 0)
        // A chunk of 512 KiB at 256 KiB: zeros, but for its last 1,000 bytes.
        var chunk = [UInt8](repeating: 0, count: 512 << 10)
        for k in (chunk.count - 1000)..<chunk.count { chunk[k] = 9 }
        try chunk.withUnsafeBytes { (b: UnsafeRawBufferPointer) throws -> Void in try DestinationEntries.repair(target, size: UInt64(size), bytes: b, at: 256 << 10) }
        data.replaceSubrange((256 << 10)..<(768 << 10), with: chunk)
        #expect(try Data(contentsOf: URL(fileURLWithPath: target.absolute)) == Data(data))
        var after = stat()
        #expect(stat(target.absolute, &after) == 0)
        // 448 KiB of whole 64 KiB stretches of zeros hold no blocks now (512-byte units).
        #expect(before.st_blocks - after.st_blocks >= (448 << 10) / 512, "\(before.st_blocks) → \(after.st_blocks) blocks")
        #expect(after.st_mtim.tv_sec == before.st_mtim.tv_sec && after.st_mtim.tv_nsec == before.st_mtim.tv_nsec)
    }
}
