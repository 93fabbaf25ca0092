import BargeCodec
import BargeDigest
import BargeStore
import BargeWire
#if canImport(Glibc)
import Glibc
#endif
import NIOCore

/// The receive side of the data plane, one per connection (its decoder is not shared): decodes
/// each chunk, checks the XXH3-128 of its bytes, and writes it into the file's partial copy
/// through the agent's shared `DestinationFiles`. The SHA-256 id is the sender's: it hashed the
/// same bytes the XXH3-128 covers, and `verify` re-hashes at rest with SHA-256. Every chunk gets an ack or a
/// nack with the reason; nothing unverified is ever written. Synchronous and CPU-heavy: run it off
/// the event loop.
public final class ChunkReceiver {
    public let root: String
    public let files: DestinationFiles
    private let decoder = ChunkDecoder()
    /// Decoded chunks land here; aligned, so a whole-block chunk can be written with O_DIRECT.
    private var raw = UnsafeMutableRawBufferPointer(start: nil, count: 0)

    /// Asked before a finish gives files their final names (`DestinationFiles.finish`), and
    /// before each file of a file batch is written: the listener's freeze fence, per connection.
    /// (The listener asks it before each message; a long message, under way when the agent was
    /// stopped, asks again as it goes.)
    public let mayName: @Sendable () -> Bool

    public init(root: String, files: DestinationFiles = DestinationFiles(), mayName: @escaping @Sendable () -> Bool = { true }) {
        self.root = root
        self.files = files
        self.mayName = mayName
    }

    deinit { raw.deallocate() }

    private func staging(_ count: Int, at offset: UInt64 = 0) -> UnsafeMutableRawBufferPointer {
        // Placed like the file: a byte at a block boundary of the file sits at an aligned address,
        // so the chunk's whole blocks can be written with O_DIRECT.
        let skew = Int(offset % UInt64(PartialFileWriter.directAlignment))
        if raw.count < skew + count {
            raw.deallocate()
            raw = UnsafeMutableRawBufferPointer.allocate(byteCount: skew + count, alignment: PartialFileWriter.directAlignment)
        }
        return UnsafeMutableRawBufferPointer(rebasing: raw[skew..<(skew + count)])
    }

    /// Answers one data-plane message with an ack or a nack.
    public func handle(_ message: Message) -> Message? {
        switch message {
        case .chunkData(let chunk): return receive(chunk, repair: false)
        case .chunkRepair(let chunk): return receive(chunk, repair: true)
        case .fileDone(let done): return finish(done)
        case .repairDone(let done): return repaired(done)
        case .fileLeftOut(let place): return leftOut(place)
        case .filesDone(let batch): return finish(batch)
        case .fileBatch(let batch): return receive(batch)
        case .makeEntry(let make): return makeEntry(make)
        case .haveQuery(let query): return have(query)
        case .chunkRef(let ref): return copy(ref)
        default: return nil
        }
    }

    public func receive(_ chunk: ChunkData, repair: Bool = false) -> Message {
        let place = chunk.place
        let target: RootedPath
        do {
            // Every open below is confined beneath the root by the kernel; a repair opens the
            // finished file by name, so it is checked on disk first.
            target = repair ? try RootedPath.resolve(place.path, under: root) : try RootedPath.lexical(place.path, under: root)
        } catch {
            return .chunkNack(ChunkNack(place: place, reason: .refusedPath, detail: error.description))
        }
        if let (reason, detail) = store(chunk.encoded, place: place, target: target, fileSize: chunk.fileSize, id: chunk.id, repair: repair) {
            return .chunkNack(ChunkNack(place: place, reason: reason, detail: detail))
        }
        return .chunkAck(ChunkAck(place: place))
    }

