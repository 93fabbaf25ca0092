import BargeDigest
import Foundation

/// One entry of the audit trail (`--state/audit.jsonl`): a control action, or a job's outcome.
///
/// A line is `{"hash":"H",` followed by the rest of the record's canonical JSON (sorted keys),
/// where H is the SHA-256 of that canonical JSON. Each record names the hash of the one before
/// it (`prev`; 64 zeros for the first) and its number (`seq`, from 1), so the file is a hash
/// chain: a changed, removed or reordered line breaks it at that line, and the hash of the last
/// line (the head) stands for everything before it.
public struct AuditRecord: Codable, Sendable, Equatable {
    public struct Actor: Codable, Sendable, Equatable {
        public var name: String
        public var role: String?

        public init(name: String, role: String? = nil) {
            self.name = name
            self.role = role
        }
    }

    public struct Result: Codable, Sendable, Equatable {
        /// `done` (it took effect), `refused` (a 4xx: nothing changed) or `failed` (a 5xx).
        public var outcome: String
        public var status: Int?
        public var detail: String?

        public init(outcome: String, status: Int? = nil, detail: String? = nil) {
            self.outcome = outcome
            self.status = status
            self.detail = detail
        }
    }

    /// A job that ended: where from and to, and what arrived.
    public struct JobOutcome: Codable, Sendable, Equatable {
        public var state: String
        public var source: String
        public var destination: String
        public var bytes: Int64
        public var files: Int64
        public var chunks: Int64
        public var skippedFiles: Int64
        public var error: String?
        /// The Merkle root over the chunk ids of what arrived, in unit order (`merkle` records).
        public var merkleRoot: String?

        enum CodingKeys: String, CodingKey {
            case state, source, destination, bytes, files, chunks, error
            case skippedFiles = "skipped_files"
            case merkleRoot = "merkle_root"
        }
    }

    /// A verification that ended: what it checked and found, and whether it says the
    /// destination holds what the job moved (`ok`).
    public struct VerificationOutcome: Codable, Sendable, Equatable {
        /// `succeeded` (every chunk was checked) or `failed` (it stopped: see `error`).
        public var state: String
        public var repair: Bool
        public var files: Int64
        public var chunks: Int64
        public var chunksTotal: Int64
        public var bytes: Int64
        public var mismatches: Int64
        public var repaired: Int64
        /// Mismatches still there after their repair.
        public var remaining: Int64
        /// It checked every chunk and found them right (or, repairing, left none wrong).
        public var ok: Bool
        /// The Merkle root over the job's chunk ids in the journal's order, as `barge verify`
        /// prints it; only for a verification that checked them all.
        public var merkleRoot: String?
        public var error: String?

        enum CodingKeys: String, CodingKey {
            case state, repair, files, chunks, bytes, mismatches, repaired, remaining, ok, error
            case chunksTotal = "chunks_total"
            case merkleRoot = "merkle_root"
        }
    }

    public var seq: Int64 = 0
    public var prev: String = ""
    public var time: String
    /// `action` (an API call), `job` (a job ended), `merkle` (the root of what a succeeded
    /// job moved, recorded shortly after it ended) or `verify` (a verification ended).
    public var kind: String
    public var actor: Actor
    public var from: String?
    /// The route, as `METHOD /path/{param}`.
    public var action: String?
    public var path: String?
    public var args: [String: String]?
    public var job: String?
    public var result: Result?
    public var outcome: JobOutcome?
    public var verification: VerificationOutcome?

    public static let zeroHash = String(repeating: "0", count: 64)

    public init(kind: String, actor: Actor, time: Date = Date()) {
        self.kind = kind
        self.actor = actor
        self.time = Self.timeFormat.string(from: time)
    }

    nonisolated(unsafe) private static let timeFormat: ISO8601DateFormatter = {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f
    }()

    private static let encoder: JSONEncoder = {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return e
    }()

    /// The record's line (no newline) and its hash, once `seq` and `prev` are set.
    public func line() throws -> (line: String, hash: String) {
        let body = try Self.encoder.encode(self)
        let hash = Hex.encode(SHA256.hash([UInt8](body)).bytes)
        return ("{\"hash\":\"\(hash)\"," + String(decoding: body.dropFirst(), as: UTF8.self), hash)
    }
}

/// Checks an audit trail's lines without trusting anything but the lines themselves.
public enum AuditChain {
    public struct Report: Sendable, Equatable {
        public var entries = 0
        /// The hash of the last good line (the head), or 64 zeros for none.
        public var head = AuditRecord.zeroHash
        /// The first line that breaks the chain: its number (from 1) and why.
        public var broken: (line: Int, reason: String)?

        public static func == (a: Report, b: Report) -> Bool {
            a.entries == b.entries && a.head == b.head && a.broken?.line == b.broken?.line && a.broken?.reason == b.broken?.reason
        }
    }

    static let prefix = Array("{\"hash\":\"".utf8)

