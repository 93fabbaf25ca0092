import BargeChunk
import BargeCodec
import BargeDigest
import BargeStore
import BargeWire
import NIOCore
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The source file is not what the scan saw: it changed (or vanished) during the transfer.
public struct SourceChanged: Error, CustomStringConvertible {
    public let path: String
    public let what: String
    public var description: String { "source file '\(path)' changed during the transfer (\(what)); it was not finished at the destination" }
}

/// The send side of one chunk: `pread` of its range, SHA-256 (the chunk id) and XXH3-128 of the
/// raw bytes, the codec (the adaptive encoder, or a fixed one), and the optional fault injection
/// of `BARGE_FAULT_CORRUPT`. After each read the file's size and mtime are checked against the
/// scan, so a file that changes mid-transfer is reported, never sent mixed. Synchronous and
/// CPU-heavy: run it off the event loop. One worker uses it at a time (it is passed between units
/// through `SourcePool`, so the adaptive selector keeps what it learned).
public final class ChunkSource: @unchecked Sendable {
    public let root: String
    public let encoder: AdaptiveEncoder
    /// Set per unit: `auto` or the codec the job asked for.
    public var codec: CodecChoice
    /// The codec the last chunk was encoded with (`none` when stored raw).
    public private(set) var lastCodec = CodecSpec.none
    /// The fraction of chunks whose encoded bytes are corrupted after hashing (tests only).
    public let corruptFraction: Double
    /// Uniform random 64-bit values, injectable so tests are repeatable.
    private let random: () -> UInt64
    private let sha = SHA256Hasher()
    private var scratch: [UInt8] = []
    /// The SHA-256 and XXH3-128 of zeros, by length: a hole's chunks are not hashed again.
    private var zeroDigests: [Int: (id: [UInt8], digest: XXH128Digest)] = [:]

    public init(root: String, codec: CodecChoice = .auto, encoder: AdaptiveEncoder = AdaptiveEncoder(), corruptFraction: Double = 0,
                random: @escaping () -> UInt64 = { UInt64.random(in: .min ... .max) }) {
        self.root = root
        self.codec = codec
        self.encoder = encoder
        self.corruptFraction = corruptFraction
        self.random = random
    }

    /// Reads `length` bytes at `offset` of `sourcePath` (under the root) and encodes them for
    /// `destination`. Throws `StoreError` when the file cannot be read, `SourceChanged` when its
    /// size (or, given `mtime`, its mtime) is no longer what the scan saw, `CodecError` for a chunk
    /// over the format's limit.
    public func chunk(sourcePath: String, offset: UInt64, length: Int, fileSize: UInt64, mtime: (seconds: Int64, nanoseconds: Int32)? = nil,
                      destination: ChunkPlace) throws -> ChunkData {
        let p = try prepare(sourcePath: sourcePath, offset: offset, length: length, fileSize: fileSize, mtime: mtime, destination: destination)
        return ChunkData(place: destination, fileSize: fileSize, id: p.id, encoded: p.encoded)
    }

    /// The source paths of a batch's files, checked against the agent's state directories once
    /// per directory for them all (`RootedPath.lexical(files:)`) rather than once per path and
    /// component: on 20,000 files of 1-32 KiB those looks took 9% of the source agent's CPU. Only
    /// the directories above each file are looked at: the files are only read, and a directory
    /// named as a file fails its read.
    public func resolve(batch paths: [String]) -> [Result<RootedPath, StoreError>] {
        RootedPath.lexical(files: paths, under: root, directoriesOnly: true)
    }

    /// A chunk ready to send: the whole `chunk data` payload in one buffer (prefix, then the
    /// encoded chunk), so nothing is copied between the read and the socket when it is stored raw.
    public struct Prepared {
        public var payload: ByteBuffer
        public var id: [UInt8]
        /// XXH3-128 of the raw bytes, canonical form.
        public var xxh: [UInt8]
        /// The encoded chunk inside `payload` (shares its storage); empty when `byReference`.
        public var encoded: ByteBuffer
        /// `byReference` said yes to the id: nothing was encoded, send a `chunk ref`.
        public var byReference: Bool
    }