    /// Decodes an encoded chunk, checks its XXH3-128 (and, given `xxh`, that it is the one the
    /// sender named), and writes it at its place; nil when written, else the nack's reason and words.
    /// `batch`: a file of a `file batch` (its directory held across the batch's files), whose
    /// index row waits for the batch's finish.
    private func store(_ encodedChunk: ByteBuffer, place: ChunkPlace, target: RootedPath, fileSize: UInt64, id: [UInt8], xxh: [UInt8]? = nil,
                       repair: Bool, batch: BatchParent? = nil) -> (ChunkNack.Reason, String)? {
        encodedChunk.withUnsafeReadableBytes { encoded -> (ChunkNack.Reason, String)? in
            let header: ChunkHeader
            do {
                header = try decoder.header(of: encoded)
            } catch {
                return (.corrupt, "\(error)")  // a header damaged on the way: worth resending
            }
            guard place.offset <= fileSize, UInt64(header.rawLength) <= fileSize - place.offset else {
                return (.malformed, "chunk of \(header.rawLength) bytes at \(place.offset) overruns a file of \(fileSize) bytes")
            }
            if let xxh, xxh != header.digest.canonicalBytes { return (.corrupt, "the chunk's checksum is not the one its file was sent with") }
            func write(_ bytes: UnsafeRawBufferPointer) -> (ChunkNack.Reason, String)? {
                do {
                    if repair {
                        try DestinationEntries.repair(target, size: fileSize, bytes: bytes, at: place.offset)
                    } else {
                        try files.write(job: place.job, target: target, size: fileSize, bytes: bytes, at: place.offset,
                                        id: id, xxh: header.digest.canonicalBytes, batch: batch, mayCreate: mayName)
                    }
                } catch is DestinationFiles.AlreadyFinished {
                    return nil  // a late duplicate: the finished file holds it
                } catch let error as StoreError {
                    // A path the destination cannot take (a file in the way of a directory, a way
                    // out of the root) is refused, not retried; anything else may pass.
                    switch error {
                    case .invalidPath, .escapesRoot, .symlinkEscape: return (.refusedPath, error.description)
                    default: return (Self.writeFailure(error), error.description)
                    }
                } catch {
                    return (.writeFailed, StoreError.describing(error))
                }
                return nil
            }
            // A chunk stored raw is checked in the frame, then, when it is large enough for its
            // write to go direct, written from the frame if the frame lies like the file (a byte
            // at a block boundary of the file at an aligned address: `FrameCipher` opens chunk
            // frames so), else staged in aligned memory: a copy in the CPU cache that spares the
            // page-cache copy. A smaller one is written from the frame (its write is buffered).
            let out = staging(header.rawLength, at: place.offset)
            do {
                if let stored = try decoder.storedBytes(of: encoded) {
                    let a = PartialFileWriter.directAlignment
                    if !repair, header.rawLength >= PartialFileWriter.directMinimum, let base = stored.baseAddress,
                       Int(bitPattern: base) % a != Int(place.offset % UInt64(a)) {
                        out.baseAddress!.copyMemory(from: base, byteCount: stored.count)
                        return write(UnsafeRawBufferPointer(out))
                    }
                    return write(stored)
                }
                try decoder.decode(encoded, into: out, verify: true)
            } catch {
                return (.corrupt, "\(error)")
            }
            return write(UnsafeRawBufferPointer(out))
        }
    }

