import BargeChunk
import BargeCodec
import Foundation
import BargeDigest
import BargeStore
#if canImport(Glibc)
import Glibc
#endif

/// A site's cold tier: a content-addressed, deduplicated, compressed (and optionally encrypted)
/// pack store with its catalog. Files move in by `demote` and out by `promote`; `verify`, `gc`
/// and `totals` look after it. Each call works in the caller's thread (agents run them on the
/// blocking-I/O pool); several processes may use one store at once.
public final class ColdStore {
    public let layout: ColdLayout
    public let catalog: ColdCatalog
    let keys: ColdKeys?
    public let chunkSize: Int
    public var encrypted: Bool { keys != nil }

    /// The codec for archiving is `auto` as if each chunk were sent over a link of this rate: the
    /// selector spends CPU on ratio (stronger zstd levels, shuffle and delta filters) as long as
    /// the time it costs stays below what the saved bytes would take at this rate. That is
    /// "ratio first, within a CPU budget": on one core, no codec it picks runs much under it.
    public static let archiveRate: Double = 40e6

    public init(directory: String, keyMaterial: [UInt8]? = nil) throws {
        layout = ColdLayout(directory: directory)
        try layout.createDirectories()
        let (config, keys) = try ColdConfig.openOrCreate(layout, keyMaterial: keyMaterial)
        self.keys = keys
        chunkSize = config.chunkSize
        catalog = try ColdCatalog(path: layout.catalogPath)
    }

    /// The root with its symbolic links resolved, as `RootedPath` gives absolute paths.
    static func realRoot(_ root: String) -> String { (try? RootedPath.lexical("", under: root))?.root ?? root }

    /// The directory holding `rooted`, opened beneath the root (`RootDirectory`): a link on the
    /// way may stay inside the root, and the kernel refuses one that leads out.
    static func directory(holding rooted: RootedPath) throws(StoreError) -> Int32 {
        try RootDirectory.open(rooted.root).openDirectory(rooted.components.dropLast(), create: false, display: rooted.relative, lifting: true)
    }

    /// Called by `demote` after the catalog commit, before any hot copy is removed (tests: a
    /// directory swapped in that moment).
    var willRemoveHotCopies: (() -> Void)?

    /// The id a chunk with this SHA-256 is stored under.
    func storedID(_ sha: SHA256Digest) -> [UInt8] { keys?.storedID(sha) ?? sha.bytes }

    // MARK: demote

    public struct Skipped: Sendable, Hashable, Codable {
        public var path: String
        public var reason: String
    }

    public struct DemoteOutcome: Sendable {
        public var files: [ColdFile] = []
        public var logicalBytes: UInt64 = 0
        /// Bytes of new packs written (what the store grew by).
        public var storedBytes: UInt64 = 0
        public var newChunks = 0
        public var skipped: [Skipped] = []
    }

    /// Moves regular files (paths relative to `root`) into the store: chunks are written to new
    /// packs, the packs are sealed and read back, the catalog records the files, and only then
    /// is each hot copy removed, if it did not change meanwhile. A crash at any point leaves
    /// each file whole in at least one tier: before the catalog commit the hot copy is
    /// untouched; after it both are whole until the unlink. A file already cold is only
    /// unlinked when its hot copy is the one the catalog describes (a demotion redone after a
    /// crash).
    public func demote(_ paths: [String], root: String, encoder: AdaptiveEncoder) throws -> DemoteOutcome {
        try demote(paths, root: root, encoders: [encoder])
    }

    /// Encoders for archiving, one per core (at most 4), sharing what their selector learns:
    /// demotion hashes and compresses that many chunks at once.
    public static func archiveEncoders(selector: SharedSelector = SharedSelector(.archiving())) -> [AdaptiveEncoder] {
        (0..<max(1, min(4, ProcessInfo.processInfo.activeProcessorCount))).map { _ in AdaptiveEncoder(sendRate: archiveRate, selector: selector) }
    }

