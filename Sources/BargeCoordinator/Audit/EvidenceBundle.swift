import BargeChunk
import BargeDigest
import Foundation
import Hummingbird
import NIOCore

/// `barge audit export JOB`: one JSON object that lets anyone check, without Barge's
/// coordinator, what a job moved and that the audit trail says so.
///
///     {"format": "barge-evidence/1",
///      "job": {the job's status: id, source, destination, state, counts, …},
///      "files": [{"path", "size", "chunks", "merkle_root"}, …],   in unit order
///      "file_count": N, "job_root": "…",     Merkle root over the file roots in that order
///      "chain": ["line", …],                 audit.jsonl from the job's first entry to the head
///      "entries": [seq, …],                  the chain's entries about this job
///      "head": "…"}                          the hash of the chain's last line
///
/// The job's `merkle` entry in the chain names `job_root`, which binds the file list to the
/// trail; the head is what the operator publishes. The bundle is written as it is read, never
/// held whole: files a page of units at a time, the chain a line at a time.
public enum EvidenceBundle {
    public static let format = "barge-evidence/1"

    /// The bundle for `job`, as a streamed response body, read on a Dispatch thread
    /// (`StreamedBody`).
    static func body(job: JobStatus, journal: Journal, trail: AuditTrail) -> ResponseBody {
        StreamedBody.make { out in try write(job: job, journal: journal, trail: trail, out) }
    }

    /// Writes the bundle's text in order through `out` (blocking reads of the journal and file).
    static func write(job: JobStatus, journal: Journal, trail: AuditTrail, _ out: (String) throws -> Void) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        func json<T: Encodable>(_ v: T) throws -> String { String(decoding: try encoder.encode(v), as: UTF8.self) }
        try out("{\"format\":\"\(format)\",\"job\":\(try json(job)),\"files\":[")
        var first = true
        let evidence = try journal.evidence(job: job.id) { file in
            try out((first ? "" : ",") + (try json(file)))
            first = false
        }
        // A job that ended moments ago may not have its `merkle` entry yet: it is made now.
        if job.state.isTerminal, (try journal.merkleRoot(job: job.id)) == nil {
            try journal.recordRoot(job: job.id, files: evidence.files, root: evidence.root)
        }
        try trail.mirror()
        try out("],\"file_count\":\(evidence.files),\"job_root\":\"\(evidence.root)\",\"chain\":[")
        var entries: [Int64] = []
        var head = ""
        var started = false
        let marker = "\"job\":\"\(job.id)\""
        if let lines = LineReader(path: trail.path) {
            for line in lines where !line.isEmpty {
                let mine = line.contains(marker) ? AuditChain.parse(line).map { $0.record.job == job.id ? $0.record.seq : nil } ?? nil : nil
                guard started || mine != nil else { continue }
                try out((started ? "," : "") + (try json(String(line))))
                started = true
                if let seq = mine { entries.append(seq) }
                head = String(line.dropFirst(9).prefix(64))
            }
        }
        try out("],\"entries\":\(try json(entries)),\"head\":\"\(head)\"}")
    }
}

/// The checks `barge audit verify --bundle` makes, with nothing but the bundle.
public enum EvidenceCheck {
    public struct Outcome: Sendable {
        public var job = ""
        public var files: Int64 = 0
        public var jobRoot = ""
        public var chainEntries = 0
        public var head = ""
        public var rootEntry: Int64?
        /// What failed; empty when the bundle holds together.
        public var problems: [String] = []
    }

    public static func check(_ data: Data) -> Outcome {
        var o = Outcome()
        guard let bundle = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            o.problems.append("not a JSON object")
            return o
        }
        guard bundle["format"] as? String == EvidenceBundle.format else {
            o.problems.append("format is not \(EvidenceBundle.format)")
            return o
        }
        o.job = (bundle["job"] as? [String: Any])?["id"] as? String ?? ""
        if o.job.isEmpty { o.problems.append("the job has no id") }
        // The files and their root.
        var root = MerkleAccumulator()
        let files = bundle["files"] as? [[String: Any]] ?? []
        for (i, f) in files.enumerated() {
            guard let hex = f["merkle_root"] as? String, let digest = SHA256Digest(hex: hex), f["path"] is String else {
                o.problems.append("file \(i + 1) has no path or no valid merkle_root")
                continue
            }
            root.add(digest)
        }
        o.files = Int64(files.count)
        o.jobRoot = root.root.description
        if (bundle["file_count"] as? NSNumber)?.int64Value != o.files { o.problems.append("file_count is not the number of files listed") }
        if bundle["job_root"] as? String != o.jobRoot { o.problems.append("job_root is not the Merkle root of the files' roots") }
        // The chain: intact from its first line to the head.
        let chain = (bundle["chain"] as? [String] ?? []).map { Substring($0) }
        let report = AuditChain.verify(lines: chain, segment: true)
        o.chainEntries = report.entries
        o.head = report.head
        if let b = report.broken { o.problems.append("chain line \(b.line): \(b.reason)") }
        if chain.isEmpty { o.problems.append("the bundle holds no audit entries for the job") }
        if bundle["head"] as? String != report.head { o.problems.append("head is not the hash of the chain's last line") }
        // The job's entries, and the one that names its root.
        let records = chain.compactMap { AuditChain.parse($0)?.record }
        let listed = Set((bundle["entries"] as? [NSNumber] ?? []).map(\.int64Value))
        let mine = Set(records.filter { $0.job == o.job }.map(\.seq))
        if listed != mine { o.problems.append("entries does not list exactly the chain's entries about job \(o.job)") }
        if let rooted = records.last(where: { $0.job == o.job && $0.kind == "merkle" }) {
            o.rootEntry = rooted.seq
            if rooted.outcome?.merkleRoot != o.jobRoot { o.problems.append("audit entry \(rooted.seq) records root \(rooted.outcome?.merkleRoot ?? "none"), not the files' root \(o.jobRoot)") }
            if rooted.outcome?.files != o.files { o.problems.append("audit entry \(rooted.seq) records \(rooted.outcome?.files ?? 0) files, the bundle lists \(o.files)") }
        } else if !chain.isEmpty {
            o.problems.append("no audit entry records the root of what job \(o.job) moved")
        }
        return o
    }
}
