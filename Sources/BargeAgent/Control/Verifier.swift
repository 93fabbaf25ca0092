import BargeDigest
import BargeStore
import BargeWire

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A destination agent's answer to `verify request`: each file re-read from disk and each chunk's
/// SHA-256 compared with the journal's id. A missing file, or one of the wrong size, is one
/// mismatch covering the whole file. Synchronous disk and CPU work: run it off the event loop.
enum Verifier {
    static func reply(to request: VerifyRequest, root: String) -> VerifyReply {
        var mismatches: [VerifyReply.Mismatch] = []
        var checked: UInt64 = 0
        let sha = SHA256Hasher()
        var buffer: [UInt8] = []
        var chunksByFile = [[ChunkReport]](repeating: [], count: request.files.count)
        for c in request.chunks { chunksByFile[Int(c.file)].append(c) }
        for (i, file) in request.files.enumerated() {
            let index = UInt32(i)
            func whole(_ reason: String) { mismatches.append(.init(file: index, offset: 0, length: file.size, reason: reason)) }
            let fd: Int32
            do {
                let path = try RootedPath.resolve(file.path, under: root)
                fd = open(path.absolute, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
            } catch {
                whole(error.description)
                continue
            }
            guard fd >= 0 else { whole("cannot open: \(String(cString: strerror(errno)))"); continue }
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
}
