import BargeCodec
import BargeDigest
import BargeStore
import BargeWire
import NIOCore

/// The receive side of the data plane for one destination root: decodes each chunk, checks its
/// XXH3-128 and its SHA-256 id, and writes it into the file's partial copy. Every chunk gets an
/// ack or a nack with the reason; nothing unverified is ever written. Synchronous and CPU-heavy:
/// run it off the event loop.
public final class ChunkReceiver {
    public let root: String
    private let decoder = ChunkDecoder()
    private let sha = SHA256Hasher()
    private var writers: [String: PartialFileWriter] = [:]
    private var raw: [UInt8] = []

    public init(root: String) {
        self.root = root
    }

    public func receive(_ chunk: ChunkData) -> Message {
        let place = chunk.place
        func nack(_ reason: ChunkNack.Reason, _ detail: String) -> Message {
            .chunkNack(ChunkNack(place: place, reason: reason, detail: detail))
        }
        let target: RootedPath
        do {
            target = try RootedPath.resolve(place.path, under: root)
        } catch {
            return nack(.refusedPath, error.description)
        }
        return chunk.encoded.withUnsafeReadableBytes { encoded -> Message in
            let header: ChunkHeader
            do {
                header = try decoder.header(of: encoded)
            } catch {
                return nack(.corrupt, "\(error)")  // a header damaged on the way: worth resending
            }
            guard place.offset <= chunk.fileSize, UInt64(header.rawLength) <= chunk.fileSize - place.offset else {
                return nack(.malformed, "chunk of \(header.rawLength) bytes at \(place.offset) overruns a file of \(chunk.fileSize) bytes")
            }
            if raw.count < header.rawLength { raw = [UInt8](repeating: 0, count: header.rawLength) }
            return raw.withUnsafeMutableBytes { buffer -> Message in
                let out = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<header.rawLength])
                do {
                    try decoder.decode(encoded, into: out, verify: true)
                } catch {
                    return nack(.corrupt, "\(error)")
                }
                sha.update(UnsafeRawBufferPointer(out))
                guard sha.finalize().bytes == chunk.id else {
                    return nack(.corrupt, "chunk decodes to its XXH3-128 but not to its SHA-256 id")
                }
                do {
                    try writer(for: target, key: place.job + "\u{0}" + place.path, size: chunk.fileSize)
                        .write(UnsafeRawBufferPointer(out), at: place.offset)
                } catch {
                    return nack(.writeFailed, "\(error)")
                }
                return .chunkAck(ChunkAck(place: place))
            }
        }
    }

    /// Gives a fully received file its final name, mode and mtime.
    public func finishFile(job: String, path: String, mode: UInt32, mtimeSeconds: Int64, mtimeNanoseconds: Int32) throws(StoreError) {
        guard let writer = writers.removeValue(forKey: job + "\u{0}" + path) else {
            throw .invalidPath(path: path, reason: "no chunks of it were received")
        }
        try writer.finish(mode: mode, mtimeSeconds: mtimeSeconds, mtimeNanoseconds: mtimeNanoseconds)
    }

    private func writer(for target: RootedPath, key: String, size: UInt64) throws(StoreError) -> PartialFileWriter {
        if let w = writers[key] { return w }
        let w = try PartialFileWriter(target, size: size)
        writers[key] = w
        return w
    }
}
