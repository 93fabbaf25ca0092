#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Where a chunk lies in its file.
public struct ChunkSpan: Hashable, Sendable {
    public var offset: UInt64
    public var length: Int

    public init(offset: UInt64, length: Int) {
        self.offset = offset
        self.length = length
    }
}

/// Streams a file, or a byte range of it, through a chunking strategy with `pread`; each chunk is
/// lent to the caller's closure and is valid only during the call. Memory is one buffer of at
/// most `bufferCapacity` bytes (eight times the longest chunk, at least 1 MiB; less for a short
/// range, but never under twice the longest chunk), whatever the file's size. Before each refill
/// the unread tail, under a longest chunk, moves to the buffer's front: with a buffer of two
/// longest chunks that move copied most bytes a second time (3% of a source agent's CPU), with
/// eight about one byte in seven.
public struct FileChunkReader {
    public let path: String
    public let strategy: ChunkingStrategy
    public let bufferCapacity: Int

    public init(path: String, strategy: ChunkingStrategy) throws(ChunkingError) {
        self.path = path
        self.strategy = try strategy.validated()
        bufferCapacity = max(8 * strategy.maxChunkLength, 1 << 20)
    }

    /// Calls `body` with each chunk of the bytes from `start` for `length` bytes (to the end of the
    /// file when nil), in order. Throws if the file is shorter than the range asked for.
    public func forEachChunk(
        from start: UInt64 = 0, length: UInt64? = nil,
        _ body: (ChunkSpan, UnsafeRawBufferPointer) throws -> Void
    ) throws {
        let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { throw ChunkingError.io(path: path, operation: "open", errno: errno) }
        defer { close(fd) }
        try forEachChunk(of: fd, from: start, length: length, body)
    }

    /// The chunks of the bytes from `start` for `length` bytes, as `forEachChunk` cuts them, for
    /// a caller that needs only where they lie (a source agent planning a unit). Content-defined
    /// cuts read only the bytes that decide them (`FastCDC.Search`), from each chunk's minimum
    /// to its cut, in pieces of `pieceSize` that stay in the core's cache while they are hashed:
    /// about half the file with the standard sizes, and no buffer of chunks to shift along.
    /// Fixed cuts read nothing. Throws if the file is shorter than the bytes it reads.
    public func forEachSpan(from start: UInt64, length: UInt64, _ body: (ChunkSpan) throws -> Void) throws {
        let end = start + length
        guard case .fastCDC = strategy else {
            var at = start
            while at < end {
                let n = Int(min(UInt64(strategy.maxChunkLength), end - at))
                try body(ChunkSpan(offset: at, length: n))
                at += UInt64(n)
            }
            return
        }
        let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { throw ChunkingError.io(path: path, operation: "open", errno: errno) }
        defer { close(fd) }
        try forEachSpan(of: fd, from: start, length: length, body)
    }

    /// As `forEachSpan(from:length:_:)`, on a descriptor the caller opened (and closes): a source
    /// opens its files beneath its root, following no link at their end. `path` names it in errors.
    public func forEachSpan(of fd: Int32, from start: UInt64, length: UInt64, _ body: (ChunkSpan) throws -> Void) throws {
        let end = start + length
        guard case .fastCDC(let cdc) = strategy else {
            try forEachSpan(from: start, length: length, body)
            return
        }
        let piece = UnsafeMutableRawBufferPointer.allocate(byteCount: Self.pieceSize, alignment: 4096)
        defer { piece.deallocate() }
        // The cut of a chunk whose searched bytes all lie in a hole, by its limit: that of zeros.
        var zeroCuts: [Int: Int] = [:]
        // Looked at once: a dense file (most) is not asked about holes chunk by chunk.
        let sparse = Holes.mayHave(fd)
        var chunk = start
        while chunk < end {
            var search = FastCDC.Search(cdc, available: Int(min(end - chunk, UInt64(Int.max))))
            // A sparse file's hole is not read: its bytes are zeros, and so is where they cut. (A
            // 50 GiB file with 4 MiB of data spent most of its time reading and hashing holes.)
            if sparse, search.cut == nil, Holes.contain(fd, from: chunk + UInt64(search.position), length: UInt64(search.wanted)) {
                let limit = search.limit
                let cut = zeroCuts[limit] ?? Self.zeroCut(cdc, limit: limit, piece: piece)
                zeroCuts[limit] = cut
                try body(ChunkSpan(offset: chunk, length: cut))
                chunk += UInt64(cut)
                continue
            }
            while search.cut == nil {
                let at = chunk + UInt64(search.position)
                let want = min(search.wanted, piece.count)
                var got = 0
                while got < want {
                    let n = pread(fd, piece.baseAddress! + got, want - got, off_t(at + UInt64(got)))
                    if n < 0 {
                        if errno == EINTR { continue }
                        throw ChunkingError.io(path: path, operation: "read", errno: errno)
                    }
                    if n == 0 {
                        // Bytes before a chunk's minimum are never read: the file's size says where it ends.
                        var st = stat()
                        let size = fstat(fd, &st) == 0 ? UInt64(st.st_size) : at + UInt64(got)
                        throw ChunkingError.shortFile(path: path, expected: end, actual: size)
                    }
                    got += n
                }
                search.feed(UnsafeRawBufferPointer(rebasing: piece[..<want]))
            }
            try body(ChunkSpan(offset: chunk, length: search.cut!))
            chunk += UInt64(search.cut!)
        }
    }

