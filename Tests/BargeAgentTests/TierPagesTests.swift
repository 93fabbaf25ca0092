@testable import BargeAgent
import BargeWire
import Foundation
import Testing

/// A page of a tier job asked again, because its reply was lost with the coordinator or with the
/// agent that ran it, answers what it did. Run again, it found the files it had moved already in
/// their new tier and counted none: a demotion of 3,000 files whose coordinator was killed ended
/// "2744 files" (a crash campaign, 6 of 14 tier jobs).
struct TierPagesTests {
    @Test(arguments: [TierOperation.demote, .promote])
    func aPageAskedAgainAnswersWhatItDid(_ operation: TierOperation) throws {
        let roots = try Roots()
        for i in 0..<5 {
            try Data(repeating: UInt8(i), count: 1000 + i).write(to: URL(fileURLWithPath: "\(roots.destination)/f\(i)"))
        }
        let work = try TierWork(root: roots.destination, name: "b1", cold: roots.url.appendingPathComponent("cold").path, keyMaterial: nil, sitePolicy: nil)
        if operation == .promote {
            let all = work.reply(to: TierRequest(request: 1, operation: .demote, job: "j-all", path: "", limit: 100))
            #expect(all.error.isEmpty && all.counters.files == 5, "\(all)")
        }
        func page(_ after: String) -> TierReply {
            work.reply(to: TierRequest(request: 2, operation: operation, job: "j-1", path: "", after: after, limit: 2))
        }
        let first = page("")
        #expect(first.error.isEmpty && first.counters.files == 2 && !first.next.isEmpty, "\(first)")
        let again = page("")
        #expect(again.counters.files == 2 && again.next == first.next && again.counters.logicalBytes == first.counters.logicalBytes, "\(again)")
        // Nothing more moved by the page asked again: the rest come with the next pages.
        var moved = again.counters.files
        var next = again.next
        while !next.isEmpty {
            let reply = page(next)
            #expect(reply.error.isEmpty, "\(reply)")
            moved += reply.counters.files
            next = reply.next
        }
        #expect(moved == 5)
        let hot = try FileManager.default.contentsOfDirectory(atPath: roots.destination).filter { $0.hasPrefix("f") }
        #expect(hot.count == (operation == .demote ? 0 : 5), "\(hot)")
    }

    /// `barge ls` pages, each starting where the last ended by its cursor (`h:PATH`, `c:PATH`),
    /// whichever agent of the site answers it (two here, sharing the root: the second has no walk
    /// kept), list every hot entry then every cold file once, in order, as one page would; an
    /// entry removed between pages is not listed, and the page after it goes on from the next.
    @Test func listingPagesGoOnFromTheirCursorAtEitherAgent() throws {
        let roots = try Roots()
        let fm = FileManager.default
        for d in ["a", "a/deep", "b", "c"] { try fm.createDirectory(atPath: "\(roots.destination)/t/\(d)", withIntermediateDirectories: true) }
        for (i, f) in ["a/1", "a/2", "a/deep/x", "a/deep/y", "b/1", "b/2", "b/3", "c/z", "top"].enumerated() {
            try Data(repeating: UInt8(i), count: 100 + i).write(to: URL(fileURLWithPath: "\(roots.destination)/t/\(f)"))
        }
        let cold = roots.url.appendingPathComponent("cold").path
        let one = try TierWork(root: roots.destination, name: "b1", cold: cold, keyMaterial: nil, sitePolicy: nil)
        let two = try TierWork(root: roots.destination, name: "b2", cold: cold, keyMaterial: nil, sitePolicy: nil)
        let demoted = one.reply(to: TierRequest(request: 1, operation: .demote, job: "j-d", path: "t/b", limit: 100))
        #expect(demoted.error.isEmpty && demoted.counters.files == 3, "\(demoted)")
        let whole = one.reply(to: TierRequest(request: 2, operation: .list, path: "t", limit: 1000))
        #expect(whole.next.isEmpty && whole.entries.filter(\.cold).map(\.path) == ["t/b/1", "t/b/2", "t/b/3"], "\(whole.entries.map(\.path))")
        for limit: UInt32 in [1, 2, 3, 5] {
            var paths: [String] = []
            var after = ""
            var asked = 0
            repeat {
                let agent = asked % 2 == 0 ? one : two
                let page = agent.reply(to: TierRequest(request: 3, operation: .list, path: "t", after: after, limit: limit))
                #expect(page.error.isEmpty && page.entries.count <= Int(limit), "\(page)")
                paths += page.entries.map(\.path)
                after = page.next
                asked += 1
            } while !after.isEmpty && asked < 100
            #expect(paths == whole.entries.map(\.path), "limit \(limit): \(paths)")
        }
        // Removed between pages: the next page goes on after it.
        let first = one.reply(to: TierRequest(request: 4, operation: .list, path: "t", limit: 3))
        #expect(first.entries.map(\.path) == ["t/a", "t/a/1", "t/a/2"] && first.next == "h:a/2", "\(first)")
        try fm.removeItem(atPath: "\(roots.destination)/t/a/2")
        let second = two.reply(to: TierRequest(request: 5, operation: .list, path: "t", after: first.next, limit: 2))
        #expect(second.entries.map(\.path) == ["t/a/deep", "t/a/deep/x"], "\(second)")
    }

