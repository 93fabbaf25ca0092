import BargeDigest
import BargeStore
import BargeTier
import BargeWire
import DequeModule
import Logging
import NIOConcurrencyHelpers

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The files this agent is receiving, shared by all its data-plane connections: one partial
/// writer per (job, path), and which chunks of it have been written. Chunks of one file may come
/// over several streams; `finish` refuses a file until every byte of it has arrived, so a file with
/// a hole never gets its final name.
///
/// With a `ChunkIndex`, every chunk written is recorded there too, so that:
/// - a partial copy outlives the agent: reopened after a restart, it keeps every recorded chunk
///   whose bytes still check out (XXH3-128), and only the rest must be sent again;
/// - a chunk the index knows by id is copied from where it already is (`copyLocal`) instead of
///   crossing the network.
///
/// With a `ColdIntake` (the agent has `--cold`), a file that a unit's `have query` placed cold
/// (by the job's policy, or by the site's `--tier-policy`) never gets a plain copy: its chunks go
/// straight into the site's packs, and its finish makes it a cold file in the catalog.
public final class DestinationFiles: Sendable {
    final class OpenFile: @unchecked Sendable {
        let lock = NIOLock()
        let writer: PartialFileWriter
        let size: UInt64
        /// The bytes written, by whatever chunks (a chunk resent after a reconnect, or an earlier
        /// run's chunks cut elsewhere, count each byte once).
        var written = ByteRanges()
        var covered: UInt64 { written.total }
        /// Writes running now, outside the lock: chunks of one file land side by side.
        var writers = 0
        /// Sealed for its finish: no write may start.
        var sealed = false
        /// Another writer finished the file (`StoreError.finishedElsewhere`). The entry stays, so
        /// that a late chunk of it finds it and is acked, rather than opening a new partial copy
        /// that nothing would finish.
        var finishedElsewhere = false

        init(writer: PartialFileWriter, size: UInt64) {
            self.writer = writer
            self.size = size
        }

        func cover(_ offset: UInt64, _ length: UInt64) { written.insert(offset, length) }

        /// Gives back its descriptor until its finish (`PartialFileWriter.park`) if every byte has
        /// arrived and no write runs. Called with `lock` held.
        func parkIfWhole() { if writers == 0, covered == size { writer.park() } }
    }

    public let index: ChunkIndex?
    /// The indexes of the other agents sharing this root, looked up after this one's.
    public let siblings: SiblingIndexes?
    private let logger: Logger
    /// The site's cold tier, and its placement policy for files a job's policy leaves open.
    public let intake: ColdIntake?
    public let sitePolicy: TierPolicy?
    /// Files placed cold, by job and path, from the `have query` of their unit until their finish.
    private let coldFiles = NIOLockedValueBox<Set<JobFile>>([])
    /// Files finished cold lately (a late duplicate of a chunk of one is acked, not stored).
    private let recentlyCold = NIOLockedValueBox(RecentKeys())
    /// Partial copies reopened with bytes kept since the last notice (`restore`), and when that was.
    private let reopened = NIOLockedValueBox((files: 0, bytes: UInt64(0), said: ContinuousClock.now - .seconds(3600)))
    private let open = NIOLockedValueBox<[JobFile: OpenFile]>([:])
    /// Files their unit brings whole, and their chunks found in place in the final copy. Lock
    /// order: its lock, then `open`'s (never the other way).
    let inPlace: InPlaceFiles
    /// Index rows not yet written: recorded in batches, so the index costs one transaction per
    /// batch rather than per chunk. Lookups see them too.
    private let pending = NIOLockedValueBox<[ChunkIndex.Entry]>([])
    private let recording = NIOLock()
    private static let batch = 32
    /// One `syncfs` group commit per file system (by device).
    private let syncGroups = NIOLockedValueBox<[UInt64: SyncGroup]>([:])

    private func syncGroup(_ device: UInt64) -> SyncGroup {
        syncGroups.withLockedValue { groups in
            if let g = groups[device] { return g }
            let g = SyncGroup()
            groups[device] = g
            return g
        }
    }

    /// Open partial copies past which a batch's written files are parked (`defaultParkAbove`).
    let parkAbove: Int

    /// `inPlaceCopyLimit` and `inPlaceRacyWindow`: `InPlaceFiles`' limits (tests lower them; nil,
    /// its defaults); `parkAbove`, likewise.
    public init(index: ChunkIndex? = nil, siblings: SiblingIndexes? = nil, intake: ColdIntake? = nil, sitePolicy: TierPolicy? = nil,
                logger: Logger = Logger(label: "barge.agent"), inPlaceCopyLimit: UInt64? = nil, inPlaceRacyWindow: Double? = nil,
                parkAbove: Int? = nil) {
        self.parkAbove = parkAbove ?? Self.defaultParkAbove
        inPlace = InPlaceFiles(copyLimit: inPlaceCopyLimit ?? InPlaceFiles.defaultCopyLimit, racyWindow: inPlaceRacyWindow ?? InPlaceFiles.defaultRacyWindow)
        self.index = index
        self.siblings = siblings
        self.intake = intake
        self.sitePolicy = sitePolicy
        self.logger = logger
    }

    // MARK: placement

    /// Places a unit's files (paths relative to the root, with what the `have query` says of
    /// each): the job's tier where it gave one; else cold for a file the site's cold store
    /// already holds under that name (a changed file sent again by a re-sync, or a damaged one
    /// by `verify --repair`, stays in its tier, and its chunks already stored are not stored
    /// twice); else the site's policy (paths relative to the root); else hot. Returns the paths
    /// placed cold that this agent cannot take cold (it has no cold store): the unit is refused.
    public func place(job: String, paths: [String], facts: [HaveQuery.Facts], now: Int64 = Int64(time(nil))) -> [String] {
        var cold: [String] = []
        var hot: [String] = []
        /// Per path: placed cold, and marked whole.
        var marks: [(cold: Bool, whole: Bool)] = []
        let unplaced = zip(paths, facts).filter { $0.1.tier == nil }.map(\.0)
        // A catalog that cannot be read places nothing cold by this rule; the policy still does.
        let alreadyCold = unplaced.isEmpty ? [] : ((try? intake?.store.catalog.coldPaths(unplaced)) ?? [])
        for (path, f) in zip(paths, facts) {
            let tier: Tier
            switch f.tier {
            case .cold: tier = .cold
            case .hot: tier = .hot
            case nil where alreadyCold.contains(PathKey(path)): tier = .cold
            case nil: tier = sitePolicy?.tier(for: FileFacts(path: path, size: f.size, mtime: f.mtimeSeconds), now: now) ?? .hot
            }
            if tier == .cold { cold.append(path) } else { hot.append(path) }
            marks.append((tier == .cold, f.whole))
        }
        // A file the unit brings whole, hot, may be kept in place (`InPlaceFiles`). One not
        // marked keeps what its earlier units found: a source of version 16 beside ones of 17
        // (a rolling update) marks none of the units it is given, and forgetting there what a
        // range found in place, acked and never written, refused the file at every attempt.
        for (path, m) in zip(paths, marks) {
            let key = JobFile(job: job, path: path)
            if m.cold { inPlace.forbid(key) } else if m.whole { inPlace.allow(key) }
        }
        guard intake != nil else { return cold }
        coldFiles.withLockedValue { set in
            for p in cold { set.insert(JobFile(job: job, path: p)) }
            for p in hot { set.remove(JobFile(job: job, path: p)) }
        }
        // A file placed again is sent again on purpose (`verify --repair` sends a damaged cold
        // file whole, in the job that placed it): its chunks are no longer late duplicates of
        // its finish. Taken for them, every chunk was acked unstored, and the repair left the
        // file as damaged as it found it.
        recentlyCold.withLockedValue { recent in
            for p in cold + hot { recent.remove(JobFile(job: job, path: p)) }
        }
        return []
    }