    /// As `demote(_:root:encoder:)`, with the chunks of a file hashed and compressed
    /// `encoders.count` at a time, each on its own thread, and written to the pack in order.
    ///
    /// Files of at least `contentDefinedAbove` bytes are cut by content (`FastCDC.standard`), as a
    /// source agent cuts them in transit, so an insertion moves only nearby chunks and a file
    /// demoted shares its chunks with the same bytes shifted, or placed cold as they arrived.
    /// Smaller files (and all, when it is nil) are cut into chunks of the store's `chunk_size`.
    ///
    /// `page`: the tier job's page this is (its job, where it starts, and where the next starts):
    /// the catalog's commit records it as under way, with the files whose hot copies go next, so
    /// that the page asked again after a crash finishes those removals and counts them
    /// (`finishRemovals`). Asked again, it walked the files left hot only, and the job said fewer
    /// files moved than it had (187 of 208, 6 of 6 kills during the removals: h1 of session 52).
    public func demote(_ paths: [String], root: String, encoders: [AdaptiveEncoder],
                       contentDefinedAbove: UInt64? = ChunkingStrategy.defaultContentDefinedAbove,
                       page: (job: String, after: String, next: String)? = nil) throws -> DemoteOutcome {
        let lock = try StoreLock(layout.lockPath, exclusive: false)
        defer { lock.release() }
        var outcome = DemoteOutcome()
        var writer: PackWriter?
        // Full packs are sealed in the background; all are waited for before the catalog.
        let sealer = PackSealer()
        defer { _ = try? sealer.wait() }
        var batchIDs = Set<[UInt8]>()
        // Chunks a file of this batch takes from packs written before (dedup, or a file already
        // cold): read back too before any hot copy goes (`unreadable`).
        var reused = Set<[UInt8]>()
        var opened: [(file: ColdFile, path: RootedPath, inode: UInt64)] = []
        let lanes = max(1, encoders.count)
        let work = ChunkLanes(count: lanes, chunkSize: max(chunkSize, FastCDC.standard.maxSize), keys: keys, encoders: encoders)
        defer { work.deallocate() }
        defer { writer?.abandon() }

        for path in paths {
            guard !path.hasSuffix(PartialFileWriter.suffix) else {
                // Its transfer renames it when it ends, or the next one replaces it.
                outcome.skipped.append(Skipped(path: path, reason: "a transfer's partial file (\(PartialFileWriter.suffix)); it stays hot"))
                continue
            }
            let rooted: RootedPath
            do { rooted = try RootedPath.resolve(path, under: root) } catch {
                outcome.skipped.append(Skipped(path: path, reason: "\(error)"))
                continue
            }
            guard let name = rooted.components.last else {
                outcome.skipped.append(Skipped(path: path, reason: "not a regular file (directories and links stay hot)"))
                continue
            }
            let parent: Int32
            do { parent = try Self.directory(holding: rooted) } catch {
                outcome.skipped.append(Skipped(path: path, reason: "cannot open: \(error)"))
                continue
            }
            defer { close(parent) }
            let fd = openat(parent, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
            guard fd >= 0 else {
                outcome.skipped.append(Skipped(path: path, reason: "cannot open: \(String(cString: strerror(errno)))"))
                continue
            }
            defer { close(fd) }
            var before = stat()
            guard fstat(fd, &before) == 0, before.st_mode & S_IFMT == S_IFREG else {
                outcome.skipped.append(Skipped(path: path, reason: "not a regular file (directories and links stay hot)"))
                continue
            }
            if let existing = try catalog.file(rooted.relative), Self.same(existing, before),
               try catalog.locations(existing.chunks.map(\.id)).count == Set(existing.chunks.map(\.id)).count {
                // Already cold (a demotion redone after a crash): the hot copy is the same file.
                opened.append((existing, rooted, UInt64(before.st_ino)))
                reused.formUnion(existing.chunks.map(\.id))
                continue
            }
            var chunks: [ColdFile.Chunk] = []
            let size = UInt64(before.st_size)
            // Up to `lanes` chunks are copied out of the reader, then hashed side by side, then
            // the new ones compressed side by side and appended to the pack in order.
            var count = 0
            func store() throws {
                DispatchQueue.concurrentPerform(iterations: count) { k in work.hash(k) }
                // Which are new (in order: a chunk repeated within the batch is stored once).
                var fresh: [Int] = []
                for k in 0..<count {
                    let id = work.id(k)
                    if !batchIDs.contains(id) {
                        if try catalog.known([id]).isEmpty {
                            batchIDs.insert(id)
                            fresh.append(k)
                        } else {
                            reused.insert(id)
                        }
                    }
                }
                let encodeLanes = fresh
                DispatchQueue.concurrentPerform(iterations: encodeLanes.count) { i in work.encode(encodeLanes[i], with: i) }
                for k in 0..<count {
                    if encodeLanes.contains(k) {
                        guard work.encodedLengths[k] >= 0 else { throw ColdStoreError("cannot compress a chunk of \(path)") }
                        if writer == nil { writer = try PackWriter(layout: layout, keys: keys) }
                        try writer!.append(id: work.id(k), encoded: UnsafeRawBufferPointer(start: work.encoded[k], count: work.encodedLengths[k]),
                                           rawLength: work.lengths[k])
                        outcome.newChunks += 1
                        if writer!.bytes >= UInt64(PackFormat.targetPackBytes) {
                            sealer.seal(writer!)
                            writer = nil
                        }
                    }
                    chunks.append(ColdFile.Chunk(id: work.id(k), length: UInt32(work.lengths[k])))
                }
                count = 0
            }
            var failed: String?
            do {
                let strategy = ChunkingStrategy.forFile(size: size, contentDefinedAbove: contentDefinedAbove, fixedSize: chunkSize)
                try FileChunkReader(path: rooted.absolute, strategy: strategy).forEachChunk(of: fd, from: 0, length: size) { _, bytes in
                    work.raw[count].copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
                    work.lengths[count] = bytes.count
                    count += 1
                    if count == lanes { try store() }
                }
                if count > 0 { try store() }
            } catch let error as ChunkingError {
                switch error {
                case .shortFile: failed = "it shrank while it was read"
                case .io(_, _, let code): failed = "cannot read: \(String(cString: strerror(code)))"
                default: failed = "\(error)"
                }
            }
            var after = stat()
            if failed == nil, fstat(fd, &after) != 0 || after.st_size != before.st_size || after.st_mtim.tv_sec != before.st_mtim.tv_sec
                || after.st_mtim.tv_nsec != before.st_mtim.tv_nsec {
                failed = "it changed while it was demoted"
            }
            if let failed {
                outcome.skipped.append(Skipped(path: path, reason: failed))
                continue
            }
            let file = ColdFile(path: rooted.relative, size: UInt64(before.st_size), mode: UInt32(before.st_mode & 0o7777),
                                mtimeSeconds: Int64(before.st_mtim.tv_sec), mtimeNanoseconds: Int32(before.st_mtim.tv_nsec), chunks: chunks)
            opened.append((file, rooted, UInt64(before.st_ino)))
        }
        if let w = writer, !w.entries.isEmpty {
            sealer.seal(w)
        } else {
            writer?.abandon()
        }
        writer = nil
        let sealed = try sealer.wait()
        // Read every new pack back before anything hot is removed, and every older chunk a file
        // takes: a file deduped against a blob damaged since it was written lost its only whole
        // copy with its hot one (a reading review, h4 of session 48). It stays hot instead.
        for pack in sealed { try verifyPack(pack.id, expecting: pack.entries) }
        let unreadable = try unreadable(reused.subtracting(batchIDs))
        if !unreadable.isEmpty {
            opened.removeAll { entry in
                guard let bad = entry.file.chunks.first(where: { unreadable[$0.id] != nil }) else { return false }
                outcome.skipped.append(Skipped(path: entry.file.path, reason: ColdStoreError.damagedPrefix
                    + "a chunk it shares with cold files does not read back (\(unreadable[bad.id]!)); it stays hot ('barge verify --repair' finds the cold files that hold it)"))
                return true
            }
        }
        // Files one of whose chunks `verify --repair` forgot meanwhile (it found it damaged,
        // holding the store's lock shared as this does) are left out, and stay hot: committed,
        // they named a chunk the store no longer lists.
        let storedBytes = sealed.reduce(0) { $0 + $1.bytes }
        let forgotten = try catalog.commit(packs: sealed, files: opened.map(\.file), page: page.map {
            ($0.job, $0.after, ColdCatalog.PageOutcome(next: $0.next, files: 0, logicalBytes: 0, packBytes: storedBytes, skipped: outcome.skipped))
        })
        if !forgotten.isEmpty {
            opened.removeAll { entry in
                guard forgotten.contains(entry.file.path) else { return false }
                outcome.skipped.append(Skipped(path: entry.file.path, reason: Self.forgottenMeanwhile))
                return true
            }
        }
        outcome.storedBytes = storedBytes
        willRemoveHotCopies?()
        try removeHotCopies(opened.map { ($0.file, $0.path, $0.inode) }, root: root, into: &outcome)
        return outcome
    }

    /// Why a file committed with a chunk `verify --repair` forgot meanwhile stays hot.
    static let forgottenMeanwhile = "a chunk it shares with cold files was found damaged meanwhile; it stays hot"

    /// The removals of a demotion's page cut short after its catalog commit (its agent killed):
    /// each file of `paths` still listed cold whose hot copy is the one the catalog describes
    /// loses its hot copy, and is counted as moved, as is one whose hot copy is gone already
    /// (removed before the crash). One changed since stays hot.
    public func finishRemovals(_ paths: [String], root: String) throws -> DemoteOutcome {
        let lock = try StoreLock(layout.lockPath, exclusive: false)
        defer { lock.release() }
        var outcome = DemoteOutcome()
        var entries: [(ColdFile, RootedPath, UInt64?)] = []
        for path in paths {
            let rooted: RootedPath
            do { rooted = try RootedPath.lexical(path, under: root) } catch {
                outcome.skipped.append(Skipped(path: path, reason: "\(error)"))
                continue
            }
            guard let file = try catalog.file(rooted.relative) else {
                // Its row went: the first run found it changed, and kept it hot.
                outcome.skipped.append(Skipped(path: path, reason: "it changed after it was stored; the hot copy stays"))
                continue
            }
            entries.append((file, rooted, nil))
        }
        try removeHotCopies(entries, root: root, into: &outcome)
        return outcome
    }

    /// Removes the hot copies of files just committed cold: each only if it is still the file
    /// that was stored (`inode`, where known, and size and mtime).
    private func removeHotCopies(_ entries: [(file: ColdFile, rooted: RootedPath, inode: UInt64?)], root: String, into outcome: inout DemoteOutcome) throws {
        var parents = DirectoryTimes(catalog: catalog, root: ColdStore.realRoot(root))
        var hotCopiesStay: String?
        for (file, rooted, inode) in entries {
            // The hot copy goes only if it is still the file that was stored, looked at and
            // removed in its directory opened beneath the root: a directory on the way swapped
            // for a link meanwhile cannot take the removal outside the root.
            let name = rooted.components[rooted.components.count - 1]
            let parent: Int32
            do { parent = try Self.directory(holding: rooted) } catch {
                if case .system(_, _, ENOENT) = error {
                    outcome.files.append(file)
                    outcome.logicalBytes += file.size
                } else {
                    outcome.skipped.append(Skipped(path: file.path, reason: "its directory is not the one it was read from (\(error)); the hot copy stays"))
                    if try catalog.file(file.path)?.chunks == file.chunks { try catalog.remove(file.path) }
                }
                continue
            }
            defer { close(parent) }
            var now = stat()
            guard fstatat(parent, name, &now, AT_SYMLINK_NOFOLLOW) == 0 else {
                // Gone already: another demotion of the same file got there first (a page asked
                // again while the first still ran), or it was deleted. The catalog row stays: it
                // describes the file as it was.
                outcome.files.append(file)
                outcome.logicalBytes += file.size
                continue
            }
            guard inode.map({ UInt64(now.st_ino) == $0 }) ?? true, Self.same(file, now) else {
                // Changed in the moment since it was stored: the new content stays hot, and the
                // row goes, if it is still the one this demotion wrote.
                outcome.skipped.append(Skipped(path: file.path, reason: "it changed after it was stored; the hot copy stays"))
                if try catalog.file(file.path)?.chunks == file.chunks { try catalog.remove(file.path) }
                continue
            }
            // The directory's time is recorded before the removal moves it. A catalog that cannot
            // take the record (its disk full) stops the removals here: this file and the rest
            // stay hot beside their cold copies (the next demotion removes them, a promotion
            // keeps them), and the files already moved are counted. Thrown, the page's moves went
            // uncounted, and its job said "0 files moved" with them cold (h3 of session 49).
            if hotCopiesStay == nil {
                do { try parents.remember(parentOf: rooted) } catch { hotCopiesStay = "\(error)" }
            }
            if let why = hotCopiesStay {
                outcome.skipped.append(Skipped(path: file.path, reason: "its hot copy stays beside its cold one: \(why)"))
                continue
            }
            // In a read-only directory of the agent's own user, lifted for the removal (`DirectoryLift`).
            guard DirectoryLift.retrying(in: parent, { unlinkat(parent, name, 0) }) == 0 || errno == ENOENT else {
                throw ColdStoreError.system("remove the hot copy of", file.path, errno)
            }
            outcome.files.append(file)
            outcome.logicalBytes += file.size
            if let pause = pauseAfterEachFile { Thread.sleep(forTimeInterval: pause) }
        }
        // Not thrown either: the rows of times not put back stay, and the next page, or run,
        // under this path puts them back first (`restoreDirectoryTimes`).
        try? parents.restoreAndSync()
    }

    /// Runs `body` holding the lock of a tier job's pages (`ColdLayout.pageLockPath`): a page
    /// asked again while a run of it is still going (the coordinator restarted, a connection
    /// lost), at this agent or another of the site, waits for that run, and then finds what it
    /// did recorded. Before, both ran at once: the first run's count was lost, and the two
    /// stored the same chunks twice (h1 of session 52: 4 of 4 coordinator kills mid-demotion).
    public func withPageLock<T>(job: String, _ body: () throws -> T) throws -> T {
        guard !job.isEmpty else { return try body() }
        guard mkdir(layout.locksDirectory, 0o755) == 0 || errno == EEXIST else { throw ColdStoreError.system("create", layout.locksDirectory, errno) }
        let lock = try StoreLock(layout.pageLockPath(job: job), exclusive: true)
        defer { lock.release() }
        return try body()
    }

    /// The chunk `id` read from `location` in `reader`'s pack, decoded (XXH3-128) and checked to
    /// be the chunk its id names (SHA-256); damage is thrown.
    func storedChunk(_ id: [UInt8], at location: ChunkLocation, in reader: PackReader, decoder: ChunkDecoder) throws -> [UInt8] {
        let raw = try decoder.decode(try reader.blob(PackFormat.Entry(id: id, offset: location.offset, stored: location.stored, raw: location.raw)), verify: true)
        guard storedID(SHA256.hash(raw)) == id else { throw ColdStoreError.damaged("it is not the chunk stored under its id (its SHA-256 differs)") }
        return raw
    }

    /// Which of `ids`, chunks stored by earlier demotions, do not read back whole (or are in no
    /// pack), with why: each is read, opened and decoded to its XXH3-128, one pack at a time.
    func unreadable(_ ids: Set<[UInt8]>) throws -> [[UInt8]: String] {
        guard !ids.isEmpty else { return [:] }
        let locations = try catalog.locations(Array(ids))
        var out = try unreadable(located: locations)
        for id in ids where locations[id] == nil { out[id] = "chunk \(Hex.encode(id.prefix(8)))… is in no pack" }
        return out
    }

    /// Which of the chunks at `locations` (the catalog's) do not read back whole, with why.
    func unreadable(located locations: [[UInt8]: ChunkLocation]) throws -> [[UInt8]: String] {
        var out: [[UInt8]: String] = [:]
        let decoder = ChunkDecoder()
        for (pack, chunks) in Dictionary(grouping: locations, by: { $0.value.pack }) {
            let reader: PackReader
            // A pack missing or cut short is damage; one the agent cannot open now (EACCES,
            // EMFILE) fails the demotion, before anything hot is removed.
            do { reader = try PackReader(path: layout.packPath(for: pack), keys: keys) } catch let error as ColdStoreError where error.description.hasPrefix(ColdStoreError.damagedPrefix) {
                for (id, _) in chunks { out[id] = "pack \(pack): \(error)" }
                continue
            }
            for (id, at) in chunks.sorted(by: { $0.value.offset < $1.value.offset }) {
                do {
                    // As `verify` checks it: the chunk its id names, not only a blob that decodes.
                    _ = try storedChunk(id, at: at, in: reader, decoder: decoder)
                } catch {
                    out[id] = "chunk \(Hex.encode(id.prefix(8)))… in pack \(pack) at \(at.offset): \(error)"
                }
            }
        }
        return out
    }

    static func same(_ file: ColdFile, _ st: stat) -> Bool {
        UInt64(st.st_size) == file.size && Int64(st.st_mtim.tv_sec) == file.mtimeSeconds && Int32(st.st_mtim.tv_nsec) == file.mtimeNanoseconds
    }

    /// Reads a pack whole: its name is its SHA-256, its index is what was written, and every blob
    /// opens and decodes to its XXH3-128.
    func verifyPack(_ id: String, expecting: [PackFormat.Entry], lanes: Int = ProcessInfo.processInfo.activeProcessorCount) throws {
        let path = layout.packPath(for: id)
        // The name was computed over the bytes as written; what is read back here is the index
        // and every blob (XXH3-128 of each decoded chunk), one reader and decoder per core.
        guard try PackReader(path: path, keys: keys).index() == expecting else {
            throw ColdStoreError.damaged("pack \(id)'s index is not what was written")
        }
        let lanes = max(1, min(lanes, expecting.count))
        let failures = PackCheck(lanes: lanes)
        let keys = keys
        DispatchQueue.concurrentPerform(iterations: lanes) { lane in
            do {
                let reader = try PackReader(path: path, keys: keys)
                let decoder = ChunkDecoder()
                for i in stride(from: lane, to: expecting.count, by: lanes) {
                    _ = try decoder.decode(try reader.blob(expecting[i]), verify: true)
                }
            } catch {
                failures.record(lane, "\(error)")
            }
        }
        if let failure = failures.first { throw ColdStoreError.damaged("pack \(id) does not read back: \(failure)") }
    }

    /// Puts back directory mtimes a crashed demotion or promotion left changed under `prefix`
    /// (relative to `root`); each page starts with it.
    public func restoreDirectoryTimes(under prefix: String, root: String) throws {
        // Exclusive, so that no page is under way: a page changes the directories it recorded
        // until it ends, and puts their times back then. Put back and forgotten here meanwhile
        // (by the agent that took the job on from one stopped mid-page, whose page still ran),
        // a directory kept the time of that page's last rename, with nothing left to put it
        // back (4 of about 25 promotions interrupted by SIGTERM, a black-box review).
        let lock = try StoreLock(layout.lockPath, exclusive: true)
        defer { lock.release() }
        try DirectoryTimes(catalog: catalog, root: ColdStore.realRoot(root)).restorePending(under: prefix)
    }

    // MARK: promote

    public struct PromoteOutcome: Sendable {
        public var files: [ColdFile] = []
        public var logicalBytes: UInt64 = 0
        /// Bytes read from packs.
        public var packBytesRead: UInt64 = 0
        public var skipped: [Skipped] = []
    }

    /// Brings cold files back as plain files: each is rebuilt under its partial name from the
    /// blobs it needs (read pack by pack, in offset order), checked chunk by chunk against its
    /// id, given its mode and mtime, made durable and renamed; only then does the catalog drop
    /// it. A file whose hot copy is already there and matches (a promotion redone after a
    /// crash) is only dropped from the catalog, and counted as moved.
    ///
    /// The catalog drops the page's files at its end, in one transaction, and not one by one: a
    /// page cut short by a crash (its agent killed) leaves every file it promoted listed, so the
    /// page asked again finds them hot and counts them. Dropped as they went, they were missing
    /// from the page asked again, and the job said fewer files moved than it had (981 of 1,207,
    /// h3 of session 50). A page that fails with an error drops the files it promoted first.
    public func promote(_ paths: [String], root: String) throws -> PromoteOutcome {
        // Exclusive: a demotion of the same path at once could otherwise unlink the copy this
        // promotion just wrote, or this promotion drop the row of a file a demotion just unlinked.
        let lock = try StoreLock(layout.lockPath, exclusive: true)
        defer { lock.release() }
        var outcome = PromoteOutcome()
        let decoder = ChunkDecoder()
        var readers: [String: PackReader] = [:]
        var parents = DirectoryTimes(catalog: catalog, root: ColdStore.realRoot(root))
        defer { try? parents.restoreAndSync() }
        do {
            try promote(paths, root: root, into: &outcome, parents: &parents, decoder: decoder, readers: &readers)
        } catch {
            // An error, not a crash: the files promoted so far leave the catalog now, as the
            // page's end would have them, rather than stay listed cold beside their hot copies
            // until the failed job is resumed (a re-sync meanwhile placed a changed one cold
            // again, and removed its hot copy). The page asked again counts only what it moves.
            try? catalog.remove(promoted: outcome.files.map(\.path))
            throw error
        }
        try catalog.remove(promoted: outcome.files.map(\.path))
        return outcome
    }

    private func promote(_ paths: [String], root: String, into outcome: inout PromoteOutcome, parents: inout DirectoryTimes,
                         decoder: ChunkDecoder, readers: inout [String: PackReader]) throws {
        for path in paths {
            let rooted: RootedPath
            do { rooted = try RootedPath.lexical(path, under: root) } catch {
                outcome.skipped.append(Skipped(path: path, reason: "\(error)"))
                continue
            }
            guard let file = try catalog.file(rooted.relative) else {
                outcome.skipped.append(Skipped(path: path, reason: "not in the cold tier"))
                continue
            }
            var st = stat()
            if lstat(rooted.absolute, &st) == 0 {
                if st.st_mode & S_IFMT == S_IFREG, Self.same(file, st) {
                    // Promoted before a crash, or by this page cut short; the catalog lagged.
                    outcome.files.append(file)
                    outcome.logicalBytes += file.size
                    continue
                }
                outcome.skipped.append(Skipped(path: path, reason: "a different file now has its name; it stays cold"))
                continue
            }
            if let problem = file.chunkListProblem {
                outcome.skipped.append(Skipped(path: path, reason: ColdStoreError.damaged(problem + "; it stays cold").description))
                continue
            }
            let locations = try catalog.locations(file.chunks.map(\.id))
            var offsets: [(chunk: ColdFile.Chunk, at: UInt64)] = []
            var at: UInt64 = 0
            for c in file.chunks {
                offsets.append((c, at))
                at += UInt64(c.length)
            }
            if offsets.contains(where: { locations[$0.chunk.id] == nil }) {
                outcome.skipped.append(Skipped(path: path, reason: ColdStoreError.damaged("it needs a chunk the store does not hold (verify found it damaged); it stays cold").description))
                continue
            }
            var offsetsOf: [[UInt8]: [UInt64]] = [:]
            for (c, o) in offsets { offsetsOf[c.id, default: []].append(o) }
            try parents.remember(parentOf: rooted)
            let writer: PartialFileWriter
            do { writer = try PartialFileWriter(rooted, size: file.size) } catch { throw ColdStoreError("cannot create \(path): \(error)") }
            do {
                // By pack, then by offset in the pack: each pack read once, forward.
                let ordered = offsets.sorted { a, b in
                    let la = locations[a.chunk.id]!, lb = locations[b.chunk.id]!
                    return la.pack != lb.pack ? la.pack < lb.pack : la.offset < lb.offset
                }
                var written = Set<UInt64>()
                for (chunk, offset) in ordered where !written.contains(offset) {
                    let location = locations[chunk.id]!
                    if readers[location.pack] == nil { readers[location.pack] = try PackReader(path: layout.packPath(for: location.pack), keys: keys) }
                    let blob = try readers[location.pack]!.blob(PackFormat.Entry(id: chunk.id, offset: location.offset, stored: location.stored, raw: location.raw))
                    outcome.packBytesRead += UInt64(location.stored)
                    let raw: [UInt8]
                    do { raw = try decoder.decode(blob, verify: true) } catch {
                        throw ColdStoreError.damaged("a chunk of \(file.path) in pack \(location.pack) does not decode: \(error)")
                    }
                    guard raw.count == Int(chunk.length), storedID(SHA256.hash(raw)) == chunk.id else {
                        throw ColdStoreError.damaged("a chunk of \(file.path) in pack \(location.pack) is not the one stored")
                    }
                    // The same chunk may sit at several offsets of the file.
                    for o in offsetsOf[chunk.id] ?? [] where !written.contains(o) {
                        do { try raw.withUnsafeBytes { b in try writer.write(b, at: o) } } catch {
                            throw ColdStoreError("cannot write \(path): \(error)")
                        }
                        written.insert(o)
                    }
                }
                do { try writer.finish(mode: file.mode, mtimeSeconds: file.mtimeSeconds, mtimeNanoseconds: file.mtimeNanoseconds) } catch {
                    throw ColdStoreError("cannot finish \(path): \(error)")
                }
            } catch let error as ColdStoreError where error.description.hasPrefix(ColdStoreError.damagedPrefix) {
                // One damaged file stays cold, with the reason; the rest of the page goes on.
                writer.abandon()
                outcome.skipped.append(Skipped(path: path, reason: error.description))
                continue
            } catch {
                writer.abandon()
                throw error
            }
            outcome.files.append(file)
            outcome.logicalBytes += file.size
            if let pause = pauseAfterEachFile { Thread.sleep(forTimeInterval: pause) }
        }
    }

    /// A pause after each file a promotion renames into place, and each hot copy a demotion
    /// removes (fault injection, tests only: `BARGE_FAULT_TIER_FILE_DELAY`), so that a test can
    /// kill the agent in the middle of a page.
    public var pauseAfterEachFile: Double?

    // MARK: reading a cold file

    /// Reads byte ranges of a cold file from its chunks, whatever the ranges' boundaries (a
    /// transfer's chunks need not line up with the store's): each chunk needed is read, opened,
    /// decoded and checked against its id once, and the last one is kept for the next range.
    public final class FileReader {
        let store: ColdStore
        public let file: ColdFile
        private let starts: [UInt64]
        private var locations: [[UInt8]: ChunkLocation] = [:]
        private var readers: [String: PackReader] = [:]
        private let decoder = ChunkDecoder()
        private var cached: (index: Int, bytes: [UInt8])?

        init(store: ColdStore, file: ColdFile) throws {
            self.store = store
            self.file = file
            var at: UInt64 = 0
            starts = file.chunks.map { c in defer { at += UInt64(c.length) }; return at }
            if let problem = file.chunkListProblem { throw ColdStoreError.damaged(problem) }
            locations = try store.catalog.locations(file.chunks.map(\.id))
        }

        /// The packs holding the file's chunks, by the catalog as it was read.
        public var packs: Set<String> { Set(locations.values.map(\.pack)) }

        /// `length` bytes at `offset`, or an error naming the damaged chunk.
        public func read(offset: UInt64, length: Int) throws -> [UInt8] {
            guard offset + UInt64(length) <= file.size else { throw ColdStoreError("\(file.path): range past its end") }
            var out: [UInt8] = []
            out.reserveCapacity(length)
            var position = offset
            // The last chunk starting at or before `position` (binary search).
            var lo = 0, hi = starts.count - 1
            while lo < hi {
                let mid = (lo + hi + 1) / 2
                if starts[mid] <= position { lo = mid } else { hi = mid - 1 }
            }
            var index = lo
            while out.count < length {
                let bytes = try chunk(index)
                let from = Int(position - starts[index])
                guard from < bytes.count else { throw ColdStoreError.damaged("\(file.path): a chunk at \(starts[index]) is \(bytes.count) bytes, shorter than its place") }
                let take = min(bytes.count - from, length - out.count)
                out += bytes[from..<(from + take)]
                position += UInt64(take)
                index += 1
            }
            return out
        }

        private func chunk(_ index: Int) throws -> [UInt8] {
            if let cached, cached.index == index { return cached.bytes }
            let c = file.chunks[index]
            guard let location = locations[c.id] else { throw ColdStoreError.damaged("a chunk of \(file.path) is in no pack") }
            if readers[location.pack] == nil { readers[location.pack] = try PackReader(path: store.layout.packPath(for: location.pack), keys: store.keys) }
            let blob = try readers[location.pack]!.blob(PackFormat.Entry(id: c.id, offset: location.offset, stored: location.stored, raw: location.raw))
            let raw: [UInt8]
            do { raw = try decoder.decode(blob, verify: true) } catch {
                throw ColdStoreError.damaged("the chunk at \(starts[index]) of \(file.path) in pack \(location.pack) does not decode: \(error)")
            }
            guard raw.count == Int(c.length), store.storedID(SHA256.hash(raw)) == c.id else {
                throw ColdStoreError.damaged("the chunk at \(starts[index]) of \(file.path) in pack \(location.pack) is not the one stored")
            }
            cached = (index, raw)
            return raw
        }
    }

    /// What is wrong with pack `id` beyond its blobs, or nil: its trailer and index must read,
    /// and list every chunk the catalog places in it where the catalog says. `verify` reads blobs
    /// by the catalog's offsets, so a pack whose index was damaged, or whose end was cut off,
    /// passed it and promoted well, and `gc` removed it without a word; the index is the only
    /// record inside the store of what a pack holds (h1 of session 52, 3 of 3).
    public func indexProblem(ofPack id: String) -> String? {
        do {
            let listed = Set(try PackReader(path: layout.packPath(for: id), keys: keys).index())
            let placed = try catalog.chunks(inPack: id)
            if let missing = placed.first(where: { !listed.contains($0) }) {
                return "pack \(id)'s index does not list the chunk the catalog places at offset \(missing.offset) (\(placed.count) placed there)"
            }
            return nil
        } catch {
            return "pack \(id): \(error)"
        }
    }

    /// A reader of the cold file at `path` (relative to the root), or nil when it is not cold.
    public func reader(for path: String) throws -> FileReader? {
        guard let file = try catalog.file(path) else { return nil }
        return try FileReader(store: self, file: file)
    }

    // MARK: verify, gc, totals

    public struct VerifyOutcome: Sendable, Codable {
        public var chunksChecked = 0
        public var bytesChecked: UInt64 = 0
        /// Chunks that did not read back whole, with where they were.
        public var damaged: [String] = []
        public var repaired = 0
    }

    /// Re-reads every chunk of the cold files under `prefix`, decoding and re-hashing it. With
    /// `repair`, a damaged chunk found whole in another pack is pointed there (the packs
    /// themselves are never changed). Returns what it found; a chunk with no good copy stays in
    /// `damaged`, for the caller to fetch again from a source.
    public func verify(under prefix: String, repair: Bool) throws -> VerifyOutcome {
        // Shared, as demotions: gc (exclusive) never forgets a pack a repair points a chunk at.
        let lock = try StoreLock(layout.lockPath, exclusive: false)
        defer { lock.release() }
        var outcome = VerifyOutcome()
        var checked = Set<[UInt8]>()
        var readers: [String: PackReader] = [:]
        let decoder = ChunkDecoder()
        var after: String?
        while true {
            let page = try catalog.files(under: prefix, after: after)
            guard let last = page.last else { break }
            after = last.path
            let ids = page.flatMap { $0.chunks.map(\.id) }.filter { !checked.contains($0) }
            let locations = try catalog.locations(ids)
            for id in ids where !checked.contains(id) {
                checked.insert(id)
                guard let location = locations[id] else {
                    outcome.damaged.append("chunk \(Hex.encode(id.prefix(8)))… is in no pack")
                    continue
                }
                do {
                    if readers[location.pack] == nil { readers[location.pack] = try PackReader(path: layout.packPath(for: location.pack), keys: keys) }
                    let raw = try storedChunk(id, at: location, in: readers[location.pack]!, decoder: decoder)
                    outcome.chunksChecked += 1
                    outcome.bytesChecked += UInt64(raw.count)
                } catch {
                    if repair, let copy = try findCopy(of: id, avoiding: location.pack, decoder: decoder) {
                        try catalog.relocate(id, to: copy)
                        outcome.repaired += 1
                        outcome.chunksChecked += 1
                        outcome.bytesChecked += UInt64(copy.raw)
                    } else {
                        outcome.damaged.append("chunk \(Hex.encode(id.prefix(8)))… in pack \(location.pack) at \(location.offset)")
                        // No good copy: forgotten, so that the next demotion of a file holding it
                        // (sent again by `verify --repair`) stores it anew instead of deduping
                        // against the damaged blob.
                        if repair { try catalog.forgetChunk(id) }
                    }
                }
            }
        }
        return outcome
    }

    /// Another pack holding `id` whole (packs are listed from disk, so a copy the catalog does not
    /// point at, written by a concurrent demotion, counts too).
    func findCopy(of id: [UInt8], avoiding pack: String, decoder: ChunkDecoder) throws -> ChunkLocation? {
        for candidate in try packsOnDisk() where candidate != pack && (try? catalog.hasPack(candidate)) == true {
            guard let reader = try? PackReader(path: layout.packPath(for: candidate), keys: keys),
                  let entry = try? reader.index().first(where: { $0.id == id }),
                  let blob = try? reader.blob(entry), let raw = try? decoder.decode(blob, verify: true),
                  storedID(SHA256.hash(raw)) == id else { continue }
            return ChunkLocation(pack: candidate, offset: entry.offset, stored: entry.stored, raw: entry.raw)
        }
        return nil
    }

    /// Pack ids present under `packs/`.
    public func packsOnDisk() throws -> [String] {
        var ids: [String] = []
        guard let top = opendir(layout.packsDirectory) else { throw ColdStoreError.system("list", layout.packsDirectory, errno) }
        defer { closedir(top) }
        while let e = readdir(top) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard name.count == 2, let sub = opendir(layout.packsDirectory + "/" + name) else { continue }
            while let f = readdir(sub) {
                let file = withUnsafeBytes(of: f.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                if file.hasSuffix(".pack") { ids.append(String(file.dropLast(5))) }
            }
            closedir(sub)
        }
        return ids.sorted()
    }

    public struct GCOutcome: Sendable, Codable {
        public var packsRemoved = 0
        public var bytesRemoved: UInt64 = 0
        public var packsKept = 0
        public var temporaryRemoved = 0
    }

    /// Removes packs that no cold file references, and packs and temporary files that no
    /// demotion finished (left by a crash). It holds the store's lock exclusively, so it waits
    /// for running demotions, and they for it. Crash-safe: the catalog forgets a pack before its
    /// file is removed, so a crash in between leaves a file nothing points at, which the next
    /// run removes.
    public func gc() throws -> GCOutcome {
        let lock = try StoreLock(layout.lockPath, exclusive: true)
        defer { lock.release() }
        var outcome = GCOutcome()
        let (all, live) = try catalog.packUse()
        let dead = all.filter { !live.contains($0) }
        try catalog.forget(packs: dead)
        let known = Set(all).subtracting(dead)
        for id in try packsOnDisk() where !known.contains(id) {
            let path = layout.packPath(for: id)
            var st = stat()
            if stat(path, &st) == 0 { outcome.bytesRemoved += UInt64(st.st_size) }
            if unlink(path) == 0 { outcome.packsRemoved += 1 }
        }
        outcome.packsKept = known.count
        if let tmp = opendir(layout.temporaryDirectory) {
            while let e = readdir(tmp) {
                let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                let path = layout.temporaryDirectory + "/" + name
                if name.hasPrefix("pack-"), unlink(path) == 0 { outcome.temporaryRemoved += 1 }
                // A config a start left before its link (killed then): once the store has its
                // config, and not one being linked now.
                var st = stat()
                if name.hasPrefix("config-"), name.hasSuffix(".json"), access(layout.configPath, F_OK) == 0,
                   stat(path, &st) == 0, st.st_mtim.tv_sec < time(nil) - 60, unlink(path) == 0 { outcome.temporaryRemoved += 1 }
            }
            closedir(tmp)
        }
        try ColdLayout.syncDirectory(layout.packsDirectory)
        return outcome
    }

    public func totals() throws -> ColdCatalog.Totals { try catalog.totals() }
}

/// The mtimes of the directories a demotion or promotion changes, recorded in the catalog before
/// the first change and put back after the last, so that moving files between tiers leaves their
/// directories as they were (a transfer gave them their source's mtimes). A crash in between
/// leaves the row, and the next page under that directory puts the mtime back.
struct DirectoryTimes {
    let catalog: ColdCatalog
    let root: String
    /// By bytes (`PathKey`): "é" and "e\u{301}" are two directories.
    private var touched: Set<PathKey> = []

