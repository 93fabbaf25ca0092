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

/// The send side of one chunk: `pread` of its range, SHA-256 (the chunk id) and XXH3-128 of the
/// raw bytes, the adaptive encoder, and the optional fault injection of `BARGE_FAULT_CORRUPT`.
/// Synchronous and CPU-heavy: run it off the event loop, one per worker.
public final class ChunkSource {
    public let root: String
    public let encoder: AdaptiveEncoder
    /// The fraction of chunks whose encoded bytes are corrupted after hashing (tests only).
    public let corruptFraction: Double
    /// Uniform random 64-bit values, injectable so tests are repeatable.
    private let random: () -> UInt64
    private let sha = SHA256Hasher()
    private var raw: [UInt8] = []

    public init(root: String, encoder: AdaptiveEncoder = AdaptiveEncoder(), corruptFraction: Double = 0,
                random: @escaping () -> UInt64 = { UInt64.random(in: .min ... .max) }) {
        self.root = root
        self.encoder = encoder
        self.corruptFraction = corruptFraction
        self.random = random
    }

    /// Reads `length` bytes at `offset` of `sourcePath` (under the root) and encodes them for
    /// `destination`. Throws `StoreError` when the file cannot be read or is shorter than expected
    /// (it changed since the scan), `CodecError` for a chunk over the format's limit.
    public func chunk(sourcePath: String, offset: UInt64, length: Int, fileSize: UInt64, destination: ChunkPlace) throws -> ChunkData {
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
                if n == 0 { throw StoreError.invalidPath(path: sourcePath, reason: "file shrank while being sent (ended at \(offset + UInt64(done)))") }
                done += n
            }
        }
        // Encode straight into the buffer the frame will carry: no copy of the encoded chunk.
        var encoded = ByteBuffer()
        let id = try raw.withUnsafeBytes { r in
            let bytes = UnsafeRawBufferPointer(rebasing: r[0..<length])
            sha.update(bytes)
            let id = sha.finalize()
            let digest = XXH3.hash128(bytes)
            try encoded.writeWithUnsafeMutableBytes(minimumWritableBytes: ChunkFormat.maxEncodedLength(rawLength: length)) { out in
                try encoder.encode(bytes, digest: digest, into: out).header.encodedLength
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