    /// Whether `path` of `job` arrives cold.
    public func isCold(job: String, path: String) -> Bool {
        intake != nil && coldFiles.withLockedValue { $0.contains(JobFile(job: job, path: path)) }
    }

    /// The SHA-256 of the chunks already recorded for files of `job` arriving cold (a resent
    /// unit sends those by reference).
    public func heldCold(job: String, paths: [String]) throws -> Set<[UInt8]> {
        guard let intake else { return [] }
        return try intake.store.catalog.incomingSHAs(paths.filter { isCold(job: job, path: $0) })
    }

    /// Files currently open (for tests and metrics).
    public var openCount: Int { open.withLockedValue { $0.count } }

    /// Open partial copies past which files give back their descriptors once written
    /// (`PartialFileWriter.park`): an eighth of the open-file limit (the data port's connections
    /// may take a quarter, and a batch's directories, the indexes and a failover's burst of
    /// units the rest). 131,072 with the usual hard limit, so they rarely do.
    static let defaultParkAbove: Int = {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur != rlim_t.max else { return 1 << 17 }
        return max(16, Int(min(limit.rlim_cur, 1 << 20)) / 8)
    }()

    /// Near the open-file limit, a file whose bytes have all arrived gives back its descriptors
    /// until its finish (`OpenFile.parkIfWhole`): a batch's, and a file of chunks, whose finish
    /// comes with its unit's `files done`. Those held two each (the writer's and the O_DIRECT
    /// one): 1,000 files of 1.01-1.1 MiB took a destination to 227 of 256 with both agents of
    /// its site up (h1 of session 50).
    private var pressed: Bool { openCount > parkAbove }

    /// `mayCreate`: asked once a new partial copy is made, which then goes again if it says no (the
    /// receiver's freeze fence, `ChunkReceiver.mayName`): a handler stopped (SIGSTOP) after its
    /// message passed the fence and let go on after the job had given the file to another agent,
    /// which finished it, made a new copy beside the finished file and left it there (h3 of
    /// session 50, 4 of 31 runs).
    private func file(job: String, target: RootedPath, size: UInt64, parents: BatchParent? = nil, mayCreate: () -> Bool = { true }) throws -> OpenFile {
        let key = JobFile(job: job, path: target.relative)
        if finishedLately(key, target, size: size) { throw AlreadyFinished(path: target.relative) }
        let (f, opened) = try open.withLockedValue { files in
            if let f = files[key] {
                guard f.size == size else {
                    throw StoreError.invalidPath(path: target.relative, reason: "chunks disagree about its size (\(f.size) and \(size) bytes)")
                }
                return (f, false)
            }
            // Asked before anything is opened too: a handler stopped before this point makes
            // nothing, and changes no directory's mtime.
            guard mayCreate() else { throw Fenced(path: target.relative) }
            let f = OpenFile(writer: try PartialFileWriter(target, size: size, parents: parents), size: size)
            if !f.writer.existed, !mayCreate() {
                f.writer.abandonIfUntouched()
                throw Fenced(path: target.relative)
            }
            if f.writer.existed { try restore(f, target) }
            files[key] = f
            return (f, true)
        }
        // Taken once the copy is listed open: a chunk found in place meanwhile either was
        // recorded before (and is taken here) or finds the copy open (and is written into it).
        if opened, let found = inPlace.take(key) { try materialize(found, into: f, job: job, target: target, size: size) }
        return f
    }

