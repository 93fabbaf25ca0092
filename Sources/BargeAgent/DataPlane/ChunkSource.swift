import BargeCodec
import BargeDigest
import BargeStore
import BargeWire
import NIOCore

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
    private var raw: [UInt8] = []

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
        let path = try RootedPath.resolve(sourcePath, under: root)
        let fd = open(path.absolute, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw StoreError.system(operation: "open", path: sourcePath, errno: errno) }
        defer { close(fd) }
        if raw.count < length { raw = [UInt8](repeating: 0, count: length) }
        var done = 0
        try raw.withUnsafeMutableBytes { buffer in
            while done < length {
                let n = pread(fd, buffer.baseAddress! + done, length - done, off_t(offset) + off_t(done))
                if n < 0 {
                    if errno == EINTR { continue }
                    throw StoreError.system(operation: "read", path: sourcePath, errno: errno)
                }
                if n == 0 { throw SourceChanged(path: sourcePath, what: "it ended at \(offset + UInt64(done)) bytes, the scan saw \(fileSize)") }
                done += n
            }
        }
        // Checked after the read: any write before or during it has moved the mtime.
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw StoreError.system(operation: "stat", path: sourcePath, errno: errno) }
        if UInt64(st.st_size) != fileSize { throw SourceChanged(path: sourcePath, what: "size \(st.st_size), the scan saw \(fileSize)") }
        if let mtime, Int64(st.st_mtim.tv_sec) != mtime.seconds || Int32(st.st_mtim.tv_nsec) != mtime.nanoseconds {
            throw SourceChanged(path: sourcePath, what: "its mtime moved")
        }
        // Encode straight into the buffer the frame will carry: no copy of the encoded chunk.
        var encoded = ByteBuffer()
        let id = try raw.withUnsafeBytes { r in
            let bytes = UnsafeRawBufferPointer(rebasing: r[0..<length])
            sha.update(bytes)
            let id = sha.finalize()
            let digest = XXH3.hash128(bytes)
            try encoded.writeWithUnsafeMutableBytes(minimumWritableBytes: ChunkFormat.maxEncodedLength(rawLength: length)) { out in
                let header = switch codec {
                case .auto: try encoder.encode(bytes, digest: digest, into: out).header
                case .fixed(let spec): try encoder.encoder.encode(bytes, as: spec, digest: digest, into: out)
                }
                lastCodec = header.spec
                return header.encodedLength
            }
            return id
        }
        let encodedLength = encoded.readableBytes
        if corruptFraction > 0, encodedLength > ChunkHeader.size, Double(random() >> 11) / Double(1 << 53) < corruptFraction {
            // After hashing, as a bad NIC or link would: the receiver must catch it.
            let at = ChunkHeader.size + Int(random() % UInt64(encodedLength - ChunkHeader.size))
            encoded.setInteger(encoded.getInteger(at: at, as: UInt8.self)! ^ 0x5A, at: at)
        }
        return ChunkData(place: destination, fileSize: fileSize, id: id.bytes, encoded: encoded)
    }
}