    /// As `chunk`, but as the frame payload itself. `byReference` is asked once the chunk is hashed:
    /// when it says the destination holds this id, the chunk is not encoded.
    /// `resolved`: the path as `resolve(batch:)` gave it, for the files of a batch.
    /// `held`: the file as the unit opened it once for all its chunks (`HeldSources`), with
    /// the ctime it had then; not closed here.
    public func prepare(sourcePath: String, resolved: RootedPath? = nil, held: (fd: Int32, ctime: timespec)? = nil,
                        offset: UInt64, length: Int, fileSize: UInt64,
                        mtime: (seconds: Int64, nanoseconds: Int32)? = nil, identity: FileIdentity? = nil,
                        destination: ChunkPlace, byReference: ([UInt8]) -> Bool = { _ in false }) throws -> Prepared {
        let fd = try held?.fd ?? open(sourcePath, resolved: resolved)
        defer { if held == nil { close(fd) } }
        let prefix = ChunkData.prefixLength(destination)
        let capacity = ChunkFormat.maxEncodedLength(rawLength: length)
        var payload = ByteBuffer()
        payload.reserveCapacity(prefix + capacity)
        payload.writeRepeatingByte(0, count: prefix)
        var id: [UInt8] = []
        var xxh: [UInt8] = []
        var skipped = false
        // The raw bytes are read to where a stored chunk's payload goes, after its header. A
        // compressed chunk is encoded into scratch and copied over them (it is the smaller one).
        try payload.writeWithUnsafeMutableBytes(minimumWritableBytes: capacity) { out in
            let region = UnsafeMutableRawBufferPointer(rebasing: out[ChunkHeader.size..<(ChunkHeader.size + length)])
            // A sparse file's hole reads as zeros: they are written here, not read.
            if Holes.contain(fd, from: offset, length: UInt64(length)) {
                region.initializeMemory(as: UInt8.self, repeating: 0)
            } else {
                try readFully(fd, into: region, at: offset, sourcePath: sourcePath, fileSize: fileSize)
            }
            try Self.checkUnchanged(fd, sourcePath: sourcePath, fileSize: fileSize, mtime: mtime, ctime: held?.ctime, identity: identity)
            let bytes = UnsafeRawBufferPointer(region)
            let digest: XXH128Digest
            if Holes.allZero(bytes) {
                let zero = zeroDigests[length] ?? (SHA256.hash(bytes).bytes, XXH3.hash128(bytes))
                zeroDigests[length] = zero
                (id, digest) = zero
            } else {
                sha.update(bytes)
                id = sha.finalize().bytes
                digest = XXH3.hash128(bytes)
            }
            xxh = digest.canonicalBytes
            if byReference(id) {
                skipped = true
                return 0
            }
            let decision: CodecDecision?
            let spec: CodecSpec
            switch codec {
            case .auto:
                let d = encoder.choose(bytes)
                decision = d
                spec = d.spec
                if Self.tracing { Self.trace(d, rate: encoder.sendRate, length: length) }
            case .fixed(let s):
                decision = nil
                spec = s
            }
            if spec == .none {
                ChunkHeader(spec: .none, rawLength: length, payloadLength: length, digest: digest).write(to: out)
                if let decision { encoder.recordStored(decision, rawLength: length) }
                lastCodec = .none
                return ChunkHeader.size + length
            }
            if scratch.count < capacity { scratch = [UInt8](repeating: 0, count: capacity) }
            let header = try scratch.withUnsafeMutableBytes { s in
                let h = if let decision {
                    try encoder.encode(bytes, as: decision, digest: digest, into: s)
                } else {
                    try encoder.encoder.encode(bytes, as: spec, digest: digest, into: s)
                }
                out.baseAddress!.copyMemory(from: s.baseAddress!, byteCount: h.encodedLength)
                return h
            }
            lastCodec = header.spec
            return header.encodedLength
        }
        if skipped {
            return Prepared(payload: ByteBuffer(), id: id, xxh: xxh, encoded: ByteBuffer(), byReference: true)
        }
        let encodedLength = payload.readableBytes - prefix
        if corruptFraction > 0, encodedLength > ChunkHeader.size, Double(random() >> 11) / Double(1 << 53) < corruptFraction {
            // After hashing, as a bad NIC or link would: the receiver must catch it.
            let at = prefix + ChunkHeader.size + Int(random() % UInt64(encodedLength - ChunkHeader.size))
            payload.setInteger(payload.getInteger(at: at, as: UInt8.self)! ^ 0x5A, at: at)
        }
        ChunkData.setPrefix(in: &payload, place: destination, fileSize: fileSize, id: id)
        return Prepared(payload: payload, id: id, xxh: xxh, encoded: payload.getSlice(at: payload.readerIndex + prefix, length: encodedLength)!,
                        byReference: false)
    }

    /// Opens a source file for reading, beneath the root by the kernel: a directory swapped for
    /// a symbolic link after the scan cannot lead the read outside it (EXDEV).
    public func open(_ sourcePath: String, resolved: RootedPath? = nil) throws -> Int32 {
        let path = try resolved ?? RootedPath.lexical(sourcePath, under: root)
        let fd = try RootDirectory.open(root).openForReading(path.relative)
        guard fd >= 0 else {
            if errno == EXDEV { throw StoreError.symlinkEscape(path: sourcePath, resolved: "") }
            throw StoreError.system(operation: "open", path: sourcePath, errno: errno)
        }
        // A FIFO or a device put in its place is not read (a device's read may be endless, or
        // do something).
        var st = stat()
        if fstat(fd, &st) == 0, st.st_mode & S_IFMT != S_IFREG {
            close(fd)
            throw StoreError.system(operation: "open", path: sourcePath, errno: st.st_mode & S_IFMT == S_IFDIR ? EISDIR : ENODEV)
        }
        return fd
    }