    /// Small files whole: each is verified and written (or copied from where this agent holds its
    /// bytes), then the batch is finished together as `files done` finishes one. The reply names
    /// the files refused: `corrupt` and `need` ask for them again by value.
    public func receive(_ batch: FileBatch) -> Message {
        var refused: [FilesDoneReply.Refusal] = []
        var items: [DestinationFiles.Finish] = []
        var positions: [Int] = []
        var kept: [DestinationFiles.Kept] = []
        func refuse(_ i: Int, _ reason: ChunkNack.Reason, _ detail: String) {
            refused.append(FilesDoneReply.Refusal(index: UInt32(i), reason: reason, detail: detail))
        }
        let targets = RootedPath.lexical(files: batch.files.map(\.path), under: root, directoriesOnly: true)
        let parents = BatchParent()
        for (i, f) in batch.files.enumerated() {
            // A batch under way when this agent was stopped creates no more partial copies once
            // it resumes: each would change its directory's mtime after the job, given to
            // another agent meanwhile, had set it (seen: 3 to 6 directories, 1 s after SIGCONT).
            // The files written so far are not finished either (they stay partial).
            guard mayName() else {
                for unfinished in positions + Array(i..<batch.files.count) {
                    refuse(unfinished, .writeFailed, "this agent was stopped while receiving the batch, and its unit may be another agent's now")
                }
                files.recordKept(job: batch.job, kept)
                return .fileBatchReply(FileBatchReply(job: batch.job, batch: batch.batch, refused: refused.sorted { $0.index < $1.index }))
            }
            let place = ChunkPlace(job: batch.job, path: f.path, offset: 0)
            let target: RootedPath
            switch targets[i] {
            case .success(let t): target = t
            case .failure(let error):
                refuse(i, .refusedPath, error.description)
                continue
            }
            // A file of a batch is one chunk. Bigger (a peer that is not a Barge source): refused,
            // as sent by reference it took the agent down (its length is 32 bits).
            guard f.size <= UInt64(ChunkFormat.maxRawLength) else {
                refuse(i, .malformed, "a file of a batch is one chunk of at most \(ChunkFormat.maxRawLength) bytes; this one says \(f.size)")
                continue
            }
            // Already in place, whole (a `--checksum` re-sync of an unchanged file, or one
            // whose mtime alone changed): kept, not written again.
            if f.size <= UInt64(Int32.max), let how = files.keepUnchanged(job: batch.job, target: target, file: f.done, xxh: f.xxh, buffer: staging(Int(f.size))) {
                kept.append(DestinationFiles.Kept(target: target, file: f.done, id: f.id, xxh: f.xxh, untouched: how == .untouched))
                continue
            }
            if f.size > 0 {
                switch f.form {
                case .bytes:
                    if let (reason, detail) = store(f.encoded, place: place, target: target, fileSize: f.size, id: f.id, xxh: f.xxh, repair: false, batch: parents) {
                        refuse(i, reason, detail)
                        continue
                    }
                case .reference:
                    switch copy(ChunkRef(place: place, fileSize: f.size, length: UInt32(f.size), id: f.id, xxh: f.xxh), batch: parents) {
                    case .chunkNack(let nack):
                        refuse(i, nack.reason, nack.detail)
                        continue
                    default:
                        break
                    }
                }
            }
            items.append(DestinationFiles.Finish(target: target, file: f.done))
            positions.append(i)
        }
        refused += finished(files.finish(job: batch.job, batch: items, mayName: mayName), positions)
        files.recordKept(job: batch.job, kept)
        return .fileBatchReply(FileBatchReply(job: batch.job, batch: batch.batch, refused: refused.sorted { $0.index < $1.index }))
    }

    /// The nack for a system call that failed at the destination: a refusal, which the source does
    /// not retry, when the file system refuses for good (EACCES, EPERM, EROFS: no other agent of
    /// the site, which shares the root, would do better, and three attempts only delayed the
    /// job's failure); else `write failed`, retried (EIO, ENOSPC once space is freed, …).
    static func writeFailure(_ error: StoreError) -> ChunkNack.Reason {
        if case .system(_, _, let e) = error, [EACCES, EPERM, EROFS].contains(e) { return .refusedPath }
        return .writeFailed
    }

    /// The refusals for a finished batch's failures; `positions` maps the finished items to
    /// their index in the message.
    private func finished(_ failures: [Int: Error], _ positions: [Int]) -> [FilesDoneReply.Refusal] {
        failures.map { n, error in
            let reason: ChunkNack.Reason = switch error {
            case is DestinationFiles.Incomplete: .incomplete
            case let store as StoreError where store.isSystem: Self.writeFailure(store)
            case is StoreError: .refusedPath
            default: .writeFailed
            }
            return FilesDoneReply.Refusal(index: UInt32(positions[n]), reason: reason, detail: StoreError.describing(error))
        }
    }