    init(catalog: ColdCatalog, root: String) {
        self.catalog = catalog
        self.root = root
    }

    /// Before changing the directory holding `path`. Looked at beneath the root, as every
    /// directory here is (`RootDirectory`), through no link; by an `O_PATH` descriptor, which
    /// an unreadable directory (0000, 0100, 0300 from the source) allows too.
    mutating func remember(parentOf path: RootedPath) throws {
        let parent = path.components.dropLast().joined(separator: "/")
        guard !touched.contains(PathKey(parent)) else { return }
        let fd = try RootDirectory.open(root).openBeneath(parent, RootDirectory.oPath | O_DIRECTORY | O_CLOEXEC, throughLinks: false)
        guard fd >= 0 else { return }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { return }
        try catalog.rememberDirectory(parent, seconds: Int64(st.st_mtim.tv_sec), nanoseconds: Int64(st.st_mtim.tv_nsec))
        touched.insert(PathKey(parent))
    }

    mutating func restoreAndSync() throws {
        for directory in touched.sorted(by: { $0.string.utf8.count > $1.string.utf8.count }) {
            try restore(directory.string)
        }
        touched = []
    }

    /// Puts back every recorded mtime at `prefix` or below (rows a crash left).
    func restorePending(under prefix: String) throws {
        for d in try catalog.rememberedDirectories(under: prefix).sorted(by: { $0.path.utf8.count > $1.path.utf8.count }) { try restore(d.path) }
    }