    /// Writes the chunks found in place in the final copy (`InPlaceFiles`) into the partial copy
    /// just opened, each read again and checked: the file is received as any other from now on.
    /// Left out, and to be sent again if missing: a chunk that no longer checks out (the file
    /// changed), and one over bytes the copy already holds (they came later, by value, so they
    /// are the ones to keep). Past `InPlaceFiles.copyLimit` nothing is copied: the finish then
    /// refuses the file as incomplete, and it is sent again.
    private func materialize(_ found: InPlaceFiles.File, into f: OpenFile, job: String, target: RootedPath, size: UInt64) throws {
        if found.overflowed {
            logger.notice("\(target.relative): \(found.covered.total) bytes found in place in its final copy are more than are copied into the partial copy now opened (\(inPlace.copyLimit)); its finish will be refused, and the file sent again")
            return
        }
        guard let longest = found.chunks.map(\.length).max(), let root = try? RootDirectory.open(target.root) else { return }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: longest, alignment: 16)
        defer { buffer.deallocate() }
        var copied = 0
        for c in found.chunks where !f.lock.withLock({ f.written.overlaps(c.offset, UInt64(c.length)) }) {
            let region = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<c.length])
            guard UnchangedFinal.read(target, in: root, size: size, at: c.offset, into: region, besidePartial: true) != nil,
                  XXH3.hash128(UnsafeRawBufferPointer(region)).canonicalBytes == c.xxh else { continue }
            try write(job: job, target: target, size: size, bytes: UnsafeRawBufferPointer(region), at: c.offset, id: c.id, xxh: c.xxh)
            copied += 1
        }
        if copied < found.chunks.count {
            logger.notice("\(target.relative): \(found.chunks.count - copied) of \(found.chunks.count) chunks found in its final copy are not copied into its partial copy (changed there since, or written anew); they must be sent again if missing")
        }
    }

    /// Takes back what an earlier run (of this agent or of a job) left in the partial copy: each
    /// recorded chunk whose bytes still hash to what was recorded.
    private func restore(_ f: OpenFile, _ target: RootedPath) throws {
        guard let index else { return }
        flush()
        let recorded = try index.partialChunks(path: target.relative, fileSize: f.size)
        guard !recorded.isEmpty else { return }
        var bad: [UInt64] = []
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: recorded.map(\.length).max() ?? 0, alignment: 16)
        defer { buffer.deallocate() }
        for e in recorded {
            let region = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<e.length])
            if LocalChunk.read(f.writer.partialPath, at: e.offset, into: region), XXH3.hash128(UnsafeRawBufferPointer(region)).canonicalBytes == e.xxh {
                f.cover(e.offset, UInt64(e.length))
            } else {
                bad.append(e.offset)
            }
        }
        if !bad.isEmpty { try index.forgetPartial(path: target.relative, offsets: bad) }
        logger.debug("\(target.relative): kept \(f.covered) of \(f.size) bytes already in its partial copy (\(recorded.count - bad.count) chunks)")
        // Said once per ten seconds, summed: a resumed unit of 20,000 small files said it 20,000
        // times (h1 of session 50).
        let say = reopened.withLockedValue { r -> (files: Int, bytes: UInt64)? in
            r.files += 1
            r.bytes += f.covered
            let now = ContinuousClock.now
            guard now - r.said >= .seconds(10) else { return nil }
            defer { r = (0, 0, now) }
            return (r.files, r.bytes)
        }
        if let say {
            logger.notice(say.files == 1 ? "\(target.relative): kept \(f.covered) of \(f.size) bytes already in its partial copy (\(recorded.count - bad.count) chunks)"
                : "kept \(say.bytes) bytes already in \(say.files) partial copies left by earlier runs since the last such notice (the last: \(target.relative))")
        }
    }

    /// Writes verified bytes of a file at `offset`; throws `StoreError`. `id` and `xxh` (the
    /// chunk's SHA-256 and XXH3-128) go to the chunk index.
    /// `batch`: a file of a file batch. Its row waits for the file's finish (a batch finishes its
    /// files at once), rather than being written with the next 32, and a new file is created in
    /// the batch's held directory.
    public func write(job: String, target: RootedPath, size: UInt64, bytes: UnsafeRawBufferPointer, at offset: UInt64,
                      id: [UInt8] = [], xxh: [UInt8] = [], batch: BatchParent? = nil, mayCreate: () -> Bool = { true }) throws {
        if let intake, isCold(job: job, path: target.relative) {
            try intake.store(path: target.relative, fileSize: size, offset: offset, bytes: bytes)
            return
        }
        if recentlyCold.withLockedValue({ $0.contains(JobFile(job: job, path: target.relative)) }) { throw AlreadyFinished(path: target.relative) }
        let f = try file(job: job, target: target, size: size, parents: batch, mayCreate: mayCreate)
        // The lock covers the bookkeeping only; the `pwrite` itself runs beside other chunks'.
        do {
            try f.lock.withLock {
                guard !f.sealed else { throw StoreError.system(operation: "write", path: target.relative, errno: EBADF) }
                // A parked copy opened again, or not: then nothing is written.
                if let failure = f.writer.prepare(forWriteOf: bytes.count) { throw failure }
                f.writers += 1
            }
        } catch StoreError.system(let operation, let path, ESTALE) {
            // Another file under the name since it was parked: this copy is let go, and the
            // retry opens what is there afresh.
            letGo(job: job, f)
            throw StoreError.system(operation: operation, path: path, errno: ESTALE)
        }
        do {
            try f.writer.write(bytes, at: offset)
        } catch {
            f.lock.withLock { f.writers -= 1 }
            if case StoreError.finishedElsewhere = error {
                // Another writer finished the file since it was opened here: the chunk, which
                // the finished file holds, is acked, and nothing more is written into it.
                if f.lock.withLock({ () -> Bool in defer { f.finishedElsewhere = true }; return !f.finishedElsewhere }) {
                    logger.notice("\(target.relative): finished meanwhile by another writer; nothing more is written into it")
                }
                throw AlreadyFinished(path: target.relative)
            }
            throw error
        }
        let pressed = self.pressed
        f.lock.withLock {
            f.writers -= 1
            f.cover(offset, UInt64(bytes.count))
            if pressed { f.parkIfWhole() }
        }
        guard index != nil, !id.isEmpty else { return }
        let entry = ChunkIndex.Entry(path: target.relative, offset: offset, length: bytes.count, fileSize: size, id: id, xxh: xxh)
        let full = pending.withLockedValue { p in
            p.append(entry)
            return batch == nil && p.count >= Self.batch
        }
        if full { flush() }
    }

    /// Writes the index rows held back so far, and seals a cold pack left open a while.
    public func flush() {
        record(finalizing: [])
        do { try intake?.sealIfStale() } catch { logger.warning("cold tier: the open pack was not sealed: \(error)") }
    }

    /// Writes the held-back rows, and marks `files` finished, in one transaction. Rows leave
    /// `pending` only once they are committed (writes are serialised by `recording`), so a lookup
    /// meanwhile (a chunk sent by reference, `copyLocal`) still finds them.
    private func record(finalizing files: [ChunkIndex.Finalized]) {
        guard let index else { return }
        recording.withLock {
            let rows = pending.withLockedValue { $0 }
            guard !rows.isEmpty || !files.isEmpty else { return }
            do {
                try index.finalize(files, recording: rows)
            } catch {
                logger.warning("chunk index: \(rows.count) rows and \(files.count) finished files not recorded: \(error)")
            }
            // Rows appended meanwhile stay for the next write.
            pending.withLockedValue { $0.removeFirst(min(rows.count, $0.count)) }
        }
    }

    /// Ids of chunks this agent holds for `paths` (relative to the root): a source sends those by
    /// reference. Empty without an index.
    public func heldIds(paths: [String]) throws -> Set<[UInt8]> {
        guard let index else { return [] }
        flush()
        var ids = try index.ids(paths: paths)
        for sibling in siblings?.indexes() ?? [] {
            // Another agent's index that cannot be read only costs dedup.
            do {
                ids.formUnion(try sibling.ids(paths: paths))
            } catch {
                logger.warning("chunk index of another agent at \(sibling.path) not read: \(error)")
            }
        }
        return ids
    }

    /// Writes the chunk with this id and XXH3-128 at `offset` of the file, copying it from a place
    /// this agent already holds it (checked by re-hashing). Returns false when no such place
    /// checks out: then its bytes must be sent. `buffer` must hold `length` bytes. `batch`: a
    /// file of a file batch, written as `write` writes one (parked near the open-file limit).
    public func copyLocal(job: String, target: RootedPath, size: UInt64, offset: UInt64, length: Int, id: [UInt8], xxh: [UInt8],
                          buffer: UnsafeMutableRawBufferPointer, batch: BatchParent? = nil, mayCreate: () -> Bool = { true }) throws -> Bool {
        if recentlyCold.withLockedValue({ $0.contains(JobFile(job: job, path: target.relative)) }) { throw AlreadyFinished(path: target.relative) }
        let cold = isCold(job: job, path: target.relative)
        if let intake, cold, try intake.adopt(path: target.relative, fileSize: size, offset: offset, length: length, sha: id) { return true }
        if !cold, try foundInPlace(job: job, target: target, size: size, offset: offset, length: length, id: id, xxh: xxh, buffer: buffer, mayCreate: mayCreate) { return true }
        guard let index else { return false }
        let waiting = pending.withLockedValue { p in p.filter { $0.id == id } }
        var candidates = waiting + (try index.locations(id: id))
        let sibling = (siblings?.indexes() ?? []).flatMap { (try? $0.locations(id: id)) ?? [] }
        // The same place in this file's own partial copy, restored after a restart: already there.
        if !cold, case let f = try file(job: job, target: target, size: size, parents: batch, mayCreate: mayCreate), f.lock.withLock({ f.written.contains(offset, UInt64(length)) }),
           candidates.contains(where: { !$0.final && PathKey.sameBytes($0.path, target.relative) && $0.offset == offset && $0.xxh == xxh }) {
            // Parked as a written one is: a failover's units brought thousands of such files by
            // reference, each holding its descriptor until its batch's finish (h1 of session 50).
            if pressed { f.lock.withLock { f.parkIfWhole() } }
            return true
        }
        candidates.removeAll { $0.length != length || $0.xxh != xxh }
        let owned = candidates.count
        candidates += sibling.filter { $0.length == length && $0.xxh == xxh }
        let region = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<length])
        // Rows name files beneath the root (a sibling's index too, which another process writes):
        // they are opened beneath it, through no link.
        let rootDirectory = try RootDirectory.open(index.root)
        for (n, c) in candidates.enumerated() {
            let finalPath = c.path
            let path = c.final ? finalPath : PartialFileWriter.partialPath(relative: c.path)
            func holds(_ path: String) -> Bool {
                LocalChunk.read(path, in: rootDirectory, at: c.offset, into: region) && XXH3.hash128(UnsafeRawBufferPointer(region)).canonicalBytes == xxh
            }
            // A partial copy finished since its row was made (a row still held back, or one
            // written before the finish was recorded) is under its final name now: reading only
            // the partial name, the chunk was taken for lost, its row dropped, and it went again
            // by value (DedupProcessTests: 1 MiB of a duplicate file's 5 MB, then 1 MiB of an
            // unchanged tree with --checksum).
            // A final file read there whose bytes differ changed at that place since its finish.
            let found: Bool
            var differs = false
            if c.final {
                let read = LocalChunk.read(finalPath, in: rootDirectory, at: c.offset, into: region)
                differs = read && XXH3.hash128(UnsafeRawBufferPointer(region)).canonicalBytes != xxh
                found = read && !differs
            } else {
                found = holds(path) || holds(finalPath)
            }
            guard found else {
                // A final file changed since it was finished; a partial copy lost the chunk.
                // (Another agent's rows are its own to drop.) Of a final file that differs at
                // one place only that place's row goes: the rest may be as it was, and is checked
                // whenever it is used. All its rows went, and the file's other chunks, offered no
                // more, crossed the wire: 336 MiB of a 340 MiB file with one MiB changed (its
                // mtime put back) in a --checksum re-sync. A file that cannot be read there loses
                // them all.
                if n >= owned { continue }
                if c.final {
                    try index.forgetFinal(path: c.path, offsets: differs ? [c.offset] : nil)
                } else {
                    try index.forgetPartial(path: c.path, offsets: [c.offset])
                }
                continue
            }
            try write(job: job, target: target, size: size, bytes: UnsafeRawBufferPointer(region), at: offset, id: id, xxh: xxh, batch: batch, mayCreate: mayCreate)
            return true
        }
        return false
    }

    /// A chunk of a file its unit brings whole, found at its own place in the file's final copy
    /// (`InPlaceFiles`): recorded there and left there. When a partial copy of the file was
    /// opened meanwhile, or the file changed since its other chunks were found, the bytes just
    /// checked are written into the partial copy instead. False: not there (then it is looked
    /// for elsewhere, as any chunk sent by reference).
    private func foundInPlace(job: String, target: RootedPath, size: UInt64, offset: UInt64, length: Int, id: [UInt8], xxh: [UInt8],
                              buffer: UnsafeMutableRawBufferPointer, mayCreate: () -> Bool) throws -> Bool {
        let key = JobFile(job: job, path: target.relative)
        guard inPlace.isAllowed(key), open.withLockedValue({ $0[key] == nil }), let root = try? RootDirectory.open(target.root) else { return false }
        let region = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<length])
        guard let identity = UnchangedFinal.read(target, in: root, size: size, at: offset, into: region),
              XXH3.hash128(UnsafeRawBufferPointer(region)).canonicalBytes == xxh else { return false }
        // A file changed within the last moments (a timestamp may not tell a write in the same
        // tick from none, 1 s on some parallel file systems) is not trusted to stay as read, as
        // git treats a racily clean file: the chunk, checked, goes into a partial copy, as it does
        // when one was opened meanwhile or the file changed since its other chunks were found.
        let chunk = InPlaceFiles.Chunk(offset: offset, length: length, id: id, xxh: xxh)
        if !inPlace.racilyClean(identity), inPlace.record(key, chunk, as: identity, alone: { open.withLockedValue { $0[key] == nil } }) { return true }
        try write(job: job, target: target, size: size, bytes: UnsafeRawBufferPointer(region), at: offset, id: id, xxh: xxh, mayCreate: mayCreate)
        return true
    }

    /// The source left the file out of job `job` (gone, changed or unreadable there when it came
    /// to read it, `file left out`): its partial copy goes, whichever agent sharing the root wrote
    /// it, with this agent's index rows for it, as rsync removes its temporary file. Before, it
    /// stayed until a later job finished that file, so for ever for a file that had gone, and a
    /// transfer onward from the destination left it out on every run as an unfinished copy. The
    /// file's final name, if it has one, is left as it is. Not for a file placed cold (its
    /// chunks are in the cold store's packs).
    public func leftOut(job: String, target: RootedPath) throws {
        let key = JobFile(job: job, path: target.relative)
        inPlace.forbid(key)
        guard !isCold(job: job, path: target.relative) else { return }
        if let f = open.withLockedValue({ $0.removeValue(forKey: key) }) {
            // A write still landing fails once it is sealed; none should (the unit's chunks
            // were all answered before the source says this).
            f.lock.withLock { f.sealed = true }
        }
        // Under `recording`: a flush takes a snapshot of `pending` and then drops that many rows
        // from its front, so rows may not go from the middle meanwhile.
        try recording.withLock {
            pending.withLockedValue { p in p.removeAll { !$0.final && PathKey.sameBytes($0.path, target.relative) } }
            try index?.forgetPartial(path: target.relative)
        }
        try PartialFileWriter.removePartial(of: target)
    }

    /// A file whose bytes a `fsync` or `syncfs` failed to make durable (EIO, or ENOSPC or EDQUOT
    /// where the file system says so only then): its partial copy goes, with this agent's index
    /// rows for it, and the next attempt receives it whole. Kept, a retry read the bytes back from
    /// the page cache (up to date after a failed writeback, but not on disk), found them whole,
    /// and a new `fsync`, which no longer sees the old error, let the file be renamed: its blocks
    /// on disk could be stale or zero (a reading review).
    /// Lets go of an open copy whose file was replaced under its name while it was parked
    /// (`PartialFileWriter.park`): nothing on disk is touched, and the next write or finish of
    /// the file opens what is there, keeping what still hashes right (`restore`).
    private func letGo(job: String, _ f: OpenFile) {
        let key = JobFile(job: job, path: f.writer.final.relative)
        open.withLockedValue { files in if files[key] === f { files.removeValue(forKey: key) } }
        f.lock.withLock { f.sealed = true }
    }

    private func distrust(job: String, _ f: OpenFile) {
        let target = f.writer.final
        open.withLockedValue { files in
            if files[JobFile(job: job, path: target.relative)] === f { files.removeValue(forKey: JobFile(job: job, path: target.relative)) }
        }
        f.lock.withLock { f.sealed = true }
        try? recording.withLock {
            pending.withLockedValue { p in p.removeAll { !$0.final && PathKey.sameBytes($0.path, target.relative) } }
            try index?.forgetPartial(path: target.relative)
        }
        try? PartialFileWriter.removePartial(of: target)
    }

    /// A file of a batch that is already in place, whole (`UnchangedFinal`): the regular file
    /// under its final name holds exactly its bytes (by XXH3-128), so it keeps its inode and
    /// only gets the mode and mtime, as `rsync --checksum` leaves an identical file alone. Not
    /// for a file placed cold, nor one with a partial copy open here. `recordKept` then does a
    /// finish's bookkeeping for the files kept.
    public func keepUnchanged(job: String, target: RootedPath, file: FilesDone.File, xxh: [UInt8], buffer: UnsafeMutableRawBufferPointer) -> UnchangedFinal.Outcome? {
        let key = JobFile(job: job, path: target.relative)
        guard !isCold(job: job, path: target.relative), !recentlyCold.withLockedValue({ $0.contains(key) }),
              open.withLockedValue({ $0[key] == nil }), let root = try? RootDirectory.open(target.root) else { return nil }
        return UnchangedFinal.keep(target, in: root, size: file.size, mode: file.mode, mtimeSeconds: file.mtimeSeconds,
                                   mtimeNanoseconds: file.mtimeNanoseconds, buffer: buffer) { XXH3.hash128($0).canonicalBytes == xxh }
    }

    /// A file kept in place (`keepUnchanged`), with the chunk id and XXH3-128 of its bytes.
    /// `untouched`: its mode and mtime were already right, so the index may hold it as it is.
    public struct Kept: Sendable {
        public var target: RootedPath
        public var file: FilesDone.File
        public var id: [UInt8]
        public var xxh: [UInt8]
        public var untouched: Bool

        public init(target: RootedPath, file: FilesDone.File, id: [UInt8], xxh: [UInt8], untouched: Bool = false) {
            self.target = target
            self.file = file
            self.id = id
            self.xxh = xxh
            self.untouched = untouched
        }
    }

    /// Records files kept in place as a finish records the files it renames: known as finished
    /// lately (a late duplicate of one is acked), and in the chunk index as finished with their
    /// one chunk and mtime, in one transaction, so that later jobs find their bytes; but for the
    /// untouched ones it holds already so (one read for them all): an unchanged `--checksum`
    /// re-sync of 20,000 files then writes no row, where it wrote three statements a file.
    public func recordKept(job: String, _ all: [Kept]) {
        guard !all.isEmpty else { return }
        recentlyFinished.withLockedValue { recent in
            for k in all { recent.insert(JobFile(job: job, path: k.target.relative)) }
        }
        guard let index else { return }
        let untouched = all.indices.filter { all[$0].untouched }
        let held = (try? index.holds(untouched.map {
            let k = all[$0]
            return ChunkIndex.WholeFile(path: k.target.relative, size: k.file.size, id: k.id, mtimeSeconds: k.file.mtimeSeconds, mtimeNanoseconds: k.file.mtimeNanoseconds)
        })) ?? []
        let skipped = Set(held.map { untouched[$0] })
        let kept = all.indices.filter { !skipped.contains($0) }.map { all[$0] }
        guard !kept.isEmpty else { return }
        pending.withLockedValue { p in
            for k in kept where k.file.size > 0 {
                p.append(ChunkIndex.Entry(path: k.target.relative, offset: 0, length: Int(k.file.size), fileSize: k.file.size, id: k.id, xxh: k.xxh))
            }
        }
        record(finalizing: kept.map {
            ChunkIndex.Finalized(path: $0.target.relative, size: $0.file.size, mtimeSeconds: $0.file.mtimeSeconds, mtimeNanoseconds: $0.file.mtimeNanoseconds)
        })
    }

    /// The file was finished in this job moments ago: a chunk of it that arrives now is a
    /// duplicate (a run of its unit that outlived a reassignment) and has nothing to add. It is
    /// acked, and no partial copy is opened again beside the finished file.
    public struct AlreadyFinished: Error, CustomStringConvertible {
        public let path: String
        public var description: String { "\(path) is already finished in this job" }
    }

    /// This agent was stopped for about its agent timeout since the message that would make a new
    /// partial copy began, so its unit may be another agent's now: no copy is made (`file`).
    public struct Fenced: Error, CustomStringConvertible {
        public let path: String
        public var description: String {
            "\(path): this agent was stopped while receiving it, and its unit may be another agent's now; no partial copy is made"
        }
    }

    /// Files this agent finished lately, by job and path, so that a late duplicate of one of their
    /// chunks or finishes neither leaves a `.barge-partial` behind nor is refused. Bounded: the
    /// last `RecentKeys.capacity` files.
    private let recentlyFinished = NIOLockedValueBox(RecentKeys())

    /// The file was finished lately in this job and is still there, whole, under its final name.
    /// One that has gone or changed size since (`verify --repair` sends such a file again, whole)
    /// is received as any other.
    private func finishedLately(_ key: JobFile, _ target: RootedPath, size: UInt64) -> Bool {
        guard recentlyFinished.withLockedValue({ $0.contains(key) }) else { return false }
        var st = stat()
        return target.lstat(&st) == 0 && (st.st_mode & S_IFMT) == S_IFREG && UInt64(st.st_size) == size
    }

    /// Bytes of a file are missing at `finish`: they must be sent (again).
    public struct Incomplete: Error, CustomStringConvertible {
        public let description: String

        /// Another finish of the file is under way here (the same batch sent again by a source
        /// that was killed and started again): asked again, it finds the file finished.
        static func finishUnderWay(_ relative: String) -> Incomplete {
            Incomplete(description: "\(relative): another finish of it is under way; send its finish again")
        }
    }

    /// A file to finish: where it is under the root, and the size, mode and mtime it must end
    /// with, as `files done` names them.
    public struct Finish: Sendable {
        public var target: RootedPath
        public var file: FilesDone.File

        public init(target: RootedPath, file: FilesDone.File) {
            self.target = target
            self.file = file
        }
    }

    /// From this many files up, a batch is made durable with one `syncfs` per file system rather
    /// than an `fsync` per file.
    public static let syncfsBatch = 8

    /// Makes a fully received file durable under its final name with its mode and mtime. A file of
    /// size 0 needs no chunk. A file missing bytes is refused (`Incomplete`) and stays partial;
    /// other failures are `StoreError`s.
    public func finish(job: String, target: RootedPath, size: UInt64, mode: UInt32, mtimeSeconds: Int64, mtimeNanoseconds: Int32,
                       mayName: () -> Bool = { true }) throws {
        let failures = finish(job: job, batch: [Finish(target: target, file: FilesDone.File(path: target.relative, size: size, mode: mode, mtimeSeconds: mtimeSeconds,
                                                                                mtimeNanoseconds: mtimeNanoseconds))], mayName: mayName)
        if let failure = failures[0] { throw failure }
    }

    /// Finishes a batch of files with grouped durability: every file is checked complete, then the
    /// batch's bytes are made durable at once (`syncfs` per file system, or `fsync` per file for
    /// a batch under `syncfsBatch`), then each file gets its mode and mtime and is renamed to its
    /// final name, each directory is synced once, and the chunk index records the batch in one
    /// transaction. No file gets its final name before its bytes are durable. Returns the files
    /// that failed, by index in `batch`, with `Incomplete` or `StoreError`; the others are done.
    ///
    /// `mayName` is asked once the bytes are durable, just before the files get their mode, mtime
    /// and final names: false (this agent was stopped for about its agent timeout meanwhile, and
    /// the coordinator gave the files to another agent of the site) leaves them all partial and
    /// unsealed, refused as `Incomplete`. A batch under way when the agent was stopped otherwise
    /// went on when it resumed and renamed files into directories whose mtimes the job had set
    /// since, after the job had succeeded.
    public func finish(job: String, batch: [Finish], mayName: () -> Bool = { true }) -> [Int: Error] {
        guard let intake else { return finishHot(job: job, batch: batch, mayName: mayName) }
        let coldItems = batch.indices.filter { isCold(job: job, path: batch[$0].target.relative) }
        let cold = Set(coldItems)
        let hotItems = batch.indices.filter { !cold.contains($0) }
        var failures: [Int: Error] = [:]
        if !hotItems.isEmpty {
            for (n, e) in finishHot(job: job, batch: hotItems.map { batch[$0] }, mayName: mayName) { failures[hotItems[n]] = e }
            // A file placed hot now is no longer cold (nor arriving cold) under that name.
            let finished = hotItems.filter { failures[$0] == nil }.map { batch[$0].target.relative }
            do { try intake.store.catalog.remove(paths: finished) } catch {
                for i in hotItems where failures[i] == nil { failures[i] = StoreError.system(operation: "update the cold catalog for", path: batch[i].target.relative, errno: EIO) }
                logger.warning("cold tier: files finished hot are still listed cold: \(error)")
            }
        }
        if !coldItems.isEmpty {
            for (n, e) in finishCold(job: job, batch: coldItems.map { batch[$0] }, intake: intake) { failures[coldItems[n]] = e }
        }
        return failures
    }

    /// Files that arrived cold become cold files; a plain file left under the same name (an
    /// older copy) goes, as a transfer replaces it.
    private func finishCold(job: String, batch: [Finish], intake: ColdIntake) -> [Int: Error] {
        let arrived = batch.map { b in
            ColdIntake.Arrived(path: b.target.relative, size: b.file.size, mode: b.file.mode, mtimeSeconds: b.file.mtimeSeconds, mtimeNanoseconds: b.file.mtimeNanoseconds)
        }
        var failures: [Int: Error] = [:]
        for (i, error) in intake.finish(arrived) {
            failures[i] = error is ColdIntake.Missing ? Incomplete(description: "\(error)") : error
        }
        for damage in intake.takeDamage() {
            logger.error("cold tier: a stored chunk a file arriving shares did not read back, so it was stored again from the bytes received (the cold files that share it read whole again; 'barge verify' checks the rest): \(damage)")
        }
        // The directories of the files placed, each synced once: every one, not only those a
        // hot copy was removed from here, since a finish that failed on its fsync after the
        // removal comes again with nothing left to remove (a review).
        var touched: [PathKey: [Int]] = [:]
        for (i, b) in batch.enumerated() where failures[i] == nil {
            var st = stat()
            if b.target.lstat(&st) == 0, st.st_mode & S_IFMT == S_IFREG { _ = DestinationEntries.removeFile(b.target) }
            if let slash = PathKey.lastSlash(b.target.absolute) { touched[PathKey(b.target.absolute[..<slash]), default: []].append(i) }
            let key = JobFile(job: job, path: b.target.relative)
            coldFiles.withLockedValue { _ = $0.remove(key) }
            recentlyCold.withLockedValue { $0.insert(key) }
        }
        // Opened beneath the root, as the removal was. A removal not made durable fails its
        // files (sent again): after a power cut the old hot copy came back beside the cold one,
        // and was read first. Before, the fsync's result was ignored (a reading review).
        for (_, indices) in touched {
            let target = batch[indices[0]].target
            var code: Int32 = 0
            do {
                let fd = try RootDirectory.open(target.root).openDirectory(target.components.dropLast(), create: false, display: target.relative, throughLinks: false, lifting: true)
                if fsync(fd) != 0 { code = errno }
                Glibc.close(fd)
            } catch {
                if case .system(_, _, let e) = error { code = e } else { code = ENOTDIR }
            }
            // No such directory: a file placed cold makes none, and had no hot copy there.
            guard code != 0, code != ENOENT else { continue }
            for i in indices { failures[i] = StoreError.system(operation: "fsync the directory of", path: batch[i].target.relative, errno: code) }
        }
        return failures
    }

    private func finishHot(job: String, batch: [Finish], mayName: () -> Bool) -> [Int: Error] {
        var failures: [Int: Error] = [:]
        var ready: [(Int, OpenFile)] = []
        let already = Set(batch.indices.filter {
            finishedLately(JobFile(job: job, path: batch[$0].target.relative), batch[$0].target, size: batch[$0].file.size)
                || finishedByAnother(job: job, batch[$0])
        })
        // Files whose every chunk was found in place stay where they are.
        // (`keptInPlace` knows them as finished lately itself; those `listed` are recorded below.)
        var kept: [Int] = []
        for (i, item) in batch.enumerated() where !already.contains(i) {
            do {
                switch try keptInPlace(job: job, item, mayName: mayName) {
                case .listed:
                    kept.append(i)
                    continue
                case .retimed:
                    continue
                case .no:
                    break
                }
                ready.append((i, try complete(job: job, item, mayCreate: mayName)))
            } catch is AlreadyFinished {
                // Finished since the look above, by another finish of the same file (the batch
                // sent again): done. It was refused as a failed write, and the unit retried.
                continue
            } catch {
                failures[i] = error
            }
        }
        // Durable, all at once: a `syncfs` per file system, shared with the batches that wait at
        // the same time.
        let sync = ready.count >= Self.syncfsBatch
        var devices: [UInt64: Int32] = [:]
        // Each directory's file system, where it is known: a file whose file system is not
        // synced by a `syncfs` (no descriptor could be copied or looked at for it: EMFILE) is
        // synced by its own `fsync` instead. Before, it was renamed with its bytes in the page
        // cache alone (a reading review).
        var deviceOf: [PathKey: UInt64] = [:]
        if sync {
            // A file is on its directory's file system: one look per directory, not per file.
            for (_, f) in ready where deviceOf[Self.parentKey(f.writer.final)] == nil {
                var st = stat()
                // A copy of the descriptor: another finish of the same file (a batch sent again)
                // may seal it, closing its own, while this one syncs.
                let fd = f.lock.withLock { f.sealed ? -1 : f.writer.fileSystemDescriptor() }
                guard fd >= 0 else { continue }
                if fstat(fd, &st) == 0 {
                    deviceOf[Self.parentKey(f.writer.final)] = UInt64(st.st_dev)
                    if devices[UInt64(st.st_dev)] == nil {
                        devices[UInt64(st.st_dev)] = fd
                        continue
                    }
                }
                Glibc.close(fd)
            }
            defer { for fd in devices.values { Glibc.close(fd) } }
            for (device, fd) in devices {
                let e = syncGroup(device).sync(fd)
                guard e != 0 else { continue }
                for (i, f) in ready {
                    failures[i] = StoreError.system(operation: "syncfs", path: f.writer.final.relative, errno: e)
                    distrust(job: job, f)
                }
                ready = []
            }
        }
        if !ready.isEmpty, !mayName() {
            for (i, f) in ready {
                failures[i] = Incomplete(description: "\(f.writer.final.relative): this agent was stopped while finishing it, and its unit may be another agent's now; left partial")
            }
            ready = []
        }
        // Sealed and named by another agent sharing the root meanwhile: done here too.
        var elsewhere: [Int] = []
        ready = ready.filter { i, f in
            do {
                let item = batch[i].file
                try f.lock.withLock {
                    // A chunk written again (a resend) may still be landing: the file waits.
                    guard f.writers == 0 else {
                        throw Incomplete(description: "\(f.writer.final.relative): a write to it is still running; send its finish again")
                    }
                    // Another finish of the same file is under way here: the same batch sent
                    // again by a source that was killed and started again, while this agent still
                    // finished the first. Asked again, it finds the file finished. (Before, the
                    // second finish failed the whole job: "its partial copy is already closed".)
                    guard !f.sealed else { throw Incomplete.finishUnderWay(f.writer.final.relative) }
                    f.sealed = true
                    // A transfer's file: without set-user-ID and set-group-ID (`FileModes`). A file
                    // promoted from this agent's own cold tier keeps its own mode (ColdStore).
                    let synced = deviceOf[Self.parentKey(f.writer.final)].map { devices[$0] != nil } ?? false
                    try f.writer.seal(mode: FileModes.atDestination(item.mode), mtimeSeconds: item.mtimeSeconds, mtimeNanoseconds: item.mtimeNanoseconds, sync: !synced)
                    if f.writer.leftBehind {
                        logger.notice("\(f.writer.final.relative): another writer of its partial copy (an agent sharing the root, stopped?) held a lock on it for \(PartialFileWriter.lockWait); sealed a fresh copy instead, which that writer cannot reach")
                    }
                }
                return true
            } catch StoreError.finishedElsewhere {
                // Another agent sharing the root sealed the same copy first (its finish ran at
                // both). Done once that one named it as this finish would; until then, asked again.
                var st = stat()
                if batch[i].target.lstat(&st) == 0, Self.finished(st, as: batch[i].file) {
                    elsewhere.append(i)
                } else if access(f.writer.partialPath, F_OK) == 0 {
                    failures[i] = Incomplete(description: "\(f.writer.final.relative): another writer sharing the root sealed its partial copy and has not named it yet; send its finish again")
                } else {
                    // Named, and changed under its final name since: as a rename that finds
                    // no partial copy fails.
                    failures[i] = StoreError.system(operation: "rename", path: f.writer.final.relative, errno: ENOENT)
                }
                return false
            } catch {
                failures[i] = error
                if case StoreError.system("fsync", _, _) = error { distrust(job: job, f) }
                if case StoreError.system(_, _, ESTALE) = error { letGo(job: job, f) }
                return false
            }
        }
        // Final names, then one fsync per directory; for a batch made durable by `syncfs`, one
        // more shared `syncfs` instead (it commits every rename of the file system at once).
        // Keyed by bytes (`PathKey`): "é/" and "e\u{301}/" are two directories.
        var byParent: [PathKey: (parent: ArraySlice<String>, files: [(Int, OpenFile)])] = [:]
        for (i, f) in ready { byParent[Self.parentKey(f.writer.final), default: (f.writer.final.components.dropLast(), [])].files.append((i, f)) }
        var finished: [Int] = []
        // Per file system: a directory descriptor for its `syncfs`, and the files renamed there.
        var renamedOn: [UInt64: (fd: Int32, files: [Int])] = [:]
        for (parent, files) in byParent.values {
            do {
                let dfd = try RootDirectory.open(files[0].1.writer.final.root).openDirectory(parent, create: false, display: files[0].1.writer.final.relative, throughLinks: false, lifting: true)
                defer { Glibc.close(dfd) }
                var renamed: [Int] = []
                for (i, f) in files {
                    do {
                        try f.writer.rename(in: dfd)
                        renamed.append(i)
                    } catch StoreError.system(_, _, ENOENT) where Self.inPlace(dfd, f.writer.final, batch[i].file) {
                        renamed.append(i)
                    } catch {
                        failures[i] = error
                    }
                }
                var st = stat()
                if sync, fstat(dfd, &st) == 0, devices[UInt64(st.st_dev)] != nil {
                    let device = UInt64(st.st_dev)
                    if renamedOn[device] == nil { renamedOn[device] = (dup(dfd), []) }
                    renamedOn[device]!.files += renamed
                    continue
                }
                guard fsync(dfd) == 0 else { throw StoreError.system(operation: "fsync directory", path: parent.joined(separator: "/"), errno: errno) }
                finished += renamed
            } catch {
                for (i, _) in files where failures[i] == nil { failures[i] = error }
            }
        }
        for (device, (dfd, renamed)) in renamedOn {
            let e = dfd < 0 ? EBADF : syncGroup(device).sync(dfd)
            if dfd >= 0 { Glibc.close(dfd) }
            if e == 0 {
                finished += renamed
            } else {
                for i in renamed { failures[i] = StoreError.system(operation: "syncfs after renaming", path: batch[i].target.relative, errno: e) }
            }
        }
        finished += kept + elsewhere
        // Known as finished before its entry goes, so that a late chunk in between finds it so
        // rather than opening a new partial copy.
        recentlyFinished.withLockedValue { recent in
            for i in finished + already { recent.insert(JobFile(job: job, path: batch[i].target.relative)) }
        }
        inPlace.forbid(batch.map { JobFile(job: job, path: $0.target.relative) })
        // Finished, or sealed and then refused by the disk: either way its writer is closed, and a
        // later chunk of the same name opens the partial copy again.
        open.withLockedValue { files in
            for i in batch.indices {
                let key = JobFile(job: job, path: batch[i].target.relative)
                if failures[i] == nil || files[key].map({ f in f.lock.withLock { f.sealed } }) == true { files.removeValue(forKey: key) }
            }
        }
        if !finished.isEmpty {
            record(finalizing: finished.sorted().map {
                let f = batch[$0].file
                return ChunkIndex.Finalized(path: batch[$0].target.relative, size: f.size, mtimeSeconds: f.mtimeSeconds, mtimeNanoseconds: f.mtimeNanoseconds)
            })
        }
        return failures
    }

    /// Keeps the file of `item` where it is when every one of its chunks was found in place in
    /// its final copy (`InPlaceFiles`) and the file has not changed since: it gets its mode and
    /// mtime there (`UnchangedFinal.keep(_:in:checkedAs:…)`), and the chunk index records it
    /// as a finish would. A file found only in part is refused as `Incomplete`, and nothing is
    /// made for it. One found whole that cannot be kept (a hard link whose mtime must change, a
    /// file changed since) gets a partial copy of what was found, and is then finished as any
    /// other (`.no`). Asks `mayName` before it changes anything; refused, the file stays as it is,
    /// refused as `Incomplete`.
    private func keptInPlace(job: String, _ item: Finish, mayName: () -> Bool) throws -> KeptInPlace {
        let key = JobFile(job: job, path: item.target.relative), size = item.file.size
        guard let found = inPlace.take(key), let identity = found.identity else { return .no }
        guard found.whole(size), identity.size == size, open.withLockedValue({ $0[key] == nil }) else {
            // Part of it found here (a unit sent again, or a large file's ranges split between
            // agents when the one it was pinned to went down): refused as it is, nothing made;
            // sent again, its chunks are looked for anew.
            throw Incomplete(description: "\(item.target.relative): only \(found.covered.total) of its \(size) bytes were found in place at this agent; it stays as it was")
        }
        guard mayName() else {
            throw Incomplete(description: "\(item.target.relative): this agent was stopped while finishing it, and its unit may be another agent's now; left as it was")
        }
        if let root = try? RootDirectory.open(item.target.root),
           UnchangedFinal.keep(item.target, in: root, checkedAs: identity, mode: item.file.mode, mtimeSeconds: item.file.mtimeSeconds,
                               mtimeNanoseconds: item.file.mtimeNanoseconds) != nil {
            // Known as finished at once: a late chunk of it (a unit's duplicate run) is acked
            // rather than opening a partial copy beside it while the rest of the batch finishes.
            recentlyFinished.withLockedValue { $0.insert(key) }
            // Its rows, as a finish records a file's: they replace those of its final copy.
            // Past the copy limit the chunks are not listed: the final copy's rows, which
            // offered them, stay, with the file's new mtime.
            guard let index else { return .listed }
            var rows = found.chunks.map { ChunkIndex.Entry(path: item.target.relative, offset: $0.offset, length: $0.length, fileSize: size, id: $0.id, xxh: $0.xxh) }
            if found.overflowed {
                do {
                    if try index.retime(path: item.target.relative, size: size, mtimeSeconds: item.file.mtimeSeconds, mtimeNanoseconds: item.file.mtimeNanoseconds) {
                        return .retimed
                    }
                } catch {
                    logger.warning("chunk index: \(item.target.relative) kept in place, its new mtime not recorded: \(error)")
                    return .retimed
                }
                // Not this agent's: another sharing the root finished it last, and its rows went
                // stale with the new mtime. They become this agent's, as a finish records a
                // file's (else the next re-sync found none, and sent the whole file by value).
                for sibling in siblings?.indexes() ?? [] {
                    if let theirs = try? sibling.finalRows(path: item.target.relative, size: size), !theirs.isEmpty {
                        rows = theirs.map { var r = $0; r.final = false; return r }
                        break
                    }
                }
            }
            pending.withLockedValue { $0.append(contentsOf: rows) }
            return .listed
        }
        // Whole, but not to be kept (a hard link whose mode or mtime must change, a file not
        // this agent's to change, or one changed since): written anew from what was found.
        let f = try file(job: job, target: item.target, size: size, mayCreate: mayName)
        try materialize(found, into: f, job: job, target: item.target, size: size)
        return .no
    }

    /// How a finish kept a file in place: not at all; with the rows of its chunks to record as a
    /// finish's; or with only its mtime changed in the index (`InPlaceFiles.copyLimit`).
    private enum KeptInPlace { case no, listed, retimed }

    /// The directory a file is in, by bytes (a key of the finish's groups).
    static func parentKey(_ path: RootedPath) -> PathKey { PathKey(path.components.dropLast().joined(separator: "/")) }

    /// Another agent sharing the root gave this same partial copy its final name first (the
    /// file's finish ran at both, one of them from before a coordinator restart): the rename
    /// finds no partial copy. The file is in place when the name holds a regular file of the
    /// size and mtime this finish gives it, as the quick check would judge it.
    static func inPlace(_ directory: Int32, _ final: RootedPath, _ file: FilesDone.File) -> Bool {
        var st = stat()
        guard let name = final.components.last, fstatat(directory, name, &st, AT_SYMLINK_NOFOLLOW) == 0 else { return false }
        return finished(st, as: file)
    }

    /// `st` is a regular file of the size and mtime `file`'s finish gives it.
    static func finished(_ st: stat, as file: FilesDone.File) -> Bool {
        st.st_mode & S_IFMT == S_IFREG && UInt64(st.st_size) == file.size
            && Int64(st.st_mtim.tv_sec) == file.mtimeSeconds && Int32(st.st_mtim.tv_nsec) == file.mtimeNanoseconds
    }

    /// Another writer sharing the root finished the file while this agent had it open (a chunk
    /// written here found it finished, `OpenFile.finishedElsewhere`, and was acked without being
    /// counted), and it is in place: a regular file with the size and mtime this finish names.
    /// Its finish here is done. Before, it was refused as incomplete ("only 0 of its 8192 bytes
    /// arrived at this agent") at every attempt, and the job failed (`cluster/chaos.sh`, a
    /// coordinator killed 0.3 s into a job of small files, 1 run of 6).
    private func finishedByAnother(job: String, _ item: Finish) -> Bool {
        guard let f = open.withLockedValue({ $0[JobFile(job: job, path: item.target.relative)] }),
              f.lock.withLock({ f.finishedElsewhere }) else { return false }
        var st = stat()
        return item.target.lstat(&st) == 0 && Self.finished(st, as: item.file)
    }

    /// The open file for `item`, checked complete: every one of its bytes arrived.
    private func complete(job: String, _ item: Finish, mayCreate: () -> Bool) throws -> OpenFile {
        let target = item.target, size = item.file.size
        let isOpen = open.withLockedValue { $0[JobFile(job: job, path: target.relative)] != nil }
        // A partial copy left by an earlier run may be complete: with an index, it is reopened.
        let leftOver = !isOpen && index != nil && access(PartialFileWriter.partialPath(of: target), F_OK) == 0
        guard size == 0 || isOpen || leftOver else {
            throw Incomplete(description: "\(target.relative): none of its \(size) bytes arrived at this agent")
        }
        let f = try file(job: job, target: target, size: size, mayCreate: mayCreate)
        if f.lock.withLock({ f.size == size && f.covered < size }) {
            // Another agent that writes into this partial copy records its chunks within half a
            // second (its index flush): while it has some here, wait that long for the rest.
            var waited = 0
            while adoptFromSiblings(f, target), f.lock.withLock({ f.covered < size }), waited < Self.siblingWait {
                usleep(100_000)
                waited += 1
            }
        }
        try f.lock.withLock {
            guard !f.sealed else { throw Incomplete.finishUnderWay(target.relative) }
            guard f.size == size else { throw StoreError.invalidPath(path: target.relative, reason: "its chunks said \(f.size) bytes, the finish \(size)") }
            guard f.covered == size else {
                throw Incomplete(description: "\(target.relative): only \(f.covered) of its \(size) bytes arrived at this agent; it stays partial")
            }
        }
        return f
    }

    /// Counts as arrived the chunks of the partial copy that another agent sharing this root
    /// wrote and recorded in its index, where the bytes on disk still hash to what it recorded.
    /// Two agents of a site sharing a root write into the same partial copy, and a file's ranges
    /// can end up at both: one still running when a coordinator restarted, or the agent that had
    /// them went down. Its finish then comes to an agent that saw only part of the file, which
    /// refused it, and the whole file was sent again. Only chunks that touch nothing already
    /// counted are taken, so no byte is counted twice.
    ///
    /// Returns whether another agent has rows for this partial copy at all.
    @discardableResult
    private func adoptFromSiblings(_ f: OpenFile, _ target: RootedPath) -> Bool {
        guard let siblings else { return false }
        let own = f.lock.withLock { f.written }
        /// Whether [offset, offset + length) overlaps bytes this agent counted.
        func overlapsOwn(_ offset: UInt64, _ length: UInt64) -> Bool { own.overlaps(offset, length) }
        var rows: [ChunkIndex.Entry] = []
        for sibling in siblings.indexes() {
            do { rows += try sibling.partialRows(path: target.relative, fileSize: f.size) } catch {
                logger.warning("chunk index of another agent at \(sibling.path) not read: \(error)")
            }
        }
        guard !rows.isEmpty else { return false }
        // One sweep in offset order over every agent's rows: a row is taken when its bytes check
        // out and it starts past the end of the last one taken, so none overlaps another.
        rows.sort { $0.offset < $1.offset }
        let candidates = rows.filter { $0.length > 0 && $0.offset + UInt64($0.length) <= f.size && !overlapsOwn($0.offset, UInt64($0.length)) }
        var adopted: [ChunkIndex.Entry] = []
        if let longest = candidates.map(\.length).max() {
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: longest, alignment: 16)
            defer { buffer.deallocate() }
            var end: UInt64 = 0
            for e in candidates where e.offset >= end {
                let region = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<e.length])
                guard LocalChunk.read(f.writer.partialPath, at: e.offset, into: region),
                      XXH3.hash128(UnsafeRawBufferPointer(region)).canonicalBytes == e.xxh else { continue }
                adopted.append(e)
                end = e.offset + UInt64(e.length)
            }
        }
        guard !adopted.isEmpty else { return true }
        f.lock.withLock { for e in adopted { f.cover(e.offset, UInt64(e.length)) } }
        // This agent's index learns them too (a restart of this agent keeps them).
        if index != nil {
            pending.withLockedValue { p in
                for e in adopted { p.append(ChunkIndex.Entry(path: target.relative, offset: e.offset, length: e.length, fileSize: f.size, id: e.id, xxh: e.xxh)) }
            }
        }
        logger.notice("\(target.relative): took \(adopted.count) chunks (\(adopted.reduce(0) { $0 + $1.length }) bytes) that another agent sharing this root wrote into its partial copy")
        return true
    }

    /// Tenths of a second a finish waits for another agent's rows (`adoptFromSiblings`).
    static let siblingWait = 8

    /// Forgets a job's open files, closing them; their partial files (and their index rows) stay
    /// for a later run.
    public func close(job: String) {
        flush()
        forget(job: job)
    }

    /// `close` without the index flush (SQLite, which may wait on the disk): what an agent does
    /// as it hears that the job ended, on the task that reads the coordinator's messages, so that
    /// no file of the job is finished from then on (a `files done` already on its way is refused),
    /// while the flush goes to a blocking thread.
    public func forget(job: String) {
        open.withLockedValue { files in
            for key in files.keys where key.job == job { files.removeValue(forKey: key) }
        }
        coldFiles.withLockedValue { set in set = set.filter { $0.job != job } }
        inPlace.forget(job: job)
    }
}

