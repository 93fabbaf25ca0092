import BargeCodec
import BargeStore
import BargeTier
import BargeWire
import Foundation
import NIOConcurrencyHelpers

/// An agent's side of tiers: it answers `tier request`s (protocol 9) from its site's cold store
/// (`--cold DIR`, shared by the site's agents) and its root. Each request is one page and runs on
/// the blocking-I/O pool; what a page did is in its reply, and the coordinator journals it.
public final class TierWork: Sendable {
    public let root: String
    public let name: String
    /// Nil without `--cold`: the agent lists hot files and refuses the rest with the reason.
    let store: ColdStoreBox?
    /// `--tier-policy`: what a demotion without `--policy` (and a transfer without `--tier`) uses.
    public let sitePolicy: TierPolicy?
    /// Files placed cold at transfer time go into the store through this (nil without `--cold`).
    public let intake: ColdIntake?
    /// Demotion walks kept between pages, by job: a page goes on where the last stopped. An agent
    /// that restarts (or takes over from another) walks again, past the files already gone cold.
    private let walks = NIOLockedValueBox<[String: DemoteWalk]>([:])
    /// `barge ls` walks kept between pages, by the path listed and where the next page starts:
    /// a page goes on where the last stopped. Missing (another agent of the site had the last
    /// page, or it is older than `listingKept`), the walk starts again just after that entry.
    private let listings = NIOLockedValueBox<[String: (walker: ListWalk, at: ContinuousClock.Instant)]>([:])
    static let listingKept: Duration = .seconds(60)
    /// Each holds a directory descriptor per level (at most `TreeWalker.heldLevels`).
    static let listingsKept = 4
    /// The most entries an older agent's cursor may count.
    static let mostSkipped = 1 << 40

    struct ListWalk: @unchecked Sendable {
        var walker: TreeWalker
    }

    /// What archiving learns about the site's data, kept across pages.
    private let selector = SharedSelector(.archiving())

    struct DemoteWalk: @unchecked Sendable {
        var walker: TreeWalker
        var after: String
    }

    /// Bytes of files per demotion page at most, so a page makes about one pack.
    static let demotePageBytes: UInt64 = 256 << 20

    /// `--cdc-above`: files from this size up are demoted in content-defined chunks, as they are
    /// cut in transit.
    let contentDefinedAbove: UInt64?

    /// `fileDelay`: a pause after each file a page moves (fault injection, tests only).
    public init(root: String, name: String, cold: String?, keyMaterial: [UInt8]?, sitePolicy: TierPolicy?,
                contentDefinedAbove: UInt64? = UnitSender.Settings.defaultContentDefinedAbove, fileDelay: Double? = nil) throws {
        self.root = root
        self.contentDefinedAbove = contentDefinedAbove
        self.name = name
        self.sitePolicy = sitePolicy
        let opened = try cold.map { try ColdStore(directory: $0, keyMaterial: keyMaterial) }
        opened?.pauseAfterEachFile = fileDelay
        store = opened.map { ColdStoreBox($0) }
        intake = opened.map { ColdIntake(store: $0) }
    }

    public func reply(to r: TierRequest) -> TierReply {
        do {
            switch r.operation {
            case .list: return try list(r)
            case .stats: return try stats(r)
            case .gc: return try gc(r)
            case .demote: return try onePageAtATime(r) { try demote(r) }
            case .promote: return try onePageAtATime(r) { try promote(r) }
            }
        } catch {
            return TierReply(request: r.request, error: "agent \(name): \(error)")
        }
    }

    private func coldStore() throws -> ColdStore {
        guard let store else { throw ColdStoreError("no cold store here: start the site's agents with --cold DIR (a directory they share)") }
        return store.store
    }

    /// The request's path under the root (`a:/x`, `a:x` and `a:` alike).
    private func relative(_ path: String) throws -> String { try RootedPath.lexical(path, under: root).relative }

    /// `page`, holding the lock of its job's pages (`ColdStore.withPageLock`): a page asked again
    /// while a run of it still goes waits for that run, and answers what it recorded.
    private func onePageAtATime(_ r: TierRequest, _ page: () throws -> TierReply) throws -> TierReply {
        try coldStore().withPageLock(job: r.job, page)
    }

