@testable import BargeAgent
import BargeDigest
import BargeStore
import Foundation
import Testing

/// What an agent keeps per job is keyed by the job and one other name (`JobDestination`,
/// `JobFile`), and forgetting a job forgets only its own: a job whose id starts with another's is
/// another job.
struct JobKeysTests {
    @Test func sentChunksAreKeptPerJobAndDestinationAndForgottenPerJob() {
        let sent = SentChunks()
        let id = SHA256.hash(Array("chunk".utf8)).bytes
        let j1b1 = JobDestination(job: "j-1", destination: "b1")
        let j1b2 = JobDestination(job: "j-1", destination: "b2")
        let j10b1 = JobDestination(job: "j-10", destination: "b1")

        // The first claim sends by value; once acked, the same bytes go to that destination by reference.
        #expect(sent.claim(j1b1, id) == false)
        sent.settle(j1b1, id, sent: true)
        #expect(sent.claim(j1b1, id) == true)
        // Another destination, or another job, has not been sent them.
        #expect(sent.claim(j1b2, id) == false)
        sent.settle(j1b2, id, sent: false)
        #expect(sent.claim(j10b1, id) == false)
        sent.settle(j10b1, id, sent: true)

        sent.forget(job: "j-1")
        #expect(sent.claim(j1b1, id) == false)  // forgotten with its job
        sent.settle(j1b1, id, sent: false)
        #expect(sent.claim(j10b1, id) == true)  // "j-10" is not "j-1"
    }

    @Test func closingAJobClosesOnlyItsOwnOpenFiles() throws {
        let roots = try Roots()
        let files = DestinationFiles(index: try ChunkIndex(path: roots.url.appendingPathComponent("index.sqlite").path, root: roots.destination))
        let bytes = [UInt8](repeating: 7, count: 100)
        let id = SHA256.hash(bytes).bytes
        let xxh = XXH3.hash128(bytes).canonicalBytes
        for (job, path) in [("j-1", "a"), ("j-10", "b"), ("j-10", "a")] {
            let target = try RootedPath.resolve(path, under: roots.destination)
            try bytes.withUnsafeBytes { try files.write(job: job, target: target, size: 200, bytes: $0, at: 0, id: id, xxh: xxh) }
        }
        #expect(files.openCount == 3)  // one path in two jobs is two open files
        files.close(job: "j-1")
        #expect(files.openCount == 2)
        files.close(job: "j-10")
        #expect(files.openCount == 0)
    }
}
