import BargeDigest
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A pack sealed into the store: its name (the SHA-256 of its bytes), size and blobs.
public struct SealedPack: Sendable {
    public let id: String
    public let bytes: UInt64
    public let entries: [PackFormat.Entry]
}

/// Writes one pack: blobs are appended to a temporary file under `tmp/`, then `seal` adds the
/// index and trailer, `fsync`s, renames it to `packs/XX/<sha256>.pack` and `fsync`s that
/// directory. A pack is never modified after that; one that is never sealed is removed by
/// `abandon` or, after a crash, by `gc`.
final class PackWriter {
    let layout: ColdLayout
    let keys: ColdKeys?
    private let fd: Int32
    private let temporary: String
    private var offset: UInt64
    private(set) var entries: [PackFormat.Entry] = []
    private let hasher = SHA256Hasher()
    private let cipher: AESGCM?
    private var sealBuffer: [UInt8] = []

    var bytes: UInt64 { offset }

    init(layout: ColdLayout, keys: ColdKeys?) throws {
        self.layout = layout
        self.keys = keys
        var random = SystemRandomNumberGenerator()
        temporary = layout.temporaryDirectory + "/pack-" + Hex.encode((0..<12).map { _ in UInt8.random(in: 0...255, using: &random) }) + ".tmp"
        fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw ColdStoreError.system("create a pack", temporary, errno) }
        do { cipher = try keys.map { k in try AESGCM(key: k.blobKey, encrypting: true) } } catch {
            close(fd)
            unlink(temporary)
            throw ColdStoreError("cannot set up AES-256-GCM: \(error)")
        }
        offset = 0
        try write(PackFormat.header(encrypted: keys != nil))
    }

    deinit {
        if fd >= 0 { close(fd) }
    }

    /// Appends an encoded chunk stored under `id` (32 bytes); returns its index entry.
    @discardableResult
    func append(id: [UInt8], encoded: UnsafeRawBufferPointer, rawLength: Int) throws -> PackFormat.Entry {
        let start = offset
        if let cipher {
            let nonce = Self.nonce()
            let sealedCount = encoded.count + AESGCM.tagLength
            if sealBuffer.count < sealedCount { sealBuffer = [UInt8](repeating: 0, count: sealedCount) }
            do {
                try sealBuffer.withUnsafeMutableBytes { out in
                    try cipher.seal(encoded, aad: id, nonce: nonce, into: UnsafeMutableRawBufferPointer(rebasing: out[0..<sealedCount]))
                }
            } catch { throw ColdStoreError("AES-256-GCM failed: \(error)") }
            try write(nonce)
            try sealBuffer.withUnsafeBytes { b throws in try write(UnsafeRawBufferPointer(rebasing: b[0..<sealedCount])) }
        } else {
            try write(encoded)
        }
        let entry = PackFormat.Entry(id: id, offset: start, stored: UInt32(offset - start), raw: UInt32(rawLength))
        entries.append(entry)
        return entry
    }

    /// Writes the index and trailer, makes the pack durable and moves it into `packs/`.
    func seal() throws -> SealedPack {
        let indexOffset = offset
        var index = PackFormat.encode(entries)
        if let cipher {
            let nonce = Self.nonce()
            var sealed = [UInt8](repeating: 0, count: index.count + AESGCM.tagLength)
            do {
                try index.withUnsafeBytes { i in
                    try sealed.withUnsafeMutableBytes { o in try cipher.seal(i, aad: PackFormat.trailerMagic, nonce: nonce, into: o) }
                }
            } catch { throw ColdStoreError("AES-256-GCM failed: \(error)") }
            index = nonce + sealed
        }
        try write(index)
        try write(PackFormat.trailer(indexOffset: indexOffset, indexLength: UInt32(index.count), count: UInt32(entries.count)))
        guard fsync(fd) == 0 else { throw ColdStoreError.system("fsync a pack", temporary, errno) }
        let id = hasher.finalize().description
        let directory = layout.packDirectory(for: id)
        if mkdir(directory, 0o755) == 0 {
            try ColdLayout.syncDirectory(layout.packsDirectory)  // the new packs/XX survives a crash
        } else if errno != EEXIST {
            throw ColdStoreError.system("create", directory, errno)
        }
        let final = layout.packPath(for: id)
        guard rename(temporary, final) == 0 else { throw ColdStoreError.system("rename a pack into", final, errno) }
        try ColdLayout.syncDirectory(directory)
        return SealedPack(id: id, bytes: offset, entries: entries)
    }

    /// Removes the unsealed temporary file.
    func abandon() { unlink(temporary) }

    private func write(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { b throws in try write(b) }
    }

    private func write(_ bytes: UnsafeRawBufferPointer) throws {
        hasher.update(bytes)
        var done = 0
        while done < bytes.count {
            let n = Glibc.write(fd, bytes.baseAddress! + done, bytes.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                throw ColdStoreError.system("write a pack", temporary, errno)
            }
            done += n
        }
        offset += UInt64(bytes.count)
    }

    static func nonce() -> [UInt8] {
        var random = SystemRandomNumberGenerator()
        return (0..<AESGCM.nonceLength).map { _ in UInt8.random(in: 0...255, using: &random) }
    }
}

/// Reads a sealed pack: its index at open, then single blobs by `pread`, so a promotion reads
/// only the blobs it needs.
final class PackReader {
    let path: String
    let encrypted: Bool
    let size: UInt64
    private let fd: Int32
    private let cipher: AESGCM?

