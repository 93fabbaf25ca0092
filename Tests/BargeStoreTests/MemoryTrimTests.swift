@testable import BargeStore
import Foundation
import Testing

struct MemoryTrimTests {
    /// Resident bytes of this process (`/proc/self/statm`).
    func resident() -> Int {
        let fields = ((try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8)) ?? "").split(separator: " ")
        return (fields.count > 1 ? Int(fields[1]) ?? 0 : 0) * Int(sysconf(Int32(_SC_PAGESIZE)))
    }

    /// Memory freed in small blocks stays with the process until a trim gives it back (glibc
    /// keeps it for later mallocs): a coordinator stayed at twice its live heap after a large job.
    @Test func freedMemoryGoesBackToTheSystem() {
        var blocks: [UnsafeMutableRawPointer] = []
        for _ in 0..<100_000 {
            let p = UnsafeMutableRawPointer.allocate(byteCount: 2048, alignment: 16)
            p.initializeMemory(as: UInt8.self, repeating: 1, count: 2048)
            blocks.append(p)
        }
        // Freed in an order that leaves the heap's top in use, as a long-lived process's is.
        let keep = blocks.removeLast()
        for p in blocks { p.deallocate() }
        defer { keep.deallocate() }
        let before = resident()
        MemoryTrim.trim()
        let after = resident()
        #expect(before - after > 100 << 20, "resident \(before >> 20) MiB before the trim, \(after >> 20) MiB after")
    }
}
