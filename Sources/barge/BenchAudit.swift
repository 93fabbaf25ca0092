import ArgumentParser
import BargeCoordinator
import Foundation

/// `barge bench audit`: what the audit trail costs a control action, and how fast a long trail
/// is checked.
struct BenchAudit: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit",
        abstract: "Measure the audit trail: cost per control action, and `audit verify` over many entries.",
        discussion: """
            Against a real journal (full durability) in a temporary directory: --actions job cap \
            changes, half with an audit record in their transaction and half without, taking \
            turns, then the copy of the records to audit.jsonl. Then a trail of --entries records \
            is written and checked as `barge audit verify` checks it.
            """)

    @Flag(help: "Print JSON for tools instead of a table.") var json = false
    @Option(help: ArgumentHelp("Control actions to time (half audited).", valueName: "n")) var actions = 2000
    @Option(help: ArgumentHelp("Entries in the trail to verify.", valueName: "n")) var entries = 1_000_000
    @Option(help: ArgumentHelp("Where to work (a temporary directory by default).", valueName: "dir")) var directory: String?

    struct Report: Codable {
        var actions: Int
        var msPerActionWithout: Double
        var msPerActionWith: Double
        var msAuditPerAction: Double
        var msMirrorPerAction: Double
        var entries: Int
        var verifySeconds: Double
        var fileBytes: Int64
    }

    func run() throws {
        guard actions >= 2, entries >= 1 else { throw ValidationError("--actions must be at least 2 and --entries at least 1") }
        let dir = directory ?? FileManager.default.temporaryDirectory.appendingPathComponent("barge-bench-audit-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { if directory == nil { try? FileManager.default.removeItem(atPath: dir) } }
        let journal = try Journal(path: dir + "/" + Journal.fileName)
        let trail = try AuditTrail(directory: dir, journal: journal)
        try journal.insert(JobRecord(id: "j-bench", sourceSite: "a", sourcePath: "x", destinationSite: "b", destinationPath: "y", createdAt: 1))
        var draft = AuditRecord(kind: "action", actor: .init(name: "bench", role: "operator"))
        draft.action = "POST /v1/jobs/{id}/limit"
        draft.args = ["id": "j-bench", "body": #"{"bwlimit":"100MiB/s"}"#]
        func now() -> Double { Date().timeIntervalSince1970 }
        var with = 0.0, without = 0.0, mirror = 0.0
        // Blocks of 50 taking turns, so that drift (the WAL growing) falls on both alike.
        var done = 0
        while done < actions {
            let n = min(50, (actions - done) / 2 + 1)
            var t = now()
            for i in 0..<n { try journal.setLimit("j-bench", "\(i + 1)MiB/s") }
            without += now() - t
            t = now()
            for i in 0..<n {
                try AuditContext.$current.withValue(AuditContext.recording(draft)) { try journal.setLimit("j-bench", "\(i + 1)MiB/s") }
            }
            with += now() - t
            t = now()
            try trail.mirror()
            mirror += now() - t
            done += 2 * n
        }
        let half = Double(done / 2)

        // A long trail, checked from the file as `barge audit verify` reads it.
        let path = dir + "/long-" + AuditTrail.fileName
        _ = FileManager.default.createFile(atPath: path, contents: nil)
        let out = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        var prev = AuditRecord.zeroHash
        var pending = ""
        var r = draft
        r.result = .init(outcome: "done", detail: "cap 100MiB/s")
        for seq in 1...entries {
            r.seq = Int64(seq)
            r.prev = prev
            r.job = "j-\(seq % 1000)"
            let (line, hash) = try r.line()
            pending += line + "\n"
            prev = hash
            if pending.utf8.count > 1 << 20 { out.write(Data(pending.utf8)); pending = "" }
        }
        out.write(Data(pending.utf8))
        try out.close()
        let t = now()
        guard let lines = LineReader(path: path) else { throw Failure("cannot read \(path)") }
        let checked = AuditChain.verify(lines: lines)
        let verifySeconds = now() - t
        guard checked.broken == nil, checked.entries == entries, checked.head == prev else { throw Failure("the generated trail did not verify: \(checked)") }
        let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)?.int64Value ?? 0

        let report = Report(actions: done, msPerActionWithout: without * 1000 / half, msPerActionWith: with * 1000 / half,
                            msAuditPerAction: (with - without) * 1000 / half, msMirrorPerAction: mirror * 1000 / half,
                            entries: entries, verifySeconds: verifySeconds, fileBytes: size)
        if json {
            print(try JSONOutput.encode(report))
        } else {
            func f(_ x: Double) -> String { String(format: "%.3f", x) }
            print(Table.render([
                ["MEASURE", "VALUE"],
                ["control action, no audit (ms)", f(report.msPerActionWithout)],
                ["control action, audited (ms)", f(report.msPerActionWith)],
                ["audit record in the transaction (ms)", f(report.msAuditPerAction)],
                ["copy to audit.jsonl (ms per action)", f(report.msMirrorPerAction)],
                ["audit verify, \(entries) entries (s)", String(format: "%.2f", verifySeconds)],
                ["trail size (MiB)", "\(size >> 20)"],
            ]))
        }
    }
}