/// Reads a chunk back from a file this agent holds.
enum LocalChunk {
    static func read(_ path: String, at offset: UInt64, into region: UnsafeMutableRawBufferPointer) -> Bool {
        read(fd: open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC), at: offset, into: region)
    }

    /// The file at `relative`, opened beneath `root` through no link.
    static func read(_ relative: String, in root: RootDirectory, at offset: UInt64, into region: UnsafeMutableRawBufferPointer) -> Bool {
        read(fd: root.openBeneath(relative, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, throughLinks: false), at: offset, into: region)
    }

    private static func read(fd: Int32, at offset: UInt64, into region: UnsafeMutableRawBufferPointer) -> Bool {
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var done = 0
        while done < region.count {
            let n = pread(fd, region.baseAddress! + done, region.count - done, off_t(offset) + off_t(done))
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return false }
            done += n
        }
        return true
    }
}

/// A file of a job at this agent: the job's id and the file's path relative to the root, told
/// apart by the path's bytes (`PathKey`), never by canonical equivalence.
struct JobFile: Hashable, Sendable {
    let job: String
    let path: String

    static func == (a: JobFile, b: JobFile) -> Bool { a.job == b.job && PathKey.sameBytes(a.path, b.path) }

    func hash(into hasher: inout Hasher) {
        hasher.combine(job)
        hasher.combine(PathKey(path))
    }
}

/// A bounded set of the most recent keys: the oldest goes when a new one would pass `capacity`.
struct RecentKeys {
    static let capacity = 65_536
    private var members: Set<JobFile> = []
    private var order: Deque<JobFile> = []

    func contains(_ key: JobFile) -> Bool { members.contains(key) }

    /// Forgets `key` (its place in the order goes when it comes up for eviction).
    mutating func remove(_ key: JobFile) { members.remove(key) }

    mutating func insert(_ key: JobFile) {
        guard members.insert(key).inserted else { return }
        order.append(key)
        if order.count > Self.capacity, let oldest = order.popFirst() { members.remove(oldest) }
    }
}
