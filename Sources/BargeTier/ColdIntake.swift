import BargeCodec
import BargeDigest
import BargeStore
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Files placed cold at transfer time go straight into packs: no plain copy is ever written.
/// Shared by all of an agent's data-plane connections (thread-safe; every call blocks, so run
/// them on the blocking-I/O pool).
///
/// - `store` compresses a received chunk for archiving (outside any lock) and appends it to the
///   agent's open pack; a chunk the store already holds (or the open pack does) is not stored
///   again. Either way the chunk's place in its file is remembered as an incoming row.
/// - `seal` seals the open pack, reads it back, and commits it with the incoming rows in one
///   catalog transaction. The agent seals when a pack is full, at every cold finish, and when
///   the open pack has waited `staleAfter` (so that another agent of the site, finishing a file
///   whose ranges arrived here, finds them).
/// - `finish` turns a file's incoming rows (committed by any agent of the site) into its cold
///   file row, once they cover every byte and every chunk they name is in the store.
///
/// While a pack is open the store's lock is held shared, as a demotion holds it: `gc` waits for
/// the seal, and so never removes a pack a file still arriving needs. A crash loses the open
/// pack and its rows: `finish` then finds the file incomplete, and the source sends the missing
/// chunks again.
public final class ColdIntake: @unchecked Sendable {
    public let store: ColdStore
    /// A pack left open this long is sealed by `sealIfStale`.
    public static let staleAfter: Duration = .milliseconds(500)

    private let state = NSLock()
    private var writer: PackWriter?
    private var storeLock: StoreLock?
    private var openedAt: ContinuousClock.Instant?
    /// Ids in the open pack or in one being sealed: a chunk with one of them is not stored again.
    private var pendingIDs = Set<[UInt8]>()
    private var rows: [IncomingChunk] = []
    /// One seal (and one finish) at a time: a later batch of rows may name chunks of the pack an
    /// earlier seal is committing.
    private let sealing = NSLock()
    private let encoders: EncoderPool

    public init(store: ColdStore) {
        self.store = store
        let selector = SharedSelector(.archiving())
        encoders = EncoderPool(ColdStore.archiveEncoders(selector: selector), chunkSize: store.chunkSize, selector: selector)
    }

    /// A chunk of a file arriving cold: `bytes` at `offset` of the file at `path` (relative to
    /// the root, `fileSize` bytes). Its SHA-256 is computed here: the store is addressed by it.
    public func store(path: String, fileSize: UInt64, offset: UInt64, bytes: UnsafeRawBufferPointer) throws {
        let sha = SHA256.hash(bytes)
        let id = store.storedID(sha)
        let row = IncomingChunk(path: path, fileSize: fileSize, offset: offset, length: UInt32(bytes.count), id: id, sha: sha.bytes)
        let held = try state.withLock({ pendingIDs.contains(id) }) || storedWhole(id)
        if held {
            state.withLock { rows.append(row) }
            return
        }
        let lane = encoders.take(capacity: bytes.count)
        defer { encoders.give(lane) }
        let encodedLength: Int
        do {
            encodedLength = try lane.encoder.encode(bytes, into: UnsafeMutableRawBufferPointer(start: lane.buffer, count: lane.capacity)).header.encodedLength
        } catch { throw ColdStoreError("cannot compress a chunk of \(path): \(error)") }
        let full: Bool = try state.withLock {
            guard !pendingIDs.contains(id) else {  // another stream stored it meanwhile
                rows.append(row)
                return false
            }
            if writer == nil {
                storeLock = try StoreLock(store.layout.lockPath, exclusive: false)
                do { writer = try PackWriter(layout: store.layout, keys: store.keys) } catch {
                    storeLock?.release()
                    storeLock = nil
                    throw error
                }
                openedAt = .now
            }
            try writer!.append(id: id, encoded: UnsafeRawBufferPointer(start: lane.buffer, count: encodedLength), rawLength: bytes.count)
            pendingIDs.insert(id)
            rows.append(row)
            return writer!.bytes >= UInt64(PackFormat.targetPackBytes)
        }
        if full { try seal() }
    }

    /// A chunk sent by reference to a file arriving cold: true when the store (or the open pack)
    /// holds a chunk with this SHA-256 and length, or this place of the file is already
    /// recorded with it; then it is remembered for the file without its bytes.
    public func adopt(path: String, fileSize: UInt64, offset: UInt64, length: Int, sha: [UInt8]) throws -> Bool {
        guard let digest = SHA256Digest(bytes: sha) else { return false }
        let id = store.storedID(digest)
        let row = IncomingChunk(path: path, fileSize: fileSize, offset: offset, length: UInt32(length), id: id, sha: sha)
        if try store.catalog.incoming(path, at: offset) == row { return true }
        let pending = state.withLock { pendingIDs.contains(id) }
        if !pending {
            guard let location = try store.catalog.locations([id])[id], location.raw == UInt32(length), try storedWhole(id, at: location) else { return false }
        }
        state.withLock { rows.append(row) }
        return true
    }