    /// The line's own hash, checked against its content, and the record; nil with a reason if
    /// the line is not a whole, unaltered entry.
    public static func parse(_ line: Substring) -> (hash: String, record: AuditRecord)? {
        let bytes = Array(line.utf8)
        guard bytes.count > prefix.count + 66, bytes.starts(with: prefix),
              bytes[prefix.count + 64] == UInt8(ascii: "\""), bytes[prefix.count + 65] == UInt8(ascii: ",") else { return nil }
        let hash = String(decoding: bytes[prefix.count..<(prefix.count + 64)], as: UTF8.self)
        let body = [UInt8(ascii: "{")] + bytes[(prefix.count + 66)...]
        guard Hex.encode(SHA256.hash(body).bytes) == hash,
              let record = try? JSONDecoder().decode(AuditRecord.self, from: Data(body)) else { return nil }
        return (hash, record)
    }

    /// Walks the chain from its first line; stops at the first line that breaks it. Each line's
    /// hash is checked over its bytes, and only its top-level `seq` and `prev` are read (a scan
    /// that skips strings and nested values), so a million entries take seconds, not minutes.
    /// `segment`: the lines are a part of a trail, not its start; the first line's number and
    /// `prev` are taken as they are.
    public static func verify<S: Sequence>(lines: S, segment: Bool = false) -> Report where S.Element == Substring {
        var report = Report()
        var head = [UInt8](repeating: 0, count: 32)
        var firstSeq: Int64 = 1
        var number = 0
        for line in lines {
            number += 1
            if line.isEmpty { continue }
            let checked: (seq: Int64, prev: [UInt8], hash: [UInt8])?
            if let contiguous = line.utf8.withContiguousStorageIfAvailable({ link(UnsafeRawBufferPointer($0)) }) {
                checked = contiguous
            } else {
                checked = Array(line.utf8).withUnsafeBytes { link($0) }
            }
            guard let checked else {
                report.broken = (number, "the entry does not match its own hash (it was changed, or is not an audit entry)")
                return report
            }
            if segment && report.entries == 0 {
                firstSeq = checked.seq
                head = checked.prev
            }
            let expected = firstSeq + Int64(report.entries)
            guard checked.seq == expected else {
                report.broken = (number, "entry \(checked.seq) comes where entry \(expected) should: entries were removed or reordered")
                return report
            }
            guard checked.prev == head else {
                report.broken = (number, "entry \(checked.seq) does not follow the entry before it (its prev hash differs): an entry before it was changed, removed or reordered")
                return report
            }
            report.entries += 1
            head = checked.hash
        }
        report.head = Hex.encode(head)
        return report
    }

    /// A line's own hash (checked) and its top-level `seq` and `prev`; nil if it is not an
    /// intact entry.
    static func link(_ line: UnsafeRawBufferPointer) -> (seq: Int64, prev: [UInt8], hash: [UInt8])? {
        let n = prefix.count
        guard line.count > n + 66, prefix.indices.allSatisfy({ line[$0] == prefix[$0] }),
              line[n + 64] == UInt8(ascii: "\""), line[n + 65] == UInt8(ascii: ","),
              let stated = hexBytes(line, from: n, count: 32) else { return nil }
        // The body is "{" and what follows the hash's comma.
        let hasher = SHA256Hasher()
        hasher.update([UInt8(ascii: "{")])
        hasher.update(UnsafeRawBufferPointer(rebasing: line[(n + 66)...]))
        guard hasher.finalize().bytes == stated else { return nil }
        // The top level's keys, skipping strings and nested values.
        var seq: Int64?, prev: [UInt8]?
        var i = n + 66, depth = 1
        while i < line.count {
            let c = line[i]
            if c == UInt8(ascii: "\"") {
                let start = i + 1
                i = start
                while i < line.count && line[i] != UInt8(ascii: "\"") { i += line[i] == UInt8(ascii: "\\") ? 2 : 1 }
                let end = i
                i += 1
                guard depth == 1, i < line.count, line[i] == UInt8(ascii: ":") else { continue }
                let key = UnsafeRawBufferPointer(rebasing: line[start..<end])
                if key.elementsEqual("seq".utf8) {
                    var j = i + 1, v: Int64 = 0, digits = 0
                    while j < line.count, line[j] >= 48, line[j] <= 57, digits < 18 { v = v * 10 + Int64(line[j] - 48); j += 1; digits += 1 }
                    guard digits > 0 else { return nil }
                    seq = v
                } else if key.elementsEqual("prev".utf8) {
                    guard i + 67 < line.count, line[i + 1] == UInt8(ascii: "\""), line[i + 66] == UInt8(ascii: "\""),
                          let p = hexBytes(line, from: i + 2, count: 32) else { return nil }
                    prev = p
                }
                continue
            }
            if c == UInt8(ascii: "{") || c == UInt8(ascii: "[") { depth += 1 }
            if c == UInt8(ascii: "}") || c == UInt8(ascii: "]") { depth -= 1 }
            i += 1
        }
        guard depth == 0, let seq, let prev else { return nil }
        return (seq, prev, stated)
    }

    private static func hexBytes(_ line: UnsafeRawBufferPointer, from: Int, count: Int) -> [UInt8]? {
        guard from + 2 * count <= line.count else { return nil }
        var out = [UInt8](repeating: 0, count: count)
        for k in 0..<count {
            guard let hi = nibble(line[from + 2 * k]), let lo = nibble(line[from + 2 * k + 1]) else { return nil }
            out[k] = hi << 4 | lo
        }
        return out
    }

    private static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case 48...57: c - 48
        case 97...102: c - 87
        default: nil
        }
    }
}