    private func readFully(_ fd: Int32, into region: UnsafeMutableRawBufferPointer, at offset: UInt64, sourcePath: String, fileSize: UInt64) throws {
        var done = 0
        while done < region.count {
            let n = pread(fd, region.baseAddress! + done, region.count - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                throw StoreError.system(operation: "read", path: sourcePath, errno: errno)
            }
            if n == 0 {
                // Its size now, not where this read stood (a chunk's start plus what it read).
                var st = stat()
                let size = fstat(fd, &st) == 0 ? UInt64(st.st_size) : offset + UInt64(done)
                throw SourceChanged(path: sourcePath, what: "it is \(size) bytes now, the scan saw \(fileSize)")
            }
            done += n
        }
    }

    /// Checked after the read: any write before or during it has moved the mtime.
    /// Throws `SourceChanged` when the open file's size (or, given `mtime`, its mtime) is not the
    /// scan's; also for a unit that reads nothing of a file before finishing it.
    /// Given `ctime` (the file held open since its first chunk), a ctime moved since is a change
    /// too: a write in place whose mtime was put back, or a file renamed over it (the one held
    /// lost its name, and its ctime moved with its link count).
    /// `identity`: the file as the scan saw it (protocol version 19): another inode or ctime is
    /// another file under the name, or the same one written or changed since.
    static func checkUnchanged(_ fd: Int32, sourcePath: String, fileSize: UInt64, mtime: (seconds: Int64, nanoseconds: Int32)?,
                               ctime: timespec? = nil, identity: FileIdentity? = nil) throws {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw StoreError.system(operation: "stat", path: sourcePath, errno: errno) }
        guard let what = change(st, fileSize: fileSize, mtime: mtime, ctime: ctime, identity: identity) else { return }
        // A file with no name left was deleted, or another renamed over it: that removal moved
        // its ctime, and it was reported as "written to, or its attributes changed" (h2 of
        // session 53, F2). The link count only words a change found; it finds none by itself.
        if st.st_nlink == 0 { throw SourceChanged(path: sourcePath, what: "it was deleted, or another file renamed over it, since the scan: the file read has no name left") }
        throw SourceChanged(path: sourcePath, what: what)
    }

    /// How the open file `st` differs from what the scan saw, nil when it does not.
    private static func change(_ st: stat, fileSize: UInt64, mtime: (seconds: Int64, nanoseconds: Int32)?, ctime: timespec?, identity: FileIdentity?) -> String? {
        if let identity {
            if UInt64(st.st_ino) != identity.inode { return "another file has its name since the scan (replaced, by a rename over it or a copy): its inode is not the scan's" }
            if Int64(st.st_ctim.tv_sec) != identity.ctimeSeconds || Int32(st.st_ctim.tv_nsec) != identity.ctimeNanoseconds {
                return "it was written to, or its attributes changed, since the scan: its ctime moved"
            }
        }
        if UInt64(st.st_size) != fileSize { return "size \(st.st_size), the scan saw \(fileSize)" }
        if let mtime, Int64(st.st_mtim.tv_sec) != mtime.seconds || Int32(st.st_mtim.tv_nsec) != mtime.nanoseconds { return "its mtime moved" }
        if let ctime, st.st_ctim.tv_sec != ctime.tv_sec || st.st_ctim.tv_nsec != ctime.tv_nsec {
            return "it was replaced, written to, or its attributes changed while it was read: its ctime moved"
        }
        return nil
    }
}

extension ChunkSource {
    /// `BARGE_TRACE_CODECS=1`: each choice of `auto`, one line on standard error, with the rate it
    /// planned for (for finding where a transfer's ratio goes; not for production).
    static let tracing = ProcessInfo.processInfo.environment["BARGE_TRACE_CODECS"] == "1"
    private static let born = MonotonicClock.now()

    static func trace(_ d: CodecDecision, rate: Double?, length: Int) {
        let start = born  // made on first use: before the clock is read, or the first line wraps
        let t = Double(MonotonicClock.now() &- start) / 1e9
        let line = "codec t=\(String(format: "%.3f", t)) rate=\(rate.map { String(format: "%.1f", $0 / 1e6) } ?? "unlimited") \(d.spec) \(d.reason) raw=\(length) class=\(d.dataClass.stride)/\(d.dataClass.entropyBucket)\n"
        FileHandle.standardError.write(Data(line.utf8))
    }
}