    private func restore(_ relative: String) throws {
        guard let row = try catalog.rememberedDirectories(under: relative).first(where: { PathKey.sameBytes($0.path, relative) }) else { return }
        // Opened through no link, and lifted where the agent (not root) may not read or search it.
        let fd: Int32
        do {
            fd = try RootDirectory.open(root).openDirectory(PathKey.components(relative).map(String.init)[...], create: false, display: relative,
                                                            throughLinks: false, lifting: true)
        } catch {
            // Gone, or no longer a directory (a file or a link under its name): nothing to put back.
            if error.errno == ENOENT || error.errno == ENOTDIR { try catalog.forgetDirectory(relative) }
            if case .invalidPath = error { try catalog.forgetDirectory(relative) }
            return
        }
        defer { close(fd) }
        var both = [timespec(tv_sec: 0, tv_nsec: (1 << 30) - 2), timespec(tv_sec: Int(row.seconds), tv_nsec: Int(row.nanoseconds))]  // UTIME_OMIT for the access time
        guard futimens(fd, &both) == 0 else { return }
        guard fsync(fd) == 0 else { throw ColdStoreError.system("fsync", relative.isEmpty ? "." : relative, errno) }
        try catalog.forgetDirectory(relative)
    }
}

/// The buffers of the chunks a demotion handles at once, one lane per encoder. Each lane (and
/// each encoder) is used by one thread at a time; the per-lane values live in raw memory, not in
/// Swift arrays, so that threads writing different lanes never touch shared storage.
final class ChunkLanes: @unchecked Sendable {
    let raw: [UnsafeMutableRawPointer]
    let encoded: [UnsafeMutableRawPointer]
    let encodedCapacity: Int
    let lengths: UnsafeMutableBufferPointer<Int>
    let encodedLengths: UnsafeMutableBufferPointer<Int>
    /// 32 bytes per lane.
    private let idBytes: UnsafeMutableRawPointer
    private let keys: ColdKeys?
    private let encoders: [AdaptiveEncoder]

