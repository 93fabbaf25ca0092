import Dispatch
import Foundation

/// Done units' chunk manifests, kept beside the journal rather than in it: one append-only file
/// per job under `journal.sqlite.manifests/`, and in the unit's row only where its manifest is
/// (`manifestAt`, `manifestLength`).
///
/// Why: in the row, each completion's 3 KB went through SQLite's WAL a page at a time and was
/// copied back by the checkpoint, which made a 1,000-agent job's completions cost half again as
/// much as without them. Appended here, a batch's manifests are one `pwrite` per job, and their
/// `fdatasync` runs beside the batch's statements. The rule stays that nothing is acknowledged
/// before it is durable: the batch's transaction commits only after the manifests it points at
/// are synced (`Journal.commit`). A crash in between leaves bytes no row points at, which are
/// harmless; a later batch appends after them.
///
/// The files hold no state of their own: where to append is the file's size, read when a batch
/// opens it, so the writer (one at a time, under the journal's write lock) needs no cache.
/// Pruning a job removes its file.
struct ManifestLog: Sendable {
    let directory: String

    /// Where one manifest went in its job's file.
    struct Place: Hashable, Sendable {
        var at: Int64
        var length: Int64
    }

    init(journalPath: String) throws {
        directory = journalPath + ".manifests"
        if mkdir(directory, 0o700) == 0 {
            try Self.syncDirectory((journalPath as NSString).deletingLastPathComponent.nonEmpty ?? ".")
        } else if errno != EEXIST {
            throw JournalError.manifestFailure("cannot create \(directory)")
        }
    }

    /// The file of a job: its id when that is a plain name (the coordinator's are UUIDs), else
    /// the id's bytes in hex.
    func file(of job: String) -> String {
        let plain = !job.isEmpty && job.utf8.count <= 128 && job.utf8.allSatisfy { b in
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x2D || b == 0x5F
        }
        return directory + "/" + (plain ? job : "x" + job.utf8.map { String(format: "%02x", $0) }.joined())
    }

    /// A batch's appends, written but not yet durable: `sync` makes them so, then `close`.
    final class Pending: @unchecked Sendable {
        fileprivate var files: [(fd: Int32, created: Bool)] = []
        /// The sync's error, read after it is joined.
        var failure: Error?
        var isEmpty: Bool { files.isEmpty }
        deinit { for f in files { _ = Glibc.close(f.fd) } }
    }

    /// Appends each job's manifests (in order) to its file; returns where each went, in the
    /// order given. The bytes are written, not yet synced.
    func append(_ byJob: [String: [Data]], into pending: Pending) throws -> [String: [Place]] {
        var out: [String: [Place]] = [:]
        for (job, blobs) in byJob where !blobs.isEmpty {
            let path = file(of: job)
            var created = true
            var fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
            if fd < 0 && errno == EEXIST {
                created = false
                fd = open(path, O_WRONLY | O_CLOEXEC)
            }
            guard fd >= 0 else { throw JournalError.manifestFailure("cannot open \(path)") }
            pending.files.append((fd, created))
            var st = stat()
            guard fstat(fd, &st) == 0 else { throw JournalError.manifestFailure("cannot stat \(path)") }
            var at = Int64(st.st_size)
            var places: [Place] = []
            places.reserveCapacity(blobs.count)
            var bytes = Data()
            bytes.reserveCapacity(blobs.reduce(0) { $0 + $1.count })
            for blob in blobs {
                places.append(Place(at: at, length: Int64(blob.count)))
                at += Int64(blob.count)
                bytes.append(blob)
            }
            try bytes.withUnsafeBytes { raw in
                var done = 0
                while done < raw.count {
                    let n = pwrite(fd, raw.baseAddress! + done, raw.count - done, off_t(places[0].at) + off_t(done))
                    if n < 0 && errno == EINTR { continue }
                    guard n > 0 else { throw JournalError.manifestFailure("cannot write \(path)") }
                    done += n
                }
            }
            out[job] = places
        }
        return out
    }

    /// Makes a batch's appends durable (and the names of files it created).
    func sync(_ pending: Pending) throws {
        for f in pending.files where fdatasync(f.fd) != 0 {
            throw JournalError.manifestFailure("cannot sync a manifest file")
        }
        if pending.files.contains(where: \.created) { try Self.syncDirectory(directory) }
    }

    /// One manifest back. A short read (a file cut or removed behind the journal's back) is an error.
    func read(job: String, _ place: Place, fd given: Int32? = nil) throws -> Data {
        let path = file(of: job)
        let fd = given ?? open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw JournalError.corrupt("manifest file \(path): \(String(cString: strerror(errno)))") }
        defer { if given == nil { _ = Glibc.close(fd) } }
        var data = Data(count: Int(place.length))
        let got = data.withUnsafeMutableBytes { raw -> Int in
            var done = 0
            while done < raw.count {
                let n = pread(fd, raw.baseAddress! + done, raw.count - done, off_t(place.at) + off_t(done))
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { break }
                done += n
            }
            return done
        }
        guard got == data.count else {
            throw JournalError.corrupt("manifest file \(path) holds \(got) of the \(place.length) bytes at \(place.at)")
        }
        return data
    }

    /// Reads many manifests of one job through one open file.
    func read(job: String, _ places: [Place]) throws -> [Data] {
        guard !places.isEmpty else { return [] }
        let path = file(of: job)
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw JournalError.corrupt("manifest file \(path): \(String(cString: strerror(errno)))") }
        defer { _ = Glibc.close(fd) }
        return try places.map { try read(job: job, $0, fd: fd) }
    }

    /// Removes a pruned job's file (one that never had a manifest has none), durably (its
    /// directory synced), so that a power cut does not bring back a file no row names.
    func remove(job: String) {
        if unlink(file(of: job)) == 0 { try? Self.syncDirectory(directory) }
    }

    /// The bytes of every manifest file.
    func size() -> Int64 {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return 0 }
        return names.reduce(0) { sum, name in
            var st = stat()
            return sum + (stat(directory + "/" + name, &st) == 0 ? Int64(st.st_size) : 0)
        }
    }

    private static func syncDirectory(_ path: String) throws {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw JournalError.manifestFailure("cannot open \(path)") }
        defer { _ = Glibc.close(fd) }
        guard fsync(fd) == 0 else { throw JournalError.manifestFailure("cannot sync \(path)") }
    }
}

private extension String {
    var nonEmpty: String? { isEmpty ? nil : self }
}

extension JournalError {
    /// `.manifests` for the failure `errno` holds now, named in words.
    static func manifestFailure(_ what: String) -> JournalError {
        let e = errno
        return .manifests("\(what): \(String(cString: strerror(e)))", errno: e)
    }
}
