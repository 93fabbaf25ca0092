import BargeDigest
import BargeStore
import BargeTier
import BargeWire

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A destination agent's answer to `verify request`: each file re-read from disk and each chunk's
/// SHA-256 compared with the journal's id. A missing file, or one of the wrong size, is one
/// mismatch covering the whole file. A file that was demoted is read from the cold tier instead
/// (`cold`): its chunks are opened, decoded and checked against their ids on the way, and a chunk
/// that cannot be read whole makes the whole file a mismatch. Only a repairing verification
/// (`VerifyRequest.repair`) changes the cold catalog for it: it is first looked for whole in
/// another pack (`ColdStore.verify` with repair), and one that stays damaged is forgotten, so
/// that `--repair`'s sending it again stores it anew. A plain one only reads (it forgot such a
/// chunk, and a pack put back whole from a backup no longer counted: h3 of session 49).
/// Synchronous disk and CPU work: run it off the event loop.
enum Verifier {
    static func reply(to request: VerifyRequest, root: String, cold: ColdStore? = nil) -> VerifyReply {
        var mismatches: [VerifyReply.Mismatch] = []
        var checked: UInt64 = 0
        let sha = SHA256Hasher()
        var buffer: [UInt8] = []
        var chunksByFile = [[ChunkReport]](repeating: [], count: request.files.count)
        for c in request.chunks { chunksByFile[Int(c.file)].append(c) }
        for (i, file) in request.files.enumerated() {
            let index = UInt32(i)
            func whole(_ reason: String) { mismatches.append(.init(file: index, offset: 0, length: file.size, reason: reason)) }
            var fd: Int32
            do {
                // An agent that is not root may not search a directory of its own on the way
                // (0000, as a job gave the source's mode): the path is then taken by its words,
                // and the lifted open below is beneath the root itself.
                let path = try RootedPath.resolveForOpensBeneath(file.path, under: root)
                // O_NONBLOCK: a FIFO under the name is reported, not waited on.
                fd = path.openFollowingNoLinkAtTheEnd(O_RDONLY | O_NONBLOCK)
                if fd < 0, errno == EACCES, geteuid() != 0 {
                    let lifted = DirectoryLift.openForReading(path)
                    if lifted >= 0 { fd = lifted } else { errno = EACCES }
                }
            } catch {
                whole(error.description)
                continue
            }
            guard fd >= 0 else {
                let reason = "cannot open: \(String(cString: strerror(errno)))"
                if errno == ENOENT, let cold, let reader = try? cold.reader(for: RootedPath.lexical(file.path, under: root).relative) {
                    checked += verifyCold(reader, cold: cold, chunks: chunksByFile[i], size: file.size, index: index, repair: request.repair, into: &mismatches)
                } else {
                    whole(reason)
                }
                continue
            }
            defer { close(fd) }
            var st = stat()
            guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG else { whole("not a regular file"); continue }
            guard UInt64(st.st_size) == file.size else { whole("size \(st.st_size), expected \(file.size)"); continue }
            for c in chunksByFile[i] {
                let length = Int(c.length)
                if buffer.count < length { buffer = [UInt8](repeating: 0, count: length) }
                let ok = buffer.withUnsafeMutableBytes { b -> Bool in
                    var done = 0
                    while done < length {
                        let n = pread(fd, b.baseAddress! + done, length - done, off_t(c.offset) + off_t(done))
                        if n < 0 && errno == EINTR { continue }
                        guard n > 0 else { return false }
                        done += n
                    }
                    sha.update(UnsafeRawBufferPointer(rebasing: b[0..<length]))
                    return sha.finalize().bytes == c.id
                }
                checked += UInt64(length)
                if !ok { mismatches.append(.init(file: index, offset: c.offset, length: UInt64(length), reason: VerifyReply.chunkDiffers)) }
            }
        }
        return VerifyReply(request: request.request, bytesChecked: checked, mismatches: mismatches)
    }

    /// Checks a cold file's chunks; returns the bytes checked.
    private static func verifyCold(_ reader: ColdStore.FileReader, cold: ColdStore, chunks: [ChunkReport], size: UInt64, index: UInt32,
                                   repair: Bool, into mismatches: inout [VerifyReply.Mismatch]) -> UInt64 {
        guard reader.file.size == size else {
            mismatches.append(.init(file: index, offset: 0, length: size, reason: "its cold copy is \(reader.file.size) bytes, expected \(size)"))
            return 0
        }
        var checked: UInt64 = 0
        var reader = reader
        var repaired = false
        for c in chunks {
            do {
                let bytes = try reader.read(offset: c.offset, length: Int(c.length))
                checked += UInt64(c.length)
                if SHA256.hash(bytes).bytes != c.id {
                    mismatches.append(.init(file: index, offset: 0, length: size, reason: "a chunk of its cold copy differs from what was sent"))
                    return checked
                }
            } catch {
                // Another pack may hold the chunk whole: point the catalog there and read again.
                if repair, !repaired, (try? cold.verify(under: reader.file.path, repair: true))?.repaired ?? 0 > 0,
                   let again = try? cold.reader(for: reader.file.path) {
                    repaired = true
                    reader = again
                    if let bytes = try? reader.read(offset: c.offset, length: Int(c.length)), SHA256.hash(bytes).bytes == c.id {
                        checked += UInt64(c.length)
                        continue
                    }
                }
                mismatches.append(.init(file: index, offset: 0, length: size, reason: "its cold copy is damaged: \(error)"))
                return checked
            }
        }
        return checked
    }
}
