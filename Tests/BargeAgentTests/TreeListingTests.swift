@testable import BargeAgent
import BargeWire
import Foundation
import Testing

/// A scan's pages, as a source agent sends them: filled on a blocking thread a page at a time,
/// each full page not final, the last one final, and every entry once, in walk order.
struct TreeListingTests {
    /// Runs a scan of `path` and collects its replies, taking each off the outbox as its writer would.
    func scan(_ roots: Roots, _ path: String) async -> [ScanReply] {
        let outbox = Outbox()
        let (stream, sink) = AsyncStream<Message>.makeStream()
        outbox.attach(sink, acknowledged: true)
        let root = roots.source
        let connection = outbox.connection
        let listing = Task { await TreeListing.send(ScanRequest(request: 7, path: path), root: root, outbox: outbox, on: connection) }
        var replies: [ScanReply] = []
        for await message in stream {
            outbox.written(message)
            guard case .scanReply(let reply) = message else { continue }
            replies.append(reply)
            if reply.final { break }
        }
        await listing.value
        return replies
    }

    func files(_ roots: Roots, _ count: Int, in directory: String) throws {
        let dir = roots.source + "/" + directory
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        for i in 0..<count { FileManager.default.createFile(atPath: dir + "/" + String(format: "f%05d", i), contents: Data([UInt8(i & 0xff)])) }
    }

    @Test func aLargeTreeComesInFullPagesAndAFinalOne() async throws {
        let roots = try Roots()
        try files(roots, 1500, in: "ds/a")
        try files(roots, 1000, in: "ds/b")
        let replies = await scan(roots, "ds")
        // The top, two directories and 2,500 files: 2,503 entries.
        #expect(replies.map(\.entries.count) == [1024, 1024, 455])
        #expect(replies.map(\.final) == [false, false, true])
        #expect(replies.allSatisfy { $0.request == 7 && $0.error.isEmpty })
        let paths = replies.flatMap(\.entries).map(\.path)
        #expect(paths.first == "" && Set(paths).count == paths.count)
        #expect(paths.filter { $0.hasPrefix("b/f") }.count == 1000 && paths.filter { $0.hasPrefix("a/f") }.count == 1500)
        #expect(paths.firstIndex(of: "a")! < paths.firstIndex(of: "a/f00000")!, "a directory comes before its contents")
    }

    /// Entries that cannot be sent are named a bounded number per page, and the rest follow on
    /// pages of their own before the final one: 5,000 names that are not UTF-8 in one directory
    /// once made a single page of them all (with longer names, past the frame limit).
    @Test func manySkippedEntriesAreSpreadOverPages() async throws {
        let roots = try Roots()
        try files(roots, 3, in: "ds")
        let base = Array((roots.source + "/ds/").utf8)
        for i in 0..<5000 {
            let name = base + Array(String(format: "bad-%05d-", i).utf8) + [0xFF, 0]
            let fd = name.withUnsafeBufferPointer { $0.withMemoryRebound(to: CChar.self) { open($0.baseAddress!, O_WRONLY | O_CREAT, 0o644) } }
            #expect(fd >= 0)
            close(fd)
        }
        let replies = await scan(roots, "ds")
        #expect(replies.map(\.skipped.count) == [TreeListing.skippedPerPage, 5000 - TreeListing.skippedPerPage])
        #expect(replies.map(\.final) == [false, true])
        #expect(replies.flatMap(\.entries).count == 4)
        #expect(Set(replies.flatMap(\.skipped)).count == 5000)
    }

    @Test func aTreeThatFillsItsLastPageExactlyEndsWithAnEmptyFinalPage() async throws {
        let roots = try Roots()
        try files(roots, ScanReply.pageSize - 1, in: "ds")
        let replies = await scan(roots, "ds")
        #expect(replies.map(\.entries.count) == [ScanReply.pageSize, 0])
        #expect(replies.map(\.final) == [false, true])
    }