    /// A page of `r`'s job that ended already (its reply was lost), answered as it was. A
    /// demotion's page cut short after its catalog commit (`PageOutcome.removing`) first
    /// finishes its removals, then answers with every file it moved.
    private func answered(_ r: TierRequest, _ store: ColdStore) throws -> TierReply? {
        guard !r.job.isEmpty, var done = try store.catalog.pageOutcome(job: r.job, after: r.after) else { return nil }
        if let removing = done.removing {
            let finished = try store.finishRemovals(removing, root: root)
            done.files = UInt64(finished.files.count)
            done.logicalBytes = finished.logicalBytes
            done.skipped += finished.skipped
            done.removing = nil
            try? store.catalog.record(done, job: r.job, after: r.after)
        }
        var counters = TierCounters()
        counters.files = done.files
        counters.logicalBytes = done.logicalBytes
        counters.packBytes = done.packBytes
        return TierReply(request: r.request, next: done.next, skipped: done.skipped.map { .init(path: $0.path, reason: $0.reason) }, counters: counters)
    }

    /// Records what the page did, then answers it.
    private func recorded(_ r: TierRequest, _ store: ColdStore, _ reply: TierReply, skipped: [ColdStore.Skipped]) throws -> TierReply {
        // Not recorded (the catalog's disk full), the page still answers with what it did: only
        // a page asked again after a lost reply needs the record, and it would count less.
        // Thrown, the job failed with the page's moves uncounted (h3 of session 49).
        if !r.job.isEmpty {
            try? store.catalog.record(ColdCatalog.PageOutcome(next: reply.next, files: reply.counters.files, logicalBytes: reply.counters.logicalBytes,
                                                              packBytes: reply.counters.packBytes, skipped: skipped), job: r.job, after: r.after)
        }
        return reply
    }

    private func demote(_ r: TierRequest) throws -> TierReply {
        let store = try coldStore()
        if let reply = try answered(r, store) { return reply }
        let policy: TierPolicy? = r.policy.isEmpty ? sitePolicy : try TierPolicy(parsing: r.policy)
        let base = try relative(r.path)
        try store.restoreDirectoryTimes(under: base, root: root)
        let start = try RootedPath.resolve(base, under: root)
        var st = stat()
        guard lstat(start.absolute, &st) == 0 else { throw ColdStoreError("\(r.path): no such file or directory under the root") }
        var paths: [String] = []
        var bytes: UInt64 = 0
        var exhausted = false
        let now = Int64(Date().timeIntervalSince1970)
        var walk: DemoteWalk?
        if st.st_mode & S_IFMT != S_IFDIR {
            // A single file (`a:raw/x.h5`); the policy sees its name.
            let e = try TreeScanner.entry(at: start)
            if e.kind == .file, policy.map({ $0.tier(for: FileFacts(path: e.path, size: e.size, mtime: e.mtimeSeconds), now: now) == .cold }) ?? true {
                paths.append(base)
            }
            exhausted = true
        } else {
            var w: DemoteWalk
            if let kept = walks.withLockedValue({ $0.removeValue(forKey: r.job) }), kept.after == r.after {
                w = kept
            } else {
                w = DemoteWalk(walker: try TreeWalker(directory: start), after: r.after)
            }
            while paths.count < Int(max(1, r.limit)), bytes < Self.demotePageBytes {
                guard let e = try w.walker.next() else {
                    exhausted = true
                    break
                }
                // A transfer's partial file (or one a crash left) is not the user's: it stays.
                guard e.kind == .file, !e.path.hasSuffix(PartialFileWriter.suffix) else { continue }
                if let policy, policy.tier(for: FileFacts(path: e.path, size: e.size, mtime: e.mtimeSeconds), now: now) != .cold { continue }
                paths.append(base.isEmpty ? e.path : base + "/" + e.path)
                bytes += e.size
            }
            walk = w
        }
        let next = exhausted ? "" : (paths.last ?? r.after) + "#\(r.after.count + paths.count)"
        let outcome = try store.demote(paths, root: root, encoders: ColdStore.archiveEncoders(selector: selector),
                                       contentDefinedAbove: contentDefinedAbove, page: r.job.isEmpty ? nil : (r.job, r.after, next))
        var counters = TierCounters()
        counters.files = UInt64(outcome.files.count)
        counters.logicalBytes = outcome.logicalBytes
        counters.packBytes = outcome.storedBytes
        if !exhausted, var walk {
            walk.after = next
            walks.withLockedValue { $0[r.job] = walk }
        }
        return try recorded(r, store, TierReply(request: r.request, next: next, entries: outcome.files.map(Self.entry),
                                                skipped: outcome.skipped.map { .init(path: $0.path, reason: $0.reason) }, counters: counters),
                            skipped: outcome.skipped)
    }

