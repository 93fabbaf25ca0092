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

    public var seq: Int64 = 0
    public var prev: String = ""
    public var time: String
    /// `action` (an API call), `job` (a job ended) or `merkle` (the root of what a job moved).
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

    /// Walks the chain from its first line; stops at the first line that breaks it.
    public static func verify<S: Sequence>(lines: S) -> Report where S.Element == Substring {
        var report = Report()
        var number = 0
        for line in lines {
            number += 1
            if line.isEmpty { continue }
            guard let (hash, record) = parse(line) else {
                report.broken = (number, "the entry does not match its own hash (it was changed, or is not an audit entry)")
                return report
            }
            let expected = Int64(report.entries + 1)
            guard record.seq == expected else {
                report.broken = (number, "entry \(record.seq) comes where entry \(expected) should: entries were removed or reordered")
                return report
            }
            guard record.prev == report.head else {
                report.broken = (number, "entry \(record.seq) does not follow the entry before it (its prev hash differs): an entry before it was changed, removed or reordered")
                return report
            }
            report.entries += 1
            report.head = hash
        }
        return report
    }
}
