import Foundation
import Logging
import Synchronization

/// `--state/audit.jsonl`: the journaled audit records, copied to the file in order after each
/// commit that made some. The file is only ever appended to. It is synced, and the journal's
/// copies dropped (but the head), every `syncEvery` entries and at start, so a crash loses
/// nothing: entries the file missed are still in the journal and are appended at the next start.
public final class AuditTrail: Sendable {
    public static let fileName = "audit.jsonl"
    static let syncEvery = 1024

    public let path: String
    let journal: Journal
    private let logger: Logger
    /// The file's descriptor and the last entry it holds.
    private let file: Mutex<(fd: Int32, seq: Int64, unsynced: Int)>

    public init(directory: String, journal: Journal, logger: Logger = Logger(label: "barge.audit")) throws {
        path = directory + "/" + Self.fileName
        self.journal = journal
        self.logger = logger
        let fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw AuditError.io("cannot open \(path): \(String(cString: strerror(errno)))") }
        // A line cut short by a crash is finished with a newline, so that the next one starts
        // clean; the chain check will name it.
        let last = Self.lastLine(fd)
        if let tail = last.tail, !tail.isEmpty { _ = "\n".withCString { write(fd, $0, 1) } }
        file = Mutex((fd, last.seq, 0))
        try mirror(sync: true)
    }

    deinit { file.withLock { _ = close($0.fd) } }

    /// Appends what the journal holds beyond the file's last entry.
    public func mirror(sync: Bool = false) throws {
        try file.withLock { f in
            while true {
                let rows = try journal.auditLines(after: f.seq)
                guard !rows.isEmpty else { break }
                if let first = rows.first, first.seq != f.seq + 1, f.seq != 0 || first.seq != 1 {
                    logger.error("\(path) ends at entry \(f.seq) but the journal's next is \(first.seq): entries are missing from the file")
                }
                let text = rows.map { $0.line + "\n" }.joined()
                let written = text.withCString { write(f.fd, $0, strlen($0)) }
                guard written == text.utf8.count else { throw AuditError.io("cannot append to \(path): \(String(cString: strerror(errno)))") }
                f.seq = rows.last!.seq
                f.unsynced += rows.count
            }
            if f.unsynced >= Self.syncEvery || (sync && f.unsynced > 0) {
                guard fsync(f.fd) == 0 else { throw AuditError.io("cannot sync \(path): \(String(cString: strerror(errno)))") }
                try journal.forgetAudit(upTo: f.seq)
                f.unsynced = 0
            }
        }
    }

    /// The last entry's number in the file, and a final line without its newline (cut short).
    private static func lastLine(_ fd: Int32) -> (seq: Int64, tail: Substring?) {
        let size = lseek(fd, 0, SEEK_END)
        guard size > 0 else { return (0, nil) }
        let span = min(Int(size), 1 << 20)
        var buffer = [UInt8](repeating: 0, count: span)
        let n = pread(fd, &buffer, span, off_t(Int(size) - span))
        guard n > 0 else { return (0, nil) }
        let text = String(decoding: buffer[0..<n], as: UTF8.self)
        let endsClean = text.hasSuffix("\n")
        let lines = text.split(separator: "\n")
        let tail = endsClean ? nil : lines.last
        for line in lines.reversed() {
            if let (_, record) = AuditChain.parse(line) { return (record.seq, tail) }
        }
        return (0, tail)
    }
}

public enum AuditError: Error, CustomStringConvertible {
    case io(String)
    public var description: String {
        switch self { case .io(let m): m }
    }
}
