import BargeCodec
import BargeDigest
import Foundation

/// A file's bytes in memory, seen as fixed-size chunks, with each chunk's XXH3-128. It owns its
/// bytes in one allocation, so the chunk pointers it hands out stay valid for its whole life.
final class ChunkedData {
    private let storage: UnsafeMutableRawBufferPointer
    let chunkSize: Int
    let count: Int
    let digests: [XXH128Digest]
    var totalBytes: Int { storage.count }

    init(_ data: [UInt8], chunkSize: Int) {
        let bytes = UnsafeMutableRawBufferPointer.allocate(byteCount: data.count, alignment: 64)
        data.withUnsafeBytes { bytes.copyMemory(from: $0) }
        let chunks = (data.count + chunkSize - 1) / chunkSize
        var digests: [XXH128Digest] = []
        digests.reserveCapacity(chunks)
        for i in 0..<chunks {
            digests.append(XXH3.hash128(UnsafeRawBufferPointer(rebasing: bytes[(i * chunkSize)..<min(bytes.count, (i + 1) * chunkSize)])))
        }
        storage = bytes
        self.chunkSize = chunkSize
        count = chunks
        self.digests = digests
    }

    deinit { storage.deallocate() }

    /// Chunk `i`, valid while this object lives.
    subscript(i: Int) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: storage[(i * chunkSize)..<min(storage.count, (i + 1) * chunkSize)])
    }
}

/// One output slot per chunk, each big enough for the chunk's worst case.
final class EncodedChunks {
    private let storage: UnsafeMutableRawBufferPointer
    private let slotSize: Int
    var lengths: [Int]

    init(_ chunks: ChunkedData) {
        slotSize = ChunkFormat.maxEncodedLength(rawLength: chunks.chunkSize)
        storage = .allocate(byteCount: max(1, slotSize * chunks.count), alignment: 64)
        // Touch every page now: the first timed pass must not pay page faults that a pipeline
        // reusing its buffers never sees (they made the selector's first measurements look slow).
        storage.initializeMemory(as: UInt8.self, repeating: 0)
        lengths = Array(repeating: 0, count: chunks.count)
    }

    func deallocate() { storage.deallocate() }

    func slot(_ i: Int) -> UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(rebasing: storage[(i * slotSize)..<((i + 1) * slotSize)])
    }

    func encoded(_ i: Int) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: storage[(i * slotSize)..<(i * slotSize + lengths[i])])
    }
}

public enum SampleFile {
    /// Throws unless `path` is a regular file this process can read.
    public static func checkReadable(_ path: String) throws(BenchError) {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw .unreadable(path: path, reason: "no such file")
        }
        guard !isDirectory.boolValue else { throw .unreadable(path: path, reason: "is a directory") }
        guard FileManager.default.isReadableFile(atPath: path) else { throw .unreadable(path: path, reason: "permission denied") }
    }

    /// Reads up to `limit` bytes from the start of `path`; says whether the file was longer.
    static func read(_ path: String, limit: Int) throws(BenchError) -> ([UInt8], truncated: Bool) {
        try checkReadable(path)
        guard let handle = FileHandle(forReadingAtPath: path) else { throw .unreadable(path: path, reason: "permission denied") }
        defer { try? handle.close() }
        do {
            let data = try handle.read(upToCount: limit) ?? Data()
            let more = try handle.read(upToCount: 1).map { !$0.isEmpty } ?? false
            return ([UInt8](data), more)
        } catch {
            throw .unreadable(path: path, reason: "\(error.localizedDescription)")
        }
    }
}
