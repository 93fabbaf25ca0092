import BargeAgent
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
}
