@testable import BargeStore
import Foundation
import Testing

struct MemoryTrimTests {
    /// Memory freed in small blocks stays with the process until a trim gives it back (glibc
    /// keeps it for later mallocs): a coordinator stayed at twice its live heap after a large job.
    /// Told by the freed blocks' own pages (`mincore`), not the process's resident size, which
    /// other tests move.
    @Test func freedMemoryGoesBackToTheSystem() {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        var blocks: [UnsafeMutableRawPointer] = []
        for _ in 0..<50_000 {
            let p = UnsafeMutableRawPointer.allocate(byteCount: 2048, alignment: 16)
            p.initializeMemory(as: UInt8.self, repeating: 1, count: 2048)
            blocks.append(p)
        }
        // The whole pages among the blocks (glibc's own headers and the next block's share none
        // of a page in the middle of a run of freed blocks).
        let pages = Set(blocks.map { Int(bitPattern: $0) / page * page }).sorted().dropFirst().dropLast()
        // Freed in an order that leaves the heap's top in use, as a long-lived process's is.
        let keep = blocks.removeLast()
        defer { keep.deallocate() }
        for p in blocks { p.deallocate() }
        func resident() -> Int {
            var vec: UInt8 = 0
            return pages.filter { mincore(UnsafeMutableRawPointer(bitPattern: $0)!, page, &vec) == 0 && vec & 1 == 1 }.count
        }
        let before = resident()
        MemoryTrim.trim()
        let after = resident()
        #expect(before > pages.count / 2, "\(before) of \(pages.count) pages resident before the trim")
        #expect(after < pages.count / 10, "\(after) of \(pages.count) pages still resident after the trim")
    }
}