    /// Where a chunk of at most `limit` bytes whose searched bytes are all zeros is cut.
    static func zeroCut(_ cdc: FastCDC, limit: Int, piece: UnsafeMutableRawBufferPointer) -> Int {
        piece.initializeMemory(as: UInt8.self, repeating: 0)
        var search = FastCDC.Search(cdc, available: limit)
        while search.cut == nil { search.feed(UnsafeRawBufferPointer(rebasing: piece[..<min(search.wanted, piece.count)])) }
        return search.cut!
    }

    /// The pieces `forEachSpan` reads: small enough to stay in the core's cache between the read
    /// and the hash, large enough that a read costs little beside its copy.
    static let pieceSize = 256 << 10

    /// As `forEachChunk(from:length:_:)`, on a descriptor the caller opened (and closes), so that
    /// it can check the file it read with `fstat` on the same descriptor. `path` names it in errors.
    public func forEachChunk(
        of fd: Int32, from start: UInt64 = 0, length: UInt64? = nil,
        _ body: (ChunkSpan, UnsafeRawBufferPointer) throws -> Void
    ) throws {
        let end: UInt64
        if let length {
            end = start + length
        } else {
            var st = stat()
            guard fstat(fd, &st) == 0 else { throw ChunkingError.io(path: path, operation: "fstat", errno: errno) }
            end = max(start, UInt64(st.st_size))
        }

        let floor = max(2 * strategy.maxChunkLength, 1 << 20)
        let capacity = Int(min(UInt64(bufferCapacity), max(UInt64(floor), end - start)))
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: capacity, alignment: 4096)
        defer { buffer.deallocate() }
        var filled = 0      // bytes in buffer[0..<filled]
        var consumed = 0    // bytes of them already given out
        var fileOffset = start       // where the next read starts
        var chunkOffset = start      // the file offset of buffer[consumed]
        var atEnd = fileOffset >= end

        while true {
            // Refill whenever less than a longest chunk is left, so cut points never depend on reads.
            if !atEnd, filled - consumed < strategy.maxChunkLength {
                if consumed > 0 {
                    buffer.baseAddress!.copyMemory(from: buffer.baseAddress! + consumed, byteCount: filled - consumed)
                    filled -= consumed
                    consumed = 0
                }
                while filled < capacity, fileOffset < end {
                    let want = Int(min(UInt64(capacity - filled), end - fileOffset))
                    let n = pread(fd, buffer.baseAddress! + filled, want, off_t(fileOffset))
                    if n < 0 {
                        if errno == EINTR { continue }
                        throw ChunkingError.io(path: path, operation: "read", errno: errno)
                    }
                    if n == 0 {
                        // The file's size now (not where this read stood), as the scan of cut points says it.
                        var st = stat()
                        throw ChunkingError.shortFile(path: path, expected: end, actual: fstat(fd, &st) == 0 ? UInt64(st.st_size) : fileOffset)
                    }
                    filled += n
                    fileOffset += UInt64(n)
                }
                atEnd = fileOffset >= end
            }
            let window = UnsafeRawBufferPointer(rebasing: buffer[consumed..<filled])
            if window.isEmpty { return }
            let length = strategy.cut(window, atEnd: atEnd)
            try body(ChunkSpan(offset: chunkOffset, length: length), UnsafeRawBufferPointer(rebasing: window[0..<length]))
            consumed += length
            chunkOffset += UInt64(length)
        }
    }
}