    @Test func aSingleFileOrAMissingPathIsOneFinalReply() async throws {
        let roots = try Roots()
        try files(roots, 1, in: "one")
        let single = await scan(roots, "one/f00000")
        #expect(single.count == 1 && single[0].final && single[0].entries.count == 1 && single[0].entries[0].path == "")
        let missing = await scan(roots, "nowhere")
        #expect(missing.count == 1 && missing[0].final && missing[0].entries.isEmpty && !missing[0].error.isEmpty, "\(missing)")
    }

    /// A source that is itself a symbolic link is sent as the link, as `rsync -a dir/link dst`
    /// sends it, whatever its target: absolute (even pointing inside the root: before, "goes
    /// through a symbolic link to …, outside the agent's root"), relative, outside the root, or
    /// dangling. Nothing follows it. A link on the way to the source still must stay inside.
    @Test func aSourceThatIsASymbolicLinkIsSentAsTheLink() async throws {
        let roots = try Roots()
        try files(roots, 1, in: "one")
        let targets = ["abs": roots.source + "/one/f00000", "rel": "f00000", "out": "/etc/hostname", "gone": "nowhere"]
        for (name, target) in targets {
            try FileManager.default.createSymbolicLink(atPath: roots.source + "/one/" + name, withDestinationPath: target)
            let replies = await scan(roots, "one/" + name)
            #expect(replies.count == 1 && replies[0].error.isEmpty, "\(name): \(replies)")
            let entry = try #require(replies.first?.entries.first, "\(name): \(replies)")
            #expect(entry.kind == .symlink && entry.linkTarget == target && entry.path == "", "\(name): \(entry)")
        }
        try FileManager.default.createSymbolicLink(atPath: roots.source + "/away", withDestinationPath: "/etc")
        let through = await scan(roots, "away/hostname")
        #expect(through.count == 1 && through[0].entries.isEmpty && through[0].error.contains("outside the agent's root"), "\(through)")
    }

    /// A source that is not there, or sits below a file, says so in words, with the root it was
    /// looked for under, in one final page: before, "scan nope: ENOENT (No such file or directory)".
    @Test func aMissingSourceIsNamedWithTheRootItWasLookedFor() async throws {
        let roots = try Roots()
        try files(roots, 1, in: "ds")
        let missing = await scan(roots, "nope/deeper")
        #expect(missing.count == 1 && missing[0].final && missing[0].entries.isEmpty)
        #expect(missing[0].error == "the source 'nope/deeper' does not exist under the agent's root \(roots.source) (ENOENT)")
        let belowAFile = await scan(roots, "ds/f00000/x")
        #expect(belowAFile.count == 1 && belowAFile[0].final)
        #expect(belowAFile[0].error.contains("ENOTDIR") && belowAFile[0].error.contains("'ds/f00000/x'"), "\(belowAFile[0].error)")
    }

    /// A scan belongs to the connection it was asked on. Once that one ends, the pages it has
    /// not handed to the writer are dropped, none goes out on the next connection (the
    /// coordinator there asks again, from its mark, perhaps a restarted one that never asked for
    /// this scan), and the walk stops rather than walk the whole tree beside the new one.
    @Test func aScanStopsWhenTheConnectionItWasAskedOnEnds() async throws {
        let roots = try Roots()
        try files(roots, 5000, in: "ds")
        let outbox = Outbox()
        let (first, firstSink) = AsyncStream<Message>.makeStream()
        outbox.attach(firstSink, acknowledged: true)
        let connection = outbox.connection
        let listing = Task { await TreeListing.send(ScanRequest(request: 7, path: "ds"), root: roots.source, outbox: outbox, on: connection) }
        // The writer takes the first page off and writes nothing more: the paced limit fills.
        var firstPages = first.makeAsyncIterator()
        guard case .scanReply(let page) = await firstPages.next() else { Issue.record("no first page"); return }
        #expect(!page.final)
        outbox.detach()
        firstSink.finish()

        let (second, secondSink) = AsyncStream<Message>.makeStream()
        outbox.attach(secondSink, acknowledged: true)
        await listing.value  // the walk ended without its final page
        secondSink.finish()
        var sent: [Message] = []
        for await message in second { sent.append(message) }
        #expect(sent.isEmpty, "pages of the old connection's scan went out on the new one: \(sent.count)")
        #expect(outbox.connection == connection + 1)
    }
}
