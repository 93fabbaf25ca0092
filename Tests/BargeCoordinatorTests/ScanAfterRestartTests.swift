@testable import BargeCoordinator
import BargeWire
import Foundation
import Testing

/// A coordinator killed while its source agent scans asks for the scan again once started again,
/// from the last page it journaled. The agent may still send pages of the old scan: they carry
/// the old request's number, which the new run never uses again (its boot count is in the high
/// bits), so they are ignored. Before, both runs numbered requests from 1, the old scan's tail
/// and final page were taken for the new scan's, and about half the jobs so interrupted
/// "succeeded" with part of the tree (2,977 of 5,004 files in a black-box run).
struct ScanAfterRestartTests {
    static func file(_ name: String) -> FileEntry {
        FileEntry(path: name, kind: .file, size: 10, mode: 0o644, mtimeSeconds: 1, mtimeNanoseconds: 0)
    }

    @Test func anOldScansPagesAreNotTakenForTheNewOnes() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("barge-scan-restart-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent(Journal.fileName).path
        func attach(_ s: Scheduler, _ name: String, site: String, port: UInt16) async -> AsyncStream<Message>.AsyncIterator {
            let (stream, sink) = AsyncStream.makeStream(of: Message.self)
            _ = await s.attach(Register(name: name, site: site, root: "/r", dataHost: "127.0.0.1", dataPort: port, maxInFlight: 4), sink: sink,
                               version: WireVersion.assignments)
            return stream.makeAsyncIterator()
        }
        func scanRequest(_ inbox: inout AsyncStream<Message>.AsyncIterator) async -> ScanRequest? {
            while let message = await inbox.next() {
                if case .scanRequest(let r) = message { return r }
            }
            return nil
        }

        // The first run: a page of two files is journaled, then the coordinator dies.
        let first = Scheduler(journal: try Journal(path: path))
        try await first.recoverAfterRestart()
        var a1 = await attach(first, "a1", site: "a", port: 8)
        _ = await attach(first, "b1", site: "b", port: 9)
        let job = try await first.submit(SubmitRequest(source: .init(site: "a", path: "ds"), destination: .init(site: "b", path: "ds")), id: "j-1")
        guard let old = await scanRequest(&a1) else { Issue.record("no scan"); return }
        let top = FileEntry(path: "", kind: .directory, mode: 0o755, mtimeSeconds: 1, mtimeNanoseconds: 0)
        await first.received(.scanReply(ScanReply(request: old.request, final: false, entries: [top, Self.file("f1"), Self.file("f2")])), from: "a1")
        await first.flush()

        // Started again: the scan is asked again under a number the first run never used.
        let again = Scheduler(journal: try Journal(path: path))
        var a1Again = await attach(again, "a1", site: "a", port: 8)
        _ = await attach(again, "b1", site: "b", port: 9)
        try await again.recoverAfterRestart()
        guard let new = await scanRequest(&a1Again) else { Issue.record("no scan after the restart"); return }
        #expect(new.request != old.request)

        // The old walk's last page arrives first (the agent sent it before it learnt of the new
        // connection): it is not the new scan's, and ends nothing.
        await again.received(.scanReply(ScanReply(request: old.request, final: true, entries: [Self.file("f3")])), from: "a1")
        await again.flush()
        #expect(try await again.status(job.id)?.planned == false)

        // The new walk lists the whole tree; what the first run planned is skipped.
        await again.received(.scanReply(ScanReply(request: new.request, final: true,
                                                  entries: [top, Self.file("f1"), Self.file("f2"), Self.file("f3"), Self.file("f4")])), from: "a1")
        await again.flush()
        let status = try #require(try await again.status(job.id))
        #expect(status.planned)
        #expect(status.filesTotal == 4)
    }
}