    private func promote(_ r: TierRequest) throws -> TierReply {
        let store = try coldStore()
        if let reply = try answered(r, store) { return reply }
        let base = try relative(r.path)
        try store.restoreDirectoryTimes(under: base, root: root)
        var files = try store.catalog.files(under: base, after: r.after.isEmpty ? nil : r.after, limit: Int(max(1, r.limit)))
        // A page of at most about 256 MiB, as demotion's.
        var bytes: UInt64 = 0
        if let cut = files.firstIndex(where: { bytes += $0.size; return bytes > Self.demotePageBytes }), cut > 0 { files = Array(files[..<cut]) }
        let outcome = try store.promote(files.map(\.path), root: root)
        var counters = TierCounters()
        counters.files = UInt64(outcome.files.count)
        counters.logicalBytes = outcome.logicalBytes
        counters.packBytes = outcome.packBytesRead
        let next = files.count < Int(max(1, r.limit)) && bytes <= Self.demotePageBytes ? "" : (files.last?.path ?? "")
        return try recorded(r, store, TierReply(request: r.request, next: next, entries: outcome.files.map(Self.entry),
                                                skipped: outcome.skipped.map { .init(path: $0.path, reason: $0.reason) }, counters: counters),
                            skipped: outcome.skipped)
    }

    /// Hot entries under the path (a walk, in walk order), then cold files (catalog order). The
    /// page's `next`, passed back as `after`, says where the next starts: `h:PATH` just after the
    /// hot entry PATH, `c:PATH` after the cold file PATH. (A count, from an agent before this
    /// cursor, skips that many entries, as it did.) Each page costs its own entries, wherever it
    /// starts: counting from the start, a listing of 400,000 files took five minutes.
    private func list(_ r: TierRequest) throws -> TierReply {
        let base = try relative(r.path)
        let limit = Int(max(1, r.limit))
        var entries: [TierEntry] = []
        var next = ""
        let start = try RootedPath.resolve(base, under: root)
        var st = stat()
        let exists = lstat(start.absolute, &st) == 0
        let isDirectory = exists && st.st_mode & S_IFMT == S_IFDIR
        var skip = 0
        if !r.after.isEmpty, !r.after.hasPrefix("h:"), !r.after.hasPrefix("c:") {
            // An older agent's cursor: how many entries the pages before listed.
            guard let n = Int(r.after), (0...Self.mostSkipped).contains(n) else {
                throw ColdStoreError("'\(r.after.prefix(40))' is not where a page of this listing ended")
            }
            skip = n
        }
        let coldAfter: String? = r.after.hasPrefix("c:") ? String(r.after.dropFirst(2)) : nil
        func listed(_ path: String) -> String { base.isEmpty ? path : base + "/" + path }
        if coldAfter == nil {
            if exists && !isDirectory {
                let e = try TreeScanner.entry(at: start)
                if skip == 0 && !r.after.hasPrefix("h:") {
                    entries.append(TierEntry(cold: false, kind: Self.kind(e.kind), path: base, size: e.size, mtimeSeconds: e.mtimeSeconds, mode: e.mode))
                }
                skip = max(0, skip - 1)
            } else if isDirectory {
                let hotAfter = r.after.hasPrefix("h:") ? String(r.after.dropFirst(2)) : ""
                var walk = try keptListing(base, after: hotAfter) ?? ListWalk(walker: try TreeWalker(directory: start, keepPartialCopies: true, after: hotAfter))
                var last: String?
                while let e = try walk.walker.next() {
                    if skip > 0 {
                        skip -= 1
                        continue
                    }
                    entries.append(TierEntry(cold: false, kind: Self.kind(e.kind), path: listed(e.path), size: e.size, mtimeSeconds: e.mtimeSeconds, mode: e.mode))
                    last = e.path
                    if entries.count == limit { break }
                }
                if let last, entries.count == limit {
                    next = "h:" + last
                    keep(walk, base, after: last)
                }
            }
        }
        if next.isEmpty, let store {
            var after = coldAfter
            while entries.count < limit {
                let page = try store.store.catalog.files(under: base, after: after, limit: min(1000, limit - entries.count + skip))
                guard let lastFile = page.last else { break }
                after = lastFile.path
                for f in page {
                    if skip > 0 {
                        skip -= 1
                        continue
                    }
                    entries.append(Self.entry(f))
                }
            }
            // A full page may have more behind it; the next page says if not.
            if entries.count >= limit, let after { next = "c:" + after }
        }
        // Nothing there, hot or cold: as `ls` says of a missing path (an empty directory lists
        // nothing and is no error).
        if !exists, r.after.isEmpty, entries.isEmpty { throw ColdStoreError("\(r.path.isEmpty ? "/" : r.path): no such file or directory under the root, hot or cold") }
        return TierReply(request: r.request, next: next, entries: entries)
    }