    init(count: Int, chunkSize: Int, keys: ColdKeys?, encoders: [AdaptiveEncoder]) {
        encodedCapacity = ChunkFormat.maxEncodedLength(rawLength: chunkSize)
        raw = (0..<count).map { _ in UnsafeMutableRawPointer.allocate(byteCount: chunkSize, alignment: 4096) }
        encoded = (0..<count).map { [encodedCapacity] _ in UnsafeMutableRawPointer.allocate(byteCount: encodedCapacity, alignment: 64) }
        lengths = .allocate(capacity: count)
        lengths.initialize(repeating: 0)
        encodedLengths = .allocate(capacity: count)
        encodedLengths.initialize(repeating: 0)
        idBytes = .allocate(byteCount: 32 * count, alignment: 8)
        self.keys = keys
        self.encoders = encoders
    }

    func id(_ k: Int) -> [UInt8] { Array(UnsafeRawBufferPointer(start: idBytes + 32 * k, count: 32)) }

    /// Lane k's id: the SHA-256 of its raw bytes (keyed in an encrypted store).
    func hash(_ k: Int) {
        let sha = SHA256.hash(UnsafeRawBufferPointer(start: raw[k], count: lengths[k]))
        let id = keys?.storedID(sha) ?? sha.bytes
        id.withUnsafeBytes { (idBytes + 32 * k).copyMemory(from: $0.baseAddress!, byteCount: 32) }
    }

    /// Compresses lane k with encoder `e` (mod their count); -1 as its length when that fails.
    func encode(_ k: Int, with e: Int) {
        do {
            let header = try encoders[e % encoders.count].encode(UnsafeRawBufferPointer(start: raw[k], count: lengths[k]),
                                                                  into: UnsafeMutableRawBufferPointer(start: encoded[k], count: encodedCapacity)).header
            encodedLengths[k] = header.encodedLength
        } catch {
            encodedLengths[k] = -1
        }
    }

    func deallocate() {
        raw.forEach { $0.deallocate() }
        encoded.forEach { $0.deallocate() }
        lengths.deallocate()
        encodedLengths.deallocate()
        idBytes.deallocate()
    }
}

/// What the threads of a pack check found, one slot per thread.
final class PackCheck: @unchecked Sendable {
    private let slots: UnsafeMutableBufferPointer<String?>
    init(lanes: Int) {
        slots = .allocate(capacity: lanes)
        slots.initialize(repeating: nil)
    }
    deinit {
        _ = slots.deinitialize()
        slots.deallocate()
    }
    func record(_ lane: Int, _ failure: String) { slots[lane] = failure }
    var first: String? { slots.lazy.compactMap { $0 }.first }
}