    /// The ids of chunks held for the paths a unit is about to write (paths that leave the root
    /// lexically are left out: their chunks will be refused anyway). Nothing is opened here: a
    /// chunk copied by reference is read beneath the root and re-hashed first.
    ///
    /// From protocol version 10 the query also places the unit's files (`DestinationFiles.place`);
    /// one placed cold at an agent without a cold store is refused with the reason.
    public func have(_ query: HaveQuery) -> Message {
        let lexical = RootedPath.lexical(files: query.paths, under: root, directoriesOnly: true).map { try? $0.get().relative }
        let paths = lexical.compactMap { $0 }
        if !query.facts.isEmpty {
            let placed = zip(lexical, query.facts).compactMap { p, f in p.map { ($0, f) } }
            let refused = Set(files.place(job: query.job, paths: placed.map(\.0), facts: placed.map(\.1)).map(PathKey.init))
            if !refused.isEmpty {
                return .filesDoneReply(FilesDoneReply(refused: lexical.enumerated().compactMap { i, p in
                    guard let p, refused.contains(PathKey(p)) else { return nil }
                    return FilesDoneReply.Refusal(index: UInt32(i), reason: .refusedPath,
                                                  detail: "it is placed cold, but this agent has no cold tier; start the destination site's agents with --cold DIR")
                }))
            }
        }
        var ids = (try? files.heldIds(paths: paths)) ?? []
        ids.formUnion((try? files.heldCold(job: query.job, paths: paths)) ?? [])
        // At most 2 MiB of ids, well inside a frame; past that (a file of more than 64 GiB in
        // 1 MiB chunks) the rest are sent by value.
        return .haveList(HaveList(ids: Array(ids.prefix(HaveList.maxIds))))
    }

    /// A chunk sent by reference: copied from where this agent holds it, or nacked `need`.
    /// `batch`: a file of a file batch (its directory held across the batch's files).
    public func copy(_ ref: ChunkRef, batch: BatchParent? = nil) -> Message {
        let place = ref.place
        do {
            let target = try RootedPath.lexical(place.path, under: root)
            let length = Int(ref.length)
            if try files.copyLocal(job: place.job, target: target, size: ref.fileSize, offset: place.offset, length: length,
                                   id: ref.id, xxh: ref.xxh, buffer: staging(length, at: place.offset), batch: batch, mayCreate: mayName) {
                return .chunkAck(ChunkAck(place: place))
            }
            return .chunkNack(ChunkNack(place: place, reason: .need, detail: "no verified copy of chunk \(Hex.encode(Array(ref.id.prefix(8)))) here"))
        } catch is DestinationFiles.AlreadyFinished {
            return .chunkAck(ChunkAck(place: place))  // a late duplicate: the finished file holds it
        } catch let error as StoreError {
            let reason: ChunkNack.Reason = error.isSystem ? Self.writeFailure(error) : .refusedPath
            return .chunkNack(ChunkNack(place: place, reason: reason, detail: error.description))
        } catch {
            return .chunkNack(ChunkNack(place: place, reason: .writeFailed, detail: StoreError.describing(error)))
        }
    }

    /// Gives a fully received file its final name, mode and mtime.
    public func finish(_ done: FileDone) -> Message {
        do {
            let target = try RootedPath.lexical(done.place.path, under: root)
            try files.finish(job: done.place.job, target: target, size: done.size, mode: done.mode,
                             mtimeSeconds: done.mtimeSeconds, mtimeNanoseconds: done.mtimeNanoseconds, mayName: mayName)
            return .chunkAck(ChunkAck(place: done.place))
        } catch let error as DestinationFiles.Incomplete {
            return .chunkNack(ChunkNack(place: done.place, reason: .incomplete, detail: error.description))
        } catch let error as StoreError {
            let reason: ChunkNack.Reason = error.isSystem ? Self.writeFailure(error) : .refusedPath
            return .chunkNack(ChunkNack(place: done.place, reason: reason, detail: error.description))
        } catch {
            return .chunkNack(ChunkNack(place: done.place, reason: .writeFailed, detail: StoreError.describing(error)))
        }
    }

