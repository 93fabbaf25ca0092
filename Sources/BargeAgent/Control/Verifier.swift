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
        // Each pack's index looked at once per request (`ColdStore.indexProblem`).
        var packProblems: [String: String?] = [:]
        var attributes = [VerifyRequest.Attributes?](repeating: nil, count: request.files.count)
        for a in request.attributes { attributes[Int(a.file)] = a }
        // Both values in the reason for the first of them; past that, only what differs: a
        // `chmod -R` over 131,072 files of a page made a reply past the frame limit.
        var detailedLeft = AttributesCheck.detailedPerReply
        func detailed() -> Bool {
            defer { detailedLeft -= 1 }
            return detailedLeft > 0
        }
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
                // Not hot: cold, if the catalog lists it. A row or catalog that cannot be read is
                // named as the cold copy's damage, not taken for a missing file (h1 of session 52).
                var coldReader: ColdStore.FileReader?
                if errno == ENOENT, let cold {
                    do { coldReader = try cold.reader(for: RootedPath.lexical(file.path, under: root).relative) } catch {
                        whole("not hot, and its cold copy cannot be read: \(error)")
                        continue
                    }
                }
                if let cold, var reader = coldReader {
                    let before = mismatches.count
                    checked += verifyCold(&reader, cold: cold, chunks: chunksByFile[i], size: file.size, index: index, repair: request.repair, into: &mismatches)
                    // Its bytes read back whole; the packs that hold them must still say so.
                    if mismatches.count == before {
                        for pack in reader.packs.sorted() {
                            if packProblems[pack] == nil { packProblems[pack] = .some(cold.indexProblem(ofPack: pack)) }
                            if let problem = packProblems[pack] ?? nil {
                                whole("its cold copy reads back whole, but \(problem)")
                                break
                            }
                        }
                    }
                    if mismatches.count == before, let a = attributes[i],
                       let differs = AttributesCheck.differences(mode: reader.file.mode, mtimeSeconds: reader.file.mtimeSeconds,
                                                                 mtimeNanoseconds: reader.file.mtimeNanoseconds, expected: a, detailed: detailed()) {
                        // Kept in the catalog, which a promotion gives the file: not set here.
                        mismatches.append(.init(file: index, offset: 0, length: 0, reason: VerifyReply.attributesDiffer + differs + " (its cold copy's)"))
                    }
                } else {
                    whole(reason)
                }
                continue
            }
            defer { close(fd) }
            var st = stat()
            guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG else { whole("not a regular file"); continue }
            guard UInt64(st.st_size) == file.size else { whole("size \(st.st_size), expected \(file.size)"); continue }
            let before = mismatches.count
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
            // The mode and mtime, once the bytes match (a repair of the bytes sets them again).
            // Set only when asked to, by a repair's own step: never while checking.
            if let a = attributes[i], mismatches.count == before,
               let differs = AttributesCheck.differences(mode: UInt32(st.st_mode), mtimeSeconds: Int64(st.st_mtim.tv_sec), mtimeNanoseconds: Int32(st.st_mtim.tv_nsec),
                                                         expected: a, detailed: detailed()) {
                var reason = VerifyReply.attributesDiffer + differs
                if request.setAttributes {
                    if st.st_nlink > 1 {
                        // As a re-sync's quick check leaves such a file's mode alone: a change
                        // would reach its other names too.
                        reason += "; not set again: it has other names (hard links)"
                    } else if let failed = AttributesCheck.set(fd, expected: a) {
                        reason += "; could not set them again: \(failed)"
                    } else {
                        reason += VerifyReply.attributesSetAgain
                    }
                }
                mismatches.append(.init(file: index, offset: 0, length: 0, reason: reason))
            }
        }
        return VerifyReply(request: request.request, bytesChecked: checked, mismatches: mismatches)
    }

    /// Checks a cold file's chunks; returns the bytes checked.
    /// `reader` ends as the one that read the chunks (another, when a repair pointed the catalog
    /// at a whole copy in another pack).
    private static func verifyCold(_ reader: inout ColdStore.FileReader, cold: ColdStore, chunks: [ChunkReport], size: UInt64, index: UInt32,
                                   repair: Bool, into mismatches: inout [VerifyReply.Mismatch]) -> UInt64 {
        guard reader.file.size == size else {
            mismatches.append(.init(file: index, offset: 0, length: size, reason: "its cold copy is \(reader.file.size) bytes, expected \(size)"))
            return 0
        }
        var checked: UInt64 = 0
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

/// A finished file's mode and mtime against what its finish set (`VerifyRequest.attributes`).
enum AttributesCheck {
    /// Mismatches of a reply whose reason names both values; the rest say only what differs.
    static let detailedPerReply = 256

    /// What differs ("mode 0600, expected 0644; mtime …, expected …"; without `detailed`, "mode;
    /// mtime"), or nil when nothing does. The mode is compared as a transfer's finish sets it
    /// (`FileModes.atDestination`: the permission bits and the sticky bit), the mtime to the
    /// nanosecond, or to what the file system keeps (`sameTime`).
    static func differences(mode: UInt32, mtimeSeconds: Int64, mtimeNanoseconds: Int32, expected a: VerifyRequest.Attributes, detailed: Bool = true) -> String? {
        var out: [String] = []
        let have = mode & 0o7777, want = FileModes.atDestination(a.mode) & 0o7777
        if have != want { out.append(detailed ? "mode \(octal(have)), expected \(octal(want))" : "mode") }
        if !sameTime(mtimeSeconds, mtimeNanoseconds, as: a.mtimeSeconds, a.mtimeNanoseconds) {
            out.append(detailed ? "mtime \(timestamp(mtimeSeconds, mtimeNanoseconds)), expected \(timestamp(a.mtimeSeconds, a.mtimeNanoseconds))" : "mtime")
        }
        return out.isEmpty ? nil : out.joined(separator: "; ")
    }

    /// The same time, or the expected one cut to what a coarser file system keeps: whole
    /// microseconds or whole seconds (ext4 with small inodes, some network file systems). There,
    /// every file of a source with nanoseconds differed, and setting them again changed nothing.
    static func sameTime(_ seconds: Int64, _ nanoseconds: Int32, as wantSeconds: Int64, _ wantNanoseconds: Int32) -> Bool {
        guard seconds == wantSeconds else { return false }
        if nanoseconds == wantNanoseconds || nanoseconds == 0 { return true }
        return nanoseconds % 1_000 == 0 && nanoseconds == wantNanoseconds / 1_000 * 1_000
    }

    /// Sets the expected mode and mtime on the open file; nil when done, else why not.
    static func set(_ fd: Int32, expected a: VerifyRequest.Attributes) -> String? {
        guard fchmod(fd, mode_t(FileModes.atDestination(a.mode) & 0o7777)) == 0 else { return "chmod: \(String(cString: strerror(errno)))" }
        var times = [DestinationEntries.omitTime, timespec(tv_sec: Int(a.mtimeSeconds), tv_nsec: Int(a.mtimeNanoseconds))]
        guard futimens(fd, &times) == 0 else { return "set mtime: \(String(cString: strerror(errno)))" }
        return nil
    }

    static func octal(_ mode: UInt32) -> String { padded(mode, 4, radix: 8) }

    /// `v`'s digits, with zeros before them up to `width`.
    static func padded(_ v: some BinaryInteger, _ width: Int, radix: Int = 10) -> String {
        let digits = String(v, radix: radix)
        return String(repeating: "0", count: max(0, width - digits.count)) + digits
    }

    /// UTC, to the nanosecond: 2023-11-14T22:13:20.250000000Z.
    static func timestamp(_ seconds: Int64, _ nanoseconds: Int32) -> String {
        var t = time_t(seconds)
        var parts = tm()
        guard gmtime_r(&t, &parts) != nil else { return "\(seconds).\(padded(nanoseconds, 9)) s" }
        return "\(padded(parts.tm_year + 1900, 4))-\(padded(parts.tm_mon + 1, 2))-\(padded(parts.tm_mday, 2))T\(padded(parts.tm_hour, 2)):\(padded(parts.tm_min, 2)):\(padded(parts.tm_sec, 2))."
            + padded(nanoseconds, 9) + "Z"
    }
}