    /// Whether the store holds chunk `id` whole, so that a file arriving may take it without its
    /// bytes: listed (each time: `verify --repair` may forget it), at `listed` if the caller
    /// looked it up, and read back (decoded, its SHA-256 its id) once per intake and place. One
    /// that does not read back is forgotten, so that the bytes in hand are stored again, in a
    /// pack of their own: the cold files that share it are whole again. Before, a file arriving
    /// took the damaged blob, and its transfer succeeded with a cold copy that could not be read.
    func storedWhole(_ id: [UInt8], at listed: ChunkLocation? = nil) throws -> Bool {
        guard let location = try listed ?? store.catalog.locations([id])[id] else { return false }
        let place = ReadBack(id: id, pack: location.pack, offset: location.offset)
        if state.withLock({ readBack.contains(place) }) { return true }
        if let damage = try store.unreadable(located: [id: location])[id] {
            try store.catalog.forgetChunk(id)
            state.withLock { if damaged.count < 100 { damaged.append(damage) } }
            return false
        }
        state.withLock {
            if readBack.count >= Self.readBackLimit { readBack.removeAll(keepingCapacity: true) }
            readBack.insert(place)
        }
        return true
    }

    /// A chunk at its place in a pack, read back whole.
    private struct ReadBack: Hashable {
        let id: [UInt8]
        let pack: String
        let offset: UInt64
    }

    /// Chunks of earlier packs this intake read back whole, up to `readBackLimit` (then it starts
    /// again): a store of many shared chunks is not read again for each file that takes one.
    private var readBack = Set<ReadBack>()
    static let readBackLimit = 65_536
    /// What `storedWhole` found damaged (and stored again), for the agent's log (the first 100).
    private var damaged: [String] = []

    /// The damage found since the last call, once.
    public func takeDamage() -> [String] { state.withLock { defer { damaged = [] }; return damaged } }

    /// Seals the open pack (if any), reads it back, and commits it with the rows gathered so far.
    public func seal() throws {
        sealing.lock()
        defer { sealing.unlock() }
        let (w, lock, batch) = state.withLock {
            defer {
                writer = nil
                storeLock = nil
                openedAt = nil
                rows = []
            }
            return (writer, storeLock, rows)
        }
        defer { lock?.release() }
        guard w != nil || !batch.isEmpty else { return }
        var packs: [SealedPack] = []
        let ids = w?.entries.map(\.id) ?? []
        defer { state.withLock { pendingIDs.subtract(ids) } }
        if let w {
            do {
                let pack = try w.seal()
                try store.verifyPack(pack.id, expecting: pack.entries)
                packs.append(pack)
            } catch {
                w.abandon()
                throw error
            }
        }
        try store.catalog.commit(packs: packs, files: [], incoming: batch)
    }

    /// Seals the open pack when it has waited `staleAfter` or longer.
    public func sealIfStale() throws {
        let due = state.withLock { () -> Bool in
            guard let openedAt else { return !rows.isEmpty }
            return openedAt.duration(to: .now) >= Self.staleAfter
        }
        if due { try seal() }
    }

    /// A file whose every chunk arrived, as its finish names it.
    public struct Arrived: Sendable {
        public var path: String
        public var size: UInt64
        public var mode: UInt32
        public var mtimeSeconds: Int64
        public var mtimeNanoseconds: Int32

        public init(path: String, size: UInt64, mode: UInt32, mtimeSeconds: Int64, mtimeNanoseconds: Int32) {
            self.path = path
            self.size = size
            self.mode = mode
            self.mtimeSeconds = mtimeSeconds
            self.mtimeNanoseconds = mtimeNanoseconds
        }
    }

    /// Bytes of a file arriving cold are not in the store (yet): they must be sent (again).
    public struct Missing: Error, CustomStringConvertible {
        public let description: String
        /// Rows do not cover the file (yet), as opposed to rows naming chunks the store lost.
        var shortOfBytes = false
    }