    /// A file repaired in place (`verify --repair`) gets the mode and mtime the job's scan saw, as
    /// a finished file does: its repairs each put back the mtime they found, which the damage, or
    /// another repair of the same file on another stream, may have changed.
    public func repaired(_ done: FileDone) -> Message {
        do {
            let target = try RootedPath.resolve(done.place.path, under: root)
            try DestinationEntries.repaired(target, size: done.size, mode: done.mode, mtime: (done.mtimeSeconds, done.mtimeNanoseconds))
            return .chunkAck(ChunkAck(place: done.place))
        } catch {  // a StoreError: both throw only that
            let reason: ChunkNack.Reason = error.isSystem ? Self.writeFailure(error) : .refusedPath
            return .chunkNack(ChunkNack(place: done.place, reason: reason, detail: error.description))
        }
    }

    /// A file the source left out of the job: its partial copy goes (`DestinationFiles.leftOut`).
    public func leftOut(_ place: ChunkPlace) -> Message {
        do {
            try files.leftOut(job: place.job, target: try RootedPath.lexical(place.path, under: root))
            return .chunkAck(ChunkAck(place: place))
        } catch let error as StoreError {
            return .chunkNack(ChunkNack(place: place, reason: error.isSystem ? Self.writeFailure(error) : .refusedPath, detail: error.description))
        } catch {
            return .chunkNack(ChunkNack(place: place, reason: .writeFailed, detail: StoreError.describing(error)))
        }
    }

    /// Finishes a batch of files together (grouped durability, one index transaction), naming the
    /// ones refused.
    public func finish(_ batch: FilesDone) -> Message {
        var refused: [FilesDoneReply.Refusal] = []
        var items: [DestinationFiles.Finish] = []
        var positions: [Int] = []
        for (i, (f, target)) in zip(batch.files, RootedPath.lexical(files: batch.files.map(\.path), under: root)).enumerated() {
            switch target {
            case .success(let target):
                items.append(DestinationFiles.Finish(target: target, file: f))
                positions.append(i)
            case .failure(let error):
                refused.append(FilesDoneReply.Refusal(index: UInt32(i), reason: .refusedPath, detail: error.description))
            }
        }
        refused += finished(files.finish(job: batch.job, batch: items, mayName: mayName), positions)
        return .filesDoneReply(FilesDoneReply(refused: refused.sorted { $0.index < $1.index }))
    }

    /// Creates a directory (with its mode and mtime) or a symbolic link.
    public func makeEntry(_ make: MakeEntry) -> Message {
        let e = make.entry
        let place = ChunkPlace(job: make.job, path: e.path, offset: 0)
        do {
            switch e.kind {
            case .directory:
                try DestinationEntries.makeDirectory(try RootedPath.resolveForOpensBeneath(e.path, under: root), mode: e.mode,
                                                     mtimeSeconds: e.mtimeSeconds, mtimeNanoseconds: e.mtimeNanoseconds)
            case .symlink:
                var parts = PathKey.components(e.path).map(String.init)
                guard let name = parts.popLast() else { throw StoreError.invalidPath(path: e.path, reason: "empty link path") }
                let parent = try RootedPath.resolveForOpensBeneath(parts.joined(separator: "/"), under: root)
                try DestinationEntries.makeSymlink(in: parent, name: name, target: e.linkTarget,
                                                   mtimeSeconds: e.mtimeSeconds, mtimeNanoseconds: e.mtimeNanoseconds)
            case .file:
                return .chunkNack(ChunkNack(place: place, reason: .malformed, detail: "regular files arrive as chunks"))
            }
            return .chunkAck(ChunkAck(place: place))
        } catch let error as StoreError {
            let reason: ChunkNack.Reason = error.isSystem ? Self.writeFailure(error) : .refusedPath
            return .chunkNack(ChunkNack(place: place, reason: reason, detail: error.description))
        } catch {
            return .chunkNack(ChunkNack(place: place, reason: .writeFailed, detail: StoreError.describing(error)))
        }
    }
}