    /// An older agent's cursor (a count of the entries before) is still taken; one that is not a
    /// count a listing could have reached is refused in words. `Int.max` overflowed a sum and
    /// took the agent down, and a negative count made the catalog's query unlimited.
    @Test func aCountCursorIsTakenWithinItsRangeAndRefusedBeyond() throws {
        let roots = try Roots()
        for i in 0..<5 { try Data([UInt8(i)]).write(to: URL(fileURLWithPath: "\(roots.destination)/f\(i)")) }
        let work = try TierWork(root: roots.destination, name: "b1", cold: roots.url.appendingPathComponent("cold").path, keyMaterial: nil, sitePolicy: nil)
        let third = work.reply(to: TierRequest(request: 1, operation: .list, path: "", after: "2", limit: 2))
        #expect(third.error.isEmpty && third.entries.map(\.path) == ["f2", "f3"], "\(third)")
        for bad in ["9223372036854775807", "-5", "-9223372036854775808", "x"] {
            let reply = work.reply(to: TierRequest(request: 2, operation: .list, path: "", after: bad, limit: 2))
            #expect(reply.error.contains("is not where a page of this listing ended"), "\(bad): \(reply)")
        }
    }

    /// What gives a unit's attempt back (`TaskFailed.lane`): the path's failures, a frame damaged
    /// on its way among them, not a handshake another token or version refused, nor a message the
    /// destination refused as malformed or unexpected.
    @Test func onlyThePathsFailuresAreLaneFailures() {
        #expect(UnitSender.isLaneFailure(PeerClosed()))
        #expect(UnitSender.isLaneFailure(PeerRefused(error: ErrorMessage(code: .markedDown, reason: "down"))))
        #expect(UnitSender.isLaneFailure(HandshakeFailure(error: ErrorMessage(code: .busy, reason: "busy"))))
        #expect(!UnitSender.isLaneFailure(HandshakeFailure(error: ErrorMessage(code: .authenticationFailed, reason: "token"))))
        #expect(!UnitSender.isLaneFailure(HandshakeFailure(error: ErrorMessage(code: .noCommonVersion, reason: "version"))))
        #expect(UnitSender.isLaneFailure(PeerRefused(error: ErrorMessage(code: .sealBroken, reason: "sealed frame rejected"))))
        #expect(UnitSender.isLaneFailure(PeerRefused(error: ErrorMessage(code: .checksumMismatch, reason: "frame checksum mismatch"))))
        #expect(!UnitSender.isLaneFailure(PeerRefused(error: ErrorMessage(code: .malformedMessage, reason: "a bad message"))))
        #expect(!UnitSender.isLaneFailure(PeerRefused(error: ErrorMessage(code: .unexpectedMessage, reason: "not now"))))
    }
}