    /// Makes files that arrived cold into cold files, in one catalog transaction, after sealing
    /// what this agent holds open. Returns the ones that could not be finished, by index, with
    /// `Missing` (their bytes must come again) or another error.
    public func finish(_ files: [Arrived]) -> [Int: Error] {
        var failures: [Int: Error] = [:]
        do { try seal() } catch {
            for i in files.indices { failures[i] = error }
            return failures
        }
        var done: [ColdFile] = []
        var positions: [Int] = []
        var waiting = Array(files.indices)
        // Rows another agent of the site received are committed when its open pack is sealed,
        // within `staleAfter` and its flush interval: a file short of bytes waits that long.
        let deadline = ContinuousClock.now + Self.staleAfter * 3
        while true {
            var short: [Int] = []
            sealing.withLock {
                for i in waiting {
                    do {
                        if let file = try assemble(files[i]) {
                            done.append(file)
                            positions.append(i)
                        }
                        failures[i] = nil
                    } catch let missing as Missing where missing.shortOfBytes {
                        failures[i] = missing
                        short.append(i)
                    } catch {
                        failures[i] = error
                    }
                }
            }
            guard !short.isEmpty, ContinuousClock.now < deadline else { break }
            waiting = short
            Thread.sleep(forTimeInterval: 0.1)
        }
        sealing.lock()
        defer { sealing.unlock() }
        do {
            // A chunk `verify --repair` forgot since the file was assembled (it found it
            // damaged): the file is not cold with it, and its bytes come again.
            let forgotten = try store.catalog.finishIncoming(done)
            for (file, i) in zip(done, positions) where forgotten.contains(file.path) {
                failures[i] = Missing(description: "\(file.path): a chunk of it was found damaged in the cold store meanwhile; it must be sent again")
            }
        } catch {
            for i in positions { failures[i] = error }
        }
        return failures
    }

    /// The cold file `f` makes from its incoming rows; nil when it is already cold as finished
    /// (a late duplicate of its finish).
    private func assemble(_ f: Arrived) throws -> ColdFile? {
        let recorded = try store.catalog.incoming(f.path).filter { $0.fileSize == f.size }
        if recorded.isEmpty, let existing = try store.catalog.file(f.path), existing.size == f.size, existing.mode == FileModes.atDestination(f.mode),
           existing.mtimeSeconds == f.mtimeSeconds, existing.mtimeNanoseconds == f.mtimeNanoseconds {
            return nil
        }
        // From offset 0 to the end, each step the longest chunk recorded at that offset.
        var at: [UInt64: IncomingChunk] = [:]
        for r in recorded where at[r.offset].map({ $0.length < r.length }) ?? true { at[r.offset] = r }
        var chunks: [ColdFile.Chunk] = []
        var position: UInt64 = 0
        while position < f.size {
            guard let r = at[position], r.length > 0 else {
                throw Missing(description: "\(f.path): only \(position) of its \(f.size) bytes are in the cold store; it stays incoming", shortOfBytes: true)
            }
            chunks.append(ColdFile.Chunk(id: r.id, length: r.length))
            position += UInt64(r.length)
        }
        let located = try store.catalog.locations(chunks.map(\.id))
        // A set: a file of a million chunks is checked in one pass, not one per row.
        let used = Set(chunks)
        let lost = recorded.filter { located[$0.id] == nil && used.contains(ColdFile.Chunk(id: $0.id, length: $0.length)) }
        if !lost.isEmpty {
            // Their pack was never sealed or was collected: forget them, so they are sent again.
            try store.catalog.forgetIncoming(f.path, offsets: lost.map(\.offset))
            throw Missing(description: "\(f.path): \(lost.count) of its chunks are not in the cold store; they must be sent again")
        }
        return ColdFile(path: f.path, size: f.size, mode: FileModes.atDestination(f.mode), mtimeSeconds: f.mtimeSeconds, mtimeNanoseconds: f.mtimeNanoseconds, chunks: chunks)
    }
}

/// Archive encoders with their output buffers, taken one per chunk being compressed.
final class EncoderPool: @unchecked Sendable {
    final class Lane {
        let encoder: AdaptiveEncoder
        var buffer: UnsafeMutableRawPointer
        var capacity: Int

        init(encoder: AdaptiveEncoder, capacity: Int) {
            self.encoder = encoder
            self.capacity = capacity
            buffer = .allocate(byteCount: capacity, alignment: 64)
        }

        deinit { buffer.deallocate() }
    }

    private let lock = NSLock()
    private var idle: [Lane]
    private let make: () -> AdaptiveEncoder

    init(_ encoders: [AdaptiveEncoder], chunkSize: Int, selector: SharedSelector) {
        idle = encoders.map { Lane(encoder: $0, capacity: ChunkFormat.maxEncodedLength(rawLength: chunkSize)) }
        make = { AdaptiveEncoder(sendRate: ColdStore.archiveRate, selector: selector) }
    }

    func take(capacity raw: Int) -> Lane {
        let lane = lock.withLock { idle.popLast() } ?? Lane(encoder: make(), capacity: ChunkFormat.maxEncodedLength(rawLength: raw))
        let needed = ChunkFormat.maxEncodedLength(rawLength: raw)
        if lane.capacity < needed {
            lane.buffer.deallocate()
            lane.buffer = .allocate(byteCount: needed, alignment: 64)
            lane.capacity = needed
        }
        return lane
    }

    func give(_ lane: Lane) { lock.withLock { idle.append(lane) } }
}
