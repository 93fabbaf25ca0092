import BargeChunk
import BargeDigest
import BargeWire
import Foundation
import GRDB

/// A file a job moved, as the evidence of what arrived: its destination path, size, chunk
/// count, and the Merkle root over its chunk ids in offset order (`MerkleTree`).
public struct FileEvidence: Codable, Sendable, Equatable {
    public var path: String
    public var size: UInt64
    public var chunks: Int
    public var merkleRoot: String

    enum CodingKeys: String, CodingKey {
        case path, size, chunks
        case merkleRoot = "merkle_root"
    }
}

extension Journal {
    /// Units read per page while the evidence is gathered: each with its whole file list (up to
    /// 1,024 files) and manifest. At 256 the pass after every job of small files added 85-90 MiB
    /// to the coordinator's resident memory (h2 of session 50). A page is one query on the
    /// units' index: 16 units a page is about 150 queries for 1.2 million small files.
    static let evidencePage = 16

    /// Each regular file of the job that arrived, in unit order, with its Merkle root; returns the
    /// count and the job's root, the Merkle root over the file roots in that order. Memory is a
    /// page of units and one file's ranges at a time.
    public func evidence(job id: String, _ each: (FileEvidence) throws -> Void) throws -> (files: Int64, root: SHA256Digest) {
        var job = MerkleAccumulator()
        var after: Int64 = -1
        var files: Int64 = 0
        while true {
            let units = try pool.read { db in
                try UnitRecord.fetchAll(db.cachedStatement(sql: """
                    SELECT * FROM units WHERE jobId = ? AND unitId > ? AND kind IN ('files', 'finish') AND state = 'done' ORDER BY unitId LIMIT ?
                    """), arguments: [id, after, Self.evidencePage])
            }.withManifests(manifests)
            guard let last = units.last else { break }
            after = last.unitId
            for unit in units {
                var byFile: [UInt32: [[UInt8]]] = [:]
                for c in UnitManifest.decode(unit.manifest ?? Data()) { byFile[c.file, default: []].append(c.id) }
                // Files the unit left out (gone from the source or changed) never arrived.
                let leftOut = Set(unit.leftOut.map(Int.init))
                for (i, f) in unit.files.enumerated() where f.finish && f.entry.kind == .file && !leftOut.contains(i) {
                    var root = MerkleAccumulator()
                    // A large file's chunks are in its ranges, made (and numbered) in offset order.
                    if unit.kind == .finish { try addRangeChunks(job: id, finish: unit.unitId, to: &root) }
                    for raw in byFile[UInt32(i)] ?? [] { if let digest = SHA256Digest(bytes: raw) { root.add(digest) } }
                    try each(FileEvidence(path: f.entry.path, size: f.entry.size, chunks: Int(root.count), merkleRoot: root.root.description))
                    job.add(root.root)
                    files += 1
                }
            }
        }
        return (files, job.root)
    }

    private func addRangeChunks(job id: String, finish: Int64, to root: inout MerkleAccumulator) throws {
        let log = manifests
        let file = open(log.file(of: id), O_RDONLY | O_CLOEXEC)  // none when every manifest is in its row
        defer { if file >= 0 { close(file) } }
        root = try pool.read { [root] db in
            var acc = root
            let rows = try Row.fetchCursor(db.cachedStatement(sql: """
                SELECT manifest, manifestAt, manifestLength FROM units WHERE jobId = ? AND finishUnit = ? AND kind = 'range' ORDER BY unitId
                """), arguments: [id, finish])
            while let row = try rows.next() {
                var blob = row["manifest"] as Data? ?? Data()
                if let at = row["manifestAt"] as Int64? {
                    guard file >= 0 else { throw JournalError.corrupt("manifest file \(log.file(of: id)) is missing") }
                    blob = try log.read(job: id, ManifestLog.Place(at: at, length: row["manifestLength"]), fd: file)
                }
                for c in UnitManifest.decode(blob) { if let d = SHA256Digest(bytes: c.id) { acc.add(d) } }
            }
            return acc
        }
    }

    /// Ended jobs whose root is not recorded yet.
    public func unrootedJobs() throws -> [String] {
        try pool.read { db in
            try String.fetchAll(db, sql: "SELECT id FROM jobs WHERE state IN ('succeeded', 'failed', 'cancelled') AND merkleRoot IS NULL")
        }
    }

    /// Records an ended job's root, with its `merkle` audit record, once per end.
    public func recordRoot(job id: String, files: Int64, root: SHA256Digest) throws {
        try pool.write { db in
            try db.execute(sql: "UPDATE jobs SET merkleRoot = ? WHERE id = ? AND merkleRoot IS NULL", arguments: [root.description, id])
            guard db.changesCount > 0, let job = try JobRecord.fetchOne(db, key: id) else { return }
            var r = AuditRecord(kind: "merkle", actor: .init(name: "coordinator"))
            r.job = id
            r.outcome = .init(state: job.state.rawValue, source: "\(job.sourceSite):/\(job.sourcePath)",
                              destination: "\(job.destinationDescription)", bytes: job.bytesDone, files: files,
                              chunks: job.chunksDone, skippedFiles: job.skippedFiles, error: job.error, merkleRoot: root.description)
            try Self.appendAudit(r, db)
        }
    }

    /// The recorded root ('' for jobs older than the record), nil before it is made.
    public func merkleRoot(job id: String) throws -> String? {
        try pool.read { db in try String.fetchOne(db, sql: "SELECT merkleRoot FROM jobs WHERE id = ?", arguments: [id]) }
    }
}