    /// The walk a listing of `base` left just after `after`, if it is still kept.
    private func keptListing(_ base: String, after: String) -> ListWalk? {
        guard !after.isEmpty else { return nil }
        return listings.withLockedValue { kept in
            guard let found = kept.removeValue(forKey: base + "\u{0}" + after), ContinuousClock.now - found.at < Self.listingKept else { return nil }
            return found.walker
        }
    }

    /// Keeps a listing's walk for its next page; the oldest go past `listingsKept`, and any
    /// older than `listingKept` (a listing stopped half-way).
    private func keep(_ walk: ListWalk, _ base: String, after: String) {
        listings.withLockedValue { kept in
            let now = ContinuousClock.now
            kept = kept.filter { now - $0.value.at < Self.listingKept }
            while kept.count >= Self.listingsKept, let oldest = kept.min(by: { $0.value.at < $1.value.at })?.key { kept.removeValue(forKey: oldest) }
            kept[base + "\u{0}" + after] = (walk, now)
        }
    }

    private func stats(_ r: TierRequest) throws -> TierReply {
        let t = try coldStore().totals()
        var c = TierCounters()
        c.storeFiles = UInt64(t.files)
        c.storeLogicalBytes = t.logicalBytes
        c.storeStoredBytes = t.storedBytes
        c.storeUniqueBytes = t.uniqueBytes
        c.storePacks = UInt64(t.packs)
        return TierReply(request: r.request, counters: c)
    }

    private func gc(_ r: TierRequest) throws -> TierReply {
        let outcome = try coldStore().gc()
        var c = TierCounters()
        c.packsRemoved = UInt64(outcome.packsRemoved)
        c.bytesRemoved = outcome.bytesRemoved
        c.packsKept = UInt64(outcome.packsKept)
        return TierReply(request: r.request, counters: c)
    }

    static func entry(_ f: ColdFile) -> TierEntry {
        TierEntry(cold: true, kind: .file, path: f.path, size: f.size, mtimeSeconds: f.mtimeSeconds, mode: f.mode)
    }

    static func kind(_ k: TreeEntry.Kind) -> FileEntry.Kind {
        switch k {
        case .file: .file
        case .directory: .directory
        case .symlink: .symlink
        }
    }
}

/// The store, shared by the requests an agent runs at once (its catalog is a SQLite pool; its
/// methods hold no state between calls, and `gc` and demotions exclude each other by a lock file).
final class ColdStoreBox: @unchecked Sendable {
    let store: ColdStore
    init(_ store: ColdStore) { self.store = store }
}
