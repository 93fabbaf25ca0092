import BargeStore
import NIOConcurrencyHelpers

/// The files this agent is receiving, shared by all its data-plane connections: one partial
/// writer per (job, path), and which chunks of it have been written. Chunks of one file may come
/// over several streams; `finish` refuses a file until every byte of it has arrived, so a file with
/// a hole never gets its final name.
public final class DestinationFiles: Sendable {
    final class OpenFile: @unchecked Sendable {
        let lock = NIOLock()
        let writer: PartialFileWriter
        let size: UInt64
        /// offset → length of each chunk written (a chunk resent after a reconnect counts once).
        var chunks: [UInt64: UInt64] = [:]
        var covered: UInt64 = 0

        init(writer: PartialFileWriter, size: UInt64) {
            self.writer = writer
            self.size = size
        }
    }

    private let open = NIOLockedValueBox<[String: OpenFile]>([:])

    public init() {}

    /// Files currently open (for tests and metrics).
    public var openCount: Int { open.withLockedValue { $0.count } }

    private static func key(_ job: String, _ path: String) -> String { job + "\u{0}" + path }

    private func file(job: String, target: RootedPath, size: UInt64) throws -> OpenFile {
        let key = Self.key(job, target.relative)
        return try open.withLockedValue { files in
            if let f = files[key] {
                guard f.size == size else {
                    throw StoreError.invalidPath(path: target.relative, reason: "chunks disagree about its size (\(f.size) and \(size) bytes)")
                }
                return f
            }
            let f = OpenFile(writer: try PartialFileWriter(target, size: size), size: size)
            files[key] = f
            return f
        }
    }

    /// Writes verified bytes of a file at `offset`; throws `StoreError`.
    public func write(job: String, target: RootedPath, size: UInt64, bytes: UnsafeRawBufferPointer, at offset: UInt64) throws {
        let f = try file(job: job, target: target, size: size)
        try f.lock.withLock {
            try f.writer.write(bytes, at: offset)
            let length = UInt64(bytes.count)
            if let old = f.chunks.updateValue(length, forKey: offset) { f.covered -= old }
            f.covered += length
        }
    }

    /// Bytes of a file are missing at `finish`: they must be sent (again).
    public struct Incomplete: Error, CustomStringConvertible {
        public let description: String
    }

    /// Makes a fully received file durable under its final name with its mode and mtime. A file of
    /// size 0 needs no chunk. A file missing bytes is refused (`Incomplete`) and stays partial;
    /// other failures are `StoreError`s.
    public func finish(job: String, target: RootedPath, size: UInt64, mode: UInt32, mtimeSeconds: Int64, mtimeNanoseconds: Int32) throws {
        let f: OpenFile
        if size == 0 {
            f = try file(job: job, target: target, size: 0)
        } else {
            guard let existing = open.withLockedValue({ $0[Self.key(job, target.relative)] }) else {
                throw Incomplete(description: "\(target.relative): none of its \(size) bytes arrived at this agent")
            }
            f = existing
        }
        try f.lock.withLock {
            guard f.size == size else { throw StoreError.invalidPath(path: target.relative, reason: "its chunks said \(f.size) bytes, the finish \(size)") }
            guard f.covered == size else {
                throw Incomplete(description: "\(target.relative): only \(f.covered) of its \(size) bytes arrived; it stays partial")
            }
            try f.writer.finish(mode: mode, mtimeSeconds: mtimeSeconds, mtimeNanoseconds: mtimeNanoseconds)
        }
        open.withLockedValue { _ = $0.removeValue(forKey: Self.key(job, target.relative)) }
    }

    /// Forgets a job's open files, closing them; their partial files stay for a later run.
    public func close(job: String) {
        let prefix = job + "\u{0}"
        open.withLockedValue { files in
            for key in files.keys where key.hasPrefix(prefix) { files.removeValue(forKey: key) }
        }
    }
}