    init(path: String, keys: ColdKeys?) throws {
        self.path = path
        fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        // A pack that is gone is damage to the store, as one cut short is: a promotion leaves
        // the files that need it cold, named, and goes on with the rest. Taken for a failure of
        // the system, it failed the whole job, with the files after it never promoted (h3 of
        // session 49).
        guard fd >= 0 || errno != ENOENT else { throw ColdStoreError.damaged("pack \(path) is missing") }
        guard fd >= 0 else { throw ColdStoreError.system("open a pack", path, errno) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            close(fd)
            throw ColdStoreError.system("stat a pack", path, errno)
        }
        size = UInt64(st.st_size)
        do {
            guard size >= UInt64(PackFormat.headerLength + PackFormat.trailerLength) else { throw ColdStoreError.damaged("pack \(path) is \(size) bytes, too short") }
            var header = [UInt8](repeating: 0, count: PackFormat.headerLength)
            try Self.read(fd, &header, at: 0, path: path)
            encrypted = try PackFormat.parseHeader(header)
            if encrypted && keys == nil { throw ColdStoreError("pack \(path) is encrypted, and no --cold-key-file was given") }
            cipher = try encrypted ? keys.map { k in try AESGCM(key: k.blobKey, encrypting: false) } : nil
        } catch let error as ColdStoreError {
            close(fd)
            throw error
        } catch {
            close(fd)
            throw ColdStoreError("cannot set up AES-256-GCM: \(error)")
        }
    }

    deinit { close(fd) }

    /// The pack's index, read from its trailer (and opened, in an encrypted store).
    func index() throws -> [PackFormat.Entry] {
        var trailer = [UInt8](repeating: 0, count: PackFormat.trailerLength)
        try Self.read(fd, &trailer, at: size - UInt64(PackFormat.trailerLength), path: path)
        let (offset, length, count) = try PackFormat.parseTrailer(trailer, fileSize: size)
        var bytes = [UInt8](repeating: 0, count: length)
        try Self.read(fd, &bytes, at: offset, path: path)
        if let cipher {
            bytes = try open(bytes, aad: PackFormat.trailerMagic, cipher: cipher, what: "the index of pack \(path)")
        }
        let entries = try PackFormat.decode(bytes)
        guard entries.count == count else { throw ColdStoreError.damaged("pack \(path) lists \(entries.count) blobs, its trailer says \(count)") }
        return entries
    }

    /// The encoded chunk (decrypted) of `entry`.
    func blob(_ entry: PackFormat.Entry) throws -> [UInt8] {
        guard entry.offset <= size, UInt64(entry.stored) <= size - entry.offset else { throw ColdStoreError.damaged("a blob of pack \(path) lies past its end") }
        var bytes = [UInt8](repeating: 0, count: Int(entry.stored))
        try Self.read(fd, &bytes, at: entry.offset, path: path)
        guard let cipher else { return bytes }
        return try open(bytes, aad: entry.id, cipher: cipher, what: "a blob of pack \(path)")
    }

    private func open(_ sealed: [UInt8], aad: [UInt8], cipher: AESGCM, what: String) throws -> [UInt8] {
        guard sealed.count >= AESGCM.nonceLength + AESGCM.tagLength else { throw ColdStoreError.damaged("\(what) is too short to be sealed") }
        let nonce = Array(sealed[0..<AESGCM.nonceLength])
        var plain = [UInt8](repeating: 0, count: sealed.count - AESGCM.nonceLength - AESGCM.tagLength)
        let ok = sealed.withUnsafeBytes { s in
            plain.withUnsafeMutableBytes { p in cipher.open(UnsafeRawBufferPointer(rebasing: s[AESGCM.nonceLength...]), aad: aad, nonce: nonce, into: p) }
        }
        guard ok else { throw ColdStoreError.damaged("\(what) does not open with this key: changed on disk, or a different key") }
        return plain
    }

    static func read(_ fd: Int32, _ buffer: inout [UInt8], at offset: UInt64, path: String) throws {
        var done = 0
        let count = buffer.count
        while done < count {
            let n = buffer.withUnsafeMutableBytes { b in pread(fd, b.baseAddress! + done, count - done, off_t(offset) + off_t(done)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw ColdStoreError.system("read a pack", path, errno)
            }
            guard n > 0 else { throw ColdStoreError.damaged("pack \(path) ends early") }
            done += n
        }
    }
}

extension ColdStoreError {
    static func system(_ operation: String, _ path: String, _ code: Int32) -> ColdStoreError {
        ColdStoreError("cannot \(operation) \(path): \(String(cString: strerror(code)))")
    }
}

/// Seals full packs on a thread of its own, one after another, while the demotion that filled
/// them goes on compressing: a seal is mostly its `fsync` (64 MiB to disk), time in which the
/// cores would otherwise wait. `wait` returns every pack sealed, in the order given, or the
/// first error; nothing is referenced by the catalog before it has returned.
final class PackSealer: @unchecked Sendable {
    private let queue = DispatchQueue(label: "barge.cold.seal")
    private let group = DispatchGroup()
    private let lock = NSLock()
    private var results: [Result<SealedPack, Error>?] = []

    /// Seals `writer` in the background; the caller must not use it again.
    func seal(_ writer: PackWriter) {
        // Under the lock: a seal finishing on the queue writes its slot meanwhile.
        let slot = lock.withLock {
            results.append(nil)
            return results.count - 1
        }
        let box = UncheckedBox(writer)
        queue.async(group: group) { [self] in
            let result = Result { try box.value.seal() }
            if case .failure = result { box.value.abandon() }
            lock.withLock { results[slot] = result }
        }
    }

    /// Waits for every seal asked for; the packs in order, or the first failure.
    func wait() throws -> [SealedPack] {
        group.wait()
        return try lock.withLock { try results.map { try $0!.get() } }
    }

    private struct UncheckedBox: @unchecked Sendable {
        let value: PackWriter
        init(_ value: PackWriter) { self.value = value }
    }
}
